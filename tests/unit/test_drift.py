"""Online quality windows and drift detection: a planted taste shift through the engine, cool-downs, no
false alarms on a steady stream, rises are not drifts, checkpoints of the monitor."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType
from streamrec.models.online.drift import DriftConfig, DriftMonitor, DriftSignal
from streamrec.models.online.layer import OnlineConfig

T0 = 1_700_000_000_000


def taste_shift(n_before: int, n_after: int, users: int = 100, seed: int = 0) -> list[Event]:
    """Users browse a favourite category of 20 items (Zipf), then all move to a new catalogue."""
    rng = np.random.default_rng(seed)
    fav = rng.integers(10, size=users)
    out = []
    for k in range(n_before + n_after):
        u = int(rng.integers(users))
        before = k < n_before
        item = f"c{fav[u]}-{min(int(rng.zipf(1.3)) - 1, 19)}" if before else f"new-{int(rng.integers(3_000))}"
        out.append(Event(f"e{k}", f"u{u}", item, EventType.CLICK, T0 + k * 1_000))
    return out


def replay(rec: Recommender, events: list[Event], batch: int = 50) -> None:
    for s in range(0, len(events), batch):
        chunk = events[s:s + batch]
        rec.recommend(rec.apply(chunk), now_ms=chunk[-1].timestamp_ms)


def bernoulli(monitor: DriftMonitor, rates: list[tuple[int, float]], seed: int = 0, t0: int = 0) -> int:
    """Feed hit (position 0) or miss (-1) events at the given rates; returns the events fed."""
    rng = np.random.default_rng(seed)
    k = t0
    for n, p in rates:
        for _ in range(n):
            monitor.observe(0 if rng.random() < p else -1, ts_ms=k * 1_000)
            k += 1
    return k


def test_a_planted_taste_shift_is_detected_soon_and_requests_one_retrain() -> None:
    signals: list[DriftSignal] = []
    rec = Recommender(EngineConfig(drift_detector="adwin", online=OnlineConfig(drift_window=500)))
    assert rec.online is not None
    rec.online.set_on_drift(signals.append)
    events = taste_shift(6_000, 4_000)
    replay(rec, events[:6_000])
    before = rec.stats()
    assert before["hit_rate_at_10"] > 0.3 and not signals              # the lists work before the shift
    replay(rec, events[6_000:])
    after = rec.stats()
    assert len(signals) == 1, signals                                  # one shift, one retrain request
    assert 0 < signals[0].at_event - before["evaluated"] <= 500         # found within 500 events
    assert signals[0].mean_after < signals[0].mean_before
    assert after["drift_signals"] == 1 and after["drift_detections"] >= 1
    assert after["window_hit_rate_at_10"] < 0.05 < before["window_hit_rate_at_10"]
    assert after["online_windows"] == after["evaluated"] // 500


def test_windows_count_hits_and_ndcg() -> None:
    mon = DriftMonitor(DriftConfig(window=4))
    for pos in (0, 9, 15, -1):
        mon.observe(pos, ts_ms=0)
    assert list(mon.windows) == [{"events": 4, "hit_rate_at_10": 0.5, "hit_rate_at_20": 0.75,
                                  "ndcg_at_10": pytest.approx((1.0 + 1 / np.log2(11)) / 4)}]


def test_no_alarm_on_a_steady_stream_and_a_rise_is_not_a_drift() -> None:
    for detector in ("adwin", "page_hinkley"):
        steady = DriftMonitor(DriftConfig(detector=detector, min_events=500))
        bernoulli(steady, [(20_000, 0.4)])
        assert steady.signals == 0, (detector, steady.stats())
        rise = DriftMonitor(DriftConfig(detector=detector, min_events=500))
        bernoulli(rise, [(3_000, 0.1), (5_000, 0.6)])
        assert rise.signals == 0, (detector, rise.stats())


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
def test_cool_down_one_request_per_shift(detector: str) -> None:
    signals: list[DriftSignal] = []
    mon = DriftMonitor(DriftConfig(detector=detector, min_events=500, cooldown_events=5_000,
                                   cooldown_ms=3_000_000), on_drift=signals.append)
    k = bernoulli(mon, [(4_000, 0.6), (4_000, 0.2)])
    assert len(signals) == 1 and 4_000 < signals[0].at_event <= 5_000, signals
    # back up, then down again after the cool-down: a second request
    bernoulli(mon, [(3_000, 0.6), (3_000, 0.1)], seed=1, t0=k)
    assert len(signals) == 2 and signals[1].at_event > 11_000, signals
    assert signals[1].ts_ms - signals[0].ts_ms >= 3_000_000


def test_the_monitor_survives_a_checkpoint() -> None:
    rec = Recommender(EngineConfig(drift_detector="adwin", online=OnlineConfig(drift_window=100)))
    replay(rec, taste_shift(3_000, 0))
    assert rec.online is not None and rec.online.drift is not None
    parts = rec.online.checkpoint()
    assert {name for name, _, _ in parts} == {"drift"}
    restarted = Recommender(EngineConfig(drift_detector="adwin", online=OnlineConfig(drift_window=100)))
    assert restarted.online is not None and restarted.online.drift is not None
    assert set(restarted.online.restore(parts).values()) == {"restored"}
    assert restarted.online.drift.stats() == rec.online.drift.stats()
    assert restarted.online.drift.detector.estimation == rec.online.drift.detector.estimation
    ph = Recommender(EngineConfig(drift_detector="page_hinkley"))
    assert ph.online is not None
    assert ph.online.restore(parts)["drift"].startswith("refused")


def test_only_a_users_first_event_of_a_batch_is_scored_so_the_hit_rate_does_not_depend_on_batch_size() -> None:
    rec = Recommender(EngineConfig(drift_detector="adwin", online=OnlineConfig(drift_window=500)))
    warm = [Event(f"w{k}", "u", f"i{k % 3}", EventType.CLICK, T0 + k) for k in range(9)]
    rec.recommend(rec.apply(warm))
    shown = rec.store.get("u").shown
    assert shown, "the user got a list"
    # one batch: the first event clicks an item of the list, the next two were made before the new list
    later = [Event("a", "u", shown[0], EventType.CLICK, T0 + 100), Event("b", "u", "x", EventType.CLICK, T0 + 101),
             Event("c", "u", "y", EventType.CLICK, T0 + 102)]
    rec.apply(later)
    st = rec.stats()
    assert (st["evaluated"], st["hits_at_10"], st["hit_rate_at_10"]) == (1, 1, 1.0)
    assert rec.online is not None and rec.online.drift is not None and rec.online.drift.evaluated == 1
    # the next batch scores the user's first event again
    rec.recommend(["u"])
    rec.apply([Event("d", "u", "z", EventType.CLICK, T0 + 200)])
    assert rec.stats()["evaluated"] == 2 and rec.online.drift.evaluated == 2
