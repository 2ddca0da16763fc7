"""The streaming worker: poll a micro-batch, decode, update state, recommend once per touched user,
emit, write the changelog, commit. All the maths lives in ``models.engine.recommender``; this module is Kafka.

Per batch (see the design's data plane): dead letters for records that fail to decode; duplicates dropped by
the engine (event id window, offset at or below the user's last applied offset); one ``Recommendation`` per
touched user with lineage; one changelog record per touched user; then the commit protocol of the chosen
guarantee (``consumers/delivery.py``). Rebalance callbacks only record changes; restores and drops happen
here, on the worker's thread, before the next batch is processed.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import socket
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError

from streamrec.consumers import changelog
from streamrec.consumers.decode import Decoded, decode_batch
from streamrec.consumers.delivery import Delivery, make_delivery
from streamrec.consumers.engine import build_engine
from streamrec.consumers.health import WorkerMetrics
from streamrec.consumers.modelsync import ModelSync
from streamrec.consumers.online import OnlineState
from streamrec.consumers.rebalance import RebalanceTracker
from streamrec.consumers.stats import WorkerStats
from streamrec.models.engine.recommender import Recommender
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError, StreamrecError
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

log = structlog.get_logger("streamrec.worker")


class Worker:
    def __init__(self, settings: Settings, engine: Recommender | None = None, model_sync: bool = True) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.log = log.bind(worker=self.worker_id, group=settings.group, guarantee=settings.guarantee)
        self.engine = engine or build_engine(settings, self.log)
        self.topic = settings.events_topic
        self.state_topic = settings.state_topic()
        self.consumer = self._new_consumer()
        self.tracker = RebalanceTracker(self.topic)
        self.consumer.subscribe([self.topic], listener=self.tracker)
        self.delivery: Delivery = make_delivery(settings, self.consumer, self.worker_id)
        self.rec_codec, self.state_codec = codec_for("recommendation"), codec_for("user_state")
        self.stats = WorkerStats()
        self.stop_event = threading.Event()
        self.ready = False
        self._signals = 0
        self._between_batches: list[Any] = []   # hooks run between two batches (model swaps)
        self._pending: dict[TopicPartition, int] = {}   # processed, not yet committed (last offset)
        self.rejoins = 0
        self._last_iter: float | None = None
        self._swap_gap_ms = 0.0
        self._window_swaps: int | None = None
        self._last_commit = time.monotonic()
        self.online: OnlineState | None = None
        if getattr(self.engine, "online", None) is not None:   # reranker, drift, exploration, river MF
            self.online = OnlineState(settings, self.engine, self.log, self.worker_id)   # restores at start
            self._between_batches.append(self.online.between_batches)
        self.sync: ModelSync | None = None
        if model_sync:
            self.sync = ModelSync(settings, self.engine, self.log)
            self._between_batches.append(self.sync.swap_if_ready)
            self.sync.start()
        # a changelog restore runs inside one loop iteration, so /healthz allows for it
        self.metrics = WorkerMetrics(stale_after_s=settings.restore_timeout_s + 60.0, ready=lambda: self.ready)
        self._rebalances_seen = self._swaps_seen = 0
        if settings.metrics_port:
            self.metrics.serve(settings.metrics_port)
        if self.engine.model is not None:
            self.metrics.set_model(self.engine.model.version, time.time())

    def _new_consumer(self) -> Any:
        consumer = clients.consumer(
            self.settings, group=self.settings.group, max_poll_records=self.settings.max_batch,
            session_timeout_ms=10000, heartbeat_interval_ms=2000, max_poll_interval_ms=300000,
            metadata_max_age_ms=30000, client_id=f"{self.settings.client_id}-{self.worker_id}",
            # static membership (opt-in): a restarted worker takes its partitions straight back
            group_instance_id=self.worker_id if self.settings.static_membership and self.settings.worker_id
            else None)
        # know the topic's partitions before joining, or the group leader may assign from stale metadata
        if not consumer.partitions_for_topic(self.topic):
            consumer.close()
            raise BrokerError(f"topic {self.topic!r} does not exist on {self.settings.bootstrap}; "
                              "create it with `streamrec topics create`")
        return consumer

    def _rejoin(self) -> None:
        """The group join is stuck (see RebalanceTracker.stalled): drop what this member held and join again
        with a fresh consumer. Uncommitted work is redone by whoever gets the partitions."""
        self.log.warning("group join stalled; rejoining with a new consumer", owned=sorted(self.tracker.owned))
        self.delivery.abort()
        self._pending = {}
        for p in list(self.tracker.owned):
            self.engine.drop_partition(p)
        try:
            self.consumer.close(autocommit=False)
        except Exception as exc:  # noqa: BLE001 - the old consumer is being abandoned anyway
            self.log.warning("closing the stalled consumer failed", error=str(exc))
        self.consumer = self._new_consumer()
        self.tracker = RebalanceTracker(self.topic)
        self.consumer.subscribe([self.topic], listener=self.tracker)
        self.delivery.consumer = self.consumer  # type: ignore[attr-defined]
        self.ready = False
        self.rejoins += 1
        self._rebalances_seen = 0

    # --- lifecycle -----------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self._signals += 1
            if self._signals > 1:
                os._exit(128 + signum)   # a second signal: exit at once
            self.log.info("stopping", signal=signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, max_events: int | None = None, idle_timeout_s: float | None = None) -> WorkerStats:
        """Process until stopped (signal, ``max_events`` processed, or ``idle_timeout_s`` without input)."""
        self.log.info("worker starting", topic=self.topic, bootstrap=self.settings.bootstrap)
        last_input, next_stats = time.monotonic(), time.monotonic() + self.settings.stats_interval_s
        next_metrics = time.monotonic()
        try:
            while not self.stop_event.is_set():
                self.metrics.beat()
                self._watch_gap()
                polled = self.consumer.poll(timeout_ms=self.settings.poll_ms, max_records=self.settings.max_batch)
                self._apply_rebalance()
                if self.tracker.stalled(after_s=15.0):
                    self._rejoin()
                    continue
                records = [Record.from_kafka(r) for recs in polled.values() for r in recs
                           if r.partition in self.tracker.owned]
                for hook in self._between_batches:
                    hook()
                if self.sync is not None and self.sync.swaps != self._swaps_seen:
                    self._swaps_seen = self.sync.swaps
                    self.metrics.set_model(self.sync.serving or "", self.sync.last_swap_at or time.time())
                if records:
                    self.process(records)
                    last_input = time.monotonic()
                    if self.stats.batches % 20 == 1:
                        gc.freeze()  # long-lived state leaves the collector's generations: less GC time
                else:
                    if self._pending and (time.monotonic() - self._last_commit
                                          >= self.settings.commit_interval_ms / 1000):
                        try:
                            self.commit()
                        except (KafkaError, StreamrecError) as exc:
                            self._recover(exc)
                    if idle_timeout_s is not None and time.monotonic() - last_input > idle_timeout_s:
                        break
                if max_events is not None and self.stats.events >= max_events:
                    break
                if time.monotonic() >= next_metrics:
                    self._refresh_metrics()
                    next_metrics = time.monotonic() + 1.0
                if time.monotonic() >= next_stats:
                    self.log.info("stats", **self.report())
                    next_stats = time.monotonic() + self.settings.stats_interval_s
        finally:
            self.close()
        return self.stats

    def commit(self) -> None:
        """Flush outputs and commit the processed offsets (at-least-once: on an interval, exactly-once: the
        batch's transaction). Processed-but-uncommitted offsets are redone after a crash; state updates are
        idempotent by offset, so only a subscriber may see a list twice (at-least-once)."""
        self.delivery.commit(self._pending)
        self._pending = {}
        self._last_commit = time.monotonic()

    def close(self) -> None:
        try:
            if self._pending:
                self.commit()
        except (KafkaError, StreamrecError) as exc:
            self.log.warning("final commit failed; the last batches will be redone", error=str(exc))
        if self.online is not None:
            try:
                self.online.close()   # a last checkpoint of the online learners
            except (KafkaError, StreamrecError) as exc:
                self.log.warning("final online checkpoint failed", error=str(exc))
        self.log.info("worker closing", **self.report())
        if self.sync is not None:
            self.sync.stop()
        try:
            self.delivery.close()
        finally:
            self.consumer.close(autocommit=False)
            self.metrics.shutdown()

    def report(self) -> dict[str, Any]:
        self._update_lag()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return self.stats.snapshot({"partitions": sorted(self.tracker.owned), "rss_mb": round(rss_mb, 1),
                                    **self.engine.stats()})

    # --- rebalance -------------------------------------------------------------------------------
    def _apply_rebalance(self) -> None:
        if not self.tracker.changed:
            return
        to_restore, to_drop, lost = self.tracker.take_changes()
        self._pending = {tp: off for tp, off in self._pending.items() if tp.partition not in to_drop}
        for p in to_drop:
            self.engine.drop_partition(p)
            self.tracker.owned.discard(p)
        if lost:
            self.log.warning("partitions lost", partitions=sorted(lost))
        if to_restore:
            started = time.monotonic()
            n = changelog.restore(self.settings, self.state_topic, to_restore, self._restore_one,
                                  timeout_s=self.settings.restore_timeout_s)
            self.tracker.owned |= to_restore
            self.stats.restored_records += n
            if self.online is not None:
                self.online.on_assigned()
            gc.freeze()
            self.log.info("partitions restored", partitions=sorted(to_restore), records=n,
                          seconds=round(time.monotonic() - started, 3))
        self.ready = bool(self.tracker.owned)
        self.log.info("assignment", owned=sorted(self.tracker.owned), dropped=sorted(to_drop),
                      rebalances=self.tracker.rebalances)
        self.metrics.rebalanced(self.tracker.rebalances - self._rebalances_seen)
        self._rebalances_seen = self.tracker.rebalances

    def _restore_one(self, record: dict[str, Any] | None, user_id: str, partition: int) -> None:
        if record is None:
            self.engine.forget_user(user_id)
        else:
            self.engine.restore_user(record, partition)

    # --- one batch ---------------------------------------------------------------------------------
    def process(self, records: list[Record]) -> None:
        t0 = time.perf_counter()
        duplicates_before = self.stats.duplicates
        good, bad = decode_batch(records)
        t1 = time.perf_counter()
        offsets: dict[TopicPartition, int] = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            offsets[tp] = max(offsets.get(tp, -1), rec.offset)
        self.delivery.begin()
        try:
            for dl in bad:
                self.log.warning("dead letter", topic=dl.record.topic, partition=dl.record.partition,
                                 offset=dl.record.offset, error_type=dl.error_type, error=dl.message[:200])
                self.delivery.send(self.settings.dlq_topic, dl.record.key, dl.record.value, headers=dl.headers())
            touched, triggers = self._apply(good)
            t2 = time.perf_counter()
            lists = self.engine.recommend(touched, now_ms=int(time.time() * 1000))
            t3 = time.perf_counter()
            emitted_at = int(time.time() * 1000)
            latencies = np.empty(len(lists))
            for i, rl in enumerate(lists):
                trig = triggers[rl.user_id]
                key = rl.user_id.encode()
                self.delivery.send(self.settings.recommendations_topic, key, self.rec_codec.encode({
                    "user_id": rl.user_id,
                    "items": [{"item_id": it.item_id, "score": float(it.score), "source": it.source}
                              for it in rl.items],
                    "trigger_event_id": trig.event.event_id, "trigger_timestamp": trig.event.timestamp_ms,
                    "trigger_partition": trig.record.partition, "trigger_offset": trig.record.offset,
                    "emitted_at": emitted_at, "model_version": rl.model_version,
                    "index_version": rl.index_version,
                }))
                state = self.engine.export_user(rl.user_id)
                if state is not None:
                    self.delivery.send(self.state_topic, key, self.state_codec.encode(state),
                                       partition=trig.record.partition)
                latencies[i] = emitted_at - trig.record.timestamp_ms
            t4 = time.perf_counter()
            for tp, off in offsets.items():
                self._pending[tp] = max(self._pending.get(tp, -1), off)
            if self.delivery.guarantee == "exactly-once" or \
                    time.monotonic() - self._last_commit >= self.settings.commit_interval_ms / 1000:
                self.commit()
        except (KafkaError, StreamrecError) as exc:
            self._recover(exc)
            return
        t5 = time.perf_counter()
        st = self.stats
        st.events += len(records)
        st.batches += 1
        st.emitted += len(lists)
        st.dead_letters += len(bad)
        st.latency.extend(latencies)
        for name, secs in (("decode", t1 - t0), ("update", t2 - t1), ("recommend", t3 - t2),
                           ("produce", t4 - t3), ("commit", t5 - t4)):
            st.add_stage(name, secs)
        self.metrics.observe_batch(events=len(records), dead_letters=len(bad),
                                   duplicates=st.duplicates - duplicates_before, batch_seconds=t5 - t0,
                                   latencies_ms=latencies)

    def _apply(self, good: list[Decoded]) -> tuple[list[str], dict[str, Decoded]]:
        by_partition: dict[int, list[Decoded]] = defaultdict(list)
        for d in good:
            by_partition[d.record.partition].append(d)
        touched: dict[str, None] = {}
        triggers: dict[str, Decoded] = {}
        for p, items in by_partition.items():
            applied = self.engine.apply([d.event for d in items], partition=p,
                                        offsets=[d.record.offset for d in items])
            self.stats.duplicates += len(items) - self.engine.last_applied_count
            for user in applied:
                touched[user] = None
            for d in items:
                triggers[d.event.user_id] = d
        return list(touched), triggers

    def _recover(self, exc: Exception) -> None:
        """A batch could not be committed: abort, rewind to the committed offsets and rebuild state."""
        self.log.error("batch failed; rewinding to the last commit", error=str(exc))
        self.delivery.abort()
        self._pending = {}
        owned = set(self.tracker.owned)
        for p in owned:
            self.engine.drop_partition(p)
            tp = TopicPartition(self.topic, p)
            committed = self.consumer.committed(tp)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)
        changelog.restore(self.settings, self.state_topic, owned, self._restore_one,
                          timeout_s=self.settings.restore_timeout_s)

    def _watch_gap(self) -> None:
        """The longest time between two loop iterations (so between two batches) from the moment a new model
        starts to be prepared until a second after it is swapped in: what a model sync costs the hot path."""
        now = time.monotonic()
        prev, self._last_iter = self._last_iter, now
        sync = self.sync
        if sync is None or sync.window_open_at is None or prev is None:
            self._window_swaps = None
            return
        if self._window_swaps is None:  # a window opened: count swaps from here
            self._window_swaps = sync.swaps
        self._swap_gap_ms = max(self._swap_gap_ms, (now - prev) * 1000)
        if sync.swaps > self._window_swaps and sync.serving == sync.loaded and sync.last_swap_at is not None \
                and time.time() - sync.last_swap_at > 1.0:
            self.log.info("model sync window", version=sync.serving, max_batch_gap_ms=round(self._swap_gap_ms, 2))
            sync.window_open_at, self._swap_gap_ms, self._window_swaps = None, 0.0, None

    def _refresh_metrics(self) -> None:
        self._update_lag()
        self.metrics.set_lag({p: lag for p, lag in self.stats.lag.items() if p in self.tracker.owned})
        es = self.engine.stats()
        self.metrics.set_state(int(es.get("users", 0)), int(es.get("evicted_lru", 0)) + int(es.get("evicted_ttl", 0)))

    def _update_lag(self) -> None:
        for p in list(self.stats.lag):
            if p not in self.tracker.owned:
                del self.stats.lag[p]
        for p in self.tracker.owned:
            tp = TopicPartition(self.topic, p)
            high = self.consumer.highwater(tp)
            try:
                pos = self.consumer.position(tp)
            except Exception:  # noqa: BLE001, S112 - lag is best effort while rebalancing
                continue
            if high is not None and pos is not None:
                self.stats.lag[p] = max(0, high - pos)
