"""Co-visitation: symmetric windowed updates, time decay without visiting old pairs, bounds."""

from __future__ import annotations

import random

import pytest

from streamrec.models.errors import ConfigError
from streamrec.models.serving.covisit import CoVisitation

H = 1_000  # half-life in ms for these tests


def feed(cv: CoVisitation, sequence: list[str], ts: int = 0, strength: float = 1.0) -> None:
    history: list[str] = []
    for item in sequence:
        cv.update(tuple(history), item, strength, ts)
        history.insert(0, item)


def test_pairs_are_symmetric_and_weighted_by_distance_within_the_window() -> None:
    cv = CoVisitation(window=2, half_life_ms=H)
    feed(cv, ["a", "b", "c", "d"])
    assert dict(cv.neighbors("b")) == {"a": 1.0, "c": 1.0, "d": 0.5}
    assert dict(cv.neighbors("a")) == {"b": 1.0, "c": 0.5}           # d is 3 steps after a: outside
    assert dict(cv.neighbors("d")) == {"c": 1.0, "b": 0.5}


def test_strength_weights_the_pair_and_repeats_add_nothing() -> None:
    cv = CoVisitation(half_life_ms=H)
    cv.update(("a",), "b", strength=4.0, ts_ms=0)
    cv.update(("b", "a"), "b", strength=4.0, ts_ms=0)                  # same item again: a refresh
    cv.update(("b", "a", "b"), "c", strength=1.0, ts_ms=0)             # b appears twice: counted once
    assert dict(cv.neighbors("a")) == {"b": 4.0, "c": 0.5}
    assert dict(cv.neighbors("c")) == {"b": 1.0, "a": 0.5}


def test_old_pairs_decay_by_half_per_half_life() -> None:
    cv = CoVisitation(half_life_ms=H)
    cv.update(("a",), "old", 1.0, ts_ms=0)
    cv.update(("a",), "new", 1.0, ts_ms=2 * H)
    got = dict(cv.neighbors("a"))
    assert got["new"] == pytest.approx(1.0) and got["old"] == pytest.approx(0.25)


def test_rescaling_over_a_long_time_span_keeps_the_ratios() -> None:
    cv = CoVisitation(half_life_ms=H)
    cv.update(("a",), "x", 1.0, ts_ms=0)
    cv.update(("a",), "y", 1.0, ts_ms=39 * H)
    for k in range(1, 6):                          # 200 half-lives later: the table is rescaled on the way
        cv.update(("a",), "y", 1.0, ts_ms=40 * k * H)
    assert cv.rebases >= 1
    got = dict(cv.neighbors("a"))
    assert got["y"] == pytest.approx(1.0, rel=1e-6) and "x" not in got   # x decayed to nothing


def test_neighbours_per_item_are_bounded_keeping_the_strongest() -> None:
    cv = CoVisitation(max_neighbors=4, half_life_ms=10**9)
    for k in range(40):
        cv.update(("hub",), f"n{k}", strength=float(k + 1), ts_ms=0)
    nb = cv.neighbors("hub")
    assert len(nb) <= 4 + 2 and cv.pruned > 0
    assert [j for j, _ in nb[:4]] == ["n39", "n38", "n37", "n36"]


def test_items_are_bounded_least_recently_touched_first() -> None:
    cv = CoVisitation(max_items=10)
    rng = random.Random(0)
    for _ in range(500):
        cv.update((f"i{rng.randrange(100)}",), f"i{rng.randrange(100)}", 1.0, 0)
        assert len(cv) <= 10
    assert cv.evicted > 0


def test_candidates_aggregate_over_weighted_seeds() -> None:
    cv = CoVisitation(half_life_ms=H)
    feed(cv, ["a", "x"])
    feed(cv, ["b", "x"])
    feed(cv, ["b", "y"])
    items, scores = cv.candidates(["a", "b"], [1.0, 0.5], k=10)
    assert items == ["x", "y"] and scores.tolist() == [1.5, 0.5]
    items, _ = cv.candidates(["a", "b"], [1.0, 0.5], k=1)
    assert items == ["x"]
    assert cv.candidates(["unknown"], [1.0], k=5)[0] == []


def test_invalid_settings() -> None:
    with pytest.raises(ConfigError, match="window"):
        CoVisitation(window=0)
