"""The item owners (docs/item-plane.md): ``streamrec items``, a consumer group of the item-deltas topic.

Each owner process joins ``<group>.items`` on item-deltas; for every partition it is given it restores the
exact statistics from the owners' changelog ``<group>.items.state`` (compacted, co-partitioned with
item-deltas, one ``item_result`` record per item with all of its neighbours and, per events partition, the last
source offset it applied), then seeks to the committed offset. It then turns:

poll deltas → validate (a bad record goes to the DLQ with the worker's error headers) → apply to the
partition's :class:`~models.serving.itemplane.ItemStats` (a delta whose source range starts at or before the
range its item applied last is skipped: no increment counted twice) → every ``STREAMREC_ITEM_INTERVAL_MS``: one
changelog record and one result (top ``STREAMREC_ITEM_NEIGHBOURS`` neighbours, trending score) per item changed,
tombstones for items evicted, flushed and acknowledged, *then* the item-deltas offsets committed. So the
changelog's last record of an item is its state as of at least the committed offsets, and what is redone after
a crash is skipped by the per-item source offsets: a restarted owner comes back equal to the last delta applied.

The loop is single-threaded and holds no Kafka object outside this module; rebalance callbacks only record
changes (``consumers/rebalance.py``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamrec.consumers.decode import DeadLetter
from streamrec.consumers.follow import read_to_end
from streamrec.consumers.rebalance import RebalanceTracker
from streamrec.consumers.reconnect import RECONNECT
from streamrec.models.serving.itemplane import ItemStats
from streamrec.models.timeunits import DAY_MS
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError, DecodeError, StreamrecError
from streamrec.stream.itemdeltas import decode_deltas, decode_result, encode_result
from streamrec.stream.records import Record
from streamrec.stream.settings import Settings

__all__ = ["ItemOwner", "OwnerProcess", "OwnerThread", "PartitionCountChanged", "restore_items"]


def restore_items(settings: Settings, partitions: set[int], stats: dict[int, ItemStats],
                  timeout_s: float = 60.0) -> int:
    """Replay the owners' changelog partitions into ``stats``; returns the records read."""
    if not partitions:
        return 0
    topic = settings.item_state_topic()
    consumer = clients.consumer(settings, group=None, max_poll_records=5000, fetch_max_wait_ms=10, **RECONNECT)
    count = 0

    def step() -> None:
        nonlocal count
        for tp, recs in consumer.poll(timeout_ms=100).items():
            table = stats[tp.partition]
            for r in recs:
                count += 1
                if r.value is None:
                    table.remove((r.key or b"").decode("utf-8", "replace"))
                    continue
                try:
                    table.load(decode_result(r.value, r.key, settings.max_id_bytes))
                except DecodeError:
                    continue   # a record we cannot read: that item starts fresh

    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        if not read_to_end(consumer, timeout_s, step):
            raise BrokerError(f"restoring {topic} partitions {sorted(partitions)} took over {timeout_s}s")
        return count
    finally:
        consumer.close()


class PartitionCountChanged(RuntimeError):
    """The item-deltas topic's partition count changed under running owners (not recoverable by a restore)."""


