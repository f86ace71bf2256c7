"""Reading Kafka topics to their end, for the independent checkers (plain
confluent-kafka, no pushflow code): every partition from the beginning up
to its high watermark as it is when called, read_committed (records of
aborted transactions are never handed over; a partition is done once the
consumer's position reaches its watermark, past any transaction marker).
"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING


def read(brokers, group, topics, on_message, timeout=120):
    """Calls on_message(m) for every record of `topics`; exits naming what
    is left when the watermarks are not reached within `timeout` s."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group,
                         "enable.auto.commit": False, "enable.partition.eof": False,
                         "isolation.level": "read_committed"})
    metadata = consumer.list_topics(timeout=10)
    ends = {}
    for t in topics:
        for p in (metadata.topics[t].partitions if t in metadata.topics else []):
            low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            if high > low:
                ends[(t, p)] = high
    if ends:
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for (t, p) in ends])
        left, deadline = dict(ends), time.time() + timeout
        while left:
            if time.time() > deadline:
                sys.exit(f"could not read up to the high watermarks within {timeout} s: {left}")
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    sys.exit(f"consume error: {m.error()}")
                on_message(m)
            for tp in consumer.position([TopicPartition(t, p) for (t, p) in left]):
                if tp.offset >= left[(tp.topic, tp.partition)]:
                    del left[(tp.topic, tp.partition)]
    consumer.close()
    return metadata
