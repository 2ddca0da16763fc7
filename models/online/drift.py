"""Online quality per window and drift detection on the stream of hits.

Every event of a user who was shown a list is a test of that list (test, then train): a hit at ``k`` when
the event's item is among its first ``k`` items. :class:`DriftMonitor` keeps hit rate at 10 and 20 and
NDCG at 10 per tumbling window of ``window`` evaluated events, and feeds each hit at 10 (0 or 1) to a drift
detector: :class:`Adwin` (default; adaptive window, no threshold to tune) or :class:`PageHinkley`
(``mode="down"``). Both compute exactly what river's ``drift.ADWIN`` and ``drift.PageHinkley`` compute
(``tests/unit/test_drift.py`` compares them output for output on seeded streams); they are implemented here
so that their whole state is plain data: :meth:`DriftMonitor.to_state` is JSON (river's ADWIN keeps its
window in a compiled object that only pickle could save), and :meth:`DriftMonitor.load_state` checks every
field before it installs anything.

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
from streamrec.models.online.plainstate import MAX_INT, Fields, StateError, check_float, check_int

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


class Adwin:
    """ADWIN (Bifet & Gavaldà, 2007), the same arithmetic as river's ``drift.ADWIN`` (``clock=32``,
    ``max_buckets=5``, ``min_window_length=5``, ``grace_period=10``; tested output for output against it),
    with its whole state as plain data (:meth:`to_state` / :meth:`from_state`). Like river's, it starts
    an empty window on the update after a detection.

    ``rows[i]`` holds up to ``max_buckets`` buckets of ``2**i`` values each, oldest first, as
    ``[sum, variance]`` pairs; a change is looked for every ``clock`` updates at every cut of the window.
    """

    KIND = "adwin"

    def __init__(self, delta: float = 0.002, clock: int = 32, max_buckets: int = 5, min_window_length: int = 5,
                 grace_period: int = 10) -> None:
        self.delta, self.clock, self.max_buckets = float(delta), int(clock), int(max_buckets)
        self.min_window_length, self.grace_period = int(min_window_length), int(grace_period)
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        self.rows: list[list[list[float]]] = [[]]
        self.total = 0.0
        self.variance = 0.0
        self.width = 0.0
        self.tick = 0

    def params(self) -> dict[str, Any]:
        return {"delta": self.delta, "clock": self.clock, "max_buckets": self.max_buckets,
                "min_window_length": self.min_window_length, "grace_period": self.grace_period}

    @property
    def estimation(self) -> float:
        """Mean of the values in the window (0 when it is empty)."""
        return self.total / self.width if self.width else 0.0

    def update(self, x: float) -> None:
        if self.drift_detected:
            self._reset()
        self._insert(float(x))
        self.drift_detected = self._detect()

    def _insert(self, value: float) -> None:
        self.rows[0].append([value, 0.0])
        self.width += 1.0
        if self.width > 1.0:
            d = value - self.total / (self.width - 1.0)
            self.variance += (self.width - 1.0) * d * d / self.width
        self.total += value
        rows, cap, i = self.rows, self.max_buckets, 0
        while len(rows[i]) == cap + 1:          # merge the two oldest buckets of a full row into the next row
            n = float(1 << i)
            (t0, v0), (t1, v1) = rows[i][0], rows[i][1]
            m0, m1 = t0 / n, t1 / n
            if i + 1 == len(rows):
                rows.append([])
            rows[i + 1].append([t0 + t1, v0 + v1 + n * 0.5 * (m0 - m1) * (m0 - m1)])
            del rows[i][:2]
            if len(rows[i + 1]) <= cap:
                break
            i += 1

    def _drop_oldest(self) -> None:
        last = len(self.rows) - 1
        n = float(1 << last)
        u, v = self.rows[last][0]
        mu = u / n
        self.width -= n
        self.total -= u
        mu_w = self.total / self.width
        self.variance -= v + n * self.width * (mu - mu_w) * (mu - mu_w) / (n + self.width)
        del self.rows[last][0]
        if not self.rows[last]:
            self.rows.pop()

    def _cut(self, n0: float, n1: float, delta_mean: float) -> bool:
        dp = math.log(2.0 * math.log(self.width) / self.delta)
        m = 1.0 / (n0 - self.min_window_length + 1.0) + 1.0 / (n1 - self.min_window_length + 1.0)
        v = 2.0 * m * (self.variance / self.width) * dp
        return abs(delta_mean) > (math.sqrt(v) if v >= 0 else math.nan) + 2.0 / 3.0 * dp * m

    def _detect(self) -> bool:
        self.tick += 1
        if self.tick % self.clock or not self.width > self.grace_period:
            return False
        change, again, mwl = False, True, self.min_window_length
        while again:
            again = False
            n0, n1, u0, u1 = 0.0, self.width, 0.0, self.total
            for i in range(len(self.rows) - 1, -1, -1):
                size, row = float(1 << i), self.rows[i]
                last = len(row) - 1
                for k, (t, _) in enumerate(row):
                    n0 += size
                    n1 -= size
                    u0 += t
                    u1 -= t
                    if i == 0 and k == last:
                        break
                    if n1 >= mwl and n0 >= mwl and self._cut(n0, n1, u0 / n0 - u1 / n1):
                        again = change = True
                        break
                if again:
                    self._drop_oldest()
                    break
        return change

    def to_state(self) -> dict[str, Any]:
        return {**self.params(), "rows": self.rows, "total": self.total, "variance": self.variance,
                "width": self.width, "tick": self.tick, "drift_detected": self.drift_detected}

    @classmethod
    def from_state(cls, f: Fields) -> Adwin:
        f.only(["delta", "clock", "max_buckets", "min_window_length", "grace_period", "rows", "total",
                "variance", "width", "tick", "drift_detected"])
        det = cls(f.number("delta", 1e-12, 1.0), f.integer("clock", 1, 1 << 20), f.integer("max_buckets", 1, 64),
                  f.integer("min_window_length", 1, 1 << 20), f.integer("grace_period", 0, 1 << 40))
        rows = f.array("rows", 63)
        if not rows:
            raise StateError(f"{f.where}.rows must hold at least one row")
        width = 0
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) > det.max_buckets or (i and not row):
                raise StateError(f"{f.where}.rows[{i}] must be a list of 1 .. {det.max_buckets} buckets")
            for k, b in enumerate(row):
                where = f"{f.where}.rows[{i}][{k}]"
                if not isinstance(b, list) or len(b) != 2:
                    raise StateError(f"{where} must be a [sum, variance] pair")
                b[:] = [check_float(b[0], where), check_float(b[1], where)]
            width += len(row) << i
        det.rows = rows
        det.width = f.number("width", 0.0)
        if det.width != width:
            raise StateError(f"{f.where}.width is {det.width}, but the buckets hold {width} values")
        det.total, det.variance = f.number("total"), f.number("variance")
        det.tick, det.drift_detected = f.integer("tick"), f.flag("drift_detected")
        return det


class PageHinkley:
    """The Page-Hinkley test, the same arithmetic as river's ``drift.PageHinkley`` (tested output for
    output against it), with its state as plain data."""

    KIND = "page_hinkley"

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001, mode: str = "both") -> None:
        if mode not in ("up", "down", "both"):
            raise ConfigError(f"Page-Hinkley mode is {mode!r}; use up, down or both")
        self.min_instances, self.delta, self.threshold = int(min_instances), float(delta), float(threshold)
        self.alpha, self.mode = float(alpha), mode
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        self.n, self.mean = 0.0, 0.0
        self.sum_increase, self.sum_decrease = 0.0, 0.0
        self.min_increase, self.max_decrease = math.inf, -1.0

    def params(self) -> dict[str, Any]:
        return {"min_instances": self.min_instances, "delta": self.delta, "threshold": self.threshold,
                "alpha": self.alpha, "mode": self.mode}

    def update(self, x: float) -> None:
        if self.drift_detected:
            self._reset()
            self.drift_detected = False
        self.n += 1.0
        self.mean += (1.0 / self.n) * (x - self.mean)
        dev = x - self.mean
        self.sum_increase = self.alpha * self.sum_increase + dev - self.delta
        self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta
        if self.sum_increase < self.min_increase:
            self.min_increase = self.sum_increase
        if self.sum_decrease > self.max_decrease:
            self.max_decrease = self.sum_decrease
        if self.n >= self.min_instances:
            up = self.sum_increase - self.min_increase > self.threshold
            down = self.max_decrease - self.sum_decrease > self.threshold
            self.drift_detected = {"up": up, "down": down}.get(self.mode, up or down)

    def to_state(self) -> dict[str, Any]:
        return {**self.params(), "n": self.n, "mean": self.mean, "sum_increase": self.sum_increase,
                "sum_decrease": self.sum_decrease,
                "min_increase": None if math.isinf(self.min_increase) else self.min_increase,
                "max_decrease": self.max_decrease, "drift_detected": self.drift_detected}

    @classmethod
    def from_state(cls, f: Fields) -> PageHinkley:
        f.only(["min_instances", "delta", "threshold", "alpha", "mode", "n", "mean", "sum_increase",
                "sum_decrease", "min_increase", "max_decrease", "drift_detected"])
        det = cls(f.integer("min_instances", 0, MAX_INT), f.number("delta"), f.number("threshold", 0.0),
                  f.number("alpha", 0.0, 1.0), f.text("mode", ("up", "down", "both")))
        det.n, det.mean = f.number("n", 0.0), f.number("mean")
        det.sum_increase, det.sum_decrease = f.number("sum_increase"), f.number("sum_decrease")
        det.min_increase = math.inf if f.data.get("min_increase", 0) is None else f.number("min_increase")
        det.max_decrease, det.drift_detected = f.number("max_decrease"), f.flag("drift_detected")
        return det


Detector = Adwin | PageHinkley


def make_detector(config: DriftConfig) -> Detector:
    if config.detector == "page_hinkley":
        # delta: the drop per event that is tolerated; 0.05 keeps a Bernoulli hit stream quiet
        return PageHinkley(min_instances=min(config.min_events, 1_000) or 30, delta=0.05,
                           threshold=config.threshold, mode="down")
    return Adwin(delta=config.delta)


class DriftMonitor:
    """Windowed hit rates and NDCG, and a drift detector with a cool-down (see the module docstring)."""

    def __init__(self, config: DriftConfig | None = None,
                 on_drift: Callable[[DriftSignal], None] | None = None) -> None:
        self.config = config or DriftConfig()
        self.on_drift = on_drift
        self.detector: Detector = make_detector(self.config)
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
        return self.detector.estimation if isinstance(self.detector, Adwin) else self._mean

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

    # --- checkpoints -----------------------------------------------------------------------------
    STATE_ENCODING = "json"

    def to_state(self) -> dict[str, Any]:
        """Counters, windows, the cool-down clock and the detector's whole state, as plain JSON data."""
        return {"format": STATE_FORMAT, "detector": self.config.detector, "evaluated": self.evaluated,
                "detections": self.detections, "signals": self.signals, "suppressed": self.suppressed,
                "last_signal": None if self._last_signal is None else list(self._last_signal),
                "window": list(self._win), "windows": list(self.windows), "mean": self._mean,
                "state": self.detector.to_state()}

    def load_state(self, state: dict[str, Any]) -> str | None:
        """Install a :meth:`to_state` state after checking every field (raises :class:`StateError`).
        A state of format 1 (no detector state) restores the counters and starts a fresh detector."""
        f = Fields(state, "drift")
        fmt = f.integer("format", 1, STATE_FORMAT)
        det = f.text("detector")
        if det != self.config.detector:
            raise StateError(f"written by a {det!r} monitor, this engine runs {self.config.detector!r}")
        f.only([*_FIELDS, *(["state"] if fmt >= 2 else [])])
        counts = [f.integer(n) for n in ("evaluated", "detections", "signals", "suppressed")]
        last = None
        if f.data["last_signal"] is not None:
            at, ts = f.array("last_signal", 2, 2)
            last = (check_int(at, "drift.last_signal[0]"), check_int(ts, "drift.last_signal[1]", -MAX_INT))
        w = f.array("window", 4, 4)
        events = check_int(w[0], "drift.window[0]", 0, self.config.window)
        h10 = check_int(w[1], "drift.window[1]", 0, events)
        win = [events, h10, check_int(w[2], "drift.window[2]", h10, events),
               check_float(w[3], "drift.window[3]", 0.0, float(h10))]
        windows = []
        for k, item in enumerate(f.array("windows", 100_000)[-self.config.history:]):
            wf = Fields(item, f"drift.windows[{k}]").only(_WINDOW)
            windows.append({"events": wf.integer("events", 1), **{n: wf.number(n, 0.0, 1.0) for n in _WINDOW[1:]}})
        mean = f.number("mean", 0.0, 1.0)
        detector = make_detector(self.config)
        note = None
        if fmt >= 2:
            sf = f.obj("state")
            detector = (Adwin if self.config.detector == "adwin" else PageHinkley).from_state(sf)
            if detector.params() != make_detector(self.config).params():
                raise StateError(f"the checkpointed {det} detector has settings {detector.params()}, this engine "
                                 f"runs {make_detector(self.config).params()}")
        else:
            note = "the drift detector starts fresh (the checkpoint predates its plain-data state)"
        self.evaluated, self.detections, self.signals, self.suppressed = counts
        self._last_signal, self._win, self._mean, self.detector = last, win, mean, detector
        self.windows.clear()
        self.windows.extend(windows)
        return note


STATE_FORMAT = 2
_FIELDS = ("format", "detector", "evaluated", "detections", "signals", "suppressed", "last_signal", "window",
           "windows", "mean")
_WINDOW = ("events", "hit_rate_at_10", "hit_rate_at_20", "ndcg_at_10")
