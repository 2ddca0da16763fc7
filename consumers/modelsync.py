"""The worker's model sync thread: follow ``model-updates``, assemble and verify each artifact, build its
index off the hot path, and hand it to the worker, which swaps model and index together between two
batches. A corrupt or partial artifact is refused with a clear log line and the old model keeps serving.

On start the thread reads the topic from the beginning and, once caught up, loads only the version in
service (the newest manifest, or the target of the newest rollback): intermediate versions cost nothing.
When that version is refused, the worker serves the one before it (the newest it still holds).

No record can stop the thread: a malformed message (bad Avro, wrong fields, out-of-range indexes,
contradicting chunks, absurd sizes, a manifest or rollback that fails its checks or signature) is logged
with its offset and skipped; an artifact that fails to decode or prepare is refused. An unexpected error
of the loop itself (the broker, a bug) is logged and the loop resumes at the same offset after a short
backoff. Should the thread die anyway, :meth:`ModelSync.health_problem` says so (``/healthz`` fails) and
:meth:`ModelSync.ensure_running`, called by the worker between batches, starts it again.

Preparing runs in a child process (``python -m streamrec.models.serving.prepfiles``, niced): the assembled
artifact goes to a local directory, the child verifies every checksum and value as ``decode_artifact`` does
and writes numpy and faiss files, and the sync thread maps them (index and embeddings memory-mapped), so
the thread holds the interpreter lock only for the id tuple and ``index_of`` dict; the loop keeps serving
the old model meanwhile. :class:`GapStats` logs what a sync cost the loop (``model swap gaps``).

After each swap, refusal and on stop the thread reports what this worker serves to the model topic (a
small ``serving`` record keyed by worker; ``streamrec model list`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamrec.models.base.artifact import MANIFEST, Manifest, decode_artifact
from streamrec.models.errors import ArtifactError
from streamrec.models.serving.prepfiles import open_prepared
from streamrec.stream.errors import DecodeError
from streamrec.stream.modelbus import Assembler, KafkaModelSource, ServingReporter, check_rollback, parse_record
from streamrec.stream.settings import Settings

#: the preparing child's niceness: below the worker's loop
PREPARE_NICE = 5

#: crash loop: this many thread deaths within CRASH_WINDOW_S keep /healthz failing after the restart
CRASH_LIMIT = 3
CRASH_WINDOW_S = 600.0


def _runqueue_s() -> float | None:
    """Seconds the calling thread has spent runnable but waiting for a core (Linux schedstat; None elsewhere)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class GapStats:
    """What a model sync costs the loop: the longest time between two loop iterations from the first chunk
    of a new version until a second after its swap, beside the median interval outside such windows.
    ``tick`` runs on the loop's thread (between batches); ``open``/``phase``/``close`` on the sync thread.
    Logs ``model swap gaps`` (max_gap_ms, the phase it fell in, the loop thread's own CPU time in that gap:
    max_gap_loop_cpu_ms, and its time runnable without a core: max_gap_loop_runqueue_ms; the rest of the gap
    it was blocked: on the interpreter lock, the broker or its poll; median_interval_ms, ratio_to_median)."""

    def __init__(self, log: Any, after_swap_s: float = 1.0) -> None:
        self.log, self.after_swap_s = log, after_swap_s
        self.baseline: deque[float] = deque(maxlen=512)   # seconds between iterations outside a window
        self.version: str | None = None
        self.stage = ""
        self.max_gap, self.max_stage = 0.0, ""
        self.max_gap_cpu = 0.0                            # the loop thread's own CPU seconds in that gap
        self.max_gap_runqueue: float | None = None        # and its seconds runnable but waiting for a core
        self._last_rq: float | None = None
        self.swapped_at: float | None = None
        self._last: float | None = None
        self._last_cpu = 0.0
        self.last_result: dict[str, Any] | None = None

    def open(self, version: str) -> None:
        if self.version != version:
            self.version, self.stage, self.swapped_at = version, "assembling", None
            self.max_gap, self.max_stage = 0.0, ""

    def phase(self, stage: str) -> None:
        self.stage = stage

    def close(self) -> None:
        self.version = None

    def tick(self, swapped: str | None = None) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        last, self._last = self._last, now
        last_cpu, self._last_cpu = self._last_cpu, cpu
        if swapped is not None and swapped == self.version:
            self.stage, self.swapped_at = "after swap", now
        last_rq, self._last_rq = self._last_rq, (None if self.version is None else _runqueue_s())
        if last is None:
            return
        gap = now - last
        if self.version is None:
            self.baseline.append(gap)
            return
        if gap > self.max_gap:
            self.max_gap, self.max_stage, self.max_gap_cpu = gap, self.stage, cpu - last_cpu
            self.max_gap_runqueue = None if last_rq is None or self._last_rq is None else self._last_rq - last_rq
        if self.swapped_at is not None and now - self.swapped_at >= self.after_swap_s:
            base = np.asarray(self.baseline, dtype=np.float64)
            median, p99, top = (None, None, None) if not len(base) else \
                (float(np.median(base)), float(np.percentile(base, 99)), float(base.max()))
            ms = (lambda v: None if v is None else round(v * 1000, 2))  # noqa: E731
            self.last_result = {
                "version": self.version, "max_gap_ms": ms(self.max_gap), "max_gap_phase": self.max_stage,
                "max_gap_loop_cpu_ms": ms(self.max_gap_cpu), "max_gap_loop_runqueue_ms": ms(self.max_gap_runqueue),
                "median_interval_ms": ms(median), "p99_interval_ms": ms(p99), "max_interval_ms": ms(top),
                "ratio_to_median": None if not median else round(self.max_gap / median, 2),
                "ratio_to_p99": None if not p99 else round(self.max_gap / p99, 2),
                "baseline_intervals": len(base)}
            self.log.info("model swap gaps", **self.last_result)
            self.version = None


