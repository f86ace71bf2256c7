"""Independent count of the records in Kafka topics (confluent-kafka, no
pushflow code): reads every partition from the beginning up to its high
watermark as it is at the start (transaction markers are not records:
read_committed, and a partition is done once the consumer's position
reaches the watermark).

    topic_counts.py BROKERS TOPIC...

Prints JSON: {topic: records} (0 for a topic the broker does not have).
"""
import json
import sys
import time

try:
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
except ImportError as e:  # fail, naming the package
    sys.exit(f"pip package confluent-kafka is missing ({e}); pip install -r tests/python/requirements.txt")

brokers, topics = sys.argv[1], sys.argv[2:]
consumer = Consumer({"bootstrap.servers": brokers, "group.id": "topic-counts",
                     "enable.auto.commit": False, "enable.partition.eof": False,
                     "isolation.level": "read_committed"})
metadata = consumer.list_topics(timeout=10)
parts = [TopicPartition(t, p, OFFSET_BEGINNING)
         for t in topics if t in metadata.topics
         for p in metadata.topics[t].partitions]
ends = {}
for tp in parts:
    low, high = consumer.get_watermark_offsets(tp, timeout=10)
    if high > low:
        ends[(tp.topic, tp.partition)] = high
counts = {t: 0 for t in topics}
deadline = time.time() + 120
if ends:
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for (t, p) in ends])
    left = dict(ends)
    while left:
        if time.time() > deadline:
            sys.exit(f"could not read up to the high watermarks within 120 s: {left}")
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            if m.error():
                sys.exit(f"consume error: {m.error()}")
            counts[m.topic()] += 1
        for tp in consumer.position([TopicPartition(t, p) for (t, p) in left]):
            if tp.offset >= left[(tp.topic, tp.partition)]:
                del left[(tp.topic, tp.partition)]
consumer.close()
print(json.dumps(counts))
