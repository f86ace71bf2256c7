"""Independent count of the records in Kafka topics (confluent-kafka, no
pushflow code): reads every partition from the beginning until the topics
have been quiet for a few seconds.

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
                     "enable.auto.commit": False, "enable.partition.eof": False})
metadata = consumer.list_topics(timeout=10)
parts = [TopicPartition(t, p, OFFSET_BEGINNING)
         for t in topics if t in metadata.topics
         for p in metadata.topics[t].partitions]
counts = {t: 0 for t in topics}
if parts:
    consumer.assign(parts)
    quiet_since = time.time()
    while time.time() - quiet_since < 5:
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            if m.error():
                sys.exit(f"consume error: {m.error()}")
            counts[m.topic()] += 1
            quiet_since = time.time()
consumer.close()
print(json.dumps(counts))
