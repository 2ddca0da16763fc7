"""The worker's loop, free of Kafka: a *source* of records in, a *sink* of outputs out.

Per iteration: poll the source (as many records as fit the batch time target, :class:`BatchSizer`), act
on assignment changes (restore newly owned partitions from the
changelog, drop the others), run the between-batch hooks (model swap, online checkpoints), then one batch:
decode (dead letters to the DLQ with their headers) → ``apply`` per partition (duplicates dropped by the
engine) → ``recommend`` once per touched user → emit one ``Recommendation`` with lineage per list → commit the
processed offsets after their outputs (on the interval in at-least-once, every batch in exactly-once).

The changelog is coalesced: a touched user is only marked dirty, and each commit first sends one changelog
record per dirty user (the state as of that commit), then makes everything durable and commits the offsets.
So a user gets at most one changelog record per commit interval in at-least-once and one per transaction in
exactly-once, however many events and batches touched them in it, and the changelog's last record of a
user is always the state as of the committed offsets: a restart restores exactly what the committed
offsets cover and redoes the rest. A batch whose outputs or commit fail is aborted and redone from the
committed offsets and the changelog (the dirty marks go with it).

The real source and sink (``consumers/assembly.py``) wrap kafka-python, the rebalance listener and the
commit protocols of ``consumers/delivery.py``; the in-memory pair of ``consumers/testing.py`` runs this
same loop in a unit test, crash and resume included. Both raise ``StreamrecError`` (never a Kafka error)
for a failure the loop recovers from.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from streamrec.consumers.decode import Decoded, decode_batch, event_limits
from streamrec.consumers.lists import FiniteScores
from streamrec.consumers.procmem import resident_mb
from streamrec.consumers.stats import WorkerStats
from streamrec.models.engine.recommender import Recommender
from streamrec.stream.errors import StreamrecError
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

Apply = Callable[[dict[str, Any] | None, str, int], None]
Hook = Callable[[], None]

#: the smallest batch the time target may ask for (below it, per-batch costs would dominate)
MIN_BATCH = 50
#: weight of the newest batch in the running per-event cost
COST_ALPHA = 0.3
#: consecutive full batches (a backlog the target does not drain) before the limit is let grow
FULL_BEFORE_GROWTH = 3
#: growth of the limit per further full batch while the backlog lasts
GROWTH = 1.5


class BatchSizer:
    """Latency-aware batching: the next poll asks for ``target / cost`` records, where ``cost`` is a running
    mean (exponential, weight :data:`COST_ALPHA`) of the seconds one event took, whole batch included
    (decode to commit), clamped to ``[MIN_BATCH, max_batch]``. With a batch costing ``a + b*n`` the size
    settles where a batch takes the target, ``n = (target - a) / b``, so under load the batches, and the
    latency they add, stop growing at the target instead of at ``max_batch``; a target of 0 keeps the
    count bound only.

    Smaller batches cost some throughput (per-batch costs, fewer events per list), so when the offered rate
    is above what target-sized batches can serve the backlog would grow for ever. The sizer therefore lets
    the limit grow (x :data:`GROWTH` per batch) once :data:`FULL_BEFORE_GROWTH` batches in a row came back
    full, up to ``max_batch``, and returns to the target at the first batch that is not full.

    >>> sizer = BatchSizer(max_batch=5000, target_ms=100)
    >>> sizer.limit()                          # no measurement yet: the count bound
    5000
    >>> sizer.observe(events=1000, seconds=0.5); sizer.limit()    # 0.5 ms per event -> 200 in 100 ms
    200
    >>> for _ in range(4): sizer.observe(events=sizer.limit(), seconds=sizer.limit() * 0.0005, full=True)
    >>> sizer.limit()                          # a backlog the target does not drain: growing
    450
    >>> sizer.observe(events=10, seconds=0.005, full=False); sizer.limit()
    200
    """

    def __init__(self, max_batch: int, target_ms: float) -> None:
        self.max_batch, self.target_s = max_batch, target_ms / 1000
        self.cost_s: float | None = None
        self.full_streak = 0
        self.boost = 1.0

    def observe(self, events: int, seconds: float, full: bool = False) -> None:
        """One processed batch; ``full``: it had as many records as the limit allowed (more were waiting)."""
        if events <= 0 or seconds <= 0:
            return
        cost = seconds / events
        self.cost_s = cost if self.cost_s is None else (1 - COST_ALPHA) * self.cost_s + COST_ALPHA * cost
        self.full_streak = self.full_streak + 1 if full else 0
        if self.full_streak >= FULL_BEFORE_GROWTH:
            self.boost = min(self.boost * GROWTH, self.max_batch / MIN_BATCH)
        elif not full:
            self.boost = 1.0

    def limit(self) -> int:
        if self.target_s <= 0 or self.cost_s is None:
            return self.max_batch
        wanted = int(self.boost * self.target_s / self.cost_s)
        return max(min(MIN_BATCH, self.max_batch), min(self.max_batch, wanted))


class Source(Protocol):
    """Where the loop's records come from: one events topic, the partitions the group gives this worker."""

    @property
    def rebalances(self) -> int:
        """Assignments received so far (by this source's current membership)."""

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]: ...
    def take_assignment(self) -> tuple[set[int], set[int]] | None:
        """``(assigned, lost)`` when the assignment changed since the last call, else ``None``."""
    def committed(self, partition: int) -> int | None:
        """The committed offset (the next to read) of ``partition``; ``None``: nothing committed."""
    def seek(self, partition: int, offset: int | None) -> None:
        """Read ``partition`` from ``offset`` next (``None``: from the beginning)."""
    def lag(self, partitions: set[int]) -> dict[int, int]: ...
    def stalled(self) -> bool:
        """The group join is stuck (see ``RebalanceTracker.stalled``)."""
    def rejoin(self) -> None:
        """Leave and join the group again with a fresh membership."""


