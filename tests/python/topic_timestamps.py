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
from datetime import datetime, timedelta, timezone

try:
    import high_watermarks
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


times = {}


def note(m):
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


metadata = high_watermarks.read(brokers, "topic-timestamps", [topic], note)
if topic not in metadata.topics:
    sys.exit(f"the broker has no topic {topic}")
print(json.dumps(times))
