"""First-seen times and categories of items on the item plane (issue 13; docs/item-plane.md).

* :class:`NewItems` (in each worker, inside its :class:`~models.serving.itemplane.DeltaCollector`): the items
  this worker sees for the first time (its first event, or a category it did not send yet: the catalog's leaf
  category when the catalog knows the item, else the event's ``context["category"]``), per events partition,
  until the next commit. An item is sent once: after it is taken (or when the item cache already holds it with
  an earlier first-seen time and a category) it is *known* (a bounded set, oldest forgotten first), so a
  known item costs one dict lookup per event. Pending items of a dropped partition or an aborted batch are
  forgotten with the batch and sent again when it is redone.
* :class:`ItemFacts` (in each worker's :class:`~models.serving.itemplane.ItemCache`): every item's global
  first-seen time (the earliest event time any worker saw; the owners keep the minimum) and category, and
  :meth:`ItemFacts.newest`: the items first seen most recently by that time, kept as a small leader set (as
  ``Trending`` keeps its top list) so that new arrivals are found without sorting the catalogue.

>>> new = NewItems()
>>> new.enter(0)
>>> new.seen("a", 50, "shoes"); new.seen("a", 40, None); new.seen("b", 60, None)
>>> new.take()
{0: {'a': (40, 'shoes'), 'b': (60, '')}}
>>> new.enter(0); new.seen("a", 70, "hats"); new.seen("b", 80, "hats"); new.take()   # b: its first category
{0: {'b': (80, 'hats')}}
>>> facts = ItemFacts(keep=2)
>>> for item, t in [("x", 10), ("y", 30), ("z", 20), ("w", 5)]:
...     facts.put(item, t, "")
>>> facts.newest(3), facts.first_seen("z"), facts.first_seen("nope")
(['y', 'z', 'x'], 20, -1)
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from operator import itemgetter
from typing import Any

__all__ = ["NO_TIME", "ItemFacts", "NewItems"]

#: "no first-seen time" on the wire and in the tables
NO_TIME = -1


class NewItems:
    """A worker's first sightings of items since the last :meth:`take`, per events partition."""

    def __init__(self, max_known: int = 200_000) -> None:
        self.max_known = max(1, max_known)
        self._known: OrderedDict[str, bool] = OrderedDict()   # item -> its category was sent
        self._pending: dict[int, dict[str, list[Any]]] = {}   # partition -> item -> [first ts, category]
        self._cur: dict[str, list[Any]] | None = None
        self.facts: ItemFacts | None = None     # the item cache's facts: what the plane already knows

    def enter(self, partition: int) -> None:
        self._cur = self._pending.setdefault(partition, {})

    def seen(self, item: str, ts_ms: int, category: str | None) -> None:
        """One event of ``item`` at ``ts_ms`` (``category``: its catalog or event category, if any); nothing is
        recorded outside :meth:`enter`."""
        cur = self._cur
        if cur is None:
            return
        sent = self._known.get(item)
        if sent or (sent is not None and not category):
            return
        got = cur.get(item)
        if got is not None:
            if ts_ms < got[0]:
                got[0] = ts_ms
            if category and not got[1]:
                got[1] = category
            return
        facts = self.facts
        if sent is None and facts is not None:
            first, cat = facts.get(item)
            if first != NO_TIME and first <= ts_ms and (cat or not category):
                self._remember(item, bool(cat))       # the plane knows it already: nothing to send
                return
        cur[item] = [ts_ms, category or ""]

    def settled(self, item: str) -> bool:
        """Sent (or known to the plane) with its category: nothing more to send about ``item``."""
        return self._known.get(item) is True

    def _remember(self, item: str, with_category: bool) -> None:
        known = self._known
        known[item] = with_category
        known.move_to_end(item)
        while len(known) > self.max_known:
            known.popitem(last=False)

    def pending(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def take(self) -> dict[int, dict[str, tuple[int, str]]]:
        """``{partition: {item: (first-seen ms, category or "")}}`` since the last call; they become known."""
        out: dict[int, dict[str, tuple[int, str]]] = {}
        for p, items in self._pending.items():
            if items:
                out[p] = {i: (int(v[0]), str(v[1])) for i, v in items.items()}
                for i, v in items.items():
                    self._remember(i, bool(v[1]))
        self.clear()
        return out

    def drop(self, partitions: set[int] | list[int]) -> None:
        for p in partitions:
            self._pending.pop(p, None)
        self._cur = None

    def clear(self) -> None:
        self._pending, self._cur = {}, None


class ItemFacts:
    """Global first-seen time and category per item (as the owners publish them); the newest items by
    first-seen time from a leader set of at least ``keep`` items (exact for ``k <= keep``)."""

    def __init__(self, keep: int = 500) -> None:
        self.keep = max(1, keep)
        self._first: dict[str, int] = {}
        self._cat: dict[str, str] = {}
        self._leaders: dict[str, int] = {}
        self._floor = NO_TIME               # first-seen time of the keep-th leader at the last pruning
        self._sorted: list[str] | None = None
        #: every change so far (a put that changed a fact, a removal); :meth:`changed_since` names the items
        self.changes = 0
        self._log: list[str] = []           # the items of changes ``_log_base ..``, at most ``2 * LOG_KEEP``
        self._log_base = 0

    #: changes a reader may lag behind and still get the items by name (older: ``changed_since`` says None)
    LOG_KEEP = 100_000

    def __len__(self) -> int:
        return len(self._first)

    def _changed(self, item: str) -> None:
        self.changes += 1
        self._log.append(item)
        if len(self._log) > 2 * self.LOG_KEEP:
            cut = len(self._log) - self.LOG_KEEP
            del self._log[:cut]
            self._log_base += cut

    def changed_since(self, changes: int) -> list[str] | None:
        """The items whose facts changed after the first ``changes`` changes (repeats possible), or None when
        that is further back than the log keeps (the reader must then read everything again)."""
        if changes < self._log_base:
            return None
        return self._log[changes - self._log_base:]

    def put(self, item: str, first_seen: int, category: str) -> None:
        """The item's published facts (``NO_TIME`` / ``""``: none known); the newest record of an item wins."""
        if category and self._cat.get(item) != category:
            self._cat[item] = category
            self._changed(item)
        if first_seen == NO_TIME:
            return
        if self._first.get(item) == first_seen:
            return
        self._first[item] = first_seen
        self._changed(item)
        if first_seen > self._floor or item in self._leaders:
            self._leaders[item] = first_seen
            self._sorted = None
            if len(self._leaders) > 2 * self.keep:
                self._prune()

    def _prune(self) -> None:
        ranked = heapq.nlargest(self.keep, self._leaders.items(), key=itemgetter(1))
        self._leaders = dict(ranked)
        self._floor = ranked[-1][1]

    def remove(self, item: str) -> None:
        had = self._first.pop(item, None) is not None
        if self._cat.pop(item, None) is not None or had:
            self._changed(item)
        if self._leaders.pop(item, None) is not None:
            self._sorted = None
            if len(self._leaders) < self.keep < len(self._first):   # refill from every item (rare: deletions)
                self._leaders = dict(heapq.nlargest(self.keep, self._first.items(), key=itemgetter(1)))
                self._floor = min(self._leaders.values())

    def get(self, item: str) -> tuple[int, str]:
        return self._first.get(item, NO_TIME), self._cat.get(item, "")

    def first_seen(self, item: str) -> int:
        """The item's global first-seen time (ms), ``NO_TIME`` when unknown."""
        return self._first.get(item, NO_TIME)

    def category(self, item: str) -> str | None:
        return self._cat.get(item)

    def newest(self, k: int) -> list[str]:
        """The ``k`` items first seen most recently (by their global first-seen time), newest first."""
        if self._sorted is None:
            self._sorted = [i for i, _ in sorted(self._leaders.items(), key=itemgetter(1), reverse=True)]
        return self._sorted[:k]
