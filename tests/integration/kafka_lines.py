"""A stand-in for ``kcat -C -K SEP`` / ``kcat -P -K SEP`` where kcat is not installed: the same
text format (one record a line, ``key SEP value``, no headers) through the same client library
(librdkafka, from confluent-kafka), so the README's pipe shape is tested on any machine.

    python -m tests.integration.kafka_lines consume BROKERS TOPIC SEP   # to the end, then exit
    python -m tests.integration.kafka_lines produce BROKERS TOPIC SEP   # lines from stdin
"""

from __future__ import annotations

import sys
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition


def consume(brokers: str, topic: str, sep: bytes) -> int:
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"lines-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    pending = set(partitions)
    out = sys.stdout.buffer
    try:
        while pending:
            message = consumer.poll(5.0)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
                continue
            if error is not None:
                raise SystemExit(f"consume: {error}")
            out.write((message.key() or b"") + sep + (message.value() or b"") + b"\n")
    finally:
        consumer.close()
    out.flush()
    return 0


def produce(brokers: str, topic: str, sep: bytes) -> int:
    # murmur2_random: the partitioner of the Java client and aiokafka, so a key lands where
    # cronbus's own producers put it
    producer = Producer({"bootstrap.servers": brokers, "partitioner": "murmur2_random"})
    for line in sys.stdin.buffer:
        key, found, value = line.rstrip(b"\n").partition(sep)
        if not found:
            raise SystemExit(f"produce: no key separator in {line[:80]!r}")
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    if producer.flush(30) != 0:
        raise SystemExit("produce: records not delivered")
    return 0


if __name__ == "__main__":
    mode, brokers, topic, separator = sys.argv[1:5]
    run = {"consume": consume, "produce": produce}[mode]
    sys.exit(run(brokers, topic, separator.encode()))
