#!/usr/bin/env python3
"""Checks pushflow's schema registry with Confluent's own Python client.

Usage: registry_compat.py <registry-url>

Registers schemas/notification.delivered.avsc under a fresh subject, looks it
up, fetches it by id, tests the compatibility of a compatible and an
incompatible evolution, checks that registering the incompatible one is
refused with 409, and round-trips a record through AvroSerializer /
AvroDeserializer (Confluent wire format). Exits non-zero with a message on
the first mismatch.

Needs: pip install "confluent-kafka[schemaregistry,avro]" fastavro
"""

import json
import pathlib
import sys
import time
import uuid

try:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    from confluent_kafka.serialization import MessageField, SerializationContext
except ImportError as e:  # ModuleNotFoundError included (httpx, fastavro, ...)
    sys.exit(
        f"registry_compat: cannot import confluent_kafka.schema_registry ({e}); "
        'install the client with: pip install "confluent-kafka[schemaregistry,avro]" fastavro'
    )

SCHEMA_FILE = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "notification.delivered.avsc"


def fail(message):
    sys.exit(f"registry_compat: FAILED: {message}")


def expect(condition, message):
    if not condition:
        fail(message)


def with_field(schema_text, field):
    schema = json.loads(schema_text)
    schema["fields"].append(field)
    return json.dumps(schema)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: registry_compat.py <registry-url>")
    url = sys.argv[1].rstrip("/")
    schema_text = SCHEMA_FILE.read_text()
    topic = f"notification.delivered.compat-{uuid.uuid4().hex[:12]}"
    subject = f"{topic}-value"

    client = SchemaRegistryClient({"url": url})

    schema_id = client.register_schema(subject, Schema(schema_text, "AVRO"))
    expect(isinstance(schema_id, int) and schema_id > 0, f"register returned id {schema_id!r}")
    again = SchemaRegistryClient({"url": url}).register_schema(subject, Schema(schema_text, "AVRO"))
    expect(again == schema_id, f"registering the same schema again gave id {again}, expected {schema_id}")

    registered = SchemaRegistryClient({"url": url}).lookup_schema(subject, Schema(schema_text, "AVRO"))
    expect(registered.schema_id == schema_id, f"lookup id {registered.schema_id} != {schema_id}")
    expect(registered.version == 1, f"lookup version {registered.version} != 1")
    expect(registered.subject == subject, f"lookup subject {registered.subject!r} != {subject!r}")

    fetched = SchemaRegistryClient({"url": url}).get_schema(schema_id)
    expect(
        json.loads(fetched.schema_str) == json.loads(schema_text),
        f"schema {schema_id} fetched by id differs from the registered one: {fetched.schema_str}",
    )
    expect(fetched.schema_type == "AVRO", f"schema type {fetched.schema_type!r} != 'AVRO'")

    compatible = with_field(schema_text, {"name": "channel", "type": ["null", "string"], "default": None})
    incompatible = with_field(schema_text, {"name": "region", "type": "string"})
    expect(
        client.test_compatibility(subject, Schema(compatible, "AVRO")) is True,
        "adding an optional field with a default was reported incompatible",
    )
    expect(
        client.test_compatibility(subject, Schema(incompatible, "AVRO")) is False,
        "adding a required field without default was reported compatible under BACKWARD",
    )
    try:
        client.register_schema(subject, Schema(incompatible, "AVRO"))
        fail("registering an incompatible schema succeeded")
    except SchemaRegistryError as e:
        expect(e.http_status_code == 409, f"incompatible registration gave HTTP {e.http_status_code}, expected 409")
        expect(e.error_code == 409, f"incompatible registration gave error_code {e.error_code}, expected 409")
        expect("region" in e.error_message, f"409 message does not name the field 'region': {e.error_message}")

    try:
        client.get_schema(2**31 - 1)
        fail("fetching an unknown schema id succeeded")
    except SchemaRegistryError as e:
        expect(e.error_code == 40403, f"unknown id gave error_code {e.error_code}, expected 40403")

    record = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": int(time.time() * 1000),
        "store_id": "store-1",
        "notification_id": "n-1",
        "campaign_id": "c-1",
    }
    ctx = SerializationContext(topic, MessageField.VALUE)
    serializer = AvroSerializer(SchemaRegistryClient({"url": url}), schema_text)
    data = serializer(record, ctx)
    expect(data[0] == 0, f"magic byte {data[0]} != 0")
    expect(int.from_bytes(data[1:5], "big") == schema_id, f"wire id {int.from_bytes(data[1:5], 'big')} != {schema_id}")

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": url}))
    decoded = deserializer(data, ctx)
    normalised = dict(decoded)
    normalised["event_id"] = str(decoded["event_id"])
    occurred = decoded["occurred_at"]
    if hasattr(occurred, "timestamp"):
        normalised["occurred_at"] = round(occurred.timestamp() * 1000)
    expect(normalised == record, f"round trip changed the record: {record} -> {decoded}")

    print(f"registry_compat: OK (subject {subject}, id {schema_id})")


if __name__ == "__main__":
    main()
