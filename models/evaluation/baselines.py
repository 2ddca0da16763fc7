"""Session-based baselines written from the papers, run by the harness like any other policy.

=================  ==============================================================================
``RecentPolicy``   the user's own recent distinct items, most recent first, padded with trending
``SknnPolicy``     V-SKNN (Ludewig & Jannach 2018): session neighbours with linear position decay
=================  ==============================================================================

Both learn incrementally (one event at a time, test-then-train in the harness) and keep bounded memory:
every table has a cap and evicts its least recently used entries.

**Sessions.** An event's session is ``(user_id, session_id)`` when the event carries a session id (OTTO,
YOOCHOOSE, streamrec's own logs); otherwise a user's session ends after ``session_gap_ms`` of event time
without an event (default 30 minutes), as in the session-based literature.

**V-SKNN** (Ludewig & Jannach, "Evaluation of session-based recommendation algorithms", UMAI 2018,
section 3; the ``session-rec`` reference code ``vsknn.py``). For the user's current session
``s = (i_1, ..., i_L)`` (most recent last, distinct items, at most ``max_session_items``), item ``i_p``
has weight ``w_p = p / L`` (linear decay: the newest item 1, the oldest ``1 / L``).

1. Candidates: the ``sample_size`` (m = 500) most recent other sessions that share an item with ``s``,
   a session's recency being when it last touched one of the shared items (the reference code sorts
   by the session's last event; with bounded tables this is what can be found without a scan). Each
   item remembers the ``sample_size + 1`` sessions that touched it last, which is all the merge needs.
2. Similarity of a candidate ``n``: ``sim(s, n) = sum of w_p over the items i_p of s that n contains``.
3. Neighbours: the ``k`` (100) candidates with the highest similarity (ties: the more recent session).
4. Score of item ``i``: the sum of ``sim(s, n)`` over the neighbours ``n`` that contain ``i``; items
   of ``s`` itself are scored too (re-engagement), the harness's exclusion decides what may come back.

Lists are padded with trending items (half-life ``trending_half_life_ms``) when the neighbours offer
fewer than asked (a user with no session yet gets trending only). The paper's optional IDF weighting
and neighbour-side position weighting are left out (their defaults in the reference code are off).

>>> from streamrec.models.events import Event, EventType
>>> rec = RecentPolicy(trending_half_life_ms=None)
>>> for n, (user, item) in enumerate([("u", "a"), ("v", "z"), ("u", "b"), ("v", "z"), ("u", "a")]):
...     rec.learn(Event(str(n), user, item, EventType.CLICK, n))
>>> rec.recommend("u", 3, now_ms=5, exclude=set())
['a', 'b', 'z']
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from operator import itemgetter
from typing import Any

from streamrec.models.errors import ConfigError
from streamrec.models.evaluation.policies import PopularityPolicy
from streamrec.models.events import Event
from streamrec.models.timeunits import DAY_MS

_ORDER = itemgetter(1)

SESSION_GAP_MS = 30 * 60 * 1000


def _padded(ranked: list[str], pad: PopularityPolicy, k: int, exclude: AbstractSet[str]) -> list[str]:
    """``ranked`` without excluded items, cut to ``k``, then filled up with trending items."""
    out = [i for i in ranked if i not in exclude][:k]
    if len(out) < k:
        taken = set(out)
        banned: AbstractSet[str] = taken | set(exclude) if exclude else taken
        out += pad.recommend("", k - len(out), 0, banned)
    return out


class RecentPolicy:
    """The user's own recent distinct items, most recent first, then trending items.

    Per user the ``history`` most recently touched distinct items are kept (touching an item again moves
    it to the front); at most ``max_users`` users are kept (least recently active evicted first).
    """

    def __init__(self, history: int = 50, max_users: int = 1_000_000,
                 trending_half_life_ms: float | None = DAY_MS, name: str = "recent") -> None:
        if history < 1 or max_users < 1:
            raise ConfigError("recent: history and max_users must be at least 1")
        self.name = name
        self.history = history
        self.max_users = max_users
        self._items: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()
        self.trending = PopularityPolicy(half_life_ms=trending_half_life_ms, name="trending")

    def learn(self, event: Event) -> None:
        items = self._items.get(event.user_id)
        if items is None:
            items = self._items[event.user_id] = OrderedDict()
            if len(self._items) > self.max_users:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(event.user_id)
        items[event.item_id] = None
        items.move_to_end(event.item_id)
        if len(items) > self.history:
            items.popitem(last=False)
        self.trending.learn(event)

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            self.learn(e)

    def recent(self, user_id: str) -> list[str]:
        """The user's recent distinct items, most recent first."""
        items = self._items.get(user_id)
        return list(reversed(items)) if items else []

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: AbstractSet[str]) -> list[str]:
        return _padded(self.recent(user_id), self.trending, k, exclude)

    def stats(self) -> dict[str, Any]:
        return {"users": len(self._items)}


