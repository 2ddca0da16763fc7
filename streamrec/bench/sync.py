"""``streamrec bench sync``: from publishing a base model to every running worker serving it, and the
longest gap between two processed batches while the workers prepare and swap it in.

The artifacts ship a prebuilt item index built with the serving default, as the trainer's do, so the
figures are those of a production publish (``index_per_worker`` says "shipped" when a worker used it).

Each worker's time from publish to serving is read from its own ``model swapped`` log record (the bench
asks the workers nothing while they sync: a request to ``/metrics`` costs their loops interpreter time).
In the same run it measures the floor of a sync (``yardstick``: reading the artifact's messages raw from
the topic plus deserializing its index) and reports ``ratio.sync_to_yardstick``; each worker's own
``model swap gaps`` record gives the longest loop gap from the first chunk to a second after the swap
beside the median loop interval outside syncs (``ratio.max_gap_to_median_interval``); and the workers'
resident memory with the model served and no users (``empty_rss_mb``), after the run (``rss_mb``, with
``users`` in state) and at peak."""

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
from streamrec.models.base.artifact import INDEX, random_artifact, read_files
from streamrec.models.engine.recommender import EngineConfig
from streamrec.producers.replay import Pacing, replay
from streamrec.stream.modelbus import CHUNK_BYTES, KafkaModelSource, publish
from streamrec.stream.settings import Settings


def _serving(port: int) -> str | None:
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    m = re.search(r'streamrec_model_info\{version="([^"]*)"\} 1', text)
    return m.group(1) if m else None


def _wait(predicate: Any, timeout_s: float, every_s: float = 0.05) -> float | None:
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


def _swapped_after(path: Path, version: str, since_wall: float) -> float | None:
    """Seconds from ``since_wall`` (``time.time()``) to the worker's ``model swapped`` record for ``version``
    (its log's UTC timestamp; the bench and the workers share one clock)."""
    from datetime import datetime

    rec = _log_record(path, "model swapped", version)
    try:
        at = datetime.fromisoformat(str(rec["timestamp"]).replace("Z", "+00:00")).timestamp() if rec else None
    except (KeyError, ValueError):
        return None
    return None if at is None else at - since_wall


def _log_value(path: Path, event: str, key: str, version: str) -> Any:
    rec = _log_record(path, event, version)
    return None if rec is None else rec.get(key)


