"""The item plane's pure state (issue 13): what workers emit, what item owners keep, what workers serve from.

Item knowledge (co-visitation, trending) is learnt from every worker's traffic through Kafka
(``consumers/itemplane.py`` runs the loops; docs/item-plane.md gives the design and its figures):

* :class:`DeltaCollector` (in each worker): the increments a batch makes, aggregated per events partition and
  per *anchor* item: ``{neighbour: weight}`` by the pair rule of :class:`~models.serving.covisit.CoVisitation`
  (``strength / distance`` both ways over the user's previous ``window`` distinct items) and a trending
  increment (``strength``), all decayed to the anchor's newest event time in the batch. :meth:`take` returns one
  :class:`ItemDelta` per (partition, anchor), stamped with its source: the events partition and the first and
  last offset of the range the deltas cover.
* :class:`ItemStats` (in the owner of an item-deltas partition): the exact, bounded, time-decayed statistics of
  its items, per item the weights as of the item's newest event time (so a record is self-contained: the
  changelog and the results carry it as is). Decay is the forward decay of ``models/decay.py`` written per
  item: a weight ``w`` at ``t`` is worth ``w * 2 ** ((t - now) / half_life)`` at ``now``. A delta is applied
  only when its source range starts after the last range of its partition the item applied (``applied``): a
  redone range is skipped, never counted twice (:meth:`ItemStats.apply`); where a redo can overlap a first
  delivery (the first ``exact_redo`` offsets of a partition a worker starts) the collector keeps its increments
  per source offset, so the part of a redo past what an item applied is applied exactly (docs/item-plane.md).
* :class:`ItemCache` (in each worker): every item's published result (top neighbours, trending score), read
  in full from the results topic, decayed to the newest time it holds when read.
* :class:`PlaneCovisitSource`, :class:`PlaneTrendingSource`: the ``covisit`` and ``trending`` sources (the
  same score columns, so the reranker's features are unchanged) that learn locally as before, collect the
  deltas, and serve each seed's neighbours and the trending list from the cache when it has them (global),
  from the worker's own table otherwise (an item too new to have come back yet).

>>> col = DeltaCollector(window=2)
>>> col.enter(partition=0, first=10, last=12)
>>> for prev, item in [((), "a"), (("a",), "b"), (("b", "a"), "c")]:
...     col.covisit(prev, item, 1.0, ts_ms=0)
>>> {d.item_id: dict(d.neighbours) for d in col.take()}
{'b': {'a': 1.0, 'c': 1.0}, 'a': {'b': 1.0, 'c': 0.5}, 'c': {'b': 1.0, 'a': 0.5}}
>>> st = ItemStats()
>>> d = ItemDelta("a", 0, (("b", 1.0),), 2.0, 0, 10, 12)
>>> st.apply(d), st.apply(d)
('applied', 'redone')
>>> st.neighbours("a"), st.trending("a")
([('b', 1.0)], 2.0)
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from streamrec.models.errors import ConfigError
from streamrec.models.events import Event
from streamrec.models.serving.candidates import normalise
from streamrec.models.serving.contract import Block, Request, empty_block, shared
from streamrec.models.serving.itemmeta import NO_TIME, ItemFacts, NewItems
from streamrec.models.serving.sources import CovisitSource, TrendingSource, seeds
from streamrec.models.serving.state import UserState
from streamrec.models.timeunits import DAY_MS

__all__ = ["DeltaCollector", "ItemCache", "ItemDelta", "ItemPlane", "ItemStats", "PlaneCovisitSource",
           "PlaneTrendingSource"]


@dataclass(frozen=True)
class ItemDelta:
    """The increments of one anchor item from one source range, weights as of ``ts_ms``."""

    item_id: str
    ts_ms: int
    neighbours: tuple[tuple[str, float], ...]
    trending: float
    source_partition: int
    source_first: int
    source_last: int
    first_seen: int = NO_TIME     # the item's first event time on the sending worker, when new there
    category: str = ""            # its category, the first time the worker sends one


def _decay(dt_ms: float, half_life_ms: float) -> float:
    """``2 ** (dt / half_life)``: the forward-decay factor of ``models/decay.py`` between two event times."""
    return float(2.0 ** (dt_ms / half_life_ms))


@dataclass
class _Row:
    ts: int
    nb: dict[str, float] = field(default_factory=dict)
    trending: float = 0.0

    def advance(self, ts: int, covisit_hl: float, trending_hl: float) -> tuple[float, float]:
        """Move the row's time to ``max(ts, self.ts)``; the factors an increment at ``ts`` is worth now."""
        if ts > self.ts:
            fc, ft = _decay(self.ts - ts, covisit_hl), _decay(self.ts - ts, trending_hl)
            self.nb = {j: w * fc for j, w in self.nb.items()}
            self.trending *= ft
            self.ts = ts
            return 1.0, 1.0
        return _decay(ts - self.ts, covisit_hl), _decay(ts - self.ts, trending_hl)