class ItemOwner:
    def __init__(self, settings: Settings, log: Any, owner_id: str = "items",
                 covisit_half_life_ms: int = 7 * DAY_MS, trending_half_life_ms: int = DAY_MS) -> None:
        self.settings, self.log = settings, log.bind(component="item-owner", owner=owner_id)
        self.topic = settings.item_deltas_name()
        self.hl = (covisit_half_life_ms, trending_half_life_ms)
        self._owner_id = owner_id
        self.consumer = self._new_consumer()
        self.partitions = len(self.consumer.partitions_for_topic(self.topic) or ())
        if not self.partitions:
            self.consumer.close()
            raise BrokerError(f"topic {self.topic!r} does not exist on {settings.bootstrap}; create it with "
                              "`streamrec topics create`")
        self.tracker = RebalanceTracker(self.topic)
        self.consumer.subscribe([self.topic], listener=self.tracker)
        self._unassigned_since: float | None = time.monotonic()    # no partition yet: since when
        self._heard = False                                          # an assignment (even empty) received
        self.producer = clients.producer(settings, linger_ms=20, **RECONNECT)
        self.tables: dict[int, ItemStats] = {}
        self.dirty: dict[int, set[str]] = {}
        self.pending: dict[int, int] = {}
        self._futures: list[Any] = []
        self._last_commit = time.monotonic()
        self.stop_event = threading.Event()
        self.ready = False
        self.n = dict.fromkeys(("records", "deltas", "applied", "redone", "overlap", "facts", "dead_letters",
                                "results", "restored", "commits", "rejoins"), 0)
        self.result_bytes = 0
        #: seconds per stage (wall, this thread) and the thread's CPU seconds (``time.thread_time``)
        self.seconds = dict.fromkeys(("poll", "decode_apply", "encode_send", "flush", "cpu"), 0.0)

    def _new_consumer(self) -> Any:
        s = self.settings
        return clients.consumer(s, group=s.item_group(), max_poll_records=5000,
                                client_id=f"{s.client_id}-{self._owner_id}", session_timeout_ms=10000,
                                heartbeat_interval_ms=2000, **RECONNECT)

    #: an owner whose join has not heard an assignment (not even an empty one) for this long, or whose revoke
    #: has had no new assignment for this long, leaves and joins ``<group>.items`` again (such a join, seen on a
    #: loaded machine, would otherwise own nothing for ever); an owner assigned nothing (more owners than
    #: partitions) stays as it is
    REJOIN_AFTER_S = 30.0

    def _rejoin_if_stuck(self) -> None:
        now = time.monotonic()
        if self._unassigned_since is None:
            self._unassigned_since = now
        never_heard = not self._heard and now - self._unassigned_since > self.REJOIN_AFTER_S
        if never_heard or self.tracker.stalled(self.REJOIN_AFTER_S):
            self.log.warning("item owner has had no partition; joining the group again",
                             seconds=round(now - self._unassigned_since, 1))
            try:
                self.consumer.close(autocommit=False)
            except (KafkaError, OSError) as exc:
                self.log.warning("closing the stuck item owner consumer failed", error=str(exc))
            self.consumer = self._new_consumer()
            self.tracker = RebalanceTracker(self.topic)
            self.consumer.subscribe([self.topic], listener=self.tracker)
            self._unassigned_since, self._heard = time.monotonic(), False
            self.n["rejoins"] += 1

    # --- running -----------------------------------------------------------------------------------
    def run(self, idle_timeout_s: float | None = None) -> None:
        """Turn until ``stop_event`` (or ``idle_timeout_s`` without input), then commit and close. A broker error
        is logged and recovered from (state restored again from the changelog, offsets rewound)."""
        last_input = time.monotonic()
        try:
            while not self.stop_event.is_set():
                try:
                    if self.step():
                        last_input = time.monotonic()
                    elif idle_timeout_s is not None and time.monotonic() - last_input > idle_timeout_s:
                        break
                except (KafkaError, StreamrecError) as exc:
                    self.recover(exc)
            self.commit()
        finally:
            self.close()

    def recover(self, exc: Exception) -> None:
        """A step failed: forget what was not committed, restore the owned partitions again."""
        self.log.error("item owner step failed; restoring from the changelog", error=f"{type(exc).__name__}: {exc}")
        owned = set(self.tables)
        self.tables, self.dirty, self.pending, self._futures = {}, {}, {}, []
        self.stop_event.wait(0.5)
        self._restore(owned)

    def step(self) -> bool:
        cpu0, t0 = time.thread_time(), time.perf_counter()
        polled = self.consumer.poll(timeout_ms=50, max_records=5000)
        restored = self._rebalance()
        records = [Record.from_kafka(r) for recs in polled.values() for r in recs]
        records = [r for r in records if r.partition in self.tables and r.partition not in restored]
        t1 = time.perf_counter()
        self.seconds["poll"] += t1 - t0
        if records:
            self.apply(records)
            self.seconds["decode_apply"] += time.perf_counter() - t1
        if self.pending and time.monotonic() - self._last_commit >= self.settings.item_interval_ms / 1000:
            self.commit()
        if not self.tables:
            self._rejoin_if_stuck()
            if not polled:
                self.stop_event.wait(0.05)     # nothing owned yet: do not spin on polls that return at once
        else:
            self._unassigned_since = None
        self.seconds["cpu"] += time.thread_time() - cpu0
        return bool(records)

    def apply(self, records: list[Record]) -> None:
        """Apply each record's deltas (a batch or one delta); a record that does not decode goes to the DLQ, and
        so does one with deltas refused by validation (its valid deltas are applied: a reprocessed DLQ record's
        are then skipped as redone)."""
        max_id, n = self.settings.max_id_bytes, self.n
        for rec in records:
            n["records"] += 1
            try:
                if rec.value is None:
                    raise ValueError("an item delta without a value")
                deltas, refused = decode_deltas(rec.value, rec.key, rec.partition, self.partitions, max_id)
            except DecodeError as exc:
                self._dead_letter(DeadLetter(rec, exc.error_type, str(exc)))
                deltas, refused = [], []
            except (KeyError, ValueError, TypeError) as exc:
                self._dead_letter(DeadLetter(rec, "invalid_record", f"{type(exc).__name__}: {exc}"))
                deltas, refused = [], []
            if refused:
                self._dead_letter(DeadLetter(rec, "invalid_record", f"{len(refused)} of the record's deltas "
                                             f"refused (the others applied): {refused[0]}"))
            if deltas:
                table, dirty = self.tables[rec.partition], self.dirty.setdefault(rec.partition, set())
                for delta in deltas:
                    kind = table.apply(delta)
                    n[kind] += 1
                    if kind == "applied" or kind == "facts":   # facts: a first-seen time or category only
                        dirty.add(delta.item_id)
                n["deltas"] += len(deltas)
            self.pending[rec.partition] = max(self.pending.get(rec.partition, -1), rec.offset)

    def commit(self) -> None:
        """Changelog and results of every item changed, acknowledged, then the offsets."""
        self.write()
        if self.pending:
            self.consumer.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o + 1, "", -1)
                                  for p, o in self.pending.items()})
            self.n["commits"] += 1
        self.pending = {}
        self._last_commit = time.monotonic()

    def write(self) -> None:
        """One changelog record and one result per item changed since the last call (tombstones for the evicted),
        flushed and acknowledged (:class:`BrokerError` otherwise)."""
        t0 = time.perf_counter()
        s, send = self.settings, self.producer.send
        state_topic, results_topic, k = s.item_state_topic(), s.item_results_name(), s.item_neighbours
        for p, items in self.dirty.items():
            table = self.tables.get(p)
            if table is None:
                continue
            for item in items:
                full = table.record(item)
                if full is None:       # evicted since
                    continue
                key = item.encode("utf-8", "surrogatepass")
                self._futures.append(send(state_topic, key=key, value=encode_result(full), partition=p))
                top = {**full, "sources": [], "neighbours": full["neighbours"][:k], "weights": full["weights"][:k]}
                value = encode_result(top)
                self._futures.append(send(results_topic, key=key, value=value))
                self.result_bytes += len(key) + len(value)
                self.n["results"] += 1
            for item in table.take_evicted():
                key = item.encode("utf-8", "surrogatepass")
                self._futures.append(send(state_topic, key=key, value=None, partition=p))
                self._futures.append(send(results_topic, key=key, value=None))
        self.dirty = {}
        t1 = time.perf_counter()
        self.seconds["encode_send"] += t1 - t0
        self.producer.flush()
        self.seconds["flush"] += time.perf_counter() - t1
        futures, self._futures = self._futures, []
        if any(f.failed() for f in futures):
            raise BrokerError("an item result or changelog record was not acknowledged; offsets not committed")

    # --- assignment --------------------------------------------------------------------------------
    def _rebalance(self) -> set[int]:
        if not self.tracker.changed:
            return set()
        self._heard = True
        self._check_partition_count()
        assigned, lost = self.tracker.take_assignment()
        owned = set(self.tables)
        to_restore, to_drop = assigned - owned, (owned - assigned) | lost
        for p in to_drop:
            self.tables.pop(p, None)
            self.dirty.pop(p, None)
            self.pending.pop(p, None)
        if to_restore:
            self._restore(to_restore)
        self.ready = bool(self.tables)
        return to_restore

    def _check_partition_count(self) -> None:
        """Item state is partitioned by the item-deltas partition count the owners started with (an item's
        partition is its key's hash modulo that count, and its statistics live in that partition's changelog).
        If the topic gained partitions, workers now send many items elsewhere: applying them would split their
        statistics, and refusing them would dead-letter good deltas, so the owner stops with a clear error."""
        now = len(self.consumer.partitions_for_topic(self.topic) or ())
        if now and now != self.partitions:
            self.log.error("item-deltas partition count changed; stopping", topic=self.topic, was=self.partitions,
                           now=now)
            raise PartitionCountChanged(
                f"topic {self.topic!r} has {now} partitions, {self.partitions} when the item owners started: item "
                "statistics are partitioned by that count, so it cannot change under them; recreate the item "
                "topics and the owners' changelog (streamrec topics create) or keep the old count")

    def _restore(self, to_restore: set[int]) -> None:
        if to_restore:
            started = time.monotonic()
            for p in to_restore:
                self.tables[p] = ItemStats(self.settings.item_neighbours, self.settings.item_max_items, *self.hl)
            n = restore_items(self.settings, to_restore, self.tables, self.settings.restore_timeout_s)
            self.n["restored"] += n
            for p in to_restore:
                tp = TopicPartition(self.topic, p)
                committed = self.consumer.committed(tp)
                if committed is None:
                    self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek(tp, committed)
            self.log.info("item partitions restored", partitions=sorted(to_restore), records=n,
                          items=sum(len(self.tables[p]) for p in to_restore),
                          seconds=round(time.monotonic() - started, 3))

    def _dead_letter(self, dl: DeadLetter) -> None:
        self.n["dead_letters"] += 1
        rec = dl.record
        self.log.warning("dead letter", topic=rec.topic, partition=rec.partition, offset=rec.offset,
                         error_type=dl.error_type, error=dl.message[:200])
        self._futures.append(self.producer.send(self.settings.dlq_topic, key=rec.key, value=rec.value,
                                                headers=dl.headers()))

    def stats(self) -> dict[str, Any]:
        return {**self.n, "items": sum(len(t) for t in self.tables.values()), "partitions": sorted(self.tables),
                "result_bytes": self.result_bytes, "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}

    def close(self) -> None:
        self.log.info("item owner closing", **self.stats())
        for close in (lambda: self.producer.close(timeout=10), lambda: self.consumer.close(autocommit=False)):
            try:
                close()
            except (KafkaError, OSError) as exc:
                self.log.warning("closing an item owner client failed", error=str(exc))


class OwnerThread:
    """An :class:`ItemOwner` on a daemon thread of a worker process (``STREAMREC_ITEM_OWNER``, the default with
    the plane on): the worker process is also a member of ``<group>.items``."""

    def __init__(self, settings: Settings, log: Any, owner_id: str, covisit_half_life_ms: int = 7 * DAY_MS,
                 trending_half_life_ms: int = DAY_MS) -> None:
        self.owner = ItemOwner(settings, log, owner_id, covisit_half_life_ms, trending_half_life_ms)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="item-owner", daemon=True)

    def start(self) -> OwnerThread:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.owner.run()
        except BaseException as exc:  # noqa: BLE001 - logged; the worker's /healthz reports it
            self.error = exc
            self.owner.log.error("item owner stopped", error=f"{type(exc).__name__}: {exc}")

    def owned_partitions(self) -> int:
        """The item-deltas partitions the owner owns and has restored (0 until its first assignment)."""
        return len(self.owner.tables) if self.owner.ready else 0

    def health_problem(self) -> str | None:
        if self.thread.is_alive() or self.owner.stop_event.is_set():
            return None
        return f"the item owner thread stopped: {self.error}"

    def stop(self) -> None:
        self.owner.stop_event.set()
        self.thread.join(30)


