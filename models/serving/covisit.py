"""Item-to-item co-visitation learned online from users' recent sequences.

When a user touches item ``j``, each of the user's previous ``window`` distinct items ``i`` (at distance
``1 .. window`` in the sequence) gains ``strength(j) / distance`` on the pairs ``(i, j)`` and ``(j, i)``.
Weights decay exponentially with event time (``half_life_ms``) without ever visiting old pairs: an
update at time ``t`` adds ``w * 2 ** ((t - t_ref) / half_life)`` (it *grows* with time instead of the
old weights shrinking), so every weight is in the same units and ranking is unchanged; when the growth
factor gets large the whole table is rescaled once and ``t_ref`` moves forward (every ~40 half-lives).

Bounded memory: at most ``max_neighbors`` neighbours per item (pruned to the strongest when an item
holds half as many again) and at most ``max_items`` items (least recently touched dropped first).
Items are plain strings, so items the base model has never seen work from their first co-occurrence.

>>> cv = CoVisitation(window=2)
>>> for prev, item in [((), "a"), (("a",), "b"), (("b", "a"), "c")]:
...     cv.update(prev, item, strength=1.0, ts_ms=0)
>>> cv.neighbors("a")
[('b', 1.0), ('c', 0.5)]
>>> items, scores = cv.candidates(["c"], [1.0], k=5)
>>> items, scores.tolist()
(['b', 'a'], [1.0, 0.5])
"""

from __future__ import annotations

import heapq
import math
import sys
from collections import OrderedDict
from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from streamrec.models.decay import ForwardDecay
from streamrec.models.errors import ConfigError
from streamrec.models.timeunits import DAY_MS


class CoVisitation:
    """Time-decayed item-to-item co-occurrence counts with bounded memory."""

    def __init__(self, window: int = 5, max_neighbors: int = 20, max_items: int = 100_000,
                 half_life_ms: int = 7 * DAY_MS) -> None:
        if window < 1 or max_neighbors < 1 or max_items < 1 or half_life_ms <= 0:
            raise ConfigError("CoVisitation needs window, max_neighbors, max_items >= 1 and half_life_ms > 0 "
                              f"(got {window}, {max_neighbors}, {max_items}, {half_life_ms})")
        self.window, self.max_neighbors, self.max_items = window, max_neighbors, max_items
        self.half_life_ms = half_life_ms
        self._hi = max_neighbors + max(1, max_neighbors // 2)
        self._nb: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._clock = ForwardDecay(half_life_ms)
        self.evicted = 0
        self.pruned = 0
        self.rebases = 0
        self.refused = 0     # updates with a strength that is negative, NaN or infinite (never stored)

    def __len__(self) -> int:
        return len(self._nb)

    def __contains__(self, item: object) -> bool:
        return item in self._nb

    @property
    def now_ms(self) -> int:
        return self._clock.now_ms

    def _growth(self, ts_ms: int) -> float:
        g, rescale = self._clock.growth(ts_ms)
        if rescale is not None:
            self._rebase(rescale)
        return g

    def _rebase(self, factor: float) -> None:
        for key in list(self._nb):
            row = {j: w * factor for j, w in self._nb[key].items() if w * factor > 1e-9}
            if row:
                self._nb[key] = row
            else:
                del self._nb[key]
        self.rebases += 1

    def _row(self, item: str) -> dict[str, float]:
        row = self._nb.get(item)
        if row is None:
            if len(self._nb) >= self.max_items:
                self._nb.popitem(last=False)
                self.evicted += 1
            row = self._nb[item] = {}
        return row

    def _prune(self, item: str, row: dict[str, float]) -> None:
        self._nb[item] = dict(heapq.nlargest(self.max_neighbors, row.items(), key=itemgetter(1)))
        self.pruned += 1

    def update(self, previous: Sequence[str], item: str, strength: float, ts_ms: int) -> None:
        """Record that a user touched ``item`` after ``previous`` (their recent items, most recent first).

        A repeat of the most recent item (a refresh, a second view) adds nothing, and so does a strength
        that is negative or not finite (counted in ``refused``): one bad value must not poison the pairs.
        """
        if not 0.0 <= strength < math.inf:   # also false for NaN
            self.refused += 1
            return
        if not previous or previous[0] == item:
            if item in self._nb:
                self._nb.move_to_end(item)
            return
        g = strength * self._growth(ts_ms)
        nb, hi = self._nb, self._hi
        row_j = nb.get(item)
        if row_j is None:
            row_j = self._row(item)
        nb.move_to_end(item)
        done: list[str] = []
        get_j = row_j.get
        for dist, i in enumerate(previous[:self.window], 1):
            if i == item or i in done:
                continue
            done.append(i)
            w = g / dist
            row_j[i] = get_j(i, 0.0) + w
            row_i = nb.get(i)
            if row_i is None:
                row_i = self._row(i)
            row_i[item] = row_i.get(item, 0.0) + w
            if len(row_i) > hi:
                self._prune(i, row_i)
        if len(row_j) > hi:
            self._prune(item, row_j)

    def _scale(self) -> float:
        return self._clock.scale()

    def neighbors(self, item: str, k: int | None = None) -> list[tuple[str, float]]:
        """The item's neighbours, strongest first, with their weights decayed to ``now_ms``."""
        row = self._nb.get(item)
        if not row:
            return []
        scale = self._scale()
        top = heapq.nlargest(k or len(row), row.items(), key=itemgetter(1))
        return [(j, w * scale) for j, w in top]

    def scores(self, seeds: Sequence[str], weights: Sequence[float] | np.ndarray) -> dict[str, float]:
        """``sum_s weight_s * w(s, j)`` for every neighbour ``j`` of the seeds, unsorted, in internal
        units (a positive factor away from :meth:`candidates`' scores; for ranking and per-list
        normalisation the factor does not matter)."""
        acc: dict[str, float] = {}
        nb = self._nb
        for s, ws in zip(seeds, weights, strict=True):
            row = nb.get(s)
            if not row:
                continue
            if not acc:
                acc = {j: ws * w for j, w in row.items()}
                continue
            get = acc.get
            for j, w in row.items():
                acc[j] = get(j, 0.0) + ws * w
        return acc

    def candidates(self, seeds: Sequence[str], weights: Sequence[float] | np.ndarray,
                   k: int) -> tuple[list[str], np.ndarray]:
        """Items co-visited with ``seeds``: ``score(j) = sum_s weight_s * w(s, j)``, the best ``k`` first.

        Returns ``(item ids, float32 scores)``; seeds are not excluded (the ranking filters decide).
        """
        acc = self.scores(seeds, weights)
        if not acc:
            return [], np.zeros(0, dtype=np.float32)
        keys = list(acc)
        vals = np.fromiter(acc.values(), dtype=np.float64, count=len(keys))
        order = np.argsort(-vals, kind="stable")[:k]
        return [keys[i] for i in order], (vals[order] * self._scale()).astype(np.float32)

    def memory_bytes(self) -> int:
        """Approximate bytes held (dicts and weights; item ids are shared with the rest of the engine)."""
        n_pairs = sum(len(r) for r in self._nb.values())
        return sys.getsizeof(self._nb) + 100 * len(self._nb) + sum(map(sys.getsizeof, self._nb.values())) \
            + 24 * n_pairs
