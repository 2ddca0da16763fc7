"""The serving side's candidate sources (see :mod:`models.serving.contract` for the contract).

* :class:`AnnSource` (``ann``): the user's vector (encoded from recent items with the model in service)
  against the model's items, one batched encoding and one faiss search for the whole batch.
* :class:`CovisitSource` (``covisit``): items co-visited with the user's most recent distinct items (the
  seeds, weighted ``strength / (1 + position)``); it owns the :class:`~models.serving.covisit.CoVisitation`
  table and learns it from every applied event.
* :class:`TrendingSource` (``trending``): the time-decayed most popular items, the same list for every
  user; it owns the :class:`~models.serving.trending.Trending` counts.
* :class:`ColdStartSource` (``cold_start``, a fallback): for users with fewer than ``2 * top_n``
  candidates, a seeded sample of the model's catalog (or the newest items when there is no model).

>>> from streamrec.models.events import Event, EventType
>>> from streamrec.models.serving.candidates import CodeSpace
>>> from streamrec.models.serving.state import StateLimits, UserState
>>> cov = CovisitSource(k=10, seeds=3)
>>> st, other = UserState("u"), UserState("v")
>>> for user, item, ts in [(other, "a", 1), (other, "b", 2), (st, "a", 3)]:
...     cov.learn(Event("", user.user_id, item, EventType.CLICK, ts), item, 1.0, user, -1)
...     user.observe(item, 0, ts, 1.0, StateLimits())
>>> req = Request(["u"], [st], CodeSpace(), None, 4, "max", 20)
>>> rows, codes, scores = cov.candidates(req)
>>> [req.space.item(c) for c in codes.tolist()], scores.tolist()
(['b'], [1.0])
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamrec.models.events import Event
from streamrec.models.serving.candidates import PreparedModel, encode_users, normalise
from streamrec.models.serving.contract import FALLBACK, Block, Plugin, Request, empty_block, shared
from streamrec.models.serving.covisit import CoVisitation
from streamrec.models.serving.runs import offsets
from streamrec.models.serving.state import META_SIZE, UserState
from streamrec.models.serving.trending import Trending
from streamrec.models.timeunits import DAY_MS

__all__ = ["AnnSource", "ColdStartSource", "CovisitSource", "TrendingSource", "seeds"]

_UNPACK = struct.Struct("<qBf").unpack_from


class AnnSource(Plugin):
    """ANN candidates of every user with a vector in the model in service."""

    name = "ann"

    def __init__(self, k: int = 50) -> None:
        self.k = k

    def candidates(self, request: Request) -> Block | None:
        model: PreparedModel | None = request.model
        if model is None:
            return None
        rows: list[int] = []
        users: list[UserState] = []
        for r, st in enumerate(request.states):
            if st is not None and st.recent_items:
                rows.append(r)
                users.append(st)
        vecs, has = encode_users(users, model.encoder, model.index_of, model.embeddings)
        rows_a = np.asarray(rows, dtype=np.int64)[has]
        if not len(rows_a):
            return empty_block()
        scores, ids = model.index.search(vecs[has], self.k)
        valid = ids >= 0
        found = np.repeat(rows_a, ids.shape[1])[valid.ravel()]
        return found, ids[valid], request.normalise(scores[valid], found)


def seeds(state: UserState, n: int) -> tuple[list[str], list[float]]:
    """Co-visitation seeds: the first ``n`` distinct recent items, weighted ``strength / (1 + position)``."""
    items: list[str] = []
    weights: list[float] = []
    meta = state.recent_meta
    for k, item in enumerate(state.recent_items):
        if item not in items:
            items.append(item)
            weights.append(_UNPACK(meta, META_SIZE * k)[2] / (1.0 + k))
            if len(items) >= n:
                break
    return items, weights


class CovisitSource(Plugin):
    """Items co-visited with each user's most recent items (the best ``k`` per user, in one sort)."""

    name = "covisit"

    def __init__(self, k: int = 50, seeds: int = 5, window: int = 5, max_neighbors: int = 20,
                 max_items: int = 100_000, half_life_ms: int = 7 * DAY_MS) -> None:
        self.k, self.n_seeds = k, seeds
        self.table = CoVisitation(window, max_neighbors, max_items, half_life_ms)
        #: the last request's seeds per row, for :meth:`explain` (only the last request's are kept)
        self._last: tuple[Request | None, dict[int, tuple[list[str], list[float]]]] = (None, {})

    def learn(self, event: Event, item: str, strength: float, state: UserState, position: int) -> None:
        self.table.update(state.recent_items, item, strength, event.timestamp_ms)

    def candidates(self, request: Request) -> Block | None:
        items: list[str] = []
        values: list[float] = []
        lengths: list[int] = []
        table, n_seeds = self.table, self.n_seeds
        memo: dict[int, tuple[list[str], list[float]]] = {}
        self._last = (request, memo)
        for r, st in enumerate(request.states):
            acc = table.scores(*memo.setdefault(r, seeds(st, n_seeds))) if st is not None and st.recent_items else {}
            items.extend(acc)
            values.extend(acc.values())
            lengths.append(len(acc))
        rows = np.repeat(np.arange(len(request.states), dtype=np.int64), lengths)
        if not items:
            return empty_block()
        vals = normalise(np.array(values), rows)                 # per user, in (0, 1]: comparable across rows
        order = np.argsort(rows * 4.0 - vals)                    # by row, best first
        starts = offsets(lengths)[:-1]
        keep = order[np.arange(len(order)) - np.repeat(starts, lengths) < self.k]
        rows = rows[keep]
        chosen = [items[i] for i in keep.tolist()]
        return rows, request.space.codes(chosen), request.normalise(vals[keep], rows)

    def explain(self, request: Request, rows: Sequence[int], items: Sequence[str]) -> list[str]:
        """``covisit:<seed>`` per chosen (row, item): the seed with the largest weighted co-visitation (the
        first such seed on a tie), read per seed for the row's chosen items only (:meth:`CoVisitation.weights`)."""
        table, states = self.table, request.states
        last, memo = self._last
        if last is not request:
            memo = {}
        out: list[str] = []
        start, n = 0, len(items)
        while start < n:                     # one run of consecutive picks of the same row at a time
            r, end = rows[start], start + 1
            while end < n and rows[end] == r:
                end += 1
            chosen = items[start:end]
            st = states[r]
            own = memo.get(r) if st is not None else None
            pairs = own if own is not None else seeds(st, self.n_seeds) if st is not None else ((), ())
            best = [""] * len(chosen)
            best_w = [0.0] * len(chosen)
            for seed, w in zip(*pairs, strict=True):
                for j, stored in enumerate(table.weights(seed, chosen)):
                    v = w * stored
                    if v > best_w[j]:
                        best[j], best_w[j] = seed, v
            out.extend(f"covisit:{b}" if b else "covisit" for b in best)
            start = end
        return out

    def stats(self) -> dict[str, Any]:
        return {"covisit_items": len(self.table)}


