"""Trending: decayed, strength-weighted counts; an exact top list kept incrementally; cache and bounds."""

from __future__ import annotations

import random

import numpy as np
import pytest

from streamrec.models.errors import ConfigError
from streamrec.models.serving.trending import Trending

H = 1_000


def test_top_is_ordered_by_strength_weighted_counts() -> None:
    tr = Trending(half_life_ms=H, refresh_events=1)
    for item, s in [("a", 1.0), ("b", 4.0), ("a", 1.0), ("c", 0.5)]:
        tr.update(item, s, ts_ms=0)
    items, scores = tr.top(3)
    assert items == ["b", "a", "c"] and scores.tolist() == [4.0, 2.0, 0.5]
    assert tr.score("a") == 2.0 and tr.score("zzz") == 0.0


def test_older_events_count_less() -> None:
    tr = Trending(half_life_ms=H, refresh_events=1)
    tr.update("old", 3.0, ts_ms=0)
    tr.update("new", 1.0, ts_ms=2 * H)
    items, scores = tr.top(2)
    assert items == ["new", "old"] and scores.tolist() == pytest.approx([1.0, 0.75])


def test_the_cached_list_is_refreshed_every_n_events_or_ms() -> None:
    tr = Trending(refresh_events=3, refresh_ms=100)
    tr.update("a", 1.0, 0)
    assert tr.top(5, now_ms=0)[0] == ["a"]           # first build
    tr.update("b", 2.0, 0)
    tr.update("b", 2.0, 0)
    assert tr.top(5, now_ms=50)[0] == ["a"]          # 2 events, 50 ms: still cached
    assert tr.top(5, now_ms=100)[0] == ["b", "a"]    # 100 ms later: rebuilt
    tr.update("c", 9.0, 0)
    tr.update("c", 9.0, 0)
    tr.update("c", 9.0, 0)
    assert tr.top(1)[0] == ["c"]                     # 3 events: rebuilt


def test_incremental_top_matches_a_full_sort() -> None:
    rng = random.Random(4)
    tr = Trending(half_life_ms=50_000, keep=20, refresh_events=1)
    brute: dict[str, float] = {}
    for t in range(5_000):
        item = f"i{int(rng.paretovariate(1.2)) % 400}"
        s = rng.choice([0.5, 1.0, 2.0, 4.0])
        tr.update(item, s, ts_ms=t * 10)
        brute[item] = brute.get(item, 0.0) * 0.5 ** (10 / 50_000) + s if t else s
        for other in brute:
            if other != item:
                brute[other] *= 0.5 ** (10 / 50_000)
        if t % 997 == 0 or t == 4_999:
            items, scores = tr.top(20)
            expected = sorted(brute, key=lambda i: -brute[i])[:20]
            assert set(items[:10]) == set(expected[:10])
            np.testing.assert_allclose(scores, sorted(brute.values(), reverse=True)[:20], rtol=1e-6)


def test_counts_are_bounded_and_the_strong_items_survive() -> None:
    tr = Trending(max_items=100, refresh_events=1)
    for k in range(1_000):
        tr.update("hot", 1.0, 0)
        tr.update(f"cold{k}", 0.5, 0)
        assert len(tr) <= 125
    assert tr.evicted > 0 and tr.top(1)[0] == ["hot"]


def test_newest_lists_first_seen_items_newest_first() -> None:
    tr = Trending(newest=3)
    for item in ["a", "b", "a", "c", "d"]:
        tr.update(item, 1.0, 0)
    assert tr.newest(10) == ["d", "c", "b"] and tr.newest(1) == ["d"]


def test_invalid_settings() -> None:
    with pytest.raises(ConfigError, match="half_life_ms"):
        Trending(half_life_ms=0)
