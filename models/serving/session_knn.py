"""Session neighbours (``session_knn``): V-SKNN (Ludewig & Jannach 2018), incremental and bounded.

Every user's most recent ``window`` distinct items are a *session* (most recent first). A user's
neighbours are other sessions that share an item with the user's own recent items:

1. **sample**: of the sessions that share an item, the ``sample`` (m, 500) most recently updated;
2. **similarity**: ``sim(s, n) = sum of w(p)`` over the user's items at position ``p`` (0 = most recent, of
   ``L`` distinct recent items) that session ``n`` also holds, with the linear position decay
   ``w(p) = (L - p) / L`` of V-SKNN;
3. **neighbours**: the ``k`` (100) sessions of highest similarity (ties: the more recent first);
4. **score**: an item's score is the sum of the similarities of the neighbours that hold it.

The table learns from every applied event (the plug-in ``learn`` hook). Memory is bounded: at most
``max_sessions`` sessions (the least recently updated evicted first), ``window`` items each, and an
inverted index of at most ``max_items`` items (least recently touched evicted first), each listing at most
``sample`` sessions (the oldest dropped); evictions are counted in :meth:`SessionKnnSource.stats`.

Worked example (the unit tests have more): sessions ``v = (c, b, a)`` and ``w = (d, c)`` (most recent
first); the user ``u`` clicked ``a`` then ``b``, so ``u``'s items are ``(b, a)`` with weights ``1, 0.5``.
``v`` holds both (``sim = 1.5``), ``w`` neither, so the only neighbour is ``v`` and its items score 1.5 each;
normalised by the best: ``a, b, c`` all 1.0 (the selection's filter decides whether ``a`` and ``b`` may be
shown again).

>>> from streamrec.models.events import Event, EventType
>>> from streamrec.models.serving.candidates import CodeSpace
>>> from streamrec.models.serving.state import StateLimits, UserState
>>> src = SessionKnnSource(k=10)
>>> users = {name: UserState(name) for name in "uvw"}
>>> for user, item in [("v", "a"), ("v", "b"), ("v", "c"), ("w", "c"), ("w", "d"), ("u", "a"), ("u", "b")]:
...     st = users[user]
...     src.learn(Event("", user, item, EventType.CLICK, 0), item, 1.0, st, -1)
...     st.observe(item, 1, 0, 1.0, StateLimits())
>>> src.table.neighbours("u", ("b", "a"))
[('v', 1.5)]
>>> req = Request(["u"], [users["u"]], CodeSpace(), None, 0, "max", 20)
>>> rows, codes, scores = src.candidates(req)
>>> sorted(req.space.item(c) for c in codes.tolist()), scores.tolist()
(['a', 'b', 'c'], [1.0, 1.0, 1.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamrec.models.events import Event
from streamrec.models.serving.contract import Block, Plugin, Request, empty_block
from streamrec.models.serving.ranking import blocked_items
from streamrec.models.serving.state import UserState

__all__ = ["SessionKNN", "SessionKnnSource", "query_items"]


def query_items(state: UserState, n: int) -> tuple[str, ...]:
    """The user's first ``n`` distinct recent items, most recent first."""
    return tuple(dict.fromkeys(state.recent_items))[:n]


