"""``streamrec bench sync``: from publishing a base model to every running worker serving it, and the
longest gap between two processed batches while the workers prepare and swap it in.

The artifacts ship a prebuilt item index built with the serving default, as the trainer's do, so the
figures are those of a production publish (``index_per_worker`` says "shipped" when a worker used it)."""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from streamrec.bench.common import broker_session, machine, synthetic_events
from streamrec.e2e import free_port, start_worker, stop_process
from streamrec.models.base.artifact import random_artifact, read_files
from streamrec.models.engine.recommender import EngineConfig
from streamrec.producers.replay import Pacing, replay
from streamrec.stream.modelbus import CHUNK_BYTES, publish
from streamrec.stream.settings import Settings


def _serving(port: int) -> str | None:
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    m = re.search(r'streamrec_model_info\{version="([^"]*)"\} 1', text)
    return m.group(1) if m else None


def _wait(predicate: Any, timeout_s: float, every_s: float = 0.005) -> float | None:
    """Seconds until ``predicate()`` holds, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(every_s)
    return None


def _log_record(path: Path, event: str, version: str) -> dict[str, Any] | None:
    """The last log record ``event`` about ``version`` (an older model's record must not stand in for it)."""
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if f'"{event}"' in line:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("version") == version:
                return dict(rec)
    return None


def _log_value(path: Path, event: str, key: str, version: str) -> Any:
    rec = _log_record(path, event, version)
    return None if rec is None else rec.get(key)


def run(settings: Settings, items: int, dim: int, workers: int, rate: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="streamrec-bench-sync-"))
    serving_index = EngineConfig().index_config()   # shipped prebuilt, as the trainer does (write_result)
    for name, seed in (("a", 1), ("b", 2)):
        random_artifact(work / name, items, dim, seed=seed, clusters=max(1, items // 200), version=f"sync-{name}",
                        with_index=serving_index)
    ports = [free_port() for _ in range(workers)]
    logs = [work / f"worker-{k}.log" for k in range(workers)]
    with broker_session(settings) as s:
        publish(s, *read_files(work / "a"))
        procs = [start_worker(s, "--worker-id", f"sync-{k}", "--metrics-port", str(p), log_path=logs[k])
                 for k, p in enumerate(ports)]
        events = synthetic_events(int(rate * 25), users=2000, items=items, seed=3)
        stop = threading.Event()
        producer = threading.Thread(target=replay, args=(events, s, Pacing("rate", rate)),
                                    kwargs={"stop": stop}, daemon=True)
        try:
            if _wait(lambda: all(_serving(p) == "sync-a" for p in ports), 180) is None:
                raise RuntimeError(f"workers did not load the first model; see {work}")
            producer.start()
            time.sleep(3.0)  # batches flowing at the offered rate before the sync
            manifest, files = read_files(work / "b")
            t0 = time.monotonic()
            publish(s, manifest, files)
            publish_s = time.monotonic() - t0
            per_worker: list[float | None] = []
            for p in ports:
                took = _wait(lambda p=p: _serving(p) == "sync-b", 120)
                per_worker.append(None if took is None else time.monotonic() - t0)
            gaps_ready = _wait(lambda: all(_log_value(lg, "model sync window", "max_batch_gap_ms", "sync-b")
                                           is not None for lg in logs), 30)
            gaps = [_log_value(lg, "model sync window", "max_batch_gap_ms", "sync-b") for lg in logs]
            prepare = [_log_value(lg, "model prepared", "seconds", "sync-b") for lg in logs]
            sources = [_log_value(lg, "model prepared", "index", "sync-b") for lg in logs]
        finally:
            stop.set()
            if producer.is_alive():
                producer.join(10)
            for proc in procs:
                stop_process(proc)
    done = [t for t in per_worker if t is not None]
    return {
        "benchmark": "sync", "items": items, "dim": dim, "workers": workers, "offered_rate": rate,
        "sync_s": round(max(done), 3) if len(done) == workers else None,
        "sync_s_per_worker": [None if t is None else round(t, 3) for t in per_worker],
        "publish_s": round(publish_s, 3), "chunks": sum(max(1, -(-len(d) // CHUNK_BYTES)) for d in files.values()) + 1,
        "index_build_s": manifest.metrics.get("index_build_s"), "index": manifest.index,
        "artifact_mb": round(sum(len(d) for d in files.values()) / 1e6, 2),
        "prepare_s_per_worker": prepare, "index_per_worker": sources,
        "max_batch_gap_ms": max((g for g in gaps if g is not None), default=None) if gaps_ready is not None else None,
        "max_batch_gap_ms_per_worker": gaps, "machine": machine(),
    }
