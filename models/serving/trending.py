"""Trending items: time-decayed popularity weighted by event strength, bounded, with a fast top list.

Each event adds ``strength * 2 ** ((t - t_ref) / half_life_ms)`` to its item (the exponential-growth
form of decay used in ``models/covisit.py``: old counts never need visiting, the table is rescaled once
every ~40 half-lives). Because all counts decay by the same factor, an item can only overtake another
by receiving events, so the engine keeps an exact *leader set*: every item whose count is above the
count of the ``keep``-th item at the last pruning. ``top(k)`` sorts that small set, at most every
``refresh_events`` events or ``refresh_ms`` of serving time, and serves the cached list in between.

At most ``max_items`` items are counted; beyond that the weakest quarter is dropped in one pass.
``newest(k)`` lists the items first counted most recently (new arrivals: a cold-start source that
needs no model).

>>> tr = Trending(refresh_events=1)
>>> for item, s in [("a", 1.0), ("b", 4.0), ("a", 1.0)]:
...     tr.update(item, s, ts_ms=0)
>>> items, scores = tr.top(2)
>>> items, scores.tolist(), tr.newest(5)
(['b', 'a'], [4.0, 2.0], ['b', 'a'])
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from streamrec.models.decay import ForwardDecay
from streamrec.models.errors import ConfigError
from streamrec.models.timeunits import DAY_MS


class Trending:
    """Time-decayed, strength-weighted popularity counts with an incrementally maintained top list."""

    def __init__(self, half_life_ms: int = DAY_MS, max_items: int = 100_000, keep: int = 500,
                 refresh_events: int = 1_000, refresh_ms: int = 1_000, newest: int = 500) -> None:
        if half_life_ms <= 0 or max_items < 1 or keep < 1 or refresh_events < 1 or refresh_ms < 0:
            raise ConfigError("Trending needs half_life_ms > 0, max_items, keep, refresh_events >= 1 and "
                              f"refresh_ms >= 0 (got {half_life_ms}, {max_items}, {keep}, {refresh_events}, "
                              f"{refresh_ms})")
        self.half_life_ms, self.max_items, self.keep = half_life_ms, max_items, keep
        self.refresh_events, self.refresh_ms = refresh_events, refresh_ms
        self._counts: dict[str, float] = {}
        self._leaders: dict[str, float] = {}
        self._floor = 0.0                     # count of the keep-th leader at the last pruning
        self._new: deque[str] = deque(maxlen=newest)
        self._clock = ForwardDecay(half_life_ms)
        self._cache: tuple[list[str], np.ndarray] = ([], np.zeros(0, dtype=np.float32))
        self._since = 0                       # events since the cached list was built
        self._built_at: int | None = None
        self.evicted = 0
        self.refused = 0     # updates with a strength that is negative, NaN or infinite (never counted)

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def now_ms(self) -> int:
        return self._clock.now_ms

    def update(self, item: str, strength: float, ts_ms: int) -> None:
        """Count one event of ``item``; a negative or non-finite strength is refused (``refused``)."""
        if not 0.0 <= strength < math.inf:   # also false for NaN
            self.refused += 1
            return
        g, rescale = self._clock.growth(ts_ms)
        if rescale is not None:
            self._rescale(rescale)
        counts = self._counts
        old = counts.get(item)
        if old is None:
            if len(counts) >= self.max_items + self.max_items // 4:
                self._evict()
            self._new.append(item)
            old = 0.0
        c = counts[item] = old + strength * g
        if c > self._floor or item in self._leaders:
            self._leaders[item] = c
            if len(self._leaders) > 2 * self.keep:
                self._prune_leaders()
        self._since += 1

    def _rescale(self, factor: float) -> None:
        self._counts = {i: c * factor for i, c in self._counts.items() if c * factor > 1e-9}
        self._leaders = {i: c * factor for i, c in self._leaders.items() if i in self._counts}
        self._floor *= factor

    def _prune_leaders(self) -> None:
        ranked = sorted(self._leaders.items(), key=lambda kv: -kv[1])[:self.keep]
        self._leaders = dict(ranked)
        self._floor = ranked[-1][1]

    def _evict(self) -> None:
        """Drop the weakest items down to ``max_items`` (one O(n) pass per ``max_items / 4`` new items)."""
        keys = list(self._counts)
        values = np.fromiter(self._counts.values(), dtype=np.float64, count=len(keys))
        n_drop = len(keys) - self.max_items
        if n_drop <= 0:
            return
        for k in np.argpartition(values, n_drop - 1)[:n_drop].tolist():
            del self._counts[keys[k]]
            self._leaders.pop(keys[k], None)
        self.evicted += n_drop

    def _scale(self) -> float:
        return self._clock.scale()

    def score(self, item: str) -> float:
        """The item's count decayed to the newest event time (0 if not counted)."""
        return self._counts.get(item, 0.0) * self._scale()

    def refresh(self) -> None:
        """Rebuild the cached top list now."""
        ranked = sorted(self._leaders.items(), key=lambda kv: -kv[1])[:self.keep]
        scale = self._scale()
        self._cache = ([i for i, _ in ranked], np.array([c * scale for _, c in ranked], dtype=np.float32))
        self._since = 0

    def top(self, k: int, now_ms: int | None = None) -> tuple[list[str], np.ndarray]:
        """The ``k`` (at most ``keep``) most popular items and their decayed counts, best first.

        The list is rebuilt when ``refresh_events`` events arrived since the last build, or when
        ``now_ms`` is ``refresh_ms`` past it; otherwise the cached list is served.
        """
        stale = self._since >= self.refresh_events or (not self._cache[0] and self._since > 0)
        if not stale and self._since and now_ms is not None:
            stale = self._built_at is None or now_ms - self._built_at >= self.refresh_ms
        if stale:
            self.refresh()
            self._built_at = now_ms
        items, scores = self._cache
        return items[:k], scores[:k]

    def newest(self, k: int) -> list[str]:
        """The ``k`` items first counted most recently, newest first."""
        out: dict[str, None] = {}
        for item in reversed(self._new):
            if len(out) >= k:
                break
            if item in self._counts:
                out[item] = None
        return list(out)
