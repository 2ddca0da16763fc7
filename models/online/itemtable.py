"""What the reranker's features know about items: when each was first seen, and its category.

:class:`ItemTable` records the first event time of every item and its category (``context["category"]``
of its events; for items of the base model without one, the model's category), for at most ``max_items``
items: a ring of slots, so the oldest first-seen item is forgotten first and memory never grows.

Features are built for tens of thousands of candidates per batch, most of them items of the base model,
so :meth:`ItemTable.bind` mirrors the table into arrays indexed by model code (kept current by
:meth:`ItemTable.observe`), and :meth:`ItemTable.facts` answers for model items with numpy alone.

With the item plane on (docs/item-plane.md), the worker's own events are only its share of the traffic, so
its first sightings come late and miss the items only other workers' users touched. The engine then sets
:attr:`ItemTable.global_facts` to the item cache's facts (:class:`models.serving.itemmeta.ItemFacts`: the
earliest event time any worker saw, the published category): every answer takes the global first-seen
time where the plane knows one (the earlier of it and the local one) and the global category where it has
one, and falls back to the table's own values for items the plane does not know yet. Without the plane
(``global_facts`` is ``None``) nothing changes.

>>> table = ItemTable(max_items=2)
>>> table.observe("a", 0, "shoes"); table.observe("b", 3_600_000, None); table.observe("a", 9, "hats")
>>> table.first_seen(["a", "b", "zz"]).tolist(), table.categories(["a", "b"]).tolist()
([0, 3600000, -1], [0, -1])
>>> table.bind(("b", "m"), {"b": 0, "m": 1}, np.array([-1, 4]))
>>> first, cat = table.facts(np.array([1, 0]), ["m", "b"])
>>> first.tolist(), (cat - MODEL_CATEGORY).tolist()[0], cat.tolist()[1]
([-1, 3600000], 4, -1)
>>> table.observe("c", 7_200_000, "hats"); len(table), "a" in table
(2, False)
>>> table.global_facts = {"b": (1_000, "hats"), "q": (5, "socks")}   # item -> (first seen, category), as published
>>> table.first_seen(["b", "c", "q"]).tolist(), table.categories(["b", "c", "q"]).tolist()
([1000, 7200000, 5], [1, 1, 2])
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from streamrec.models.online.plainstate import StateError, load_npz, unique

MODEL_CATEGORY = 1 << 32       # model categories live above the event-context ones


class GlobalFacts(Protocol):
    """Global first-seen times and categories: ``get(item) -> (first seen ms or -1, category or "")``
    (:class:`models.serving.itemmeta.ItemFacts`; a plain dict of such pairs works too)."""

    def get(self, item: str) -> tuple[int, str] | None: ...

    def __len__(self) -> int: ...


class ItemTable:
    """First-seen event time and category code per item, bounded to ``max_items`` (oldest dropped)."""

    def __init__(self, max_items: int = 200_000) -> None:
        self.max_items = max(1, int(max_items))
        self._slot: dict[str, int] = {}
        self._ids: list[str | None] = [None] * min(self.max_items, 1024)
        self._first = np.zeros(len(self._ids), dtype=np.int64)
        self._cat = np.full(len(self._ids), -1, dtype=np.int64)
        self._codes: dict[str, int] = {}
        self._next = 0
        self.evicted = 0
        self.bound: tuple[str, ...] | None = None            # the model item ids the arrays mirror
        self._m_index: Mapping[str, int] = {}
        self._m_first = np.zeros(0, dtype=np.int64)
        self._m_cat = np.zeros(0, dtype=np.int64)
        #: the item plane's facts (every worker's traffic), read before this table's own; None: local only
        self.global_facts: GlobalFacts | None = None
        # the plane's facts of the bound model's items, by model code, as last read (-1: none), kept exact by
        # the facts' change log (ItemFacts.changed_since); a mapping without one is read at every call
        self._g_first = np.zeros(0, dtype=np.int64)
        self._g_cat = np.zeros(0, dtype=np.int64)
        self._g_read = np.zeros(0, dtype=bool)
        self._g_changes = 0                # the facts' change count when the cache was last brought up to date

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, item: object) -> bool:
        return item in self._slot

    def observe(self, item: str, ts_ms: int, category: str | None = None) -> None:
        """Record an event of ``item``: the time of its first event (in processing order) and its
        category (the first one given). Known items cost one dict lookup."""
        slot = self._slot.get(item)
        if slot is None:
            slot = self._take_slot(item)
            self._first[slot] = ts_ms
            self._cat[slot] = -1
        elif not category or self._cat[slot] >= 0:
            return
        if category and self._cat[slot] < 0:
            code = self._codes.get(category)
            if code is None and len(self._codes) < MODEL_CATEGORY:
                code = self._codes[category] = len(self._codes)
            self._cat[slot] = -1 if code is None else code
        m = self._m_index.get(item)
        if m is not None:
            self._m_first[m] = self._first[slot]
            if self._cat[slot] >= 0:
                self._m_cat[m] = self._cat[slot]

    def _take_slot(self, item: str) -> int:
        slot = self._next
        if slot >= len(self._ids):
            if len(self._ids) < self.max_items:
                grow = min(len(self._ids), self.max_items - len(self._ids))
                self._ids.extend([None] * grow)
                self._first = np.r_[self._first, np.zeros(grow, dtype=np.int64)]
                self._cat = np.r_[self._cat, np.full(grow, -1, dtype=np.int64)]
            else:
                slot = 0
        old = self._ids[slot]
        if old is not None:
            del self._slot[old]
            self.evicted += 1
        self._ids[slot] = item
        self._slot[item] = slot
        self._next = slot + 1
        return slot

    def slots(self, items: Sequence[str]) -> np.ndarray:
        get = self._slot.get
        return np.array([get(i, -1) for i in items], dtype=np.int64)

    def first_seen(self, items: Sequence[str]) -> np.ndarray:
        """First-seen times (ms) of ``items``; -1 for items not in the table (nor on the plane)."""
        s = self.slots(items)
        first = np.where(s >= 0, self._first[s], -1)
        return first if not self.global_facts else self._global(items, first, np.zeros(len(items), np.int64))[0]

    def categories(self, items: Sequence[str]) -> np.ndarray:
        """Event-context (or, on the plane, published) category codes of ``items``; -1 where none is known."""
        s = self.slots(items)
        cat = np.where(s >= 0, self._cat[s], -1)
        return cat if not self.global_facts else self._global(items, np.full(len(items), -1, np.int64), cat)[1]

    def _code(self, category: str) -> int:
        code = self._codes.get(category)
        if code is None:
            if len(self._codes) >= MODEL_CATEGORY:
                return -1
            code = self._codes[category] = len(self._codes)
        return code

    def _global(self, items: Sequence[str], first: np.ndarray, cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``first`` and ``cat`` of ``items`` with the plane's facts laid over them: the earlier first-seen
        time where the plane knows one, its category where it has one (coded in this table's codes)."""
        get = self.global_facts.get  # type: ignore[union-attr]
        got = [get(i) for i in items]
        g_first = np.fromiter((g[0] if g else -1 for g in got), dtype=np.int64, count=len(got))
        known = g_first >= 0
        first = np.where(known & ((first < 0) | (g_first < first)), g_first, first)
        named = [(k, g[1]) for k, g in enumerate(got) if g and g[1]]
        if named:
            cat = cat.copy()
            for k, c in named:
                code = self._code(c)
                if code >= 0:
                    cat[k] = code
        return first, cat

    # --- model codes -------------------------------------------------------------------------------
    def bind(self, ids: Sequence[str], index_of: Mapping[str, int], categories: np.ndarray | None) -> None:
        """Mirror the table into arrays indexed by the codes of a model's items (``ids``, ``index_of``);
        model items without an event-context category get ``MODEL_CATEGORY + categories[code]``."""
        slots = self.slots(ids)
        ok = slots >= 0
        first = np.where(ok, self._first[slots], -1)
        cat = np.where(ok, self._cat[slots], -1)
        if categories is not None and len(categories) == len(ids):
            cat = np.where((cat < 0) & (categories >= 0), MODEL_CATEGORY + categories, cat)
        self.bound, self._m_index, self._m_first, self._m_cat = tuple(ids), index_of, first, cat
        self._g_first = np.full(len(ids), -1, dtype=np.int64)
        self._g_cat = np.full(len(ids), -1, dtype=np.int64)
        self._g_read = np.zeros(len(ids), dtype=bool)
        self._g_changes = -1

    def facts(self, codes: np.ndarray, items: Sequence[str] | Callable[[int], str]) -> tuple[np.ndarray, np.ndarray]:
        """``(first seen ms, category key)`` of items (-1: unknown) whose codes in the bound model are
        ``codes`` (negative, or at or beyond the model's size: not a model item, looked up by id in
        ``items``, a sequence or a function of the position, called only for those)."""
        codes = np.asarray(codes, dtype=np.int64)
        n = len(self._m_first)
        inside = (codes >= 0) & (codes < n)
        first = np.full(len(codes), -1, dtype=np.int64)
        cat = np.full(len(codes), -1, dtype=np.int64)
        first[inside] = self._m_first[codes[inside]]
        cat[inside] = self._m_cat[codes[inside]]
        rest = np.flatnonzero(~inside)
        get = items if callable(items) else items.__getitem__
        if len(rest):
            s = self.slots([get(k) for k in rest.tolist()])
            ok = s >= 0
            first[rest] = np.where(ok, self._first[s], -1)
            cat[rest] = np.where(ok, self._cat[s], -1)
        if self.global_facts:                     # the item plane's facts over this worker's own
            if inside.any():
                first[inside], cat[inside] = self._global_model(codes[inside], first[inside], cat[inside])
            if len(rest):
                first[rest], cat[rest] = self._global([get(k) for k in rest.tolist()], first[rest], cat[rest])
        return first, cat

    def _global_model(self, codes: np.ndarray, first: np.ndarray, cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_global` for model items by code, from arrays that keep each item's plane facts as last read:
        the items the facts' change log names since the last call are read again when next asked, the others
        answer from the arrays (the same values as reading the plane at every call, at a cost that grows with
        the changes, not with the candidates)."""
        facts = self.global_facts
        since = getattr(facts, "changed_since", None)
        changed = None if since is None or self._g_changes < 0 else since(self._g_changes)
        read = self._g_read
        if changed is None:                      # first call, a plain mapping, or too far behind: read all again
            read[:] = False
        else:
            index = self._m_index
            for item in changed:
                code = index.get(item)
                if code is not None and code < len(read):
                    read[code] = False
        if since is not None:
            self._g_changes = facts.changes  # type: ignore[union-attr]
        miss = np.unique(codes[~read[codes]])
        if len(miss):
            bound = self.bound or ()
            f, c = self._global([bound[m] for m in miss.tolist()], np.full(len(miss), -1, np.int64),
                                np.full(len(miss), -1, np.int64))
            self._g_first[miss], self._g_cat[miss] = f, c
            if since is not None:
                read[miss] = True
        gf, gc = self._g_first[codes], self._g_cat[codes]
        return (np.where((gf >= 0) & ((first < 0) | (gf < first)), gf, first), np.where(gc >= 0, gc, cat))

    # --- checkpoints ------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The table as ``.npz`` bytes (no pickle), oldest first."""
        n = len(self._ids)
        order = [(s % n) for s in range(self._next, self._next + n) if self._ids[s % n] is not None]
        cats = sorted(self._codes, key=self._codes.__getitem__)
        ids_len, ids_blob = pack_strings([str(self._ids[s]) for s in order])
        cat_len, cat_blob = pack_strings(cats)
        buf = io.BytesIO()
        np.savez(buf, ids_len=ids_len, ids_blob=ids_blob, first=self._first[order],
                 cat=self._cat[order].astype(np.int64), cat_len=cat_len, cat_blob=cat_blob,
                 meta=np.array([self.max_items, self.evicted], dtype=np.int64))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, max_items: int | None = None) -> ItemTable:
        """A table from :meth:`to_bytes` (unbound: bind it to the model in service). Every array is checked
        (dtype, shape, lengths, UTF-8, unique ids, category codes in range; no pickle is ever read): raises
        :class:`~models.online.plainstate.StateError` on anything else."""
        z = load_npz(data, _SPEC, "items")
        meta = z["meta"]
        if meta.shape != (2,) or meta[0] < 1 or meta[1] < 0:
            raise StateError("items.meta must be [max_items >= 1, evicted >= 0]")
        n = len(z["ids_len"])
        if len(z["first"]) != n or len(z["cat"]) != n:
            raise StateError(f"items: {n} ids but {len(z['first'])} first-seen times and {len(z['cat'])} categories")
        ids = unique(_strings(z["ids_len"], z["ids_blob"], "items.ids"), "items.ids")
        cats = unique(_strings(z["cat_len"], z["cat_blob"], "items.categories"), "items.categories")
        codes = z["cat"]
        if n and (codes.min() < -1 or codes.max() >= len(cats)):
            raise StateError(f"items.cat holds codes outside -1 .. {len(cats) - 1}")
        table = cls(int(meta[0]) if max_items is None else max_items)
        table._codes = {c: k for k, c in enumerate(cats)}
        for item, first, cat in zip(ids, z["first"].tolist(), codes.tolist(), strict=True):
            slot = table._take_slot(item)
            table._first[slot], table._cat[slot] = first, cat
        table.evicted = int(meta[1])
        return table

    STATE_ENCODING = "npz"

    def to_state(self) -> bytes:
        """The table as plain ``.npz`` bytes (:meth:`to_bytes`)."""
        return self.to_bytes()

    def load_state(self, data: bytes) -> None:
        """Replace the table's contents by a checked :meth:`to_bytes` state (this table's ``max_items``
        stays; the oldest items are dropped if the state holds more). Nothing changes when it is refused."""
        fresh = ItemTable.from_bytes(data, self.max_items)
        fresh.global_facts = self.global_facts       # the engine's link to the plane stays
        self.__dict__.update(fresh.__dict__)


_SPEC = {"ids_len": ("i", 1), "ids_blob": ("u", 1), "first": ("i", 1), "cat": ("i", 1), "cat_len": ("i", 1),
         "cat_blob": ("u", 1), "meta": ("i", 1)}


def _strings(lengths: np.ndarray, blob: np.ndarray, where: str) -> list[str]:
    if (lengths < 0).any() or int(lengths.sum()) != len(blob) or blob.dtype != np.uint8:
        raise StateError(f"{where}: the lengths do not add up to the {len(blob)} bytes of text")
    try:
        return unpack_strings(lengths, blob)
    except UnicodeDecodeError as exc:
        raise StateError(f"{where} is not UTF-8 text") from exc


def pack_strings(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 lengths and one byte blob (compact, unlike numpy's fixed-width unicode arrays).

    >>> unpack_strings(*pack_strings(["a", "", "é"]))
    ['a', '', 'é']
    """
    encoded = [v.encode() for v in values]
    return (np.array([len(e) for e in encoded], dtype=np.int64),
            np.frombuffer(b"".join(encoded), dtype=np.uint8))


def unpack_strings(lengths: np.ndarray, blob: np.ndarray) -> list[str]:
    data = blob.tobytes()
    ends = np.cumsum(lengths).tolist()
    return [data[e - n:e].decode() for e, n in zip(ends, lengths.tolist(), strict=True)]