class DeltaCollector:
    """A worker's increments since the last commit, per events partition and anchor item.

    Increments are summed in forward-decay units relative to the collector's first event time since the last
    :meth:`take` (``w * 2 ** ((t - ref) / half_life)``: one power per event, no row ever revisited) and turned
    into weights as of each anchor's newest event time when taken."""

    def __init__(self, window: int = 5, covisit_half_life_ms: int = 7 * DAY_MS,
                 trending_half_life_ms: int = DAY_MS) -> None:
        if window < 1 or covisit_half_life_ms <= 0 or trending_half_life_ms <= 0:
            raise ConfigError("DeltaCollector needs window >= 1 and positive half-lives")
        self.window, self.hl_c, self.hl_t = window, covisit_half_life_ms, trending_half_life_ms
        self._ranges: dict[int, list[int]] = {}          # partition -> [first, last]
        self._rows: dict[int, dict[str, list[Any]]] = {}  # partition -> anchor -> [newest ts, {nb: w}, trending]
        self._cur: dict[str, list[Any]] | None = None
        self._ref: int | None = None
        self._g_ts: int | None = None       # the event time of the last growth factors (an event's covisit and
        self._g = (1.0, 1.0)                # trend calls, and a session's events in one ms, share them)
        self.new_items = NewItems()     # first sightings: first-seen times and categories (models/serving/itemmeta.py)
        # the exact redo rule (docs/item-plane.md, "At-least-once: the rule"): from the first offset a partition is
        # entered with (after a start, an assignment or an aborted batch) up to ``exact_redo`` offsets, and not
        # past the partition's end when entered (``horizon``), increments are kept per source offset
        self.exact_redo = 0
        self.horizon: Callable[[int, int], int | None] | None = None   # (partition, last) -> its end offset
        self._redo_end: dict[int, int] = {}                 # partition -> last offset kept per offset (-1: none)
        self._fine: dict[int, dict[int, dict[str, list[Any]]]] = {}    # partition -> offset -> anchor -> row
        self.fine = False               # the entered range has offsets kept per offset: the engine calls ``at``
        self._fine_cur: dict[int, dict[str, list[Any]]] = {}
        self._rows_cur: dict[str, list[Any]] = {}
        self._end_cur = -1

    def enter(self, partition: int, first: int, last: int) -> None:
        """The next learnt events are those of ``partition``, offsets ``first .. last``."""
        rng = self._ranges.get(partition)
        if rng is None:
            self._ranges[partition] = [first, last]
        else:
            rng[0], rng[1] = min(rng[0], first), max(rng[1], last)
        self._cur = self._rows_cur = self._rows.setdefault(partition, {})
        self.new_items.enter(partition)
        end = self._redo_end.get(partition)
        if end is None:                 # first seen since a start, an assignment or an abort: a redo may begin here
            end = first + self.exact_redo - 1 if self.exact_redo > 0 else -1
            got = self.horizon(partition, last) if self.horizon is not None and end >= 0 else None
            if got is not None:
                end = min(end, max(got - 1, last))
            self._redo_end[partition] = end
        self.fine = first <= end
        if self.fine:
            self._fine_cur, self._end_cur = self._fine.setdefault(partition, {}), end

    def at(self, offset: int) -> None:
        """The next learnt event is at ``offset`` (called by the engine while ``fine``)."""
        if 0 <= offset <= self._end_cur:
            self._cur = self._fine_cur.setdefault(offset, {})
        else:
            self._cur = self._rows_cur

    def _growth(self, ts: int) -> tuple[float, float]:
        if ts == self._g_ts:
            return self._g
        if self._ref is None:
            self._ref = ts
        x = (ts - self._ref) / self.hl_t
        if abs(x) > 30.0:                 # far from the reference (a replay of old logs): move it, rescale once
            fc, ft = _decay(self._ref - ts, self.hl_c), _decay(self._ref - ts, self.hl_t)
            for rows in [*self._rows.values(), *(r for offs in self._fine.values() for r in offs.values())]:
                for row in rows.values():
                    row[1] = {j: w * fc for j, w in row[1].items()}
                    row[2] *= ft
            self._ref, x = ts, 0.0
        self._g_ts, self._g = ts, (float(2.0 ** ((ts - self._ref) / self.hl_c)), float(2.0 ** x))
        return self._g

    def _row(self, rows: dict[str, list[Any]], item: str, ts: int) -> list[Any]:
        row = rows.get(item)
        if row is None:
            row = rows[item] = [ts, {}, 0.0]
        elif ts > row[0]:
            row[0] = ts
        return row

    def covisit(self, previous: Sequence[str], item: str, strength: float, ts_ms: int) -> None:
        """The pair increments of one event (the rule of ``CoVisitation.update``); nothing is collected
        outside :meth:`enter` (an engine that no loop drives, e.g. the evaluation, emits nothing)."""
        rows = self._cur
        if rows is None or not 0.0 <= strength < math.inf or not previous or previous[0] == item:
            return
        g = strength * self._growth(ts_ms)[0]
        row = rows.get(item)          # (``_row``, inlined: this runs for every learnt event and its neighbours)
        if row is None:
            row = rows[item] = [ts_ms, {}, 0.0]
        elif ts_ms > row[0]:
            row[0] = ts_ms
        nb_j = row[1]
        done: list[str] = []
        for dist, i in enumerate(previous[:self.window], 1):
            if i == item or i in done:
                continue
            done.append(i)
            w = g / dist
            nb_j[i] = nb_j.get(i, 0.0) + w
            row = rows.get(i)
            if row is None:
                rows[i] = [ts_ms, {item: 0.0 + w}, 0.0]   # (0.0 + w: as a new row adds it, -0.0 too)
                continue
            if ts_ms > row[0]:
                row[0] = ts_ms
            nb_i = row[1]
            nb_i[item] = nb_i.get(item, 0.0) + w

    def trend(self, item: str, strength: float, ts_ms: int) -> None:
        rows = self._cur
        if rows is None or not 0.0 <= strength < math.inf:
            return
        self._row(rows, item, ts_ms)[2] += strength * self._growth(ts_ms)[1]

    def longest(self) -> int:
        """The most offsets one partition's range spans since the last :meth:`take`."""
        return max((last - first + 1 for first, last in self._ranges.values()), default=0)

    def pending(self) -> int:
        """Anchors waiting to be emitted."""
        return sum(len(r) for r in self._rows.values()) + sum(len(r) for o in self._fine.values() for r in o.values())

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the increments of partitions no longer owned (they will be redone by their new owner)."""
        for p in partitions:
            self._ranges.pop(p, None)
            self._rows.pop(p, None)
            self._fine.pop(p, None)
            self._redo_end.pop(p, None)    # owned again later: a redo may begin there
        self._cur, self.fine = None, False
        self.new_items.drop(list(partitions))

    def clear(self) -> None:
        """Forget what was collected (an aborted batch: every partition is redone from its committed offset)."""
        self._empty()
        self._redo_end = {}

    def _empty(self) -> None:
        self._ranges, self._rows, self._cur, self._ref, self._fine = {}, {}, None, None, {}
        self._g_ts = None
        self.fine = False               # nothing is collected until the next enter
        self.new_items.clear()

    def take(self) -> list[ItemDelta]:
        """One delta per (partition, anchor) since the last call, weights as of the anchor's newest event time
        (in a partition's possibly-redone region: one per (partition, source offset, anchor), in offset order,
        before the rest); the collector starts empty again."""
        out: list[ItemDelta] = []
        ref = self._ref or 0
        new = self.new_items.take()
        for p, rows in self._rows.items():
            first, last = self._ranges[p]
            seen = new.pop(p, {})
            fine = self._fine.get(p)
            last_fine: dict[str, int] = {}
            if fine:
                for off in sorted(fine):
                    for item, (ts, nb, trending) in fine[off].items():
                        fc = _decay(ref - ts, self.hl_c)
                        last_fine[item] = len(out)
                        out.append(ItemDelta(item, ts, tuple([(j, w * fc) for j, w in nb.items()]),
                                             trending * _decay(ref - ts, self.hl_t), p, off, off))
                first = max(first, self._redo_end.get(p, -1) + 1)    # the aggregated rest starts past them
            for item, (ts, nb, trending) in rows.items():
                fc = _decay(ref - ts, self.hl_c)
                f_seen, cat = seen.pop(item, (NO_TIME, "")) if seen else (NO_TIME, "")
                out.append(ItemDelta(item, ts, tuple([(j, w * fc) for j, w in nb.items()]),
                                     trending * _decay(ref - ts, self.hl_t), p, first, last, f_seen, cat))
            for item, (f_seen, cat) in seen.items():     # new items without aggregated increments
                k = last_fine.get(item)
                if k is not None:                         # on the item's last delta of one offset
                    out[k] = dataclasses.replace(out[k], first_seen=f_seen, category=cat)
                else:                                     # none at all (a user's first click): one of its own
                    out.append(ItemDelta(item, f_seen, (), 0.0, p, last, last, f_seen, cat))
        self._empty()
        return out


@dataclass
class _Stat(_Row):
    applied: dict[int, int] = field(default_factory=dict)   # events partition -> last source offset applied
    first_seen: int = NO_TIME      # the earliest first-seen time any worker sent
    category: str = ""             # the first category sent


def _facts(row: _Stat, d: ItemDelta) -> bool:
    """Merge a delta's first-seen time (the minimum wins) and category (the first one wins); changed?"""
    changed = False
    if d.first_seen != NO_TIME and (row.first_seen == NO_TIME or d.first_seen < row.first_seen):
        row.first_seen, changed = d.first_seen, True
    if d.category and not row.category:
        row.category, changed = d.category, True
    return changed


