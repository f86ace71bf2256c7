"""Independent count of event ids on Kafka topics (confluent-kafka with its
own Avro deserializer and the schema registry, no pushflow code): reads
every partition from the beginning up to its high watermark, read_committed
(records of aborted transactions are not seen, as any consumer of pushflow's
outputs should read).

    event_ids.py BROKERS REGISTRY_URL TOPIC...

Prints JSON: {topic: {"records": n, "distinct_event_ids": n,
"duplicated": [up to 5 event ids seen more than once]}}.
"""
import collections
import json
import sys

try:
    import high_watermarks
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import SerializationContext, MessageField
except ImportError as e:  # fail, naming the package
    sys.exit(f"pip package confluent-kafka[avro,schemaregistry] is missing ({e}); pip install -r tests/python/requirements.txt")

brokers, registry, topics = sys.argv[1], sys.argv[2], sys.argv[3:]
decode = AvroDeserializer(SchemaRegistryClient({"url": registry}))
ids = {t: collections.Counter() for t in topics}


def note(m):
    event = decode(m.value(), SerializationContext(m.topic(), MessageField.VALUE))
    ids[m.topic()][event["event_id"]] += 1


high_watermarks.read(brokers, "event-ids", topics, note)
print(json.dumps({t: {"records": sum(c.values()), "distinct_event_ids": len(c),
                      "duplicated": [i for i, n in c.items() if n > 1][:5]}
                  for t, c in ids.items()}))