class _Session:
    __slots__ = ("items", "last_ms", "order")

    def __init__(self) -> None:
        self.items: OrderedDict[str, None] = OrderedDict()  # distinct items, most recent last
        self.last_ms = 0
        self.order = 0   # learn counter at the last event (breaks time ties: later learned is more recent)


class SknnPolicy:
    """V-SKNN, incremental: see the module docstring for the algorithm and its parameters.

    ``sample_size`` (m) candidate sessions, ``k`` neighbours, sessions of at most ``max_session_items``
    distinct items (the most recent kept), at most ``max_sessions`` sessions (least recently active
    evicted; items forget evicted sessions lazily) and ``max_items`` items with session lists.
    """

    def __init__(self, k: int = 100, sample_size: int = 500, max_session_items: int = 100,
                 session_gap_ms: int = SESSION_GAP_MS, max_sessions: int = 200_000, max_items: int = 500_000,
                 trending_half_life_ms: float | None = DAY_MS, name: str = "sknn") -> None:
        if min(k, sample_size, max_session_items, session_gap_ms, max_sessions, max_items) < 1:
            raise ConfigError("sknn: k, sample_size, max_session_items, session_gap_ms, max_sessions and "
                              "max_items must be at least 1")
        self.name = name
        self.k, self.sample_size, self.max_session_items = k, sample_size, max_session_items
        self.session_gap_ms, self.max_sessions, self.max_items = session_gap_ms, max_sessions, max_items
        self._sessions: OrderedDict[tuple[str, str | int], _Session] = OrderedDict()
        self._current: dict[str, tuple[str, str | int]] = {}   # user -> key of their current session
        self._gap_count: dict[str, int] = {}                  # user -> sessions cut by the gap so far
        #: item -> {session key: learn counter when it touched the item}, newest last, at most ``sample_size``
        self._item_sessions: OrderedDict[str, OrderedDict[tuple[str, str | int], int]] = OrderedDict()
        self._learned = 0
        self.trending = PopularityPolicy(half_life_ms=trending_half_life_ms, name="trending")

    # ------------------------------------------------------------------------------------- learning

    def _session_key(self, event: Event) -> tuple[str, str | int]:
        if event.session_id is not None:
            return (event.user_id, event.session_id)
        current = self._current.get(event.user_id)
        if current is not None:
            s = self._sessions.get(current)
            if s is not None and event.timestamp_ms - s.last_ms <= self.session_gap_ms:
                return current
        n = self._gap_count.get(event.user_id, -1) + 1
        self._gap_count[event.user_id] = n
        return (event.user_id, n)

    def learn(self, event: Event) -> None:
        key = self._session_key(event)
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = _Session()
            if len(self._sessions) > self.max_sessions:
                old_key, _ = self._sessions.popitem(last=False)
                if self._current.get(old_key[0]) == old_key:
                    del self._current[old_key[0]]
                    self._gap_count.pop(old_key[0], None)
        else:
            self._sessions.move_to_end(key)
        self._current[event.user_id] = key
        self._learned += 1
        s.last_ms, s.order = event.timestamp_ms, self._learned
        s.items[event.item_id] = None
        s.items.move_to_end(event.item_id)
        if len(s.items) > self.max_session_items:
            s.items.popitem(last=False)
        holders = self._item_sessions.get(event.item_id)
        if holders is None:
            holders = self._item_sessions[event.item_id] = OrderedDict()
            if len(self._item_sessions) > self.max_items:
                self._item_sessions.popitem(last=False)
        else:
            self._item_sessions.move_to_end(event.item_id)
        holders[key] = self._learned
        holders.move_to_end(key)
        if len(holders) > self.sample_size + 1:   # one more: the asking session may be among them
            holders.popitem(last=False)
        self.trending.learn(event)

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            self.learn(e)

    # ------------------------------------------------------------------------------------- scoring

    def current_session(self, user_id: str, now_ms: int | None = None) -> list[str]:
        """The user's current session, most recent item last (empty when it ended by the gap rule)."""
        key = self._current.get(user_id)
        s = self._sessions.get(key) if key is not None else None
        if key is None or s is None:
            return []
        if now_ms is not None and isinstance(key[1], int) and now_ms - s.last_ms > self.session_gap_ms:
            return []   # no session id and the gap has passed: the next event starts a new session
        return list(s.items)

    def neighbours(self, user_id: str, now_ms: int | None = None) -> list[tuple[float, tuple[str, str | int]]]:
        """The top ``k`` neighbour sessions of the user's current session, ``(similarity, key)``, best first."""
        items = self.current_session(user_id, now_ms)
        if not items:
            return []
        own = self._current[user_id]
        length = len(items)
        weights = {item: (p + 1) / length for p, item in enumerate(items)}
        # the m sessions that most recently touched one of these items: merge the items' holder lists
        # (each ordered by touch, newest last) from their newest ends
        lists = [reversed(h.items()) for i in items if (h := self._item_sessions.get(i))]
        sample: list[tuple[int, tuple[str, str | int], _Session]] = []
        taken: set[tuple[str, str | int]] = {own}
        # (an order is the learn count of one event, so no two entries share one: newest first is one order)
        for key, order in heapq.merge(*lists, key=_ORDER, reverse=True):
            if key in taken:
                continue
            taken.add(key)
            s = self._sessions.get(key)
            if s is not None:
                sample.append((order, key, s))
                if len(sample) == self.sample_size:
                    break
        scored: list[tuple[float, int, tuple[str, str | int]]] = []
        for order, key, s in sample:
            sim = 0.0
            other = s.items
            if len(other) < length:
                for item in other:
                    w = weights.get(item)
                    if w is not None:
                        sim += w
            else:
                for item, w in weights.items():
                    if item in other:
                        sim += w
            if sim > 0.0:
                scored.append((sim, order, key))
        top = heapq.nlargest(self.k, scored)
        return [(sim, key) for sim, _, key in top]

    def scores(self, user_id: str, now_ms: int | None = None) -> dict[str, float]:
        """Item scores: the sum of the similarities of the neighbours that contain the item."""
        out: dict[str, float] = {}
        get, sessions = out.get, self._sessions
        for sim, key in self.neighbours(user_id, now_ms):
            for item in sessions[key].items:
                out[item] = get(item, 0.0) + sim
        return out

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: AbstractSet[str]) -> list[str]:
        scores = self.scores(user_id, now_ms)
        wanted = k + (sum(1 for i in exclude if i in scores) if exclude else 0)
        ranked = [i for _, i in heapq.nsmallest(wanted, [(-s, i) for i, s in scores.items()])]
        return _padded(ranked, self.trending, k, exclude)

    def stats(self) -> dict[str, Any]:
        return {"sessions": len(self._sessions), "items": len(self._item_sessions)}
