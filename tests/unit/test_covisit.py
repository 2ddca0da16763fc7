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


class DictCoVisitation:
    """The table as a dict of dicts (the layout before the packed rows), for equivalence: the same pair rule,
    pruning, least-recently-touched eviction and forward decay."""

    def __init__(self, window: int, max_neighbors: int, max_items: int, half_life_ms: int) -> None:
        from collections import OrderedDict

        from streamrec.models.decay import ForwardDecay

        self.window, self.max_neighbors, self.max_items = window, max_neighbors, max_items
        self.hi = max_neighbors + max(1, max_neighbors // 2)
        self.nb: OrderedDict[str, dict[str, float]] = OrderedDict()
        self.clock = ForwardDecay(half_life_ms)

    def _row(self, item: str) -> dict[str, float]:
        if item not in self.nb:
            if len(self.nb) >= self.max_items:
                self.nb.popitem(last=False)
            self.nb[item] = {}
        return self.nb[item]

    def _prune(self, item: str) -> None:
        row = self.nb[item]
        self.nb[item] = dict(sorted(row.items(), key=lambda kv: kv[1], reverse=True)[:self.max_neighbors])

    def update(self, previous: tuple[str, ...], item: str, strength: float, ts_ms: int) -> None:
        if not previous or previous[0] == item:
            if item in self.nb:
                self.nb.move_to_end(item)
            return
        g, rescale = self.clock.growth(ts_ms)
        if rescale is not None:
            for key in list(self.nb):
                row = {j: w * rescale for j, w in self.nb[key].items() if w * rescale > 1e-9}
                if row:
                    self.nb[key] = row
                else:
                    del self.nb[key]
        g *= strength
        row_j = self._row(item)
        self.nb.move_to_end(item)
        done: list[str] = []
        for dist, i in enumerate(previous[:self.window], 1):
            if i == item or i in done:
                continue
            done.append(i)
            row_j[i] = row_j.get(i, 0.0) + g / dist
            row_i = self._row(i)
            row_i[item] = row_i.get(item, 0.0) + g / dist
            if len(row_i) > self.hi:
                self._prune(i)
        if len(self.nb[item]) > self.hi:
            self._prune(item)

    def scores(self, seeds: list[str], weights: list[float]) -> dict[str, float]:
        acc: dict[str, float] = {}
        for s, ws in zip(seeds, weights, strict=True):
            for j, w in self.nb.get(s, {}).items():
                acc[j] = acc.get(j, 0.0) + ws * w
        return acc


def random_stream(n: int, items: int, seed: int, step_ms: int = 250,
                  strengths: tuple[float, ...] = (0.5, 1.0, 4.0)) -> list[tuple[tuple[str, ...], str, float, int]]:
    rng = random.Random(seed)
    history: dict[int, list[str]] = {}
    out = []
    for k in range(n):
        user = rng.randrange(300)
        item = f"i{(user % 20 * 15 + rng.randrange(40)) % items}"
        h = history.setdefault(user, [])
        out.append((tuple(h[:8]), item, rng.choice(strengths), k * step_ms))
        h.insert(0, item)
    return out


@pytest.mark.parametrize(("max_items", "half_life_ms", "step_ms"), [(10_000, 10**9, 0), (60, 10**9, 0),
                                                                  (25, 2_000, 250)])
def test_packed_rows_give_exactly_the_weights_order_and_scores_of_a_dict_of_dicts(max_items: int, half_life_ms: int,
                                                                                    step_ms: int) -> None:
    """Pruning (with ties: one time and strengths 1 and 2), eviction of items other rows still name, and
    rescaling (2,000 ms half-lives over 2,500 s of events: dozens of rebases) leave the same rows, in the
    same order, with the same float64 weights."""
    cv = CoVisitation(window=4, max_neighbors=6, max_items=max_items, half_life_ms=half_life_ms)
    ref = DictCoVisitation(4, 6, max_items, half_life_ms)
    rng = random.Random(5)
    for k, (prev, item, s, ts) in enumerate(random_stream(10_000, 200, max_items, step_ms,
                                                                    (1.0, 2.0) if step_ms == 0 else (0.5, 1.0, 4.0))):
        cv.update(prev, item, s, ts)
        ref.update(prev, item, s, ts)
        if k % 500 == 0:
            seeds = [f"i{rng.randrange(200)}" for _ in range(5)]
            assert list(cv.scores(seeds, [1.0, 0.5, 0.3, 0.2, 0.1]).items()) == \
                list(ref.scores(seeds, [1.0, 0.5, 0.3, 0.2, 0.1]).items())
    assert list(cv._rows) == list(ref.nb)
    assert all(list(cv.row(item).items()) == list(row.items()) for item, row in ref.nb.items())
    assert cv.pruned > 0 and (cv.evicted > 0) == (max_items < 200) and (cv.rebases > 0) == (half_life_ms < 10**6)
    # every code a row names is interned (a row or a ghost); after a collection only named ghosts remain
    def named() -> set[int]:
        out: set[int] = set()
        for code in cv._rows.values():
            base = code * cv._width
            out.update(cv._nbr[base:base + cv._len[code]].tolist())
        return out

    assert named() <= set(cv._rows.values()) | set(cv._ghosts.values())
    cv._collect()
    assert set(cv._ghosts.values()) <= named()
    assert len(cv._rows) + len(cv._ghosts) + len(cv._free) == len(cv._len)
    assert all(cv._ids[c] == item for item, c in (*cv._rows.items(), *cv._ghosts.items()))


def test_codes_of_dropped_items_no_row_names_are_reused() -> None:
    cv = CoVisitation(window=1, max_neighbors=2, max_items=50)
    for k in range(20_000):                      # pairs of fresh items: every row is soon evicted
        cv.update((f"a{k}",), f"b{k}", 1.0, 0)
    assert cv.evicted > 19_000 and len(cv._len) <= 2_048 and len(cv._ghosts) <= 1_024 + 50


def test_rows_grow_with_the_items_held_not_with_max_items() -> None:
    cv = CoVisitation(max_items=1_000_000)
    assert cv.memory_bytes() < 10_000                                  # nothing preallocated
    feed(cv, [f"i{k}" for k in range(3_000)])
    assert len(cv) == 3_000 and len(cv._len) == 4_096                 # doubled from 256 rows as items came
    assert cv.memory_bytes() < 1_000 * len(cv)                        # 420 B of slots per row, and the dicts


def test_weights_of_chosen_items_are_what_the_row_holds_through_evictions_and_ghosts() -> None:
    """``weights(seed, others)`` reads a few pairs without building the row: on a random walk small enough
    to evict items (so that rows name ghosts), each answer equals the row's, 0.0 for pairs it does not hold."""
    rng = random.Random(0)
    cv = CoVisitation(window=3, max_neighbors=4, max_items=30)
    history: dict[int, list[str]] = {}
    checked = 0
    for t in range(5000):
        prev = history.setdefault(rng.randrange(20), [])
        item = f"i{int(rng.paretovariate(1.0)) % 60}"
        cv.update(prev[:5], item, rng.random(), t * 1000)
        prev.insert(0, item)
        del prev[8:]
        if t % 50 == 0:
            for seed in [*list(cv._rows)[:10], "never-seen"]:
                others = [f"i{k}" for k in rng.sample(range(70), 12)]
                row = cv.row(seed)
                assert cv.weights(seed, others) == [row.get(j, 0.0) for j in others]
                checked += sum(j in row for j in others)
    assert cv.evicted > 0 and cv._ghosts and checked > 100     # the walk did evict, and found held pairs
