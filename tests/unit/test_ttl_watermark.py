"""The user TTL runs on a watermark a few outlying event times cannot drag forward (issue: five events dated a
year after a replayed log evicted every user of that log), and still evicts idle users of a live stream."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.errors import ConfigError
from streamrec.models.events import Event, EventType
from streamrec.models.serving.state import UserStore, Watermark
from streamrec.models.timeunits import DAY_MS, HOUR_MS

LOG_START = 1_262_304_000_000          # 2010-01-01: a replayed historical log, long before the wall clock
YEAR_MS = 365 * DAY_MS


def replayed_log(n_users: int = 285, per_user: int = 8, seed: int = 0) -> list[Event]:
    """A week of an old log: every user active over the week, in event-time order."""
    rng = np.random.default_rng(seed)
    events = [Event(f"log-{u}-{k}", f"u{u}", f"i{rng.integers(0, 500)}", EventType.CLICK,
                    LOG_START + int(rng.integers(0, 7 * DAY_MS)))
              for u in range(n_users) for k in range(per_user)]
    return sorted(events, key=lambda e: e.timestamp_ms)


def apply_in_batches(rec: Recommender, events: list[Event], partitions: int = 3, batch: int = 200) -> None:
    for start in range(0, len(events), batch):
        chunk = events[start:start + batch]
        for p in range(partitions):
            part = [e for e in chunk if int(e.user_id[1:]) % partitions == p]
            if part:
                rec.apply(part, partition=p)


def test_five_events_a_year_later_do_not_evict_a_replayed_log() -> None:
    rec = Recommender(EngineConfig(user_ttl_ms=30 * DAY_MS))
    log = replayed_log()
    apply_in_batches(rec, log)
    assert rec.stats()["users"] == 285 and rec.stats()["evicted_ttl"] == 0
    last = log[-1].timestamp_ms
    late = [Event(f"late-{k}", f"u{k}", "i1", EventType.CLICK, last + YEAR_MS) for k in range(5)]
    for p in range(3):                       # the five outliers reach every partition, alone in their batch
        rec.apply([e for e in late if int(e.user_id[1:]) % 3 == p], partition=p)
    s = rec.stats()
    assert s["evicted_ttl"] == 0, f"{s['evicted_ttl']} users of the replayed log evicted by five outliers"
    assert s["users"] == 285


def test_outliers_on_a_partition_with_no_history_evict_nobody_either() -> None:
    rec = Recommender(EngineConfig(user_ttl_ms=30 * DAY_MS))
    rec.apply(replayed_log(n_users=50), partition=0)
    rec.apply([Event(f"late-{k}", f"v{k}", "i1", EventType.CLICK, LOG_START + YEAR_MS) for k in range(5)],
              partition=1)
    rec.apply([Event("late-x", "u0", "i2", EventType.CLICK, LOG_START + YEAR_MS)], partition=0)
    assert rec.stats()["evicted_ttl"] == 0 and rec.stats()["users"] == 55


def test_the_ttl_still_evicts_idle_users_of_a_live_stream() -> None:
    rec = Recommender(EngineConfig(user_ttl_ms=DAY_MS))
    # day 0: 100 users active; days 1-3: only the "live" users keep coming, about once a minute each
    rec.apply([Event(f"d0-{u}", f"u{u}", "i1", EventType.CLICK, LOG_START + u * 1_000) for u in range(100)])
    assert rec.stats()["evicted_ttl"] == 0
    t = LOG_START + HOUR_MS
    for minute in range(3 * 24 * 60 // 10):
        t += 10 * 60_000
        rec.apply([Event(f"live-{minute}-{k}", f"live{k}", f"i{k}", EventType.CLICK, t + k) for k in range(20)])
    s = rec.stats()
    assert s["evicted_ttl"] == 100, s                  # every idle day-0 user is gone
    assert s["users"] == 20                            # the live users stay
    assert rec.store.get("u0") is None and rec.store.get("live3") is not None


def test_watermark_is_a_robust_per_partition_low_mark() -> None:
    now = LOG_START + 10 * YEAR_MS
    wm = Watermark(window=1_000, min_events=100, clock=lambda: now)
    times = LOG_START + np.arange(1_000) * 1_000
    assert wm.advance(0, times[:50].tolist()) == 0               # too few events to trust
    mark = wm.advance(0, times[50:].tolist())
    assert mark == int(np.quantile(times, 0.5, method="lower"))
    assert wm.advance(0, [LOG_START + YEAR_MS] * 5) < LOG_START + DAY_MS     # outliers: not dragged
    assert wm.advance(0, times[:10].tolist()) >= mark                         # never goes back
    assert wm.get(1) == 0                                                     # per partition
    assert wm.advance(2, [now + YEAR_MS] * 200) == now                        # capped at the wall clock
    wm.forget(2)
    assert wm.get(2) == 0
    with pytest.raises(ConfigError):
        Watermark(window=10, min_events=20)


def test_store_expires_one_partition_against_its_watermark() -> None:
    store = UserStore(ttl_ms=10_000, watermark=Watermark(window=10, min_events=3, clock=lambda: 10**13))
    for k in range(4):
        store.touch(f"a{k}", 0).observe("i", 0, LOG_START + k, 1.0, store.limits)
        store.touch(f"b{k}", 1).observe("i", 0, LOG_START + k, 1.0, store.limits)
    assert store.expire_partition(0, [LOG_START + 60_000] * 5) == 4
    assert sorted(s.user_id for s in store.states()) == ["b0", "b1", "b2", "b3"]
    assert store.drop_partition(1) == 4 and store.watermark.get(1) == 0
