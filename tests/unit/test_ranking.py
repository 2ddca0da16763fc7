"""Ranking: normalisation, blend and primary source, filters, category cap, MMR, candidate features."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.models.errors import ConfigError
from streamrec.models.serving.candidates import ANN, COLD_START, COVISIT, SOURCES, TRENDING, CodeSpace, merge_candidates
from streamrec.models.serving.ranking import (
    RecItem,
    Selection,
    blend,
    check_options,
    mmr_order,
    normalise,
    select,
)

W = np.array([1.0, 1.0, 0.3, 0.05], dtype=np.float32)


def space_of(n: int) -> CodeSpace:
    ids = [f"i{k}" for k in range(n)]
    return CodeSpace(ids, {i: k for k, i in enumerate(ids)})


def block(source: int, row: int, codes: list[int], scores: list[float]) -> tuple[int, np.ndarray, np.ndarray,
                                                                                  np.ndarray]:
    rows = np.full(len(codes), row, dtype=np.int64)
    return source, rows, np.array(codes), normalise(np.array(scores, dtype=np.float32), rows)


def test_normalise_max_and_rank_per_row() -> None:
    rows = np.array([0, 0, 0, 3, 3])
    s = np.array([0.8, 0.4, -0.2, 5.0, 5.0], dtype=np.float32)
    np.testing.assert_allclose(normalise(s, rows), [1.0, 0.5, -0.25, 1.0, 1.0])
    np.testing.assert_allclose(normalise(s, rows, "rank"), [1.0, 2 / 3, 1 / 3, 1.0, 0.5])
    assert normalise(np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)).shape == (0,)
    np.testing.assert_allclose(normalise(np.zeros(2, dtype=np.float32), np.zeros(2, dtype=np.int64)), [0, 0])


def test_blend_sums_weighted_sources_and_names_the_largest_contribution() -> None:
    batch = merge_candidates(1, [block(ANN, 0, [0, 1], [0.9, 0.3]), block(COVISIT, 0, [1, 2], [4.0, 1.0]),
                                 block(TRENDING, 0, [2], [7.0])])
    scores, primary = blend(batch, W)
    assert batch.codes.tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores, [1.0, 0.3 / 0.9 + 1.0, 0.25 + 0.3], rtol=1e-6)
    assert [SOURCES[p] for p in primary] == ["ann", "covisit", "trending"]


def test_select_drops_blocked_items_and_keeps_score_order() -> None:
    space = space_of(10)
    batch = merge_candidates(2, [block(ANN, 0, [0, 1, 2, 3], [4, 3, 2, 1]), block(ANN, 1, [4, 5], [1, 2])])
    scores, primary = blend(batch, W)
    lists = select(batch, scores, primary, space, [frozenset({"i1", "not-a-candidate"}), None],
                   Selection(top_n=2, diversity="none"))
    assert [[it.item_id for it in items] for items in lists] == [["i0", "i2"], ["i5", "i4"]]
    assert all(isinstance(it, RecItem) and it.source == "ann" for items in lists for it in items)


def test_category_cap_moves_the_overflow_behind_other_categories() -> None:
    space = space_of(6)
    cats = np.array([0, 0, 0, 0, 1, -1])
    batch = merge_candidates(1, [block(ANN, 0, [0, 1, 2, 3, 4, 5], [6, 5, 4, 3, 2, 1])])
    scores, primary = blend(batch, W)
    how = Selection(top_n=5, diversity="category", max_per_category=2)
    got = [it.item_id for it in select(batch, scores, primary, space, [None], how, cats)[0]]
    assert got == ["i0", "i1", "i4", "i5", "i2"]     # uncategorised i5 is never capped; i2 fills the list
    uncapped = Selection(top_n=5, diversity="none")
    assert [it.item_id for it in select(batch, scores, primary, space, [None], uncapped, cats)[0]] == \
        ["i0", "i1", "i2", "i3", "i4"]


def test_mmr_prefers_a_different_direction_over_a_near_duplicate() -> None:
    emb = np.array([[1, 0], [0.99, 0.141], [0, 1]], dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert mmr_order(np.array([1.0, 0.95, 0.6]), emb, k=2, lam=0.5) == [0, 2]
    assert mmr_order(np.array([1.0, 0.95, 0.6]), emb, k=2, lam=1.0) == [0, 1]
    space = space_of(3)
    batch = merge_candidates(1, [block(ANN, 0, [0, 1, 2], [1.0, 0.95, 0.6])])
    scores, primary = blend(batch, W)
    got = select(batch, scores, primary, space, [None], Selection(top_n=2, diversity="mmr", mmr_lambda=0.5),
                 embeddings=emb)
    assert [it.item_id for it in got[0]] == ["i0", "i2"]


def test_items_outside_the_model_take_part() -> None:
    space = space_of(2)
    fresh = space.codes(["brand-new"])
    batch = merge_candidates(1, [block(COVISIT, 0, [int(fresh[0]), 0], [3.0, 1.0]),
                                 block(COLD_START, 0, [1], [1.0])])
    scores, primary = blend(batch, W)
    got = select(batch, scores, primary, space, [None], Selection(top_n=3), np.array([0, 0]))
    assert [(it.item_id, it.source) for it in got[0]] == [("brand-new", "covisit"), ("i0", "covisit"),
                                                          ("i1", "cold_start")]


def reference(codes: list[int], scores: list[float], blocked: set[int], cats: list[int], top_n: int,
              cap: int) -> list[int]:
    """A plain Python walk: best first, skip blocked, cap categories, then fill from the overflow."""
    order = sorted(range(len(codes)), key=lambda j: (-scores[j], j))
    picked, overflow, count = [], [], {}
    for j in order:
        if codes[j] in blocked:
            continue
        c = cats[codes[j]]
        if cap and c >= 0 and count.get(c, 0) >= cap:
            overflow.append(j)
            continue
        count[c] = count.get(c, 0) + 1
        picked.append(j)
    return [codes[j] for j in (picked + overflow)[:top_n]]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 29), st.integers(1, 1000)), max_size=25), min_size=1,
                max_size=6),
       st.lists(st.integers(-1, 3), min_size=30, max_size=30), st.integers(1, 8), st.integers(0, 3),
       st.sets(st.integers(0, 29), max_size=6))
def test_vectorised_select_matches_the_reference_walk(rows: list[list[tuple[int, int]]], cats: list[int],
                                                      top_n: int, cap: int, blocked: set[int]) -> None:
    space = space_of(30)
    blocks = []
    per_row = []
    for r, cands in enumerate(rows):
        uniq = dict(cands)                           # one score per item, as every source guarantees
        codes = list(uniq)
        vals = [float(uniq[c]) + c / 1e4 for c in codes]   # distinct scores: the order is unambiguous
        per_row.append((codes, vals))
        if codes:
            order = np.argsort(vals)[::-1]
            blocks.append(block(ANN, r, [codes[i] for i in order], [vals[i] for i in order]))
    batch = merge_candidates(len(rows), blocks)
    scores, primary = blend(batch, W)
    how = Selection(top_n=top_n, diversity="category", max_per_category=cap, lookahead=1)
    got = select(batch, scores, primary, space, [frozenset(f"i{b}" for b in blocked)] * len(rows), how,
                 np.array(cats))
    for (codes, vals), items in zip(per_row, got, strict=True):
        assert [it.item_id for it in items] == [f"i{c}" for c in reference(codes, vals, blocked, cats, top_n, cap)]


def test_blend_credits_unweighted_only_candidates_to_their_source() -> None:
    """A candidate only a weight-0 source proposed (exploration) is credited to that source, not column 0."""
    batch = merge_candidates(1, [(ANN, np.array([0]), np.array([0]), np.array([1.0], np.float32)),
                                 (COLD_START, np.array([0]), np.array([1]), np.array([0.7], np.float32))])
    scores, primary = blend(batch, np.array([1.0, 1.0, 0.3, 0.0], np.float32))
    assert scores.tolist() == [1.0, 0.0] and [SOURCES[p] for p in primary] == ["ann", "cold_start"]
    _, primary = blend(batch, np.array([1.0, 1.0, 0.3, 0.05], np.float32))
    assert [SOURCES[p] for p in primary] == ["ann", "cold_start"]


def test_unknown_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="filter_seen"):
        check_options("seen", "none", "max")
    with pytest.raises(ConfigError, match="diversity"):
        check_options("all", "shuffle", "max")
