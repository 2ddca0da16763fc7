"""``streamrec bench worker``: one worker process on a real broker.

1. Throughput: ``events`` are preloaded, then a worker (with a random base model of ``items`` x ``dim``)
   consumes them; events/s is measured between the first and the last list to reach a subscriber.
2. Latency: a paced producer offers ``rate`` events/s for ``seconds``; latency is the time from handing
   each event to the producer to its recommendation reaching the subscriber.
3. Memory: the worker's peak RSS, with ``users`` distinct users in state at the end.
4. The yardstick (``streamrec/bench/yardstick.py``): the same two phases for a bare kafka-python
   passthrough loop on topics of its own, on the same broker: ``ceiling_events_per_s``,
   ``ratio_to_ceiling`` (the worker's events/s over it) and its latency at the same offered rate
   (``reference.latency_ms``, ``p99_ratio_to_reference``).
5. Bytes per processed event on the recommendations and changelog topics (``bytes_per_event``: as the
   broker stores them; ``payload_bytes_per_event``: key + value as the worker sent them).
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.bench.common import await_count, broker_session, machine, synthetic_events
from streamrec.bench.yardstick import passthrough_phase, percentiles
from streamrec.e2e import Subscriber, free_port, start_subscriber, start_worker, stop_process
from streamrec.models.base.artifact import random_artifact
from streamrec.models.errors import InputError
from streamrec.models.events import Event
from streamrec.producers.replay import Pacing, replay
from streamrec.stream.settings import Settings


def _metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return -1.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


#: seconds the worker may go without processing an event before the bench gives up on it: its start (the
#: model's index built) counts, so this is longer than the yardstick's
WORKER_STALL_S = 180.0


def _wait_events(proc: Any, port: int, n: int, timeout_s: float, log_path: Path) -> None:
    await_count("the worker", lambda: _metric(port, "streamrec_events_total"), n, proc, timeout_s, log_path,
                stall_s=WORKER_STALL_S, every_s=0.1)


def _final_stats(log_path: Path) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if '"worker closing"' in line or '"event": "stats"' in line:
            try:
                last = json.loads(line)
            except ValueError:
                continue
    return last


def workload(kind: str, n: int, users: int, items: int, seed: int) -> list[Event]:
    """``sessions``: the synthetic generator's users browsing in sessions (several events per user close
    together, as in real traffic); ``uniform``: every event from a random user (about one event per user
    per batch: the worst case for per-user coalescing)."""
    if kind == "sessions":
        from streamrec.producers.synthetic import generate

        start = int(time.time() * 1000) - 2 * 86_400_000  # recent, so no event looks absurd or expired
        return generate(users=users, items=items, events=n, seed=seed, start_ms=start, days=1.0)
    if kind == "uniform":
        return synthetic_events(n, users, items, seed=seed)
    raise InputError(f"unknown workload {kind!r}; use sessions or uniform")


def topic_bytes(settings: Settings, topic: str) -> int | None:
    """Bytes of ``topic``'s log segments on the embedded broker (compressed record batches as stored);
    ``None`` for an external cluster."""
    if not settings.embedded:
        return None
    data = settings.broker_path / "data"
    return sum(f.stat().st_size for d in data.glob(f"{topic}-*") if d.name.rpartition("-")[0] == topic
               for f in d.glob("*.log"))


def run(settings: Settings, events: int, items: int, dim: int, rate: float, users: int | None,
        seconds: float, guarantee: str, extra_args: tuple[str, ...] = (), kind: str = "sessions",
        reranker: bool | None = None, yardstick: bool = True) -> dict[str, Any]:
    users = users or max(1, events // 4)
    reranker = settings.reranker if reranker is None else reranker      # the learned reranker on or off
    extra_args = (*extra_args, "--reranker" if reranker else "--no-reranker")
    work = Path(tempfile.mkdtemp(prefix="streamrec-bench-worker-"))
    random_artifact(work / "model", items, dim, seed=0, clusters=max(1, items // 200), version="bench")
    load = workload(kind, events, users, items, seed=1)
    port = free_port()
    with broker_session(settings.replace(guarantee=guarantee, max_batch=5000)) as s:
        replay(load, s, Pacing())
        sub = Subscriber(s, keep_values=False)
        start_subscriber(sub)
        log_path = work / "worker.log"
        t_start = time.monotonic()
        proc = start_worker(s, "--model", str(work / "model"), "--worker-id", "bench-1", "--metrics-port",
                            str(port), "--no-model-sync", *extra_args, log_path=log_path)
        try:
            _wait_events(proc, port, events, 600, log_path)
            startup_and_drain_s = time.monotonic() - t_start
            time.sleep(0.5)
            arrivals = sub.snapshot()
            first, last = min(a.arrival_ms for a in arrivals), max(a.arrival_ms for a in arrivals)
            throughput = events / max((last - first) / 1000, 1e-9)
            # latency at an offered rate
            n_paced = int(rate * seconds)
            paced = workload(kind, n_paced, users, items, seed=2)
            sent_at: dict[str, float] = {}
            mark = len(sub.snapshot())
            offered = replay(paced, s, Pacing("rate", rate), sent_at=sent_at)
            _wait_events(proc, port, events + n_paced, 600, log_path)
            time.sleep(0.5)
            lat = np.array([a.arrival_ms - sent_at[a.trigger_event_id] for a in sub.snapshot()[mark:]
                            if a.trigger_event_id in sent_at])
        finally:
            stop_process(proc)
            sub.stop()
        processed = events + n_paced
        out_bytes = {name: topic_bytes(s, topic) for name, topic in
                     (("recommendations", s.recommendations_topic), ("changelog", s.state_topic()))}
        reference = passthrough_phase(s, load, paced, rate, work) if yardstick else None
    stats = _final_stats(log_path)
    latency = percentiles(lat)
    result: dict[str, Any] = {
        "benchmark": "worker", "workload": kind, "guarantee": guarantee, "events": events, "users": users,
        "items": items, "dim": dim, "events_per_s": round(throughput, 1), "lists_emitted": len(arrivals),
        "startup_and_drain_s": round(startup_and_drain_s, 2),
        "offered_rate": rate, "achieved_offered_rate": round(offered.rate, 1), "latency_samples": int(len(lat)),
        "latency_ms": latency,
        "rss_mb": stats.get("rss_mb"), "users_in_state": stats.get("users"),
        "stage_ms_per_batch": stats.get("stage_ms_per_batch"), "avg_batch": stats.get("avg_batch"),
        "batches": stats.get("batches"), "batch_limit_at_end": stats.get("batch_limit"),
        "ms_per_event_at_end": stats.get("ms_per_event"), "changelog_records": stats.get("changelog_records"),
        "worker_args": list(extra_args), "machine": machine(), "reranker": reranker,
        "online": {k: stats.get(k) for k in ("hit_rate_at_10", "hit_rate_at_20", "window_hit_rate_at_10",
                                             "reranker_active", "reranker_pairs", "reranker_auc", "reranker_logloss")},
        # bytes per processed event on each output topic: as stored by the broker (compressed batches,
        # embedded broker only) and as sent by the worker (key + value)
        "bytes_per_event": {name: (round(b / processed, 1) if b is not None else None)
                            for name, b in out_bytes.items()},
        "payload_bytes_per_event": {name: round(b / max(stats.get("events") or processed, 1), 1)
                                    for name, b in (stats.get("bytes_sent") or {}).items()},
    }
    if reference is not None:
        ceiling = reference["events_per_s"]
        result.update(reference=reference, ceiling_events_per_s=ceiling,
                      ratio_to_ceiling=round(throughput / ceiling, 3) if ceiling > 0 else None,
                      p99_ratio_to_reference=(round(latency["p99"] / reference["latency_ms"]["p99"], 2)
                                              if reference["latency_ms"]["p99"] > 0 else None))
    return result
