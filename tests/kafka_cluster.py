"""A real Kafka protocol endpoint for tests: librdkafka's built-in mock cluster.

`MockKafka` starts an in-process mock cluster (it lives as long as the object's
producer) on 127.0.0.1 at a random port. Any client, in this process or another (a Ray
member actor), connects to `MockKafka.bootstrap` over TCP. Topics are created on first
use with 4 partitions (the mock does not implement CreateTopics). Each partition keeps
only its newest ~5 MiB (and 100,000 producer batches): older messages go as if by
retention, so produce less than that per partition before reading it, or read while
producing.

Usage::

    with MockKafka() as kafka:
        topic = kafka.create_topic()
        kafka.produce(topic, {0: [pa.record_batch({"x0": [0.5], "label": [1.0]})]})
        source = open_source(SourceSpec(kafka.uri(topic, eof="stop")))
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from pipelines.sources.kafka import produce_batches, produce_messages
from tests.helpers import wait_until

MOCK_PARTITIONS = 4
"""Partitions of every topic the mock cluster creates."""

_names = itertools.count()


class MockKafka:
    """An in-process librdkafka mock cluster, reachable over TCP at `bootstrap`.

    Args:
        brokers: number of mock brokers.
    """

    def __init__(self, brokers: int = 1) -> None:
        self._producer: Producer | None = Producer(
            {
                "test.mock.num.brokers": brokers,
                "log.connection.close": False,
                "logger": logging.getLogger(__name__),
            }
        )
        brokers_seen = self._producer.list_topics(timeout=5).brokers.values()
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers_seen)

    def uri(self, topic: str, **options: Any) -> str:
        """``kafka://BOOTSTRAP/topic?options`` (dotted librdkafka names: pass a dict via
        ``**{"fetch.wait.max.ms": 10}``)."""
        query = urlencode({k: v for k, v in options.items() if v is not None})
        return f"kafka://{self.bootstrap}/{topic}" + (f"?{query}" if query else "")

    def topic_name(self, prefix: str = "t") -> str:
        """A topic name not used before in this process."""
        return f"{prefix}-{next(_names)}-{time.monotonic_ns() % 1_000_000}"

    def create_topic(self, name: str | None = None, timeout_s: float = 10.0) -> str:
        """Create `name` (a fresh name if None) and wait until its partitions are visible.

        Returns:
            The topic name.
        """
        name = name or self.topic_name()
        producer = self._require()

        def visible() -> bool:
            topic = producer.list_topics(name, timeout=timeout_s).topics.get(name)
            return (
                topic is not None
                and topic.error is None
                and len(topic.partitions) >= MOCK_PARTITIONS
            )

        if not wait_until(visible, timeout_s, interval_s=0.02):
            raise TimeoutError(f"mock topic {name!r} did not appear within {timeout_s} s")
        return name

    def produce(
        self,
        topic: str,
        partition_batches: Mapping[int, Iterable[pa.RecordBatch | pa.Table]],
        *,
        format: str = "json",
        rows_per_message: int | None = None,
    ) -> dict[int, int]:
        """Produce rows with `produce_batches`; returns messages per partition."""
        return produce_batches(
            self.bootstrap,
            topic,
            partition_batches,
            format=format,
            rows_per_message=rows_per_message,
        )

    def produce_messages(
        self, topic: str, partition_messages: Mapping[int, Iterable[bytes | None]]
    ) -> dict[int, int]:
        """Produce raw message values with `produce_messages`."""
        return produce_messages(self.bootstrap, topic, partition_messages)

    def consume_all(self, topic: str, timeout_s: float = 10.0) -> list[Message]:
        """Every message in `topic` now, from every partition, in partition then offset
        order (read by a consumer of no group, committing nothing)."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "mock-kafka-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            metadata = consumer.list_topics(topic, timeout=timeout_s)
            partitions = sorted(metadata.topics[topic].partitions)
            ends = {}
            for p in partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout_s
                )
                if high > low:
                    ends[p] = high
            consumer.assign([TopicPartition(topic, p, 0) for p in ends])
            messages: list[Message] = []
            deadline = time.monotonic() + timeout_s
            done: set[int] = set()
            while len(done) < len(ends) and time.monotonic() < deadline:
                for message in consumer.consume(1000, timeout=0.1):
                    error = message.error()
                    if error is not None and error.code() == KafkaError._PARTITION_EOF:
                        done.add(message.partition() or 0)
                    elif error is None:
                        messages.append(message)
            messages.sort(key=lambda m: (m.partition() or 0, m.offset() or 0))
            return messages
        finally:
            consumer.close()

    def close(self) -> None:
        """Stop the mock cluster (clients connected to it lose their broker)."""
        if self._producer is not None:
            self._producer.flush(1)
            self._producer = None

    def _require(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("the mock Kafka cluster is closed")
        return self._producer

    def __enter__(self) -> MockKafka:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
