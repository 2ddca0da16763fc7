"""Session neighbours (``session_knn``): V-SKNN (Ludewig & Jannach 2018), incremental and bounded.

Every user's most recent ``window`` distinct items are a *session* (most recent first). A user's
neighbours are other sessions that share an item with the user's own recent items:

1. **sample**: of the sessions that share an item, the ``sample`` (m, 500) that touched one of the shared
   items most recently;
2. **similarity**: ``sim(s, n) = sum of w(p)`` over the user's items at position ``p`` (0 = most recent, of
   ``L`` distinct recent items) that session ``n`` also holds, with the linear position decay
   ``w(p) = (L - p) / L`` of V-SKNN;
3. **neighbours**: the ``k`` (100) sessions of highest similarity (ties: the more recent first);
4. **score**: an item's score is the sum of the similarities of the neighbours that hold it.

The table learns from every applied event (the plug-in ``learn`` hook). Memory is bounded: at most
``max_sessions`` sessions (the least recently updated evicted first; about 0.7 KB each with the index,
measured with 20 items per session), ``window`` items each, and an
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

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamrec.models.events import Event
from streamrec.models.serving.contract import Block, Plugin, Request, empty_block
from streamrec.models.serving.ranking import blocked_items
from streamrec.models.serving.runs import rank_in_runs
from streamrec.models.serving.state import UserState

__all__ = ["SessionKNN", "SessionKnnSource", "query_items"]


def query_items(state: UserState, n: int) -> tuple[str, ...]:
    """The user's first ``n`` distinct recent items, most recent first."""
    return tuple(dict.fromkeys(state.recent_items))[:n]