class Sink(Protocol):
    """Where outputs go, and the commit protocol that covers them (``consumers/delivery.py``)."""

    guarantee: str

    def begin(self) -> None: ...
    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None: ...
    def commit(self, offsets: dict[int, int]) -> None:
        """Make every output sent so far durable, then commit ``offsets`` (partition → last processed
        offset of the events topic)."""
    def abort(self) -> None:
        """Forget the outputs not yet committed (a transaction is aborted)."""


class Changelog(Protocol):
    def restore(self, partitions: set[int], apply: Apply) -> int:
        """Replay the state of ``partitions`` into ``apply(record or None, user_id, partition)``; records read."""


class Loop:
    def __init__(self, settings: Settings, engine: Recommender, source: Source, sink: Sink, changelog: Changelog,
                 log: Any, stats: WorkerStats | None = None, metrics: Any = None,
                 hooks: list[Hook] | None = None, on_assigned: list[Hook] | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.settings, self.engine, self.log = settings, engine, log
        self.source, self.sink, self.changelog = source, sink, changelog
        self.stats = stats or WorkerStats()
        self.metrics = metrics                          # WorkerMetrics or None
        self.hooks: list[Hook] = list(hooks or [])      # run between two batches (model swaps, checkpoints)
        self.on_assigned: list[Hook] = list(on_assigned or [])   # after a restore of new partitions
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.stop_event = threading.Event()
        self.rec_codec, self.state_codec = codec_for("recommendation"), codec_for("user_state")
        self.limits = event_limits(settings.max_id_bytes)   # the event rules of models.events
        self.finite = FiniteScores(log)                      # a non-finite score never reaches a list
        self.state_topic = settings.state_topic()
        self.owned: set[int] = set()        # partitions whose state is in memory
        self.released: set[int] = set()     # partitions this loop owned once and dropped
        self.pending: dict[int, int] = {}   # processed, not yet committed (last offset per partition)
        self.dirty: dict[str, int] = {}     # users touched since the last commit -> their changelog partition
        self.sizer = BatchSizer(settings.max_batch, settings.batch_target_ms)
        self._full = False                  # the last poll returned as many records as it asked for
        self.ready = False
        self.rejoins = 0
        self._rebalances_seen = 0
        self._last_commit = time.monotonic()
        #: the item plane's deltas (consumers/itemcache.DeltaEmitter, docs/item-plane.md); None: plane off
        self.item_deltas: Any = None

    # --- running -----------------------------------------------------------------------------------
    def run(self, max_events: int | None = None, idle_timeout_s: float | None = None,
            max_batches: int | None = None) -> WorkerStats:
        """Turn until stopped: ``stop_event``, ``max_events`` or ``max_batches`` processed, or
        ``idle_timeout_s`` without input. Does not commit or close anything on the way out (see :meth:`finish`)."""
        last_input, next_stats = time.monotonic(), time.monotonic() + self.settings.stats_interval_s
        next_metrics = time.monotonic()
        while not self.stop_event.is_set():
            if self.step():
                last_input = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - last_input > idle_timeout_s:
                break
            if max_events is not None and self.stats.events >= max_events:
                break
            if max_batches is not None and self.stats.batches >= max_batches:
                break
            if time.monotonic() >= next_metrics:
                self.publish()
                next_metrics = time.monotonic() + 1.0
            if time.monotonic() >= next_stats:
                self.log.info("stats", **self.report())
                next_stats = time.monotonic() + self.settings.stats_interval_s
        return self.stats

    def step(self) -> bool:
        """One iteration; True when a batch of input was processed."""
        if self.metrics is not None:
            self.metrics.beat()
        limit = self.sizer.limit()
        polled = self.source.poll(timeout_ms=self.settings.poll_ms, max_records=limit)
        self._full = len(polled) >= limit
        restored = self.apply_rebalance()
        if self.source.stalled():
            self.rejoin()
            return False
        # a partition just taken over reads again from its committed offset: what this poll returned for it
        # comes again, in order, after the state restore
        records = [r for r in polled if r.partition in self.owned and r.partition not in restored]
        for hook in self.hooks:
            hook()
        if records:
            self.process(records)
            if self.stats.batches % 20 == 1:
                gc.freeze()  # long-lived state leaves the collector's generations: less GC time
            return True
        if self.pending and time.monotonic() - self._last_commit >= self.settings.commit_interval_ms / 1000:
            try:
                self.stats.add_stage("changelog", self.commit())
            except StreamrecError as exc:
                self.recover(exc)
        return False

    def commit(self) -> float:
        """Send one changelog record per dirty user, flush outputs and commit the processed offsets
        (at-least-once: on an interval, exactly-once: the batch's transaction). Processed-but-uncommitted
        offsets are redone after a crash; state updates are idempotent by offset, so only a subscriber may
        see a list twice (at-least-once). Returns the seconds spent encoding and sending the changelog."""
        started = time.perf_counter()
        if self.dirty:
            self.sink.begin()
            export, encode, send = self.engine.export_user, self.state_codec.encode, self.sink.send
            topic, sent, records = self.state_topic, 0, 0
            for user, partition in self.dirty.items():
                state = export(user)
                if state is not None:   # None: evicted since (LRU, TTL) or its partition dropped
                    key, value = user.encode(), encode(state)
                    send(topic, key, value, partition=partition)
                    sent += len(key) + len(value)
                    records += 1
            self.stats.bytes_sent["changelog"] += sent
            self.stats.changelog_records += records
        if self.item_deltas is not None:   # in the commit's transaction (exactly-once), or flushed before it
            self.sink.begin()
            self.stats.bytes_sent["item_deltas"] += self.item_deltas.emit(self.sink.send)
        changelog_s = time.perf_counter() - started
        self.sink.commit(self.pending)
        self.pending = {}
        self.dirty = {}
        self._last_commit = time.monotonic()
        return changelog_s

    def finish(self) -> None:
        """Commit what was processed (on a clean stop)."""
        try:
            if self.pending:
                self.commit()
        except StreamrecError as exc:
            self.log.warning("final commit failed; the last batches will be redone", error=str(exc))

    def report(self) -> dict[str, Any]:
        """The stats snapshot of the log line (resets the events/s window)."""
        return self.snapshot(reset_rate=True)

    def snapshot(self, reset_rate: bool = False) -> dict[str, Any]:
        self.stats.lag = self.source.lag(set(self.owned))
        rss_mb, peak_rss_mb = resident_mb()   # this process's own (not ru_maxrss: a parent's peak, procmem.py)
        cost = self.sizer.cost_s
        return self.stats.snapshot({"partitions": sorted(self.owned), "rss_mb": rss_mb, "peak_rss_mb": peak_rss_mb,
                                    "batch_limit": self.sizer.limit(),
                                    "ms_per_event": round(cost * 1000, 4) if cost is not None else None,
                                    "nonfinite_scores_dropped": self.finite.dropped,
                                    **self.engine.stats()}, reset_rate=reset_rate)

    def publish(self) -> None:
        """Feed Prometheus from the same snapshot as the log line."""
        if self.metrics is not None:
            self.metrics.publish(self.snapshot())

    # --- assignment --------------------------------------------------------------------------------
    def apply_rebalance(self) -> set[int]:
        """Act on the group's latest assignment: drop the partitions no longer ours, restore the new ones
        from the changelog and rewind each of those to its committed offset. Returns the partitions restored.

        The rewind matters when a partition is revoked and comes straight back to this member: the client
        keeps its fetch position, so without it the events processed but not yet committed before the revoke
        (dropped from memory with the partition) would be neither redone nor committed."""
        change = self.source.take_assignment()
        if change is None:
            return set()
        assigned, lost = change
        to_restore, to_drop = assigned - self.owned, (self.owned - assigned) | lost
        self.pending = {p: off for p, off in self.pending.items() if p not in to_drop}
        self.dirty = {u: p for u, p in self.dirty.items() if p not in to_drop}
        if self.item_deltas is not None:
            self.item_deltas.drop(to_drop)
        for p in to_drop:
            self.engine.drop_partition(p)
            self.owned.discard(p)
        self.released |= to_drop
        if lost:
            self.log.warning("partitions lost", partitions=sorted(lost))
        if to_restore:
            started = time.monotonic()
            n = self.changelog.restore(to_restore, self._restore_one)
            for p in to_restore:
                self.source.seek(p, self.source.committed(p))
            if to_restore & self.released:
                # events this engine applied before the partition left are redone now: their ids must not
                # read as duplicates (the per-user offsets restored from the changelog guard the range)
                self.engine.forget_event_ids()
            self.owned |= to_restore
            self.stats.restored_records += n
            for hook in self.on_assigned:
                hook()
            gc.freeze()
            self.log.info("partitions restored", partitions=sorted(to_restore), records=n,
                          seconds=round(time.monotonic() - started, 3))
        self.ready = bool(self.owned)
        self.log.info("assignment", owned=sorted(self.owned), dropped=sorted(to_drop),
                      rebalances=self.source.rebalances)
        self.stats.rebalances += self.source.rebalances - self._rebalances_seen
        self._rebalances_seen = self.source.rebalances
        return to_restore

    def rejoin(self) -> None:
        """The group join is stuck: drop what this member held and join again. Uncommitted work is redone
        by whoever gets the partitions."""
        self.log.warning("group join stalled; rejoining with a new consumer", owned=sorted(self.owned))
        self.sink.abort()
        self.pending = {}
        self.dirty = {}
        if self.item_deltas is not None:
            self.item_deltas.clear()
        for p in list(self.owned):
            self.engine.drop_partition(p)
        self.released |= self.owned
        self.owned = set()
        self.source.rejoin()
        self.ready = False
        self.rejoins += 1
        self._rebalances_seen = 0

    def _restore_one(self, record: dict[str, Any] | None, user_id: str, partition: int) -> None:
        if record is None:
            self.engine.forget_user(user_id)
        else:
            self.engine.restore_user(record, partition)

    # --- one batch ---------------------------------------------------------------------------------
    def process(self, records: list[Record]) -> None:
        t0 = time.perf_counter()
        good, bad = decode_batch(records, limits=self.limits)
        t1 = time.perf_counter()
        offsets: dict[int, int] = {}
        for rec in records:
            offsets[rec.partition] = max(offsets.get(rec.partition, -1), rec.offset)
        settings, sink, sent, dirty = self.settings, self.sink, self.stats.bytes_sent, self.dirty
        try:
            sink.begin()
            for dl in bad:
                self.log.warning("dead letter", topic=dl.record.topic, partition=dl.record.partition,
                                 offset=dl.record.offset, error_type=dl.error_type, error=dl.message[:200])
                sink.send(settings.dlq_topic, dl.record.key, dl.record.value, headers=dl.headers())
                sent["dlq"] += len(dl.record.key or b"") + len(dl.record.value or b"")
            touched, arrivals = self._apply(good)
            t2 = time.perf_counter()
            lists = self.engine.recommend(touched, now_ms=self.clock_ms())
            t3 = time.perf_counter()
            emitted_at = self.clock_ms()
            latencies = np.empty(len(lists))
            for i, rl in enumerate(lists):
                trig = rl.trigger          # the lineage is the engine's: the user's last event applied
                if trig is None:           # cannot happen for a touched user; never emit a list without lineage
                    raise StreamrecError(f"the engine returned a list without lineage for {rl.user_id!r}")
                key = rl.user_id.encode()
                value = self.rec_codec.encode({
                    "user_id": rl.user_id,
                    "items": self.finite.items(rl),
                    "trigger_event_id": trig.event_id, "trigger_timestamp": trig.timestamp_ms,
                    "trigger_partition": trig.partition, "trigger_offset": trig.offset,
                    "emitted_at": emitted_at, "model_version": rl.model_version,
                    "index_version": rl.index_version,
                })
                sink.send(settings.recommendations_topic, key, value)
                sent["recommendations"] += len(key) + len(value)
                dirty[rl.user_id] = trig.partition   # its changelog record goes out at the next commit
                latencies[i] = emitted_at - arrivals[rl.user_id]
            t4 = time.perf_counter()
            for p, off in offsets.items():
                self.pending[p] = max(self.pending.get(p, -1), off)
            changelog_s = 0.0
            if sink.guarantee == "exactly-once" or \
                    time.monotonic() - self._last_commit >= settings.commit_interval_ms / 1000 or \
                    (self.item_deltas is not None and self.item_deltas.due()):   # the exact redo rule's bound
                changelog_s = self.commit()
            elif (flush := getattr(sink, "flush", None)) is not None:
                flush()   # the lists leave now, not after the producer's linger (consumers/delivery.py)
        except StreamrecError as exc:
            self.recover(exc)
            return
        t5 = time.perf_counter()
        self.sizer.observe(len(records), t5 - t0, full=self._full)
        self.stats.record_batch(events=len(records), emitted=len(lists), dead_letters=len(bad),
                                latencies_ms=latencies,
                                stages={"decode": t1 - t0, "update": t2 - t1, "recommend": t3 - t2,
                                        "produce": t4 - t3, "changelog": changelog_s,
                                        "commit": t5 - t4 - changelog_s})
        if self.metrics is not None:
            self.metrics.observe_timings(t5 - t0, latencies)

    def _apply(self, good: list[Decoded]) -> tuple[list[str], dict[str, int]]:
        """Apply the batch per partition; returns the users touched and, per user, the broker time of the
        user's last record (what the list's latency is measured from)."""
        by_partition: dict[int, list[Decoded]] = defaultdict(list)
        for d in good:
            by_partition[d.record.partition].append(d)
        touched: dict[str, None] = {}
        arrivals: dict[str, int] = {}
        for p, items in by_partition.items():
            if self.item_deltas is not None:   # the source range of the item deltas this apply learns
                self.item_deltas.enter(p, min(d.record.offset for d in items), max(d.record.offset for d in items))
            applied = self.engine.apply([d.event for d in items], partition=p,
                                        offsets=[d.record.offset for d in items], end_batch=False)
            self.stats.duplicates += len(items) - self.engine.last_applied_count
            for user in applied:
                touched[user] = None
            for d in items:
                arrivals[d.event.user_id] = d.record.timestamp_ms
        self.engine.end_apply()   # the batch learns once, not once per partition
        return list(touched), arrivals

    def recover(self, exc: Exception) -> None:
        """A batch could not be committed: abort, rewind to the committed offsets and rebuild state."""
        self.log.error("batch failed; rewinding to the last commit", error=str(exc))
        self.sink.abort()
        self.pending = {}
        self.dirty = {}
        if self.item_deltas is not None:
            self.item_deltas.clear()
        owned = set(self.owned)
        for p in owned:
            self.engine.drop_partition(p)
            self.source.seek(p, self.source.committed(p))
        # the redone events were applied once, so their ids are in the engine's duplicate window and would be
        # dropped (state lost); the per-user offsets restored from the changelog guard the redone range instead
        self.engine.forget_event_ids()
        self.stats.restored_records += self.changelog.restore(owned, self._restore_one)
