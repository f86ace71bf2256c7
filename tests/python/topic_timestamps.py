"""Independent read of a topic's event times (confluent-kafka, fastavro and
the registry's REST API, no pushflow code): decodes every committed record
of TOPIC, from the beginning up to each partition's high watermark as it is
at the start, with the writer schema the registry holds for its id.

    topic_timestamps.py BROKERS REGISTRY_URL TOPIC

Prints JSON: {event_id: occurred_at as milliseconds since the epoch (UTC)}.
Fails when an event_id occurs twice with different times.
"""
import io
import json
import struct
import sys
import time
from datetime import datetime, timedelta, timezone

try:
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    import fastavro
    import requests
except ImportError as e:  # fail, naming the package
    sys.exit(f"pip package missing ({e}); pip install -r tests/python/requirements.txt")

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
brokers, registry, topic = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
schemas = {}


def writer_schema(schema_id):
    if schema_id not in schemas:
        r = requests.get(f"{registry}/schemas/ids/{schema_id}", timeout=10)
        r.raise_for_status()
        schemas[schema_id] = fastavro.parse_schema(json.loads(r.json()["schema"]))
    return schemas[schema_id]


def millis(value):
    """timestamp-millis as fastavro returns it (an aware datetime) or raw."""
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    return int(value)


consumer = Consumer({"bootstrap.servers": brokers, "group.id": "topic-timestamps",
                     "enable.auto.commit": False, "enable.partition.eof": False,
                     "isolation.level": "read_committed"})
metadata = consumer.list_topics(timeout=10)
if topic not in metadata.topics:
    sys.exit(f"the broker has no topic {topic}")
ends = {}
for p in metadata.topics[topic].partitions:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    if high > low:
        ends[p] = high
times = {}
deadline = time.time() + 120
if ends:
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    left = dict(ends)
    while left:
        if time.time() > deadline:
            sys.exit(f"could not read up to the high watermarks within 120 s: {left}")
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            if m.error():
                sys.exit(f"consume error: {m.error()}")
            value = m.value()
            magic, schema_id = struct.unpack(">bI", value[:5])
            if magic != 0:
                sys.exit(f"{topic}/{m.partition()}@{m.offset()}: not the Confluent wire format")
            record = fastavro.schemaless_reader(io.BytesIO(value[5:]), writer_schema(schema_id))
            at = millis(record["occurred_at"])
            event_id = str(record["event_id"])  # a uuid logical type: uuid.UUID
            seen = times.setdefault(event_id, at)
            if seen != at:
                sys.exit(f"event {event_id} at {seen} and at {at}")
        for tp in consumer.position([TopicPartition(topic, p) for p in left]):
            if tp.offset >= left[tp.partition]:
                del left[tp.partition]
consumer.close()
print(json.dumps(times))
