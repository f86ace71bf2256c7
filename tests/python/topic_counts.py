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

try:
    import high_watermarks
except ImportError as e:  # fail, naming the package
    sys.exit(f"pip package confluent-kafka is missing ({e}); pip install -r tests/python/requirements.txt")

brokers, topics = sys.argv[1], sys.argv[2:]
counts = {t: 0 for t in topics}


def count(m):
    counts[m.topic()] += 1


high_watermarks.read(brokers, "topic-counts", topics, count)
print(json.dumps(counts))