class SessionKNN:
    """The bounded session table and its item -> sessions index (see the module docstring)."""

    def __init__(self, sample: int = 500, k: int = 100, window: int = 20, max_sessions: int = 50_000,
                 max_items: int = 100_000) -> None:
        self.sample, self.k, self.window = max(1, sample), max(1, k), max(1, window)
        self.max_sessions, self.max_items = max(1, max_sessions), max(1, max_items)
        #: session -> [tick of its last update, its items most recent first]; insertion order = LRU order
        self._sessions: dict[str, list[Any]] = {}
        #: item -> {session: None}, sessions in the order they last touched the item; insertion order = LRU
        self._index: dict[str, dict[str, None]] = {}
        self._tick = 0
        self.evicted_sessions = 0
        self.evicted_items = 0
        self.trimmed = 0           # index entries dropped because an item listed ``sample`` sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def index_entries(self) -> int:
        return sum(len(s) for s in self._index.values())

    def update(self, session: str, item: str) -> None:
        """``session`` touched ``item`` (an applied event)."""
        self._tick += 1
        sessions, index = self._sessions, self._index
        rec = sessions.pop(session, None)
        if rec is None:
            items: tuple[str, ...] = (item,)
        else:
            old = rec[1]
            items = (item, *[i for i in old if i != item])
            for gone in items[self.window:]:
                holders = index.get(gone)
                if holders is not None:
                    holders.pop(session, None)
            items = items[:self.window]
        sessions[session] = [self._tick, items]
        holders = index.pop(item, None)
        if holders is None:
            holders = {}
        else:
            holders.pop(session, None)
        holders[session] = None
        if len(holders) > self.sample:
            del holders[next(iter(holders))]
            self.trimmed += 1
        index[item] = holders
        if len(index) > self.max_items:
            del index[next(iter(index))]
            self.evicted_items += 1
        if len(sessions) > self.max_sessions:
            oldest = next(iter(sessions))
            self._drop(oldest)
            self.evicted_sessions += 1

    def _drop(self, session: str) -> None:
        rec = self._sessions.pop(session, None)
        if rec is None:
            return
        for item in rec[1]:
            holders = self._index.get(item)
            if holders is not None:
                holders.pop(session, None)

    def forget(self, session: str) -> None:
        self._drop(session)

    def neighbours(self, session: str, items: tuple[str, ...]) -> list[tuple[str, float]]:
        """The top ``k`` neighbour sessions of a session whose items (most recent first) are ``items``,
        with their similarities, best first (``session`` itself is never its own neighbour)."""
        n_items = len(items)
        if not n_items:
            return []
        sim: dict[str, float] = {}
        get = sim.get
        index = self._index
        for p, item in enumerate(items):
            holders = index.get(item)
            if not holders:
                continue
            w = (n_items - p) / n_items
            for s in holders:
                sim[s] = get(s, 0.0) + w
        sim.pop(session, None)
        if not sim:
            return []
        names = list(sim)
        sessions = self._sessions
        ticks = np.fromiter((sessions[s][0] for s in names), dtype=np.int64, count=len(names))
        keep = np.arange(len(names))
        if len(names) > self.sample:                      # the m most recently updated sessions
            keep = np.argpartition(-ticks, self.sample - 1)[:self.sample]
        sims = np.fromiter((sim[names[i]] for i in keep.tolist()), dtype=np.float64, count=len(keep))
        order = np.lexsort((-ticks[keep], -sims))[:self.k]  # by similarity, then recency
        return [(names[keep[j]], float(sims[j])) for j in order.tolist()]

    def scores(self, session: str, items: tuple[str, ...]) -> dict[str, float]:
        """Each item's summed neighbour similarity."""
        acc: dict[str, float] = {}
        get = acc.get
        sessions = self._sessions
        for s, w in self.neighbours(session, items):
            for item in sessions[s][1]:
                acc[item] = get(item, 0.0) + w
        return acc


class SessionKnnSource(Plugin):
    """V-SKNN candidates: the best ``k`` items per user of their neighbour sessions' items, minus the
    items the ``filter_seen`` policy blocks; one block for the whole batch."""

    name = "session_knn"

    def __init__(self, k: int = 50, sample: int = 500, neighbours: int = 100, window: int = 20,
                 max_sessions: int = 50_000, max_items: int = 100_000, filter_seen: str = "purchased") -> None:
        self.k, self.filter_seen = k, filter_seen
        self.table = SessionKNN(sample, neighbours, window, max_sessions, max_items)

    def learn(self, event: Event, item: str, strength: float, state: UserState, position: int) -> None:
        self.table.update(event.user_id, item)

    def forget_user(self, user_id: str) -> None:
        self.table.forget(user_id)

    def candidates(self, request: Request) -> Block | None:
        items: list[str] = []
        values: list[float] = []
        lengths: list[int] = []
        table, window = self.table, self.table.window
        for uid, st in zip(request.user_ids, request.states, strict=True):
            acc = table.scores(uid, query_items(st, window)) if st is not None and st.recent_items else {}
            ban = blocked_items(st, self.filter_seen)
            if ban and acc:
                acc = {i: v for i, v in acc.items() if i not in ban}
            items.extend(acc)
            values.extend(acc.values())
            lengths.append(len(acc))
        if not items:
            return empty_block()
        rows = np.repeat(np.arange(len(request.states), dtype=np.int64), lengths)
        vals = np.array(values, dtype=np.float64)
        peak = np.maximum.reduceat(vals, np.r_[0, np.cumsum(lengths)][:-1][np.asarray(lengths) > 0])
        vals = vals / np.repeat(peak, np.asarray(lengths)[np.asarray(lengths) > 0])   # per row, in (0, 1]
        order = np.lexsort((-vals, rows))                 # by row, best first
        starts = np.r_[0, np.cumsum(lengths)][:-1]
        keep = order[np.arange(len(order)) - np.repeat(starts, lengths) < self.k]
        rows = rows[keep]
        return rows, request.space.codes([items[i] for i in keep.tolist()]), request.normalise(vals[keep], rows)

    def stats(self) -> dict[str, Any]:
        t = self.table
        return {"session_knn_sessions": len(t), "session_knn_items": len(t._index),
                "session_knn_evicted_sessions": t.evicted_sessions, "session_knn_evicted_items": t.evicted_items,
                "session_knn_trimmed": t.trimmed}
