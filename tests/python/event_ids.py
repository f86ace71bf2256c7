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
import time

try:
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import SerializationContext, MessageField
except ImportError as e:  # fail, naming the package
    sys.exit(f"pip package confluent-kafka[avro,schemaregistry] is missing ({e}); pip install -r tests/python/requirements.txt")

brokers, registry, topics = sys.argv[1], sys.argv[2], sys.argv[3:]
decode = AvroDeserializer(SchemaRegistryClient({"url": registry}))
consumer = Consumer({"bootstrap.servers": brokers, "group.id": "event-ids",
                     "enable.auto.commit": False, "isolation.level": "read_committed"})
metadata = consumer.list_topics(timeout=10)
ends = {}
for t in topics:
    for p in (metadata.topics[t].partitions if t in metadata.topics else []):
        low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
        if high > low:
            ends[(t, p)] = high
ids = {t: collections.Counter() for t in topics}
if ends:
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for (t, p) in ends])
    left, deadline = dict(ends), time.time() + 120
    while left:
        if time.time() > deadline:
            sys.exit(f"could not read up to the high watermarks within 120 s: {left}")
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            if m.error():
                sys.exit(f"consume error: {m.error()}")
            event = decode(m.value(), SerializationContext(m.topic(), MessageField.VALUE))
            ids[m.topic()][event["event_id"]] += 1
        for tp in consumer.position([TopicPartition(t, p) for (t, p) in left]):
            if tp.offset >= left[(tp.topic, tp.partition)]:
                del left[(tp.topic, tp.partition)]
consumer.close()
print(json.dumps({t: {"records": sum(c.values()), "distinct_event_ids": len(c),
                      "duplicated": [i for i, n in c.items() if n > 1][:5]}
                  for t, c in ids.items()}))