def _owner_process_main(settings: Settings, owner_id: str, covisit_half_life_ms: int, trending_half_life_ms: int,
                        stop: Any, owned: Any, parent_pid: int) -> None:
    """The body of :class:`OwnerProcess`'s child: an :class:`ItemOwner` until the parent sets ``stop`` or dies."""
    import signal

    import structlog

    from streamrec.stream.logs import configure

    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C reaches the whole group: the parent stops us
    configure(settings.log_level, settings.log_format)
    log = structlog.get_logger("streamrec.items").bind(worker=settings.worker_id or owner_id, group=settings.group)
    owner = ItemOwner(settings, log, owner_id, covisit_half_life_ms, trending_half_life_ms)

    def watch() -> None:
        while not stop.wait(0.2):
            owned.value = len(owner.tables) if owner.ready else 0
            if os.getppid() != parent_pid:            # the worker died (kill -9): commit what we have and go
                log.warning("the worker process is gone; item owner stopping")
                break
        owner.stop_event.set()

    threading.Thread(target=watch, name="item-owner-watch", daemon=True).start()
    owner.run()


class OwnerProcess:
    """An :class:`ItemOwner` in a child process of the worker (``STREAMREC_ITEM_OWNER_PROCESS``, the default with
    the owner in the worker): the same member of ``<group>.items`` as :class:`OwnerThread`, but with an
    interpreter (and a GIL) of its own, so decoding deltas and encoding results never take the worker thread's
    turn; it stops when the worker stops it (a last commit) or when the worker process is gone."""

    def __init__(self, settings: Settings, log: Any, owner_id: str, covisit_half_life_ms: int = 7 * DAY_MS,
                 trending_half_life_ms: int = DAY_MS) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.log = log.bind(component="item-owner", owner=owner_id)
        self._stop = ctx.Event()
        self._owned = ctx.Value("i", 0)
        self.process = ctx.Process(target=_owner_process_main, name=f"item-owner-{owner_id}", daemon=True,
                                   args=(settings, owner_id, covisit_half_life_ms, trending_half_life_ms,
                                         self._stop, self._owned, os.getpid()))

    def start(self) -> OwnerProcess:
        self.process.start()
        return self

    def owned_partitions(self) -> int:
        """The item-deltas partitions the child owns and has restored (0 until its first assignment)."""
        return int(self._owned.value)

    def health_problem(self) -> str | None:
        if self.process.is_alive() or self._stop.is_set():
            return None
        return f"the item owner process exited (code {self.process.exitcode})"

    def stop(self) -> None:
        self._stop.set()
        self.process.join(30)
        if self.process.is_alive():
            self.log.warning("the item owner process did not stop in 30 s; terminating it")
            self.process.terminate()
            self.process.join(5)
