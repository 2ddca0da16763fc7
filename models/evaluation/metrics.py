"""Ranking metrics for next-item evaluation, and an accumulator for overall figures and curves.

Every function scores one ranked list (best first) against the item the user actually interacted with
next. Ranks are 0-based: the first item of the list has rank 0.

* ``hit@k``    1 if the target is in the top ``k``, else 0.
* ``ndcg@k``   ``1 / log2(rank + 2)`` if the target is in the top ``k``, else 0 (with one relevant item the
  ideal DCG is 1, so DCG is already normalised).
* ``mrr@k``    ``1 / (rank + 1)`` if the target is in the top ``k``, else 0.
* ``recall@k`` the share of the target items found in the top ``k``; with one target it equals ``hit@k``.
* catalog coverage: distinct items recommended divided by the catalog size.
* novelty: mean self-information ``-log2 p(i)`` of the recommended items, where ``p(i)`` is the item's share
  of the events seen so far, smoothed as ``(count + 1) / (total + 1)`` so an item nobody has touched yet
  is finite (and maximally novel) and every value is ``>= 0``.

>>> ranked = ["a", "b", "c", "d"]
>>> hit_at_k(ranked, "c", 3), round(ndcg_at_k(ranked, "c", 3), 4), mrr_at_k(ranked, "c", 3)
(1.0, 0.5, 0.3333333333333333)
>>> hit_at_k(ranked, "d", 3), ndcg_at_k(ranked, "d", 3), recall_at_k(ranked, {"a", "d"}, 3)
(0.0, 0.0, 0.5)
>>> catalog_coverage({"a", "b"}, 8)
0.25
>>> novelty(["a", "b"], {"a": 3, "b": 0}, total=3)
1.0
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def rank_of(ranked: Sequence[str], target: str, k: int) -> int | None:
    """0-based rank of ``target`` in the top ``k`` of ``ranked``, or ``None`` when it is not there.

    >>> rank_of(["x", "y"], "y", 2), rank_of(["x", "y"], "y", 1)
    (1, None)
    """
    for r, item in enumerate(ranked[:k]):
        if item == target:
            return r
    return None


def hit_at_k(ranked: Sequence[str], target: str, k: int) -> float:
    """1.0 if ``target`` is among the first ``k`` items of ``ranked``, else 0.0."""
    return 0.0 if rank_of(ranked, target, k) is None else 1.0


def ndcg_at_k(ranked: Sequence[str], target: str, k: int) -> float:
    """``1 / log2(rank + 2)`` for a target at 0-based ``rank < k``, else 0.0."""
    r = rank_of(ranked, target, k)
    return 0.0 if r is None else 1.0 / math.log2(r + 2)


def mrr_at_k(ranked: Sequence[str], target: str, k: int) -> float:
    """``1 / (rank + 1)`` for a target at 0-based ``rank < k``, else 0.0."""
    r = rank_of(ranked, target, k)
    return 0.0 if r is None else 1.0 / (r + 1)


def recall_at_k(ranked: Sequence[str], targets: str | Collection[str], k: int) -> float:
    """Share of ``targets`` (one item id, or a collection of them) found among the first ``k`` items.

    An empty target collection has recall 0.0 (there was nothing to find).

    >>> recall_at_k(["a", "b", "c"], "b", 2), recall_at_k(["a", "b", "c"], ["a", "c", "z"], 3)
    (1.0, 0.6666666666666666)
    """
    wanted = {targets} if isinstance(targets, str) else set(targets)
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def catalog_coverage(recommended: Collection[str], catalog_size: int) -> float:
    """Distinct recommended items over the catalog size (0.0 for an empty catalog)."""
    return len(set(recommended)) / catalog_size if catalog_size > 0 else 0.0


def self_information(count: int, total: int) -> float:
    """``-log2((count + 1) / (total + 1))``: the novelty of one item seen ``count`` times out of ``total``."""
    return -math.log2((count + 1) / (total + 1))


def novelty(items: Iterable[str], counts: Mapping[str, int], total: int) -> float:
    """Mean self-information of ``items`` given event ``counts`` per item out of ``total`` events.

    0.0 for an empty list. Items missing from ``counts`` have count 0.
    """
    values = [self_information(counts.get(i, 0), total) for i in items]
    return sum(values) / len(values) if values else 0.0


def metric_names(k: int, recall_k: int) -> tuple[str, ...]:
    """The metric keys an :class:`Accumulator` reports, in a fixed order.

    >>> metric_names(10, 20)
    ('hr@10', 'ndcg@10', 'mrr@10', 'recall@20', 'coverage', 'novelty')
    """
    return (f"hr@{k}", f"ndcg@{k}", f"mrr@{k}", f"recall@{recall_k}", "coverage", "novelty")


@dataclass
class _Sums:
    n: int = 0
    hit: float = 0.0
    ndcg: float = 0.0
    mrr: float = 0.0
    recall: float = 0.0
    novelty: float = 0.0
    items: set[str] = field(default_factory=set)

    def means(self, names: tuple[str, ...], catalog_size: int) -> dict[str, float]:
        d = max(self.n, 1)
        values = (self.hit / d, self.ndcg / d, self.mrr / d, self.recall / d,
                  catalog_coverage(self.items, catalog_size), self.novelty / d)
        return dict(zip(names, values, strict=True))


class Accumulator:
    """Aggregates the metrics of many scored lists, overall and per window of ``window`` scored lists.

    ``add`` takes the list a policy returned (at least ``max(k, recall_k)`` long when it can be), the
    target item, and the popularity counts of the events seen so far (for novelty). hit, ndcg, mrr,
    coverage and novelty look at the top ``k``; recall at the top ``recall_k``.

    Coverage is measured against ``catalog_size`` (the distinct items of the replayed log); a window's
    coverage counts the distinct items recommended inside that window only.

    >>> acc = Accumulator(k=2, recall_k=3, window=2, catalog_size=8)
    >>> acc.add(["a", "b", "c"], "b", {}, 0, ts_ms=10)
    >>> acc.add(["a", "c", "b"], "b", {}, 0, ts_ms=20)
    >>> acc.add(["d", "a", "b"], "d", {}, 0, ts_ms=30)
    >>> r = acc.result()
    >>> r["hr@2"], r["recall@3"], r["coverage"]
    (0.6666666666666666, 1.0, 0.5)
    >>> [(w["evaluated"], w["hr@2"]) for w in acc.curve()]
    [(2, 0.5), (1, 1.0)]
    """

    def __init__(self, k: int = 10, recall_k: int = 20, window: int = 1000, catalog_size: int = 0) -> None:
        if k <= 0 or recall_k <= 0 or window <= 0:
            raise ValueError("k, recall_k and window must be positive")
        self.k = k
        self.recall_k = recall_k
        self.window = window
        self.catalog_size = catalog_size
        self.names = metric_names(k, recall_k)
        self._all = _Sums()
        self._win = _Sums()
        self._last_ts = 0
        self._curve: list[dict[str, Any]] = []

    @property
    def n(self) -> int:
        """How many lists have been scored."""
        return self._all.n

    def add(self, ranked: Sequence[str], target: str, counts: Mapping[str, int], total: int,
            ts_ms: int = 0) -> None:
        top = list(ranked[: self.k])
        r = rank_of(top, target, self.k)
        nov = novelty(top, counts, total)
        rec = recall_at_k(ranked, target, self.recall_k)
        for s in (self._all, self._win):
            s.n += 1
            if r is not None:
                s.hit += 1.0
                s.ndcg += 1.0 / math.log2(r + 2)
                s.mrr += 1.0 / (r + 1)
            s.recall += rec
            s.novelty += nov
            s.items.update(top)
        self._last_ts = ts_ms
        if self._win.n >= self.window:
            self._close_window()

    def _close_window(self) -> None:
        if self._win.n == 0:
            return
        point: dict[str, Any] = {"window": len(self._curve), "evaluated": self._win.n,
                                 "end_evaluated": self._all.n, "end_ts_ms": self._last_ts}
        point.update(self._win.means(self.names, self.catalog_size))
        self._curve.append(point)
        self._win = _Sums()

    def result(self) -> dict[str, float]:
        """Overall means, keyed by :func:`metric_names`."""
        return self._all.means(self.names, self.catalog_size)

    def curve(self) -> list[dict[str, Any]]:
        """One point per window (the last one may be partial): its size, where it ends, and its means."""
        points = list(self._curve)
        if self._win.n:
            partial: dict[str, Any] = {"window": len(points), "evaluated": self._win.n,
                                       "end_evaluated": self._all.n, "end_ts_ms": self._last_ts}
            partial.update(self._win.means(self.names, self.catalog_size))
            points.append(partial)
        return points