class ModelSource(Protocol):
    """The model topic from some offset on (:class:`streamrec.stream.modelbus.KafkaModelSource`)."""

    def end_offset(self) -> int: ...
    def position(self) -> int: ...
    def poll(self, timeout_ms: int = 200) -> list[tuple[int, bytes | None]]: ...
    def close(self) -> None: ...


class ModelSync:
    """The sync thread's state and loop. ``start()``/``stop()`` like a thread; ``ensure_running()`` starts
    a new thread when the last one died (the state, and the topic offset, carry over)."""

    def __init__(self, settings: Settings, engine: Any, log: Any, worker_id: str | None = None, *,
                 source: Callable[[int], ModelSource] | None = None,
                 reporter: Callable[[dict[str, Any]], None] | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, child_prepare: bool = True,
                 prepare_timeout_s: float = 600.0) -> None:
        self.settings, self.engine, self.log = settings, engine, log.bind(component="model-sync")
        self.worker_id = worker_id or settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.assembler = Assembler.for_settings(settings)
        self._source = source or (lambda offset: KafkaModelSource(settings, offset))
        self._reporter = reporter if reporter is not None else ServingReporter(settings)
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.child_prepare, self.prepare_timeout_s = child_prepare, prepare_timeout_s
        self.gaps = GapStats(log=self.log)
        self.last_prepare: dict[str, float] = {}   # child_s, open_s of the last preparation in a child
        self.stop_event = threading.Event()
        self.caught_up = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending: tuple[str, Any] | None = None
        self._retired: Any = None                # the model swapped out, until the sync thread drops it
        self.position = 0                        # the next offset to read
        self._end: int | None = None             # the topic's end when first opened: caught up there
        self.target: str | None = None           # the version that should be in service
        self.loaded: str | None = None           # the last version prepared (pending or serving)
        self.serving: str | None = None          # the version swapped in
        self.refused: OrderedDict[str, str] = OrderedDict()
        self._history: deque[str] = deque(maxlen=16)   # targets in topic order: the fallback chain
        self.last_swap_at: float | None = None
        self.window_open_at: float | None = None  # monotonic time a model started to be prepared
        self.swaps = 0
        self.skipped = 0                         # malformed records skipped
        self.failures = 0                        # loop errors recovered from
        self.deaths: deque[float] = deque(maxlen=CRASH_LIMIT)   # monotonic times the thread died
        self.death_reason: str | None = None
        self._report_asked = 0                   # bumped by whoever wants a report (any thread) ...
        self._report_sent = 0                    # ... and the number it had when the last one went out
        self._next_report_at = 0.0
        self._report_failures = 0

    # --- lifecycle (the worker's thread) -----------------------------------------------------------
    def start(self) -> None:
        self.stop_event.clear()
        self._thread = threading.Thread(target=self._thread_main, name="model-sync", daemon=True)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (it sends a last "stopped" report); waits up to ``timeout_s`` for it."""
        self.stop_event.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def health_problem(self) -> str | None:
        """None while the thread runs (or was stopped on purpose), else why ``/healthz`` must fail."""
        if self.stop_event.is_set() or self._thread is None:
            return None
        if not self._thread.is_alive():
            return f"model sync thread died ({self.death_reason}); the worker restarts it between batches"
        recent = [t for t in self.deaths if time.monotonic() - t < CRASH_WINDOW_S]
        if len(recent) >= CRASH_LIMIT:
            return (f"model sync thread died {len(recent)} times in {CRASH_WINDOW_S:.0f} s, last: "
                    f"{self.death_reason}")
        return None

    def ensure_running(self) -> None:
        """Called by the worker between batches: start a new sync thread when the last one died (in a crash
        loop, at most one restart every 10 s)."""
        thread = self._thread
        if thread is None or thread.is_alive() or self.stop_event.is_set():
            return
        now = time.monotonic()
        recent = [t for t in self.deaths if now - t < CRASH_WINDOW_S]
        if len(recent) >= CRASH_LIMIT and now - recent[-1] < 10.0:
            return
        self.log.error("model sync thread died; restarting it", reason=self.death_reason, offset=self.position,
                       deaths=len(recent))
        self.start()

    def _thread_main(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self.death_reason = f"{type(exc).__name__}: {exc}"
            self.deaths.append(time.monotonic())
            self.log.critical("model sync thread died", reason=self.death_reason, offset=self.position)
            raise

    # --- the loop (the sync thread) ----------------------------------------------------------------
    def run(self) -> None:
        # Not niced: a low-priority thread that the OS preempts while it holds the interpreter lock stalls the
        # loop (priority inversion). The CPU-heavy preparation runs in a niced child process instead.
        failures = 0
        while not self.stop_event.is_set():
            source: ModelSource | None = None
            try:
                source = self._source(self.position)
                if self._end is None:
                    self._end = source.end_offset()
                while not self.stop_event.is_set():
                    self._step(source)
                    failures = 0
            except Exception as exc:  # the loop resumes where it was; only a record at fault is skipped
                failures += 1
                self.failures += 1
                wait = min(self.max_backoff_s, self.backoff_s * 2 ** min(failures - 1, 10))
                self.log.error("model sync failed; resuming", error=f"{type(exc).__name__}: {exc}",
                               offset=self.position, retry_in_s=wait, exc_info=True)
                self.stop_event.wait(wait)
            finally:
                if source is not None:
                    with contextlib.suppress(Exception):
                        source.close()
        self._report(state="stopped")
        close = getattr(self._reporter, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def _step(self, source: ModelSource) -> None:
        if self._retired is not None:
            self._retired = None   # the last reference to the model swapped out: freed here, not on the loop
        for offset, value in source.poll(200):
            self._handle_safely(offset, value)
            self.position = offset + 1
        self.position = max(self.position, source.position())
        if not self.caught_up.is_set() and self._end is not None and self.position >= self._end:
            self.caught_up.set()
            self._report_asked += 1
            self.log.info("model topic caught up", offset=self.position, target=self.target)
        if self.caught_up.is_set() and self.target and self.target != self.loaded \
                and self.target not in self.refused:
            self._load(self.target)
        if self._report_asked != self._report_sent and time.monotonic() >= self._next_report_at:
            self._report()

    def _handle_safely(self, offset: int, value: bytes | None) -> None:
        try:
            self._handle(offset, value)
        except (DecodeError, ArtifactError) as exc:
            self.skipped += 1
            self.log.warning("model-updates record skipped", offset=offset, reason=str(exc))
        except Exception as exc:  # no record may stop the sync thread
            self.skipped += 1
            self.log.error("model-updates record skipped after an unexpected error", offset=offset,
                           error=f"{type(exc).__name__}: {exc}", exc_info=True)

    def _handle(self, offset: int, value: bytes | None) -> None:
        rec = parse_record(value)
        kind = rec["kind"]
        if kind in ("CHUNK", "MANIFEST"):
            if self.caught_up.is_set() and rec["version"] != self.loaded:
                self.gaps.open(rec["version"])
            done = self.assembler.add(rec)
            if done is None:
                return
            if done in self.assembler.refused:
                self._refuse(done, self.assembler.refused[done], offset)
            else:
                self._set_target(done)
                self.log.info("model assembled", version=done, offset=offset)
        elif kind == "ROLLBACK":
            check_rollback(rec, self.assembler.signing_key)
            version = rec["version"]
            self.refused.pop(version, None)
            self._set_target(version)
            reason = rec["payload"].get("reason")
            self.log.info("rollback requested", version=version, offset=offset,
                          reason=reason if isinstance(reason, str) else None)

    def _set_target(self, version: str) -> None:
        self.target = version
        if not self._history or self._history[-1] != version:
            self._history.append(version)

    def _refuse(self, version: str, reason: str, offset: int | None = None) -> None:
        self.refused.pop(version, None)
        self.refused[version] = reason
        while len(self.refused) > 64:
            self.refused.popitem(last=False)
        self.window_open_at = None
        if self.gaps.version == version:
            self.gaps.close()
        self._report_asked += 1
        self.log.error("model refused; the current model keeps serving", version=version, reason=reason,
                       offset=offset)
        if version == self.target or self.target is None:
            self.target = self._fallback()

    def _fallback(self) -> str | None:
        """The newest earlier target that is still good: served already, or held and not refused."""
        for version in reversed(self._history):
            if version not in self.refused and (version == self.loaded or version in self.assembler.complete):
                return version
        return self.loaded

    def _load(self, version: str) -> None:
        files = self.assembler.complete.get(version)
        manifest = self.assembler.manifests.get(version)
        if files is None or manifest is None:
            self._refuse(version, "artifact is incomplete or no longer held (chunks missing)")
            return
        started = time.monotonic()
        self.window_open_at = started  # the worker measures its loop gaps from here (see GapWatch)
        self.gaps.open(version)
        self.gaps.phase("preparing")
        try:
            self.last_prepare = {}
            config = getattr(self.engine, "config", None)
            if self.child_prepare and hasattr(config, "index_config"):
                prepared = self._prepare_in_child(manifest, files, config)
            else:   # an engine without an EngineConfig (tests): in this thread
                prepared = self.engine.prepare_model(decode_artifact(manifest, files))
        except Exception as exc:  # noqa: BLE001 - whatever fails to decode or prepare is refused, not fatal
            reason = str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {exc}"
            self.assembler.forget(version, reason)
            self._refuse(version, reason)
            return
        self.gaps.phase("prepared")
        with self._lock:
            self._pending = (version, prepared)
        self.loaded = version
        self.log.info("model prepared", version=version, items=manifest.item_count, dim=manifest.dim,
                      index=getattr(prepared, "index_source", None),
                      index_version=getattr(prepared, "index_version", None), **self.last_prepare,
                      seconds=round(time.monotonic() - started, 3))

    def _prepare_in_child(self, manifest: Manifest, files: Mapping[str, bytes], config: Any) -> Any:
        """Verify and prepare in a child process (``models.serving.prepfiles``): the artifact goes to a
        local directory, the child checks every checksum and value and writes numpy and faiss files, and
        this thread maps them (no pickle; the lock is held for the id tuple and dict only)."""
        work = Path(tempfile.mkdtemp(prefix=f"streamrec-model-{manifest.version[:40]}-"))
        try:
            src, out = work / "artifact", work / "prepared"
            src.mkdir()
            for name, data in files.items():
                (src / name).write_bytes(data)
            (src / MANIFEST).write_text(manifest.to_json())
            args = {**asdict(config.index_config()), "n_cold_start": config.k_cold_start, "seed": config.seed,
                    "nice": PREPARE_NICE}
            proc = subprocess.Popen([sys.executable, "-m", "streamrec.models.serving.prepfiles", str(src), str(out),
                                     json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + self.prepare_timeout_s
            while proc.poll() is None:
                if self.stop_event.is_set() or time.monotonic() > deadline:
                    proc.kill()
                    proc.wait(10)
                    raise ArtifactError("preparation stopped" if self.stop_event.is_set() else
                                        f"preparing took over {self.prepare_timeout_s:.0f} s; killed")
                time.sleep(0.02)
            _, err = proc.communicate()
            if proc.returncode != 0:
                lines = err.decode(errors="replace").strip().splitlines()
                raise ArtifactError((lines[-1] if lines else f"prepare exited with {proc.returncode}")[:500])
            child_s = time.monotonic() - (deadline - self.prepare_timeout_s)
            opened = time.monotonic()
            prepared = open_prepared(out, config.index_config())
            self.last_prepare = {"child_s": round(child_s, 3), "open_s": round(time.monotonic() - opened, 3)}
            return prepared
        finally:
            shutil.rmtree(work, ignore_errors=True)   # mapped pages stay valid after the unlink

    def _report(self, state: str = "running") -> None:
        asked = self._report_asked   # read first: a swap meanwhile asks again and gets its own report
        model = getattr(self.engine, "model", None)
        serving = None if state == "stopped" else (self.serving or getattr(model, "version", None))
        report = {"worker": self.worker_id, "group": self.settings.group, "serving": serving, "state": state,
                  "refused": {v: r[:200] for v, r in list(self.refused.items())[-8:]}, "at": int(time.time() * 1000)}
        try:
            self._reporter(report)
        except Exception as exc:  # noqa: BLE001 - a report is informational; serving goes on without it
            self._report_failures += 1
            wait = min(300.0, 5.0 * 2 ** min(self._report_failures - 1, 6))
            self._next_report_at = time.monotonic() + wait
            self.log.warning("serving report not sent; retrying later", error=f"{type(exc).__name__}: {exc}",
                             retry_in_s=wait)
            return
        self._report_sent, self._report_failures = asked, 0

    # --- the worker's thread ---------------------------------------------------------------------
    def swap_if_ready(self) -> None:
        """Called by the worker between two batches."""
        if self._pending is None:
            self.gaps.tick()
            return
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        version, prepared = pending
        started = time.perf_counter()
        # the old model is released on the sync thread: freeing its ids, dict and index is O(items)
        self._retired = getattr(self.engine, "model", None)
        self.engine.swap(prepared)
        self.serving = version
        self.swaps += 1
        self.last_swap_at = time.time()
        self.gaps.tick(swapped=version)
        self._report_asked += 1   # the sync thread sends it: no network call on the hot path
        self.log.info("model swapped", version=version, swap_ms=round((time.perf_counter() - started) * 1000, 2),
                      sync_s=round(time.monotonic() - (self.window_open_at or time.monotonic()), 3))
