"""Online quality per window and drift detection on the stream of hits.

Every event of a user who was shown a list is a test of that list (test, then train): a hit at ``k`` when
the event's item is among its first ``k`` items. :class:`DriftMonitor` keeps hit rate at 10 and 20 and
NDCG at 10 per tumbling window of ``window`` evaluated events, and feeds each hit at 10 (0 or 1) to a river
drift detector: ``ADWIN`` (default; adaptive window, no threshold to tune) or ``PageHinkley`` (``mode="down"``).

Only a *drop* is a drift: ADWIN also fires when quality rises (a new model doing better), so a detection
counts only when the detector's mean fell across it. A drop is reported through ``on_drift`` (a callback;
the worker publishes a retrain request) unless it comes within the cool-down of the last report: at least
``cooldown_events`` evaluated events *and* ``cooldown_ms`` of event time must have passed, so the several
detections of one shift make one request. Nothing is reported in the first ``min_events`` events (the
start of a stream, when lists are still warming up).

>>> signals = []
>>> mon = DriftMonitor(DriftConfig(window=500, cooldown_events=2_000, cooldown_ms=0, min_events=500),
...                    on_drift=signals.append)
>>> rng = __import__("numpy").random.default_rng(0)
>>> for k in range(6_000):                       # a hit rate of 0.6, then 0.1 from event 3,000 on
...     _ = mon.observe(int(rng.random() < (0.6 if k < 3_000 else 0.1)) - 1, ts_ms=k * 1_000)
>>> len(signals), 3_000 < signals[0].at_event < 3_300, mon.stats()["drift_suppressed"] >= 0
(1, True, True)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamrec.models.errors import ConfigError

DETECTORS = ("adwin", "page_hinkley")


@dataclass(frozen=True)
class DriftConfig:
    """Detector and windows. ``delta``: ADWIN's confidence (smaller: fewer, later detections);
    ``threshold``: Page-Hinkley's alarm level."""

    detector: str = "adwin"
    delta: float = 0.002
    threshold: float = 50.0
    window: int = 2_000
    history: int = 24
    cooldown_events: int = 10_000
    cooldown_ms: int = 3_600_000
    min_events: int = 2_000

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ConfigError(f"drift detector is {self.detector!r}; use one of {', '.join(DETECTORS)} "
                              "(or turn drift detection off)")
        if self.window < 1 or self.history < 1 or not 0 < self.delta < 1 or self.threshold <= 0:
            raise ConfigError("drift window and history must be >= 1, delta in (0, 1), threshold > 0")
        if min(self.cooldown_events, self.cooldown_ms, self.min_events) < 0:
            raise ConfigError("drift cool-downs and min_events must not be negative")


@dataclass(frozen=True)
class DriftSignal:
    """A detected drop in online quality (what the worker sends with its retrain request)."""

    at_event: int              # evaluated events so far
    ts_ms: int                 # event time of the event that triggered it
    detector: str
    mean_before: float         # the detector's hit-rate estimate before and after the change
    mean_after: float
    window_hit_rate_at_10: float | None   # the last complete window, if any

    def reason(self) -> dict[str, Any]:
        return {"reason": "online hit rate dropped", "detector": self.detector, "at_event": self.at_event,
                "ts_ms": self.ts_ms, "mean_before": round(self.mean_before, 4),
                "mean_after": round(self.mean_after, 4), "window_hit_rate_at_10": self.window_hit_rate_at_10}


def make_detector(config: DriftConfig) -> Any:
    # imported here: river.drift imports scipy.stats, which the worker only needs with drift detection on
    from river import drift

    if config.detector == "page_hinkley":
        # delta: the drop per event that is tolerated; 0.05 keeps a Bernoulli hit stream quiet
        return drift.PageHinkley(min_instances=min(config.min_events, 1_000) or 30, delta=0.05,
                                 threshold=config.threshold, mode="down")
    return drift.ADWIN(delta=config.delta)


class DriftMonitor:
    """Windowed hit rates and NDCG, and a drift detector with a cool-down (see the module docstring)."""

    def __init__(self, config: DriftConfig | None = None,
                 on_drift: Callable[[DriftSignal], None] | None = None) -> None:
        self.config = config or DriftConfig()
        self.on_drift = on_drift
        self.detector = make_detector(self.config)
        self.windows: deque[dict[str, float]] = deque(maxlen=self.config.history)
        self.evaluated = 0
        self.detections = 0        # every drop the detector saw
        self.signals = 0           # drops reported through on_drift
        self.suppressed = 0        # drops within the cool-down
        self._last_signal: tuple[int, int] | None = None   # (evaluated, ts_ms)
        self._win = [0, 0, 0, 0.0]                          # events, hits@10, hits@20, ndcg@10
        self._mean = 0.0                                    # running mean for detectors without one

    def observe(self, position: int, ts_ms: int) -> DriftSignal | None:
        """One evaluated event: ``position`` of its item in the user's last list (-1: not in it)."""
        cfg = self.config
        self.evaluated += 1
        win = self._win
        win[0] += 1
        hit = 0 <= position < 10
        if hit:
            win[1] += 1
            win[3] += 1.0 / math.log2(position + 2)
        if 0 <= position < 20:
            win[2] += 1
        if win[0] >= cfg.window:
            self.windows.append({"events": win[0], "hit_rate_at_10": win[1] / win[0],
                                 "hit_rate_at_20": win[2] / win[0], "ndcg_at_10": win[3] / win[0]})
            self._win = [0, 0, 0, 0.0]
        det = self.detector
        before = self._estimate()
        det.update(1.0 if hit else 0.0)
        self._mean += ((1.0 if hit else 0.0) - self._mean) / self.evaluated
        if not det.drift_detected:
            return None
        after = self._estimate()
        if cfg.detector == "adwin" and after >= before:
            return None                      # quality went up: not a reason to retrain
        self.detections += 1
        if self.evaluated < cfg.min_events:
            return None
        last = self._last_signal
        if last is not None and (self.evaluated - last[0] < cfg.cooldown_events or ts_ms - last[1] < cfg.cooldown_ms):
            self.suppressed += 1
            return None
        self._last_signal = (self.evaluated, ts_ms)
        self.signals += 1
        w = self.windows[-1]["hit_rate_at_10"] if self.windows else None
        signal = DriftSignal(self.evaluated, ts_ms, cfg.detector, before, after, None if w is None else round(w, 4))
        if self.on_drift is not None:
            self.on_drift(signal)
        return signal

    def _estimate(self) -> float:
        est = getattr(self.detector, "estimation", None)
        return float(est) if est is not None else self._mean

    def stats(self) -> dict[str, Any]:
        last = self.windows[-1] if self.windows else None
        cur = self._win
        return {"online_windows": len(self.windows),
                "window_hit_rate_at_10": None if last is None else round(last["hit_rate_at_10"], 4),
                "window_hit_rate_at_20": None if last is None else round(last["hit_rate_at_20"], 4),
                "window_ndcg_at_10": None if last is None else round(last["ndcg_at_10"], 4),
                "current_window_events": cur[0],
                "drift_detector": self.config.detector, "drift_detections": self.detections,
                "drift_signals": self.signals, "drift_suppressed": self.suppressed}
