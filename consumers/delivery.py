"""The two commit protocols. Offsets are always committed after the outputs they cover.

* at-least-once: an idempotent producer; recommendations, changelog records and dead letters are sent as
  each batch is processed, and flushed and acknowledged before the input offsets are committed, every
  ``commit_interval_ms``. A crash redoes what was not committed (the state update is idempotent by offset;
  a subscriber may see a list twice).
* exactly-once: one transactional producer per worker; the batch's outputs and its input offsets commit in
  one Kafka transaction (``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447
  fencing). Subscribers read with ``isolation_level=read_committed``.
"""

from __future__ import annotations

from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streamrec.consumers.reconnect import RECONNECT
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError
from streamrec.stream.settings import Settings


class Delivery(Protocol):
    guarantee: str

    def begin(self) -> None: ...
    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None: ...
    def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


def _offsets(offsets: dict[TopicPartition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    """``offsets`` holds the last processed offset per partition; Kafka stores the next one to read."""
    return {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in offsets.items()}


class AtLeastOnce:
    guarantee = "at-least-once"

    def __init__(self, settings: Settings, consumer: KafkaConsumer) -> None:
        self.producer = clients.producer(settings, **RECONNECT)
        self.consumer = consumer
        self._futures: list[Any] = []

    def begin(self) -> None:
        """Nothing to open: sends are asynchronous and acknowledged at the next commit."""

    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        self._futures.append(self.producer.send(topic, key=key, value=value, partition=partition,
                                                headers=headers))

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.producer.flush()
        futures, self._futures = self._futures, []
        for fut in futures:
            if fut.failed():
                raise BrokerError(f"an output was not acknowledged: {fut.exception}; offsets not committed")
        if offsets:
            self.consumer.commit(_offsets(offsets))

    def abort(self) -> None:
        self._futures.clear()

    def close(self) -> None:
        self.producer.close(timeout=10)


class ExactlyOnce:
    guarantee = "exactly-once"

    def __init__(self, settings: Settings, consumer: KafkaConsumer, transactional_id: str) -> None:
        self.producer: KafkaProducer = clients.producer(settings, transactional_id=transactional_id,
                                                        transaction_timeout_ms=15000, **RECONNECT)
        self.producer.init_transactions()
        self.consumer = consumer
        self._open = False

    def begin(self) -> None:
        if not self._open:
            self.producer.begin_transaction()
            self._open = True

    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        self.producer.send(topic, key=key, value=value, partition=partition, headers=headers)

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not self._open:
            return
        if offsets:
            self.producer.send_offsets_to_transaction(_offsets(offsets), self.consumer.group_metadata())
        self.producer.commit_transaction()
        self._open = False

    def abort(self) -> None:
        if self._open:
            try:
                self.producer.abort_transaction()
            finally:
                self._open = False

    def close(self) -> None:
        self.abort()
        self.producer.close(timeout=10)


def make_delivery(settings: Settings, consumer: KafkaConsumer, worker_id: str) -> Delivery:
    if settings.guarantee == "exactly-once":
        return ExactlyOnce(settings, consumer, transactional_id=f"{settings.group}-{worker_id}")
    return AtLeastOnce(settings, consumer)