class ItemStats:
    """The exact statistics of one item-deltas partition's items, bounded: ``max_neighbours`` per item (the
    strongest kept once a row holds half as many again) and ``max_items`` items (least recently updated
    evicted; :meth:`take_evicted` names them so their records can be removed)."""

    def __init__(self, max_neighbours: int = 20, max_items: int = 100_000, covisit_half_life_ms: int = 7 * DAY_MS,
                 trending_half_life_ms: int = DAY_MS) -> None:
        if max_neighbours < 1 or max_items < 1 or covisit_half_life_ms <= 0 or trending_half_life_ms <= 0:
            raise ConfigError("ItemStats needs max_neighbours, max_items >= 1 and positive half-lives")
        self.max_neighbours, self.max_items = max_neighbours, max_items
        self.hl_c, self.hl_t = covisit_half_life_ms, trending_half_life_ms
        self._hi = max_neighbours + max(1, max_neighbours // 2)
        self._rows: OrderedDict[str, _Stat] = OrderedDict()
        self._evicted: list[str] = []
        self.n = dict.fromkeys(("applied", "redone", "overlap", "facts", "evicted", "pruned"), 0)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item: object) -> bool:
        return item in self._rows

    def apply(self, d: ItemDelta) -> str:
        """Add one delta: ``"applied"``; ``"redone"`` (its range ends at or before the last range of its
        partition this item applied: a redone batch) or ``"overlap"`` (it starts inside that range: a redo
        whose range end differs) are skipped, so no increment is ever counted twice."""
        row = self._rows.get(d.item_id)
        if row is not None:
            facts = (d.first_seen != NO_TIME or d.category) and _facts(row, d)
            done = row.applied.get(d.source_partition, -1)
            if d.source_first <= done:
                kind = "redone" if d.source_last <= done else "overlap"
                self.n[kind] += 1
                if facts:             # a minimum and a first category are idempotent: kept from any delivery
                    self.n["facts"] += 1
                    return "facts"
                return kind
            self._rows.move_to_end(d.item_id)
        else:
            if len(self._rows) >= self.max_items:
                old, _ = self._rows.popitem(last=False)
                self._evicted.append(old)
                self.n["evicted"] += 1
            row = self._rows[d.item_id] = _Stat(d.ts_ms)
            _facts(row, d)
        fc, ft = row.advance(d.ts_ms, self.hl_c, self.hl_t)
        nb = row.nb
        for j, w in d.neighbours:
            nb[j] = nb.get(j, 0.0) + w * fc
        row.trending += d.trending * ft
        if len(nb) > self._hi:
            row.nb = dict(heapq.nlargest(self.max_neighbours, nb.items(), key=itemgetter(1)))
            self.n["pruned"] += 1
        row.applied[d.source_partition] = d.source_last
        self.n["applied"] += 1
        return "applied"

    def neighbours(self, item: str, k: int | None = None) -> list[tuple[str, float]]:
        """Strongest first, weights as of the item's newest event time."""
        row = self._rows.get(item)
        if row is None:
            return []
        return heapq.nlargest(k or len(row.nb), row.nb.items(), key=itemgetter(1))

    def trending(self, item: str) -> float:
        row = self._rows.get(item)
        return 0.0 if row is None else row.trending

    def first_seen(self, item: str) -> int:
        row = self._rows.get(item)
        return NO_TIME if row is None else row.first_seen

    def category(self, item: str) -> str:
        row = self._rows.get(item)
        return "" if row is None else row.category

    def record(self, item: str, k: int | None = None) -> dict[str, Any] | None:
        """The item's state as plain data (``item_result.avsc``): all of it, or its top ``k`` neighbours."""
        row = self._rows.get(item)
        if row is None:
            return None
        top = self.neighbours(item, k)
        return {"item_id": item, "ts": row.ts, "trending": row.trending, "neighbours": [j for j, _ in top],
                "weights": [w for _, w in top],
                "sources": [{"partition": p, "offset": o} for p, o in sorted(row.applied.items())],
                "first_seen": row.first_seen, "category": row.category}

    def load(self, rec: dict[str, Any]) -> None:
        """Install an item from its record (a changelog restore; the newest record of an item wins)."""
        row = _Stat(int(rec["ts"]), dict(zip(rec["neighbours"], map(float, rec["weights"]), strict=True)),
                    float(rec["trending"]), {int(s["partition"]): int(s["offset"]) for s in rec["sources"]},
                    int(rec.get("first_seen", NO_TIME)), str(rec.get("category") or ""))
        self._rows[rec["item_id"]] = row
        self._rows.move_to_end(rec["item_id"])

    def remove(self, item: str) -> None:
        self._rows.pop(item, None)

    def take_evicted(self) -> list[str]:
        out, self._evicted = self._evicted, []
        return out

    def items(self) -> list[str]:
        return list(self._rows)