def _metric(port: int, name: str) -> float | None:
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    m = re.search(rf"^streamrec_{name} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def _rss_mb(pid: int) -> dict[str, float | None]:
    """Resident set of a process now and at its peak (MB), from /proc (None where there is no /proc)."""
    out: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for key, field in (("VmRSS", "rss_mb"), ("VmHWM", "peak_rss_mb")):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        out[field] = round(int(m.group(1)) / 1024, 1) if m else None
    return out


def yardstick(settings: Settings, start: int, end: int, index_bytes: bytes | None) -> dict[str, float | None]:
    """The floor of a sync: the seconds to read the artifact's messages raw (no decoding) from the topic,
    offsets ``start`` to ``end``, and to deserialize its index from bytes."""
    from streamrec.models.base.index import load_index

    t0 = time.monotonic()
    source = KafkaModelSource(settings, start)
    try:
        n, deadline = 0, time.monotonic() + 120
        while source.position() < end and time.monotonic() < deadline:
            n += len(source.poll(200))
    finally:
        source.close()
    read_s = time.monotonic() - t0
    t0 = time.monotonic()
    if index_bytes is not None:
        load_index(index_bytes, "yardstick")
    return {"raw_read_s": round(read_s, 3), "raw_messages": n,
            "index_load_s": round(time.monotonic() - t0, 3) if index_bytes is not None else None}


def run(settings: Settings, items: int, dim: int, workers: int, rate: float,
        users: int = 10_000) -> dict[str, Any]:
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
        events = synthetic_events(int(rate * 25), users=users, items=items, seed=3)
        stop = threading.Event()
        producer = threading.Thread(target=replay, args=(events, s, Pacing("rate", rate)),
                                    kwargs={"stop": stop}, daemon=True)
        try:
            if _wait(lambda: all(_serving(p) == "sync-a" for p in ports), 180) is None:
                raise RuntimeError(f"workers did not load the first model; see {work}")
            empty = [_rss_mb(proc.pid) for proc in procs]   # model a served, no user in state yet
            producer.start()
            time.sleep(3.0)  # batches flowing at the offered rate before the sync
            manifest, files = read_files(work / "b")
            probe = KafkaModelSource(s, 0)
            try:
                start_offset = probe.end_offset()
            finally:
                probe.close()
            t0, t0_wall = time.monotonic(), time.time()
            publish_n = publish(s, manifest, files)
            publish_s = time.monotonic() - t0
            # each worker's own "model swapped" record says when it served the new model: nothing asks the
            # workers anything while they sync (polling /metrics every few ms costs their loops GIL time)
            _wait(lambda: all(_log_record(lg, "model swapped", "sync-b") for lg in logs), 120)
            per_worker = [_swapped_after(lg, "sync-b", t0_wall) for lg in logs]
            # a worker whose /metrics names another model does not serve it (one that does not answer within
            # 2 s on a loaded machine is taken at its log's word)
            per_worker = [t if t is not None and _serving(p) in (None, "sync-b") else None
                          for t, p in zip(per_worker, ports, strict=True)]
            gaps_ready = _wait(lambda: all(_log_value(lg, "model sync window", "max_batch_gap_ms", "sync-b")
                                           is not None for lg in logs), 30)
            gaps = [_log_value(lg, "model sync window", "max_batch_gap_ms", "sync-b") for lg in logs]
            prepare = [_log_value(lg, "model prepared", "seconds", "sync-b") for lg in logs]
            sources = [_log_value(lg, "model prepared", "index", "sync-b") for lg in logs]
            _wait(lambda: all(_log_record(lg, "model swap gaps", "sync-b") is not None for lg in logs), 10)
            swap_gaps = [_log_record(lg, "model swap gaps", "sync-b") or {} for lg in logs]
            floor = yardstick(s, start_offset, start_offset + publish_n, files.get(INDEX))
            stop.set()
            if producer.is_alive():
                producer.join(10)
            time.sleep(1.0)
            memory = [{**_rss_mb(proc.pid), "users": _metric(p, "state_users"), "empty_rss_mb": e["rss_mb"]}
                      for proc, p, e in zip(procs, ports, empty, strict=True)]
        finally:
            stop.set()
            if producer.is_alive():
                producer.join(10)
            for proc in procs:
                stop_process(proc)
    done = [t for t in per_worker if t is not None]
    sync_s = round(max(done), 3) if len(done) == workers else None
    # from the publish's last acknowledgement (the whole artifact is on the topic, where the yardstick starts
    # reading it) rather than from its first send: sending 50 MB takes the publisher seconds of its own
    after_publish = None if sync_s is None else round(sync_s - publish_s, 3)
    floor_s = floor["raw_read_s"] + (floor["index_load_s"] or 0.0) if floor["raw_read_s"] is not None else None
    gap_ms = [g.get("max_gap_ms") for g in swap_gaps]
    medians = [g.get("median_interval_ms") for g in swap_gaps]
    return {
        "benchmark": "sync", "items": items, "dim": dim, "workers": workers, "offered_rate": rate,
        "sync_s": sync_s, "sync_after_publish_s": after_publish,
        "sync_s_per_worker": [None if t is None else round(t, 3) for t in per_worker],
        "publish_s": round(publish_s, 3), "chunks": sum(max(1, -(-len(d) // CHUNK_BYTES)) for d in files.values()) + 1,
        "index_build_s": manifest.metrics.get("index_build_s"), "index": manifest.index,
        "artifact_mb": round(sum(len(d) for d in files.values()) / 1e6, 2),
        "prepare_s_per_worker": prepare, "index_per_worker": sources,
        "max_batch_gap_ms": max((g for g in gaps if g is not None), default=None) if gaps_ready is not None else None,
        "max_batch_gap_ms_per_worker": gaps,
        "yardstick": {**floor, "total_s": None if floor_s is None else round(floor_s, 3)},
        "ratio": {
            "sync_to_yardstick": None if sync_s is None or not floor_s else round(sync_s / floor_s, 2),
            "sync_after_publish_to_yardstick": None if after_publish is None or not floor_s
            else round(after_publish / floor_s, 2),
            "max_gap_to_median_interval": max((g.get("ratio_to_median") or 0.0 for g in swap_gaps), default=None),
            "max_gap_to_p99_interval": max((g.get("ratio_to_p99") or 0.0 for g in swap_gaps), default=None)},
        "loop_intervals_outside_sync_per_worker": [
            {k: g.get(k) for k in ("median_interval_ms", "p99_interval_ms", "max_interval_ms", "baseline_intervals")}
            for g in swap_gaps],
        "prepare_split_per_worker": [
            {k: _log_value(lg, "model prepared", k, "sync-b") for k in ("child_s", "open_s")} for lg in logs],
        "swap_gap_ms_per_worker": gap_ms, "swap_gap_phase_per_worker": [g.get("max_gap_phase") for g in swap_gaps],
        # the loop thread's own CPU time within that gap: near the gap, the loop was busy (its own work); far
        # below it, the loop waited (for the interpreter lock or a core)
        "swap_gap_loop_cpu_ms_per_worker": [g.get("max_gap_loop_cpu_ms") for g in swap_gaps],
        # and its time runnable but without a core (the rest of the gap it was blocked: lock, broker, poll)
        "swap_gap_loop_runqueue_ms_per_worker": [g.get("max_gap_loop_runqueue_ms") for g in swap_gaps],
        "median_batch_interval_ms_per_worker": medians,
        "memory_per_worker": memory, "users": users, "machine": machine(),
    }
