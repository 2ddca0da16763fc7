"""Ranking metrics: a hand-computed example and agreement with a plain reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.models.evaluation.metrics import (
    Accumulator,
    catalog_coverage,
    hit_at_k,
    metric_names,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    recall_at_k,
)


def test_hand_computed_example() -> None:
    ranked = ["m1", "m2", "m3", "m4", "m5"]
    # target at rank 2 (third place)
    assert hit_at_k(ranked, "m3", 3) == 1.0
    assert ndcg_at_k(ranked, "m3", 3) == pytest.approx(0.5)          # 1 / log2(4)
    assert mrr_at_k(ranked, "m3", 3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, "m3", 3) == 1.0
    # target at rank 0
    assert ndcg_at_k(ranked, "m1", 1) == 1.0 and mrr_at_k(ranked, "m1", 1) == 1.0
    # target beyond the cut-off, or absent
    for f in (hit_at_k, ndcg_at_k, mrr_at_k, recall_at_k):
        assert f(ranked, "m4", 3) == 0.0
        assert f(ranked, "zz", 5) == 0.0
    assert recall_at_k(ranked, {"m1", "m5", "zz", "yy"}, 5) == pytest.approx(0.5)
    assert recall_at_k(ranked, set(), 5) == 0.0
    assert catalog_coverage(["m1", "m1", "m2"], 10) == pytest.approx(0.2)
    # counts: m1 seen 7 of 7 events -> p = 1 -> 0 bits; m2 never -> p = 1/8 -> 3 bits
    assert novelty(["m1", "m2"], {"m1": 7}, 7) == pytest.approx(1.5)
    assert novelty([], {}, 0) == 0.0


def test_accumulator_hand_computed() -> None:
    acc = Accumulator(k=2, recall_k=3, window=2, catalog_size=10)
    acc.add(["a", "b", "c"], "a", {"a": 1}, 1, ts_ms=1)   # rank 0
    acc.add(["a", "b", "c"], "c", {"a": 1}, 1, ts_ms=2)   # rank 2: miss at 2, found at 3
    acc.add(["d", "e", "f"], "e", {}, 2, ts_ms=3)         # rank 1
    r = acc.result()
    assert list(r) == list(metric_names(2, 3))
    assert r["hr@2"] == pytest.approx(2 / 3)
    assert r["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert r["mrr@2"] == pytest.approx((1 + 0.5) / 3)
    assert r["recall@3"] == pytest.approx(1.0)
    assert r["coverage"] == pytest.approx(4 / 10)            # a, b, d, e (top-2 only)
    curve = acc.curve()
    assert [p["evaluated"] for p in curve] == [2, 1]
    assert curve[0]["hr@2"] == pytest.approx(0.5) and curve[1]["hr@2"] == 1.0
    assert curve[0]["coverage"] == pytest.approx(0.2) and curve[1]["end_ts_ms"] == 3
    assert acc.n == 3


def _reference(ranked: list[str], target: str, k: int) -> tuple[float, float, float]:
    """Straightforward metric definitions via a relevance vector (independent of models.evaluation.metrics)."""
    rel = np.array([1.0 if item == target else 0.0 for item in ranked[:k]])
    discounts = 1.0 / np.log2(np.arange(2, len(rel) + 2))
    dcg = float((rel * discounts).sum())
    idcg = 1.0  # a single relevant item at the top
    hits = np.flatnonzero(rel)
    mrr = 1.0 / (hits[0] + 1) if len(hits) else 0.0
    return float(rel.sum() > 0), dcg / idcg, float(mrr)


items = st.sampled_from([f"i{n}" for n in range(30)])


@settings(max_examples=200, deadline=None)
@given(ranked=st.lists(items, max_size=25, unique=True), target=items, k=st.integers(1, 30))
def test_agrees_with_reference(ranked: list[str], target: str, k: int) -> None:
    hit, ndcg, mrr = _reference(ranked, target, k)
    assert hit_at_k(ranked, target, k) == hit
    assert ndcg_at_k(ranked, target, k) == pytest.approx(ndcg)
    assert mrr_at_k(ranked, target, k) == pytest.approx(mrr)
    assert recall_at_k(ranked, target, k) == hit


@settings(max_examples=100, deadline=None)
@given(ranked=st.lists(items, max_size=25, unique=True), targets=st.sets(items, min_size=1, max_size=8),
       k=st.integers(1, 30))
def test_set_recall_agrees_with_reference(ranked: list[str], targets: set[str], k: int) -> None:
    found = sum(1 for t in targets if t in ranked[:k])
    assert recall_at_k(ranked, targets, k) == pytest.approx(found / len(targets))


@settings(max_examples=50, deadline=None)
@given(lists=st.lists(st.tuples(st.lists(items, max_size=12, unique=True), items), min_size=1, max_size=40),
       window=st.integers(1, 10))
def test_accumulator_means_agree_with_reference(lists: list[tuple[list[str], str]], window: int) -> None:
    acc = Accumulator(k=5, recall_k=10, window=window, catalog_size=30)
    for ranked, target in lists:
        acc.add(ranked, target, {}, 0)
    ref = np.array([_reference(r, t, 5) for r, t in lists])
    r = acc.result()
    assert r["hr@5"] == pytest.approx(ref[:, 0].mean())
    assert r["ndcg@5"] == pytest.approx(ref[:, 1].mean())
    assert r["mrr@5"] == pytest.approx(ref[:, 2].mean())
    assert r["recall@10"] == pytest.approx(np.mean([t in rk[:10] for rk, t in lists]))
    curve = acc.curve()
    assert sum(p["evaluated"] for p in curve) == len(lists)
    assert all(p["evaluated"] == window for p in curve[:-1])
    # window means weighted by window size give back the overall mean
    assert sum(p["hr@5"] * p["evaluated"] for p in curve) / len(lists) == pytest.approx(r["hr@5"])


def test_accumulator_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        Accumulator(k=0)
