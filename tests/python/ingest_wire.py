#!/usr/bin/env python3
"""Checks records written by pushflow ingest with Confluent's own clients.

Usage: ingest_wire.py <brokers> <topic> <registry-url> <expected.json>

expected.json is a list of {"partition", "offset", "event_id", "fields": {...}}
as ingest answered them. Reads the topic with confluent-kafka, decodes each
value with the registry's AvroDeserializer (Confluent wire format: magic
byte 0, 4-byte schema id, Avro body) and checks that every expected record
is at its partition and offset with those field values. Exits non-zero with
a message on the first mismatch.

Needs: pip install "confluent-kafka[schemaregistry,avro]" fastavro
"""

import json
import sys
import time
import uuid

try:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext
except ImportError as e:
    sys.exit(
        f"ingest_wire: cannot import confluent_kafka.schema_registry ({e}); "
        'install the client with: pip install "confluent-kafka[schemaregistry,avro]" fastavro'
    )


def fail(message):
    sys.exit(f"ingest_wire: FAILED: {message}")


def main():
    brokers, topic, registry, expected_file = sys.argv[1:5]
    with open(expected_file) as f:
        expected = json.load(f)
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"ingest-wire-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    found = {}
    deadline = time.time() + 30
    while len(found) < len(expected) and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        raw = msg.value()
        if raw[0] != 0:
            fail(f"magic byte {raw[0]} at {msg.partition()}/{msg.offset()}")
        value = deserializer(raw, SerializationContext(topic, MessageField.VALUE))
        found[(msg.partition(), msg.offset())] = (msg.key(), value)
    consumer.close()
    for e in expected:
        at = (e["partition"], e["offset"])
        if at not in found:
            fail(f"no record at partition {at[0]} offset {at[1]}")
        key, value = found[at]
        if str(value["event_id"]) != e["event_id"]:
            fail(f"event_id {value['event_id']} at {at}, expected {e['event_id']}")
        for k, v in e["fields"].items():
            got = value[k]
            if hasattr(got, "timestamp"):  # timestamp-millis comes back as datetime
                got = int(round(got.timestamp() * 1000))
            if got != v:
                fail(f"field {k} = {got!r} at {at}, expected {v!r}")
    print(f"ingest_wire: {len(expected)} records decoded with confluent-kafka and match")


if __name__ == "__main__":
    main()
