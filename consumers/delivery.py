"""The two commit protocols. Offsets are always committed after the outputs they cover.

* at-least-once: an idempotent producer; recommendations, changelog records and dead letters are sent as
  each batch is processed, and flushed and acknowledged before the input offsets are committed, every
  ``commit_interval_ms``. A crash redoes what was not committed (the state update is idempotent by offset;
  a subscriber may see a list twice).
* exactly-once: one transactional producer per worker; the batch's outputs and its input offsets commit in
  one Kafka transaction (``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447
  fencing). Subscribers read with ``isolation_level=read_committed``.

Producer tuning for the worker's pattern (a burst of sends per batch, then a flush): ``linger_ms`` is
raised to :data:`LINGER_MS` so that the producer's sender thread does not wake up every few milliseconds
during the burst to ship small batches (it competed with the loop for the GIL); instead the loop pushes
at the end of every batch (:meth:`AtLeastOnce.flush`, ``clients.Push``: sendable now, acks not awaited, so
the loop goes on to its next poll; an exactly-once commit flushes anyway), so the batch's records go out
together, in one request per broker, and no list waits for the linger. Measured with
``streamrec bench produce`` (reports/README.md): linger 50-200 ms cut the send loop's cost per list by about
a third against 5 ms; batch size (64 KB to 1 MB) made no difference beyond the run's noise (one batch per
partition per flush is far below 256 KB); lz4 stays: no compression cost about as much CPU and stored 2.2x
the bytes, gzip stored a third less and cost about 40% more time.
"""

from __future__ import annotations

from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamrec.consumers.reconnect import RECONNECT
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError
from streamrec.stream.logs import get_logger
from streamrec.stream.settings import Settings

_log = get_logger(__name__)

#: the worker producers' linger (see the module docstring); every batch ends with a flush
LINGER_MS = 100
WORKER_PRODUCER: dict[str, Any] = {"linger_ms": LINGER_MS}


class Delivery(Protocol):
    guarantee: str

    def begin(self) -> None: ...
    def flush(self) -> None: ...
    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None: ...
    def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


def _offsets(offsets: dict[TopicPartition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    """``offsets`` holds the last processed offset per partition; Kafka stores the next one to read."""
    return {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in offsets.items()}


class AtLeastOnce:
    """Outputs flushed and acknowledged, then the offsets committed. The offset commit is asynchronous
    (``commit_async``, its answer read by the consumer's next poll) unless the item plane is on: the
    outputs it covers are acknowledged before it is sent, so a commit that fails or is lost only leaves the
    committed offsets behind the changelog, and a restart redoes that range (the engine drops what the
    restored per-user offsets already cover; a subscriber may see a list again, as at-least-once allows).
    The item plane's exact redo rule needs the committed offsets where the loop counts them, so there the
    commit waits. :meth:`close` commits the last offsets synchronously (a clean stop redoes nothing)."""

    guarantee = "at-least-once"

    def __init__(self, settings: Settings, consumer: KafkaConsumer) -> None:
        self.producer = clients.producer(settings, **RECONNECT, **WORKER_PRODUCER)
        self.consumer = consumer
        self._futures: list[Any] = []
        self.sync_commits = settings.item_plane
        self.async_failures = 0
        self._last: tuple[Any, dict[TopicPartition, OffsetAndMetadata]] | None = None  # (future, offsets)
        self._push = clients.Push(self.producer)

    def begin(self) -> None:
        """Nothing to open: sends are asynchronous and acknowledged at the next commit. The last batch's
        push ends here, so that this burst of sends lingers until its own flush."""
        self._push.settle()

    def flush(self) -> None:
        """The end of a batch: send what it produced now (the linger would hold it), without waiting for
        the acks (the next commit waits for them, before its offsets): the loop goes on to its next poll."""
        self._push.push()

    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        self._futures.append(self.producer.send(topic, key=key, value=value, partition=partition,
                                                headers=headers))

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self._push.settle()
        self.producer.flush()
        futures, self._futures = self._futures, []
        for fut in futures:
            if fut.failed():
                raise BrokerError(f"an output was not acknowledged: {fut.exception}; offsets not committed")
        if not offsets:
            return
        if self.sync_commits:
            self.consumer.commit(_offsets(offsets))
            return
        committed = _offsets(offsets)
        self._last = (self.consumer.commit_async(committed, callback=self._committed), committed)

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata], response: Any) -> None:
        if isinstance(response, Exception):   # the range is redone after a restart or a rebalance
            self.async_failures += 1
            _log.warning("offset commit failed; its range will be redone", error=str(response))

    def abort(self) -> None:
        self._futures.clear()

    def close(self) -> None:
        try:
            if self._last is not None and not (self._last[0].is_done and self._last[0].succeeded()):
                # the last offsets again, synchronously (idempotent), for the partitions still assigned: a
                # revoked one may have moved on under its new owner
                owned = self.consumer.assignment()
                if last := {tp: om for tp, om in self._last[1].items() if tp in owned}:
                    self.consumer.commit(last)
        except KafkaError as exc:
            _log.warning("the last offset commit failed; its range will be redone", error=str(exc))
        finally:
            self._last = None
            self.producer.close(timeout=10)


class ExactlyOnce:
    guarantee = "exactly-once"

    def __init__(self, settings: Settings, consumer: KafkaConsumer, transactional_id: str) -> None:
        self.producer: KafkaProducer = clients.producer(settings, transactional_id=transactional_id,
                                                        transaction_timeout_ms=15000, **RECONNECT,
                                                        **WORKER_PRODUCER)
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

    def flush(self) -> None:
        """Nothing to do: the batch's outputs are invisible to read_committed until its commit, which flushes."""

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
