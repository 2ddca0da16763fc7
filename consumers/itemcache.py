"""The item plane in a worker (docs/item-plane.md): the deltas it emits, and the item cache it serves from.

* :class:`DeltaEmitter`: the loop's link to the engine's :class:`~models.serving.itemplane.DeltaCollector`. The
  loop tells it which events partition and offsets each ``apply`` covers (:meth:`enter`), and at each commit
  it sends the ``item_delta`` of every (events partition, anchor item), in one ``item_delta_batch`` record per
  item-deltas partition (an anchor goes to the partition its item id hashes to, as a record keyed by it would),
  through the loop's sink: in exactly-once mode in the same transaction as the
  lists, the changelog and the offsets; in at-least-once mode flushed before the offsets are committed, each
  delta stamped with its source range so that an owner skips a range it already applied.
* :class:`ItemCacheFollower`: the item-results topic read in full before the worker serves (:meth:`load`, bounded
  by ``STREAMREC_RESTORE_TIMEOUT_S``), then followed by a thread whose records the between-batch hook puts into
  the engine's :class:`~models.serving.itemplane.ItemCache` (the pattern of ``consumers/catalog.py``). Every
  record is validated (``stream/itemdeltas.py``); a bad one is logged with its offset, counted and skipped
  (results are derived data, rebuilt by the owners; nothing is lost), a tombstone removes the item.
* :func:`plane_settings`: the settings of a worker with the plane on: the default sources with ``covisit`` and
  ``trending`` served by their plane variants (``covisit_global``, ``trending_global``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

from streamrec.consumers.follow import BackgroundFollower, assign_from_beginning, read_to_end
from streamrec.models.engine.recommender import EngineConfig
from streamrec.models.errors import ConfigError
from streamrec.models.serving.itemplane import ItemCache, ItemPlane
from streamrec.stream import clients
from streamrec.stream.errors import DecodeError
from streamrec.stream.itemdeltas import batch_records, decode_result
from streamrec.stream.settings import Settings

__all__ = ["PLANE_SOURCES", "DeltaEmitter", "ItemCacheFollower", "attach", "plane_settings"]

#: the engine's sources the plane serves instead (same score columns)
PLANE_SOURCES = {"covisit": "covisit_global", "trending": "trending_global"}

Send = Callable[..., None]


def plane_settings(settings: Settings) -> Settings:
    """``settings`` with the plane variants of covisit and trending in the source list (a no-op when off)."""
    if not settings.item_plane:
        return settings
    names = [s.strip() for s in settings.sources.split(",")] if settings.sources else list(EngineConfig.sources)
    names = [PLANE_SOURCES.get(n, n) for n in names]
    if not set(PLANE_SOURCES.values()) & set(names):
        raise ConfigError("STREAMREC_ITEM_PLANE is on but the sources have neither covisit nor trending")
    return settings.replace(sources=",".join(names))


class DeltaEmitter:
    """What the loop calls for the item plane (``Loop.item_deltas``)."""

    def __init__(self, settings: Settings, plane: ItemPlane, partitions: int | None = None,
                 lag: Callable[[set[int]], dict[int, int]] | None = None) -> None:
        self.topic, self.collector = settings.item_deltas_name(), plane.collector
        # the exact redo rule: where a partition starts, deltas per source offset up to its end then (``lag``)
        # (the loop commits before a range spans ``item_exact_redo`` offsets; a batch adds at most ``max_batch``)
        self._bound = 0 if settings.guarantee == "exactly-once" else settings.item_exact_redo
        self.collector.exact_redo = self._bound + settings.max_batch if self._bound else 0
        if lag is not None:
            slack = settings.max_batch

            def horizon(partition: int, last: int) -> int | None:
                behind = lag({partition}).get(partition)
                return None if behind is None else last + 1 + behind + slack
            self.collector.horizon = horizon
        self.partitions = partitions or settings.item_partitions     # of the item-deltas topic
        self.records = self.deltas = self.bytes = 0

    def enter(self, partition: int, first: int, last: int) -> None:
        self.collector.enter(partition, first, last)

    def due(self) -> bool:
        """Commit now: a partition's uncommitted range spans ``STREAMREC_ITEM_EXACT_REDO`` offsets (one more batch
        would still fit in the region a redo keeps per source offset)."""
        return self._bound > 0 and self.collector.longest() >= self._bound

    def drop(self, partitions: set[int]) -> None:
        self.collector.drop(partitions)

    def clear(self) -> None:
        self.collector.clear()

    def emit(self, send: Send) -> int:
        """Send the deltas collected since the last commit, one batch record per item-deltas partition
        (``stream/itemdeltas.batch_records``); returns the bytes sent."""
        sent = 0
        for p, value, n in batch_records(self.collector.take(), self.partitions):
            send(self.topic, None, value, partition=p)
            sent += len(value)
            self.records += 1
            self.deltas += n
        self.bytes += sent
        return sent


class ItemCacheFollower(BackgroundFollower):
    thread_name = "item-cache"

    def __init__(self, settings: Settings, plane: ItemPlane, log: Any,
                 consumer_factory: Callable[[], Any] | None = None) -> None:
        self.settings, self.log = settings, log.bind(component="item-cache")
        self.cache: ItemCache = plane.cache
        self.topic = settings.item_results_name()
        self._factory = consumer_factory or (lambda: clients.consumer(
            settings, group=None, client_id=f"{settings.client_id}-item-cache", max_poll_records=5000))
        self.consumer: Any = None
        self._lock = threading.Lock()
        self._queue: list[tuple[str, dict[str, Any] | None]] = []
        self._thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self.n = dict.fromkeys(("records", "tombstones", "invalid", "errors"), 0)
        self.load_seconds: float | None = None
        #: seconds: the follower thread's CPU (``time.thread_time``), its polls (fetch + decode), the drains
        self.seconds = dict.fromkeys(("cpu", "poll", "drain"), 0.0)
        self.last_applied_at: float | None = None

    def _open(self) -> bool:
        consumer = self._factory()
        if not assign_from_beginning(consumer, self.topic):
            self.log.warning("no item-results topic: serving from local item knowledge until it exists (create "
                             "it with `streamrec topics create`)", topic=self.topic)
            return False
        self.consumer = consumer
        return True

    def load(self, timeout_s: float | None = None) -> int:
        """Read item-results in full (to the end offsets found now) into the cache; returns the records read."""
        started = time.monotonic()
        timeout = self.settings.restore_timeout_s if timeout_s is None else timeout_s
        before = self.n["records"]
        try:
            if self.consumer is None and not self._open():
                return 0
            if not read_to_end(self.consumer, timeout, self._poll_and_drain, started):
                self.log.error("item cache not rebuilt in full before serving; the rest follows",
                               timeout_s=timeout)
        except KafkaError as exc:
            self.n["errors"] += 1
            self.log.error("reading item-results failed; serving with what was read", error=str(exc))
        self.load_seconds = time.monotonic() - started
        read = self.n["records"] - before
        self.log.info("item cache rebuilt", records=read, items=len(self.cache), seconds=round(self.load_seconds, 3))
        return read

    def _poll_and_drain(self) -> None:
        self._poll(200)
        self._drain()

    def _drain(self) -> None:
        t0 = time.perf_counter()
        with self._lock:
            queued, self._queue = self._queue, []
        self.cache.put_results(queued)     # the decoded arrays as they are: a row's dict is built when read
        if queued:
            self.last_applied_at = time.time()
        self.seconds["drain"] += time.perf_counter() - t0

    def _run(self) -> None:
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                if self.consumer is None and not self._open():
                    self.stop_event.wait(30.0)
                    continue
                cpu0 = time.thread_time()
                self._poll(100)
                self.seconds["cpu"] += time.thread_time() - cpu0
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - the thread must not die; retried after a backoff
                self.n["errors"] += 1
                self.log.warning("following item-results failed; retrying", error=f"{type(exc).__name__}: {exc}")
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _poll(self, timeout_ms: int) -> None:
        t0 = time.perf_counter()
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        out: list[tuple[str, dict[str, Any] | None]] = []
        max_id = self.settings.max_id_bytes
        for recs in polled.values():
            self.n["records"] += len(recs)
            for r in recs:
                try:
                    if r.value is None:
                        if not r.key:
                            raise ValueError("a tombstone without a key")
                        out.append((r.key.decode("utf-8"), None))
                        self.n["tombstones"] += 1
                        continue
                    rec = decode_result(r.value, r.key, max_id)
                    out.append((rec["item_id"], rec))
                except (DecodeError, KeyError, ValueError, TypeError) as exc:
                    self.n["invalid"] += 1
                    self.log.warning("invalid item result skipped", partition=r.partition, offset=r.offset,
                                     error=str(exc)[:200])
        if out:
            with self._lock:
                self._queue.extend(out)
        self.seconds["poll"] += time.perf_counter() - t0

    def stats(self) -> dict[str, Any]:
        return {**{f"item_cache_{k}": v for k, v in self.n.items()},
                "item_cache_seconds": {k: round(v, 3) for k, v in self.seconds.items()}}

    def close(self) -> None:
        self.log.info("item cache closing", **self.stats())
        self.stop_event.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception as exc:  # noqa: BLE001 - closing on the way out
                self.log.warning("closing the item cache consumer failed", error=str(exc))
            self.consumer = None


def attach(settings: Settings, engine: Any, loop: Any, log: Any,
           on_close: list[Callable[[], None]] | None = None) -> ItemCacheFollower:
    """Wire the plane into an assembled worker: the loop's delta emitter, and the item cache rebuilt in full now
    (before the worker serves), then followed between batches."""
    plane = getattr(engine, "item_plane", None)
    if plane is None:
        raise ConfigError("STREAMREC_ITEM_PLANE is on but the engine has no item plane source (list "
                          "covisit_global or trending_global in STREAMREC_SOURCES)")
    follower = ItemCacheFollower(settings, plane, log)
    follower.load()
    partitions = None
    if follower.consumer is not None:    # the item-deltas topic's partitions, as the owners see them
        partitions = len(follower.consumer.partitions_for_topic(settings.item_deltas_name()) or ()) or None
    loop.item_deltas = DeltaEmitter(settings, plane, partitions, getattr(loop.source, "lag", None))
    loop.hooks.append(follower.between_batches)
    if on_close is not None:
        on_close.append(follower.close)
    return follower
