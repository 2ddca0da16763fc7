"""Worker statistics: throughput, batch sizes, time per stage, event-to-emit latency percentiles, lag,
state size and dead letters. The single source of the worker's figures: the loop records into
:class:`WorkerStats` only, and one :meth:`WorkerStats.snapshot` feeds both the ``stats`` log line (every
``stats_interval_s``) and Prometheus (``WorkerMetrics.publish``, every second), so the two always agree."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class LatencyWindow:
    """The most recent ``size`` latencies (ms) in a ring buffer."""

    def __init__(self, size: int = 20000) -> None:
        self.buf = np.zeros(size, dtype=np.float64)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)[-len(self.buf):]
        self.buf[(self.n + np.arange(len(values))) % len(self.buf)] = values
        self.n += len(values)

    def percentiles(self) -> dict[str, float]:
        data = self.buf[: min(self.n, len(self.buf))]
        if not len(data):
            return {}
        p50, p90, p99 = np.percentile(data, [50, 90, 99])
        return {"p50": round(float(p50), 2), "p90": round(float(p90), 2), "p99": round(float(p99), 2),
                "max": round(float(data.max()), 2)}


@dataclass
class WorkerStats:
    events: int = 0
    batches: int = 0
    emitted: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    restored_records: int = 0
    rebalances: int = 0
    changelog_records: int = 0   # state records sent (at most one per user per commit)
    stage_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    lag: dict[int, int] = field(default_factory=dict)
    bytes_sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # key + value, per output
    started: float = field(default_factory=time.monotonic)
    _last_report: float = field(default_factory=time.monotonic)
    _last_events: int = 0

    def add_stage(self, name: str, seconds: float) -> None:
        self.stage_s[name] += seconds

    def record_batch(self, events: int, emitted: int, dead_letters: int, latencies_ms: np.ndarray,
                     stages: dict[str, float]) -> None:
        """One processed batch (duplicates are counted as the engine reports them, in ``duplicates``)."""
        self.events += events
        self.batches += 1
        self.emitted += emitted
        self.dead_letters += dead_letters
        self.latency.extend(latencies_ms)
        for name, secs in stages.items():
            self.stage_s[name] += secs

    def snapshot(self, extra: dict[str, Any] | None = None, reset_rate: bool = True) -> dict[str, Any]:
        """Every figure as one dict; ``events_per_s`` is over the time since the last snapshot taken with
        ``reset_rate`` (the log line's interval)."""
        now = time.monotonic()
        window = max(now - self._last_report, 1e-9)
        out: dict[str, Any] = {
            "events": self.events, "batches": self.batches, "emitted": self.emitted,
            "events_per_s": round((self.events - self._last_events) / window, 1),
            "avg_batch": round(self.events / self.batches, 1) if self.batches else 0,
            "dead_letters": self.dead_letters, "duplicates": self.duplicates, "rebalances": self.rebalances,
            "restored_records": self.restored_records, "changelog_records": self.changelog_records,
            "stage_ms_per_batch": {k: round(v * 1000 / max(self.batches, 1), 3) for k, v in self.stage_s.items()},
            "latency_ms": self.latency.percentiles(), "lag": dict(self.lag),
            "bytes_sent": dict(self.bytes_sent),
        }
        if extra:
            out.update(extra)
        if reset_rate:
            self._last_report, self._last_events = now, self.events
        return out