class ItemCache:
    """Every item's published result in a worker: top neighbours and trending score, each as of its ``ts``.

    A result is stored as it was decoded (its neighbour and weight arrays, :meth:`put_results`, in bulk); the
    ``{neighbour: weight}`` dict a source reads is built the first time one reads it (most results are replaced
    by the item's next one before any user's seed is the item).

    >>> c = ItemCache(covisit_half_life_ms=1000, trending_half_life_ms=1000)
    >>> c.put("a", 1000, [("b", 4.0)], 2.0); c.put("b", 2000, [("a", 4.0)], 2.0)
    >>> c.scores(["a", "b"], [1.0, 1.0])            # a's weights are one half-life older than b's
    {'b': 2.0, 'a': 4.0}
    >>> items, scores = c.top(5); items, scores.tolist()
    (['b', 'a'], [2.0, 1.0])
    """

    def __init__(self, covisit_half_life_ms: int = 7 * DAY_MS, trending_half_life_ms: int = DAY_MS,
                 max_items: int = 1_000_000, keep: int = 500, refresh_ms: int = 1_000) -> None:
        self.hl_c, self.hl_t, self.max_items, self.keep = covisit_half_life_ms, trending_half_life_ms, max_items, keep
        self.refresh_ms = refresh_ms
        # item -> [ts, neighbours, weights, {neighbour: weight} or None until first read]
        self._rows: OrderedDict[str, list[Any]] = OrderedDict()
        self._trend: dict[str, tuple[int, float]] = {}
        self.now_ms = 0
        self._top: tuple[list[str], np.ndarray] = ([], np.zeros(0, dtype=np.float32))
        self._changed = False
        self._built_at: int | None = None
        self.evicted = 0
        self.updates = 0
        self.facts = ItemFacts(keep)     # global first-seen times and categories (models/serving/itemmeta.py)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item: object) -> bool:
        return item in self._rows

    def put(self, item: str, ts_ms: int, neighbours: Iterable[tuple[str, float]], trending: float,
            first_seen: int = NO_TIME, category: str = "") -> None:
        """One item's result from ``(neighbour, weight)`` pairs."""
        pairs = list(neighbours)
        self.put_results([(item, {"ts": ts_ms, "neighbours": [j for j, _ in pairs], "weights": [w for _, w in pairs],
                                  "trending": trending, "first_seen": first_seen, "category": category})])

    def put_results(self, results: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
        """``(item, result)`` in the order read: a result (plain data, ``item_result.avsc``: ``ts``,
        ``neighbours``, ``weights`` of the same length, ``trending``, ``first_seen``, ``category``; validated by
        its reader) replaces the item's, least recently put evicted past ``max_items``; ``None`` (a tombstone)
        removes the item."""
        rows, trend, facts, max_items = self._rows, self._trend, self.facts, self.max_items
        now, n = self.now_ms, 0
        for item, rec in results:
            if rec is None:
                self.remove(item)
                continue
            ts = rec["ts"]
            if item in rows:
                rows.move_to_end(item)
            elif len(rows) >= max_items:
                old, _ = rows.popitem(last=False)
                trend.pop(old, None)
                facts.remove(old)
                self.evicted += 1
            first_seen, category = rec["first_seen"], rec["category"]
            if first_seen != NO_TIME or category:
                facts.put(item, first_seen, category)
            rows[item] = [ts, rec["neighbours"], rec["weights"], None]
            trending = rec["trending"]
            if trending > 0:
                trend[item] = (ts, trending)
            elif trend:
                trend.pop(item, None)
            if ts > now:
                now = ts
            n += 1
        if n:
            self.now_ms, self._changed = now, True
            self.updates += n

    @staticmethod
    def _nb(got: list[Any]) -> dict[str, float]:
        """A stored row's ``{neighbour: weight}``, built at its first read (the arrays then dropped)."""
        nb: dict[str, float] | None = got[3]
        if nb is None:
            nb = got[3] = dict(zip(got[1], got[2], strict=True))
            got[1] = got[2] = ()
        return nb

    def remove(self, item: str) -> None:
        self._rows.pop(item, None)
        self.facts.remove(item)
        self._changed |= self._trend.pop(item, None) is not None

    def first_seen(self, item: str) -> int:
        """The item's global first-seen time (the earliest event time any worker saw), ``NO_TIME`` if unknown."""
        return self.facts.first_seen(item)

    def category(self, item: str) -> str | None:
        return self.facts.category(item)

    def newest(self, k: int) -> list[str]:
        """The ``k`` items first seen most recently by any worker, newest first."""
        return self.facts.newest(k)

    def row(self, item: str) -> dict[str, float] | None:
        """The item's neighbours, weights decayed to ``now_ms``."""
        got = self._rows.get(item)
        if got is None:
            return None
        f = _decay(got[0] - self.now_ms, self.hl_c)
        return {j: w * f for j, w in self._nb(got).items()}

    def weighted(self, item: str, weight: float) -> tuple[float, dict[str, float] | None]:
        """``(weight * decay factor, stored neighbours)`` of ``item`` (the row is not copied), ``(0, None)``
        when the cache does not hold it."""
        got = self._rows.get(item)
        if got is None:
            return 0.0, None
        nb = got[3]
        return weight * _decay(got[0] - self.now_ms, self.hl_c), self._nb(got) if nb is None else nb

    def scores(self, seeds: Sequence[str], weights: Sequence[float]) -> dict[str, float]:
        acc: dict[str, float] = {}
        for s, ws in zip(seeds, weights, strict=True):
            got = self._rows.get(s)
            if got is None:
                continue
            f = ws * _decay(got[0] - self.now_ms, self.hl_c)
            for j, w in self._nb(got).items():
                acc[j] = acc.get(j, 0.0) + f * w
        return acc

    def top(self, k: int, now_ms: int | None = None) -> tuple[list[str], np.ndarray]:
        """The ``k`` (at most ``keep``) items with the highest trending score decayed to ``now_ms`` of the cache,
        rebuilt when changed and ``refresh_ms`` of serving time passed (or never built)."""
        if self._changed and (self._built_at is None or now_ms is None or now_ms - self._built_at >= self.refresh_ms
                              or not self._top[0]):
            keys = list(self._trend)
            if keys:
                ts = np.fromiter((v[0] for v in self._trend.values()), dtype=np.float64, count=len(keys))
                sc = np.fromiter((v[1] for v in self._trend.values()), dtype=np.float64, count=len(keys))
                sc = sc * np.exp2((ts - self.now_ms) / self.hl_t)
                n = min(self.keep, len(keys))
                part = np.argpartition(-sc, n - 1)[:n] if n < len(keys) else np.arange(len(keys))
                order = part[np.argsort(-sc[part], kind="stable")]
                self._top = ([keys[i] for i in order.tolist()], sc[order].astype(np.float32))
            else:
                self._top = ([], np.zeros(0, dtype=np.float32))
            self._changed, self._built_at = False, now_ms
        items, scores = self._top
        return items[:k], scores[:k]


class ItemPlane:
    """What the engine's plane sources share: the worker's delta collector and its item cache."""

    def __init__(self, window: int = 5, covisit_half_life_ms: int = 7 * DAY_MS,
                 trending_half_life_ms: int = DAY_MS) -> None:
        self.collector = DeltaCollector(window, covisit_half_life_ms, trending_half_life_ms)
        self.cache = ItemCache(covisit_half_life_ms, trending_half_life_ms)
        self.served = dict.fromkeys(("global_seeds", "local_seeds"), 0)
        self.collector.new_items.facts = self.cache.facts
        self.catalog: Any = None       # the engine's catalog store (``get(item) -> Item | None``), set by the engine
        self._sighter: object | None = None

    def claim_sightings(self, source: object) -> bool:
        """The first plane source to ask reports each event's item (first sightings) for all of them."""
        if self._sighter is None:
            self._sighter = source
        return self._sighter is source

    def sighted(self, event: Event, item: str) -> None:
        """An event of ``item``: a first sighting (or a first category) goes out with the next deltas."""
        new = self.collector.new_items
        if new.settled(item):         # sent with its category: the common case, one lookup
            return
        got = self.catalog.get(item) if self.catalog is not None else None
        category = got.leaf_category if got is not None else None
        if not category and event.context:
            category = event.context.get("category")
        new.seen(item, event.timestamp_ms, category)

    def newest(self, k: int, local: Sequence[str] = ()) -> list[str]:
        """The ``k`` newest items by global first-seen time; items of ``local`` (this worker's newest) that the
        cache does not know yet (too new to have come back) first."""
        facts = self.cache.facts
        out = dict.fromkeys(i for i in local if facts.first_seen(i) == NO_TIME)
        for i in facts.newest(k):
            if len(out) >= k:
                break
            out[i] = None
        return list(out)[:k]


def _stored_scale(table: Any) -> float:
    """The factor from a ``CoVisitation``'s stored units to weights decayed to its newest time."""
    scale = getattr(table, "_scale", None)
    return float(scale()) if callable(scale) else 1.0


class PlaneCovisitSource(CovisitSource):
    """``covisit`` on the item plane: learns and collects deltas; a seed's neighbours come from the cache
    (every worker's traffic) when it holds the seed, else from this worker's own table."""

    name = "covisit"

    def __init__(self, plane: ItemPlane, k: int = 50, seeds: int = 5, window: int = 5, max_neighbors: int = 20,
                 max_items: int = 100_000, half_life_ms: int = 7 * DAY_MS) -> None:
        super().__init__(k, seeds, window, max_neighbors, max_items, half_life_ms)
        self.plane = plane
        self._sights = plane.claim_sightings(self)

    def learn(self, event: Event, item: str, strength: float, state: UserState, position: int) -> None:
        if self._sights:
            self.plane.sighted(event, item)
        recent, cache = state.recent_items, self.plane.cache
        self.plane.collector.covisit(recent, item, strength, event.timestamp_ms)
        # the local table answers only for seeds the cache does not hold (``_acc``, ``explain``): a pair of
        # two items the cache holds would be read from the cache, so it is not learnt a second time here
        if item not in cache or any(i not in cache for i in recent[:self.table.window]):
            self.table.update(recent, item, strength, event.timestamp_ms)

    def _acc(self, st: UserState, scale: float) -> dict[str, float]:
        """``sum_s w_s * w(s, j)``, each seed's row from the cache (decayed to its newest time) or, when the cache
        does not hold the seed, from the local table (its stored units times ``scale``: decayed to its newest
        time); both in the units of weights as of now."""
        cache, served = self.plane.cache, self.plane.served
        acc: dict[str, float] = {}
        local_s: list[str] = []
        local_w: list[float] = []
        get = acc.get
        for s, ws in zip(*seeds(st, self.n_seeds), strict=True):
            f, row = cache.weighted(s, ws)
            if row is None:
                local_s.append(s)
                local_w.append(ws * scale)
                continue
            for j, w in row.items():
                acc[j] = get(j, 0.0) + f * w
        served["global_seeds"] += self.n_seeds - len(local_s)
        if local_s:
            served["local_seeds"] += len(local_s)
            for j, w in self.table.scores(local_s, local_w).items():
                acc[j] = get(j, 0.0) + w
        return acc

    def candidates(self, request: Request) -> Block | None:
        items: list[str] = []
        values: list[float] = []
        lengths: list[int] = []
        scale = _stored_scale(self.table)
        for st in request.states:
            acc = self._acc(st, scale) if st is not None and st.recent_items else {}
            items.extend(acc)
            values.extend(acc.values())
            lengths.append(len(acc))
        if not items:
            return empty_block()
        rows = np.repeat(np.arange(len(request.states), dtype=np.int64), lengths)
        vals = normalise(np.array(values), rows)
        order = np.argsort(rows * 4.0 - vals)
        starts = np.r_[0, np.cumsum(lengths)][:-1]
        keep = order[np.arange(len(order)) - np.repeat(starts, lengths) < self.k]
        rows = rows[keep]
        return rows, request.space.codes([items[i] for i in keep.tolist()]), request.normalise(vals[keep], rows)

    def explain(self, request: Request, rows: Sequence[int], items: Sequence[str]) -> list[str]:
        """``covisit:<seed>`` per chosen (row, item): the seed with the largest weighted co-visitation, from the
        row the candidates used (the cache's, else the local table's)."""
        out: list[str] = []
        cache, nb, scale = self.plane.cache, self.table._nb, _stored_scale(self.table)
        per_row: dict[int, list[tuple[str, float, dict[str, float]]]] = {}
        for r, item in zip(rows, items, strict=True):
            evidence = per_row.get(r)
            if evidence is None:
                evidence = per_row[r] = []
                st = request.states[r]
                if st is not None:
                    for seed, w in zip(*seeds(st, self.n_seeds), strict=True):
                        f, row = cache.weighted(seed, w)
                        if row is None:
                            f, row = w * scale, nb.get(seed) or {}
                        evidence.append((seed, f, row))
            best, best_w = "", 0.0
            for seed, f, row in evidence:
                v = f * row.get(item, 0.0)
                if v > best_w:
                    best, best_w = seed, v
            out.append(f"covisit:{best}" if best else "covisit")
        return out

    def stats(self) -> dict[str, Any]:
        p = self.plane
        return {"covisit_items": len(self.table), "item_cache_items": len(p.cache),
                "item_cache_updates": p.cache.updates, "item_deltas_pending": p.collector.pending(),
                "covisit_global_seeds": p.served["global_seeds"], "covisit_local_seeds": p.served["local_seeds"]}


class PlaneTrendingSource(TrendingSource):
    """``trending`` on the item plane: learns and collects deltas; serves the global list from the cache when
    it holds trending scores, else this worker's own counts."""

    name = "trending"

    def __init__(self, plane: ItemPlane, k: int = 50, half_life_ms: int = DAY_MS, max_items: int = 100_000,
                 refresh_events: int = 1_000, refresh_ms: int = 1_000) -> None:
        super().__init__(k, half_life_ms, max_items, refresh_events, refresh_ms)
        self.plane = plane
        plane.cache.keep, plane.cache.refresh_ms = max(k, 500), refresh_ms
        self._sights = plane.claim_sightings(self)

    def learn(self, event: Event, item: str, strength: float, state: UserState, position: int) -> None:
        if self._sights:
            self.plane.sighted(event, item)
        self.plane.collector.trend(item, strength, event.timestamp_ms)
        self.table.update(item, strength, event.timestamp_ms)

    def candidates(self, request: Request) -> Block | None:
        top, top_scores = self.plane.cache.top(self.k, request.now_ms)
        if not top:
            return super().candidates(request)
        return shared(np.arange(len(request), dtype=np.int64), request.space.codes(top), top_scores, request)
