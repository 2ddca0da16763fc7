"""What every benchmark shares: a broker session with fresh topics, machine facts, JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from streamrec.e2e import broker_ports
from streamrec.models.events import Event, EventType
from streamrec.stream import broker
from streamrec.stream.settings import Settings
from streamrec.stream.topics import ensure_topics, topic_specs


@contextlib.contextmanager
def broker_session(settings: Settings, partitions: int | None = None) -> Iterator[Settings]:
    """Settings with fresh, uniquely named topics on a running broker. With the embedded default and no
    broker running, a throwaway broker is started on free ports for the benchmark and stopped after it."""
    started: Settings | None = None
    if settings.embedded and not broker.status(settings).running:
        started = settings.replace(**broker_ports(),
                                   broker_dir=tempfile.mkdtemp(prefix="streamrec-bench-broker-"))
        broker.start(started, quiet=True)
        settings = started
    tag = uuid.uuid4().hex[:8]
    s = settings.replace(events_topic=f"bench-events-{tag}", recommendations_topic=f"bench-recs-{tag}",
                         dlq_topic=f"bench-dlq-{tag}", model_topic=f"bench-models-{tag}", group=f"bench-{tag}",
                         events_partitions=partitions or settings.events_partitions,
                         recommendations_partitions=partitions or settings.recommendations_partitions)
    ensure_topics(s, topic_specs(s))
    try:
        yield s
    finally:
        if started is not None:
            broker.stop(started)


#: seconds a process under measurement may go without its count moving before a benchmark gives up on it
STALL_S = 60.0


def await_count(what: str, count: Callable[[], int | float], target: int, proc: Any, timeout_s: float,
                log: Path, stall_s: float = STALL_S, every_s: float = 0.05) -> None:
    """Return once ``count()`` (events ``what`` has processed: the process ``proc``) reaches ``target``.
    Raise a ``RuntimeError`` naming ``log`` (and quoting its last lines) as soon as ``proc`` has exited, when
    the count has not moved for ``stall_s``, or after ``timeout_s`` in all: a benchmark never waits for a
    count that cannot come."""
    started = moved_at = time.monotonic()
    last: float = -1
    while True:
        n = count()
        if n >= target:
            return
        now = time.monotonic()
        if n != last:
            last, moved_at = n, now
        why = None
        if proc.poll() is not None:
            n = count()   # a final count written on the way out
            if n >= target:
                return
            why = f"exited with status {proc.returncode}"
        elif now - moved_at > stall_s:
            why = f"made no progress for {stall_s:g} s"
        elif now - started > timeout_s:
            why = f"did not finish in {timeout_s:g} s"
        if why is not None:
            raise RuntimeError(f"{what} {why} at {max(n, 0):,.0f} of {target:,} events; see {log}{_tail(log)}")
        time.sleep(every_s)


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(line[:300] for line in text)) if text else ""


def machine() -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def rss_mb() -> float:
    """Peak resident memory of this process (MiB), its own (``VmHWM``), not a parent's inherited peak."""
    from streamrec.consumers.procmem import resident_mb

    return resident_mb()[1]


def synthetic_events(n: int, users: int, items: int, seed: int = 0, t0_ms: int | None = None) -> list[Event]:
    """Simple fast events for throughput benchmarks (Zipf-like items, uniform users)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, n)
    it = np.minimum(rng.zipf(1.2, n) - 1, items - 1)
    kinds = (EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE)
    types = [kinds[k] for k in rng.choice(len(kinds), n, p=[0.5, 0.35, 0.1, 0.05])]
    t0 = int(time.time() * 1000) - n if t0_ms is None else t0_ms
    return [Event(f"b{seed}-{k}", f"u{u[k]}", f"i{it[k]}", types[k], t0 + k) for k in range(n)]


def write_json(result: dict[str, Any], path: str | None) -> None:
    text = json.dumps(result, indent=2, sort_keys=True)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    print(text)
