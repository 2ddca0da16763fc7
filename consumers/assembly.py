"""The worker's parts on Kafka, and the factory that assembles them.

* :class:`KafkaSource`: the group consumer on the events topic and its rebalance listener
  (``consumers/rebalance.py``), as the loop's ``Source``;
* :class:`KafkaSink`: the commit protocol of the guarantee (``consumers/delivery.py``), as its ``Sink``;
* :class:`KafkaChangelog`: restores from ``<group>.state`` (``consumers/changelog.py``);
* :func:`assemble`: those, the engine, the online state (``consumers/online.py``), the catalog follower
  (``consumers/catalog.py``: the items topic read in full here, then followed between batches), the model sync thread
  (``consumers/modelsync.py``, not started) and the metrics (``consumers/health.py``), wired into one
  :class:`~streamrec.consumers.loop.Loop`. ``consumers/worker.py`` runs the result.

Every client takes the reconnect overrides of ``consumers/reconnect.py`` so a worker resumes promptly after
a broker restart. Kafka errors are raised as ``BrokerError`` (the loop recovers from ``StreamrecError``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError

from streamrec.consumers import changelog
from streamrec.consumers.catalog import CatalogFollower
from streamrec.consumers.delivery import Delivery, make_delivery
from streamrec.consumers.engine import build_engine
from streamrec.consumers.health import WorkerMetrics
from streamrec.consumers.loop import Apply, Loop
from streamrec.consumers.modelsync import ModelSync
from streamrec.consumers.online import OnlineState
from streamrec.consumers.rebalance import RebalanceTracker
from streamrec.consumers.reconnect import RECONNECT
from streamrec.models.engine.recommender import Recommender
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError
from streamrec.stream.records import Record
from streamrec.stream.settings import Settings

_log = structlog.get_logger("streamrec.worker")

#: seconds a revoke may wait for its assignment before the member rejoins with a fresh consumer
STALL_AFTER_S = 15.0


class KafkaSource:
    def __init__(self, settings: Settings, worker_id: str) -> None:
        self.settings, self.worker_id, self.topic = settings, worker_id, settings.events_topic
        self.consumer = self._new_consumer()
        self.tracker = RebalanceTracker(self.topic)
        self.consumer.subscribe([self.topic], listener=self.tracker)
        self.also_close: list[Callable[[], None]] = []    # closed with the source (the catalog follower)

    def _new_consumer(self) -> Any:
        s = self.settings
        consumer = clients.consumer(
            s, group=s.group, max_poll_records=s.max_batch,
            session_timeout_ms=10000, heartbeat_interval_ms=2000, max_poll_interval_ms=300000,
            client_id=f"{s.client_id}-{self.worker_id}",
            # static membership (opt-in): a restarted worker takes its partitions straight back
            group_instance_id=self.worker_id if s.static_membership and s.worker_id else None, **RECONNECT)
        # know the topic's partitions before joining, or the group leader may assign from stale metadata
        if not consumer.partitions_for_topic(self.topic):
            consumer.close()
            raise BrokerError(f"topic {self.topic!r} does not exist on {s.bootstrap}; "
                              "create it with `streamrec topics create`")
        return consumer

    @property
    def rebalances(self) -> int:
        return self.tracker.rebalances

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [Record.from_kafka(r) for recs in polled.values() for r in recs]

    def take_assignment(self) -> tuple[set[int], set[int]] | None:
        if not self.tracker.changed:
            return None
        return self.tracker.take_assignment()

    def committed(self, partition: int) -> int | None:
        try:
            return self.consumer.committed(TopicPartition(self.topic, partition))  # type: ignore[no-any-return]
        except KafkaError as exc:
            raise BrokerError(f"reading the committed offset of partition {partition} failed: {exc}") from exc

    def seek(self, partition: int, offset: int | None) -> None:
        tp = TopicPartition(self.topic, partition)
        if offset is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, offset)

    def lag(self, partitions: set[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in partitions:
            tp = TopicPartition(self.topic, p)
            high = self.consumer.highwater(tp)
            try:
                pos = self.consumer.position(tp)
            except Exception:  # noqa: BLE001, S112 - lag is best effort while rebalancing
                continue
            if high is not None and pos is not None:
                out[p] = max(0, high - pos)
        return out

    def stalled(self) -> bool:
        return self.tracker.stalled(after_s=STALL_AFTER_S)

    def rejoin(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        except Exception as exc:  # noqa: BLE001 - the old consumer is being abandoned anyway
            _log.warning("closing the stalled consumer failed", error=str(exc))
        self.consumer = self._new_consumer()
        self.tracker = RebalanceTracker(self.topic)
        self.consumer.subscribe([self.topic], listener=self.tracker)

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        finally:
            for close in self.also_close:
                close()


class KafkaSink:
    """The loop's sink: a ``Delivery`` committing the events offsets through the source's current consumer."""

    def __init__(self, delivery: Delivery, source: KafkaSource) -> None:
        self.delivery, self.source = delivery, source
        self.guarantee = delivery.guarantee

    def begin(self) -> None:
        try:
            self.delivery.begin()
        except KafkaError as exc:
            raise BrokerError(f"opening a transaction failed: {exc}") from exc

    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        try:
            self.delivery.send(topic, key, value, partition=partition, headers=headers)
        except KafkaError as exc:
            raise BrokerError(f"sending to {topic} failed: {exc}") from exc

    def commit(self, offsets: dict[int, int]) -> None:
        self.delivery.consumer = self.source.consumer  # type: ignore[attr-defined]  # follows a rejoin
        topic = self.source.topic
        try:
            self.delivery.commit({TopicPartition(topic, p): off for p, off in offsets.items()})
        except KafkaError as exc:
            raise BrokerError(f"commit failed: {exc}") from exc

    def flush(self) -> None:
        try:
            self.delivery.flush()
        except KafkaError as exc:
            raise BrokerError(f"flushing the batch's outputs failed: {exc}") from exc

    def abort(self) -> None:
        try:
            self.delivery.abort()
        except KafkaError as exc:
            raise BrokerError(f"aborting the transaction failed: {exc}") from exc

    def close(self) -> None:
        self.delivery.close()


class KafkaChangelog:
    def __init__(self, settings: Settings) -> None:
        self.settings, self.topic = settings, settings.state_topic()

    def restore(self, partitions: set[int], apply: Apply) -> int:
        return changelog.restore(self.settings, self.topic, partitions, apply,
                                 timeout_s=self.settings.restore_timeout_s)


@dataclass
class WorkerParts:
    engine: Recommender
    source: KafkaSource
    sink: KafkaSink
    metrics: WorkerMetrics
    loop: Loop
    online: OnlineState | None
    sync: ModelSync | None
    catalog: CatalogFollower | None = None


def assemble(settings: Settings, worker_id: str, log: Any, engine: Recommender | None = None,
             model_sync: bool = True) -> WorkerParts:
    """Connect and wire every part (restores the online checkpoint; starts no thread, serves nothing)."""
    engine = engine or build_engine(settings, log)
    source = KafkaSource(settings, worker_id)
    sink = KafkaSink(make_delivery(settings, source.consumer, worker_id), source)
    loop_ref: list[Loop] = []
    # a changelog restore runs inside one loop iteration, so /healthz allows for it
    metrics = WorkerMetrics(stale_after_s=settings.restore_timeout_s + 60.0,
                            ready=lambda: bool(loop_ref) and loop_ref[0].ready)
    loop = Loop(settings, engine, source, sink, KafkaChangelog(settings), log, metrics=metrics)
    loop_ref.append(loop)
    online: OnlineState | None = None
    if getattr(engine, "online", None) is not None:   # reranker, drift, exploration, river MF
        online = OnlineState(settings, engine, log, worker_id)   # restores at start
        loop.hooks.append(online.between_batches)
        loop.on_assigned.append(online.on_assigned)
    sync: ModelSync | None = None
    if model_sync:
        sync = ModelSync(settings, engine, log)
        loop.hooks.append(sync.swap_if_ready)
    catalog: CatalogFollower | None = None
    if settings.catalog:      # the whole items topic before the first batch, then followed between batches
        catalog = CatalogFollower(settings, engine, log)
        catalog.load()
        loop.hooks.append(catalog.between_batches)
        source.also_close.append(catalog.close)
    return WorkerParts(engine=engine, source=source, sink=sink, metrics=metrics, loop=loop, online=online,
                       sync=sync, catalog=catalog)
