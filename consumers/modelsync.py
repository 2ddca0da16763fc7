"""The worker's model sync thread: follow ``model-updates``, assemble and verify each artifact, build its
index off the hot path, and hand it to the worker, which swaps model and index together between two
batches. A corrupt or partial artifact is refused with a clear log line and the old model keeps serving.

On start the thread reads the topic from the beginning and, once caught up, loads only the version in
service (the newest manifest, or the target of the newest rollback): intermediate versions cost nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Any

from kafka import TopicPartition

from streamrec.models.base.artifact import decode_artifact
from streamrec.models.errors import ArtifactError
from streamrec.stream.errors import DecodeError
from streamrec.stream.modelbus import Assembler, follow
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings


class ModelSync(threading.Thread):
    def __init__(self, settings: Settings, engine: Any, log: Any) -> None:
        super().__init__(name="model-sync", daemon=True)
        self.settings, self.engine, self.log = settings, engine, log.bind(component="model-sync")
        self.assembler = Assembler()
        self.stop_event = threading.Event()
        self.caught_up = threading.Event()
        self._lock = threading.Lock()
        self._pending: tuple[str, Any] | None = None
        self.target: str | None = None           # the version that should be in service
        self.loaded: str | None = None           # the last version prepared (pending or serving)
        self.serving: str | None = None          # the version swapped in
        self.refused: dict[str, str] = {}
        self.last_swap_at: float | None = None
        self.window_open_at: float | None = None  # monotonic time a model started to be prepared
        self.swaps = 0

    def run(self) -> None:
        # below the worker's own priority: preparing a model must not take the core from the hot path
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        codec = codec_for("model_chunk")
        consumer = follow(self.settings)
        tp = TopicPartition(self.settings.model_topic, 0)
        end = consumer.end_offsets([tp])[tp]
        if end == 0:
            self.caught_up.set()
        try:
            while not self.stop_event.is_set():
                for recs in consumer.poll(timeout_ms=200).values():
                    for raw in recs:
                        self._handle(codec, raw.value)
                if not self.caught_up.is_set() and consumer.position(tp) >= end:
                    self.caught_up.set()
                if self.caught_up.is_set() and self.target and self.target != self.loaded \
                        and self.target not in self.refused:
                    self._load(self.target)
        except Exception as exc:  # noqa: BLE001 - the sync thread must never take the worker down
            self.log.error("model sync stopped", error=str(exc))
        finally:
            consumer.close()

    def _handle(self, codec: Any, value: bytes | None) -> None:
        if value is None:
            return
        try:
            rec = codec.decode(value)
        except DecodeError as exc:
            self.log.warning("unreadable model-updates message skipped", error=str(exc))
            return
        kind = rec["kind"]
        if kind in ("CHUNK", "MANIFEST"):
            try:
                done = self.assembler.add(rec)
            except ArtifactError as exc:
                self.refused[rec["version"]] = str(exc)
                self.log.error("model refused", version=rec["version"], reason=str(exc))
                return
            if done is not None:
                self.target = done
        elif kind == "ROLLBACK":
            self.target = rec["version"]
            self.refused.pop(rec["version"], None)
            self.log.info("rollback requested", version=rec["version"],
                          reason=json.loads(rec["data"] or b"{}").get("reason"))

    def _load(self, version: str) -> None:
        files = self.assembler.complete.get(version)
        manifest = self.assembler.manifests.get(version)
        if files is None or manifest is None:
            reason = "artifact is incomplete or no longer held (chunks missing)"
            self.refused[version] = reason
            self.window_open_at = None
            self.log.error("model refused; the current model keeps serving", version=version, reason=reason)
            return
        started = time.monotonic()
        self.window_open_at = started  # the worker measures its loop gaps from here (see GapWatch)
        try:
            artifact = decode_artifact(manifest, files)
            prepared = self.engine.prepare_model(artifact)
        except ArtifactError as exc:
            self.refused[version] = str(exc)
            self.window_open_at = None
            self.log.error("model refused; the current model keeps serving", version=version, reason=str(exc))
            return
        with self._lock:
            self._pending = (version, prepared)
        self.loaded = version
        self.log.info("model prepared", version=version, items=manifest.item_count, dim=manifest.dim,
                      index=prepared.index_source, index_version=prepared.index_version,
                      seconds=round(time.monotonic() - started, 3))

    def swap_if_ready(self) -> None:
        """Called by the worker between two batches."""
        if self._pending is None:
            return
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        version, prepared = pending
        started = time.perf_counter()
        self.engine.swap(prepared)
        self.serving = version
        self.swaps += 1
        self.last_swap_at = time.time()
        self.log.info("model swapped", version=version, swap_ms=round((time.perf_counter() - started) * 1000, 2),
                      sync_s=round(time.monotonic() - (self.window_open_at or time.monotonic()), 3))

    def stop(self) -> None:
        self.stop_event.set()