class TrendingSource(Plugin):
    """The most popular items under exponential time decay, the same list for every user."""

    name = "trending"

    def __init__(self, k: int = 50, half_life_ms: int = DAY_MS, max_items: int = 100_000,
                 refresh_events: int = 1_000, refresh_ms: int = 1_000) -> None:
        self.k = k
        self.table = Trending(half_life_ms, max_items, max(k, 500), refresh_events, refresh_ms)

    def learn(self, event: Event, item: str, strength: float, state: UserState, position: int) -> None:
        self.table.update(item, strength, event.timestamp_ms)

    def candidates(self, request: Request) -> Block | None:
        top, top_scores = self.table.top(self.k, request.now_ms)
        if not top:
            return None
        return shared(np.arange(len(request), dtype=np.int64), request.space.codes(top), top_scores, request)

    def newest(self, k: int) -> list[str]:
        """The ``k`` items seen most recently for the first time (cold start and exploration draw on them)."""
        return self.table.newest(k)

    def stats(self) -> dict[str, Any]:
        return {"trending_items": len(self.table)}


class ColdStartSource(Plugin):
    """A fallback for users with few candidates: the model's seeded catalog sample, else the newest items."""

    name = "cold_start"
    phase = FALLBACK

    def __init__(self, k: int = 50, newest: Any = None, short_of: int = 40) -> None:
        self.k, self.short_of = k, short_of
        self._newest = newest            # callable k -> newest item ids (the trending source's), or None

    def candidates(self, request: Request) -> Block | None:
        short = np.flatnonzero(request.counts() < self.short_of)
        if not len(short):
            return None
        model = request.model
        if model is not None:
            cold = model.cold_start
        elif self._newest is not None:
            cold = request.space.codes(self._newest(self.k))
        else:
            return None
        if not len(cold):
            return None
        return shared(short, cold, np.linspace(1.0, 0.5, len(cold), dtype=np.float32), request)

