"""The streaming worker process: the parts of ``consumers/assembly.py`` around the loop of ``consumers/loop.py``.

``build_worker(settings)`` (or ``Worker(settings)``) assembles the consumer, the commit protocol, the
changelog, the online state, the model sync thread and the metrics; :class:`Worker` adds what only a process
has: signal handlers, the model sync thread started, the HTTP endpoints served, and an orderly close. The
batch itself (decode → apply → recommend → emit → changelog → commit) is :class:`~streamrec.consumers.loop.Loop`,
which runs as well on the in-memory source and sink of ``consumers/testing.py``.

Per batch (see the design's data plane): dead letters for records that fail to decode; duplicates dropped by
the engine (event id window, offset at or below the user's last applied offset); one ``Recommendation`` per
touched user with lineage; at each commit one changelog record per user touched since the last; then the
commit protocol of the chosen guarantee (``consumers/delivery.py``). Rebalance callbacks only record
changes; restores and drops happen on the worker's thread, before the next batch is processed.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import time
from typing import Any

import structlog
from kafka.errors import KafkaError

from streamrec.consumers import itemcache
from streamrec.consumers.assembly import WorkerParts, assemble
from streamrec.consumers.itemplane import OwnerProcess, OwnerThread
from streamrec.consumers.loop import Loop
from streamrec.consumers.stats import WorkerStats
from streamrec.models.engine.recommender import Recommender
from streamrec.stream.errors import StreamrecError
from streamrec.stream.records import Record
from streamrec.stream.settings import Settings

log = structlog.get_logger("streamrec.worker")


def freeze_long_lived() -> None:
    """Move every object alive now (modules, the model's ids and lookups, the engine's tables) out of the
    cyclic garbage collector's reach (``gc.freeze``): a full collection then walks only what batches made
    since, instead of hundreds of thousands of long-lived objects (measured in ``bench engine``: about 6 ms
    of collection per batch, one full collection 85 ms, against 1.5 ms frozen). Frozen objects are still
    freed by reference counting when dropped; called at start and after each model swap."""
    gc.freeze()


def build_worker(settings: Settings, engine: Recommender | None = None, model_sync: bool = True) -> Worker:
    """A worker assembled from its parts on the configured cluster."""
    return Worker(settings, engine=engine, model_sync=model_sync)


class Worker:
    def __init__(self, settings: Settings, engine: Recommender | None = None, model_sync: bool = True,
                 parts: WorkerParts | None = None) -> None:
        settings = itemcache.plane_settings(settings)   # the item plane's sources (docs/item-plane.md)
        self.settings = settings
        self.worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.log = log.bind(worker=self.worker_id, group=settings.group, guarantee=settings.guarantee)
        self.parts = parts or assemble(settings, self.worker_id, self.log, engine=engine, model_sync=model_sync)
        self.engine = self.parts.engine
        self.loop: Loop = self.parts.loop
        self.items: itemcache.ItemCacheFollower | None = None   # the item cache, rebuilt before serving
        self.item_owner: OwnerThread | OwnerProcess | None = None   # this worker's item owner (STREAMREC_ITEM_OWNER)
        if settings.item_plane:
            self.items = itemcache.attach(settings, self.engine, self.loop, self.log, self.parts.source.also_close)
            if settings.item_owner:
                cfg = self.engine.config
                owner = OwnerProcess if settings.item_owner_process else OwnerThread
                self.item_owner = owner(settings, self.log, self.worker_id, cfg.covisit_half_life_ms,
                                        cfg.trending_half_life_ms).start()
                self.parts.metrics.add_liveness_check("item owner", self.item_owner.health_problem)
        self.online = self.parts.online
        self.sync = self.parts.sync
        self.metrics = self.parts.metrics
        self.topic = settings.events_topic
        self.state_topic = settings.state_topic()
        self.stop_event = self.loop.stop_event
        self._signals = 0
        self._last_iter: float | None = None
        self._swap_gap_ms = 0.0
        self._window_swaps: int | None = None
        self._swaps_seen = 0
        self.loop.hooks.insert(0, self._watch_gap)
        self.loop.hooks.append(self._model_metrics)
        if self.sync is not None:
            self.sync.start()
            self.loop.hooks.append(self.sync.ensure_running)   # restarts a dead sync thread between batches
            self.metrics.add_liveness_check("model sync", self.sync.health_problem)   # /healthz fails meanwhile
        if settings.metrics_port:
            self.metrics.serve(settings.metrics_port, settings.metrics_host)
        if self.engine.model is not None:
            self.metrics.set_model(self.engine.model.version, time.time())
        freeze_long_lived()


    # --- what tests and the CLI read -------------------------------------------------------------
    @property
    def stats(self) -> WorkerStats:
        return self.loop.stats

    @property
    def ready(self) -> bool:
        return self.loop.ready

    @property
    def rejoins(self) -> int:
        return self.loop.rejoins

    @property
    def consumer(self) -> Any:
        return self.parts.source.consumer

    @property
    def tracker(self) -> Any:
        return self.parts.source.tracker

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
        try:
            self.loop.run(max_events=max_events, idle_timeout_s=idle_timeout_s)
        finally:
            self.close()
        return self.stats

    def process(self, records: list[Record]) -> None:
        self.loop.process(records)

    def commit(self) -> None:
        self.loop.commit()

    def report(self) -> dict[str, Any]:
        return self.loop.report()

    def close(self) -> None:
        self.loop.finish()
        if self.online is not None:
            try:
                self.online.close()   # a last checkpoint of the online learners
            except (KafkaError, StreamrecError) as exc:
                self.log.warning("final online checkpoint failed", error=str(exc))
        self.log.info("worker closing", **self.report())
        self.loop.publish()
        if self.sync is not None:
            self.sync.stop()
        if self.item_owner is not None:
            self.item_owner.stop()     # commits what it applied, then leaves <group>.items
        try:
            self.parts.sink.close()
        finally:
            self.parts.source.close()
            self.metrics.shutdown()

    # --- between batches -------------------------------------------------------------------------
    def _model_metrics(self) -> None:
        if self.sync is not None and self.sync.swaps != self._swaps_seen:
            self._swaps_seen = self.sync.swaps
            self.metrics.set_model(self.sync.serving or "", self.sync.last_swap_at or time.time())
            freeze_long_lived()

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