class SessionKNN:
    """The bounded session table and its item -> sessions index (see the module docstring).

    Sessions have integer slots (reused after an eviction); the index maps an item to ``{slot: tick}``,
    the tick of the session's last touch of the item, so a query gathers its candidate sessions, their
    recency and weights into numpy arrays with one ``fromiter`` per item."""

    def __init__(self, sample: int = 500, k: int = 100, window: int = 20, max_sessions: int = 50_000,
                 max_items: int = 100_000) -> None:
        self.sample, self.k, self.window = max(1, sample), max(1, k), max(1, window)
        self.max_sessions, self.max_items = max(1, max_sessions), max(1, max_items)
        self._slot: dict[str, int] = {}           # session -> slot; insertion order = LRU order
        self._items: list[tuple[str, ...]] = []   # slot -> the session's items, most recent first
        self._free: list[int] = []
        #: item -> {slot: tick of that session's last touch of the item}; insertion order = LRU order
        self._index: dict[str, dict[int, int]] = {}
        self._tick = 0
        self.evicted_sessions = 0
        self.evicted_items = 0
        self.trimmed = 0           # index entries dropped because an item listed ``sample`` sessions

    def __len__(self) -> int:
        return len(self._slot)

    def index_entries(self) -> int:
        return sum(len(s) for s in self._index.values())

    def items_of(self, session: str) -> tuple[str, ...]:
        slot = self._slot.get(session)
        return () if slot is None else self._items[slot]

    def update(self, session: str, item: str) -> None:
        """``session`` touched ``item`` (an applied event)."""
        self._tick += 1
        index = self._index
        slot = self._slot.pop(session, None)
        if slot is None:
            if len(self._slot) >= self.max_sessions:       # evict first: the freed slot is reused
                self._drop(next(iter(self._slot)))
                self.evicted_sessions += 1
            if self._free:
                slot = self._free.pop()
                self._items[slot] = (item,)
            else:
                slot = len(self._items)
                self._items.append((item,))
        else:
            items = (item, *[i for i in self._items[slot] if i != item])
            for gone in items[self.window:]:
                holders = index.get(gone)
                if holders is not None:
                    holders.pop(slot, None)
            self._items[slot] = items[:self.window]
        self._slot[session] = slot
        holders = index.pop(item, None)
        if holders is None:
            holders = {}
        else:
            holders.pop(slot, None)
        holders[slot] = self._tick
        if len(holders) > self.sample:
            del holders[next(iter(holders))]
            self.trimmed += 1
        index[item] = holders
        if len(index) > self.max_items:
            del index[next(iter(index))]
            self.evicted_items += 1

    def _drop(self, session: str) -> None:
        slot = self._slot.pop(session, None)
        if slot is None:
            return
        for item in self._items[slot]:
            holders = self._index.get(item)
            if holders is not None:
                holders.pop(slot, None)
        self._items[slot] = ()
        self._free.append(slot)

    def forget(self, session: str) -> None:
        self._drop(session)

    def _neighbours(self, session: str, items: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(slots, similarities)`` of the top ``k`` neighbours, best first."""
        none = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        n_items = len(items)
        slots: list[np.ndarray] = []
        ticks: list[np.ndarray] = []
        weights: list[float] = []
        counts: list[int] = []
        index = self._index
        for p, item in enumerate(items):
            holders = index.get(item)
            if holders:
                slots.append(np.fromiter(holders.keys(), dtype=np.int64, count=len(holders)))
                ticks.append(np.fromiter(holders.values(), dtype=np.int64, count=len(holders)))
                weights.append((n_items - p) / n_items)
                counts.append(len(holders))
        if not slots:
            return none
        slot_a, tick_a = np.concatenate(slots), np.concatenate(ticks)
        own = self._slot.get(session, -1)
        uniq, inv = np.unique(slot_a, return_inverse=True)
        sim = np.bincount(inv, np.repeat(weights, counts), minlength=len(uniq))
        last = np.zeros(len(uniq), dtype=np.int64)
        np.maximum.at(last, inv, tick_a)
        keep = np.flatnonzero(uniq != own)
        if len(keep) > self.sample:                      # the m sessions that touched a shared item last
            keep = keep[np.argpartition(-last[keep], self.sample - 1)[:self.sample]]
        order = keep[np.lexsort((-last[keep], -sim[keep]))[:self.k]]  # by similarity, then recency
        return uniq[order], sim[order]

    def neighbours(self, session: str, items: tuple[str, ...]) -> list[tuple[str, float]]:
        """The top ``k`` neighbour sessions of a session whose items (most recent first) are ``items``,
        with their similarities, best first (``session`` itself is never its own neighbour)."""
        slots, sims = self._neighbours(session, items)
        name = {slot: s for s, slot in self._slot.items()} if len(slots) else {}
        return [(name[int(slot)], float(w)) for slot, w in zip(slots.tolist(), sims.tolist(), strict=True)]

    def scores(self, session: str, items: tuple[str, ...]) -> dict[str, float]:
        """Each item's summed neighbour similarity."""
        slots, sims = self._neighbours(session, items)
        acc: dict[str, float] = {}
        get = acc.get
        held = self._items
        for slot, w in zip(slots.tolist(), sims.tolist(), strict=True):
            for item in held[slot]:
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
        #: the last request's neighbour slots per row, for :meth:`explain` (only the last one is kept)
        self._last: tuple[Request | None, dict[int, list[int]]] = (None, {})

    def learn(self, event: Event, item: str, strength: float, state: UserState, position: int) -> None:
        self.table.update(event.user_id, item)

    def forget_user(self, user_id: str) -> None:
        self.table.forget(user_id)

    def candidates(self, request: Request) -> Block | None:
        """Neighbours per user (numpy per user), then one flat gather of their items for the whole batch:
        the summed similarities come from one ``unique`` and one ``bincount`` over ``row, code`` keys."""
        table, window = self.table, self.table.window
        held = table._items
        flat: list[str] = []
        sims: list[np.ndarray] = []
        sizes: list[int] = []
        rows_of: list[int] = []
        ban_items: list[str] = []
        ban_rows: list[int] = []
        memo: dict[int, list[int]] = {}
        self._last = (request, memo)
        for r, (uid, st) in enumerate(zip(request.user_ids, request.states, strict=True)):
            if st is None or not st.recent_items:
                continue
            slots, sim = table._neighbours(uid, query_items(st, window))
            if not len(slots):
                continue
            memo[r] = slots.tolist()
            chosen = [held[s] for s in memo[r]]
            n = [len(t) for t in chosen]
            flat.extend([i for t in chosen for i in t])
            sims.append(np.repeat(sim, n))
            sizes.append(sum(n))
            rows_of.append(r)
            ban = blocked_items(st, self.filter_seen)
            if ban:
                ban_items.extend(ban)
                ban_rows.extend([r] * len(ban))
        if not flat:
            return empty_block()
        local: dict[str, int] = {}                       # the batch's items, numbered once each
        put = local.setdefault
        ids = np.fromiter([put(i, len(local)) for i in flat], dtype=np.int64, count=len(flat))
        width = np.int64(max(len(local), 1))
        keys = np.repeat(np.asarray(rows_of, dtype=np.int64), sizes) * width + ids
        uniq, inv = np.unique(keys, return_inverse=True)
        score = np.bincount(inv, np.concatenate(sims), minlength=len(uniq))
        if ban_items:
            bcodes = np.array([local.get(i, -1) for i in ban_items], dtype=np.int64)
            known = bcodes >= 0
            drop = np.isin(uniq, np.asarray(ban_rows, dtype=np.int64)[known] * width + bcodes[known])
            uniq, score = uniq[~drop], score[~drop]
        if not len(uniq):
            return empty_block()
        rows = uniq // width
        order = np.lexsort((-score, rows))                # by row, best first
        rows, score, uniq = rows[order], score[order], uniq[order]
        rank = rank_in_runs(rows)
        keep = rank < self.k
        rows, score, uniq = rows[keep], score[keep], uniq[keep]
        names = list(local)
        codes = request.space.codes([names[i] for i in (uniq % width).tolist()])
        return rows, codes, request.normalise(score, rows)

    def explain(self, request: Request, rows: Sequence[int], items: Sequence[str]) -> list[str]:
        """``session:<n>`` per chosen (row, item): how many of the user's neighbour sessions hold the item
        (the neighbours found by this request's :meth:`candidates`, not searched again)."""
        last, memo = self._last
        held = self.table._items
        out: list[str] = []
        for r, item in zip(rows, items, strict=True):
            slots = memo.get(r, []) if last is request else []
            out.append(f"session:{sum(1 for s in slots if item in held[s])}")
        return out

    def stats(self) -> dict[str, Any]:
        t = self.table
        return {"session_knn_sessions": len(t), "session_knn_items": len(t._index),
                "session_knn_evicted_sessions": t.evicted_sessions, "session_knn_evicted_items": t.evicted_items,
                "session_knn_trimmed": t.trimmed}
