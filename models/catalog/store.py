"""The engine's catalog: the newest record of every item, which items are blocked, and their rule groups.

Pure (no Kafka): the worker feeds it the records of the items topic (``Recommender.update_catalog``), the
evaluation harness or a test feeds it items directly.

* **Newest wins**: a record replaces the one held when its ``updated_at`` is at least the held one's (a
  record without ``updated_at`` is older than any record with one); equal times go by arrival (the later
  wins). Older records are counted (``catalog_stale``) and dropped. :meth:`CatalogStore.remove` (a tombstone
  on the topic) forgets an item.
* **Blocked**: hidden, not available, or refused by the item-level rules (excluded category, price range;
  :class:`~streamrec.models.catalog.rules.CatalogRules`). A blocked item is never listed; it comes back when
  a newer record makes it recommendable again. Items the catalog does not know are not blocked.
* **Groups**: for the per-list caps, every item with a category (its first ``category_depth`` levels) or a
  brand has small integer codes for them.

:meth:`CatalogStore.masks` turns this into per-candidate arrays for one ``recommend`` call: a cached view over
the model's item codes (rebuilt when the model changes, patched with the items changed since), plus a lookup of
the batch's other items (``np.unique`` of their codes, one dict look-up each). It returns ``None`` when nothing
is blocked and no cap is set, so an engine without a catalog pays one attribute test.

>>> store = CatalogStore(CatalogRules(max_per_brand=1))
>>> store.update([Item("a", brand="acme"), Item("b", hidden=True, updated_at_ms=5)])
2
>>> store.update([Item("b", hidden=False, updated_at_ms=4)])   # older than the one held: dropped
0
>>> sorted(store.blocked), store.stats()["catalog_stale"]
(['b'], 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamrec.models.catalog.item import Item
from streamrec.models.catalog.rules import CatalogRules

__all__ = ["CatalogMasks", "CatalogStore"]

_NONE = -(2**62)


@dataclass(frozen=True, slots=True)
class CatalogMasks:
    """Per candidate of one batch: ``blocked`` (never list it) and, per cap, the candidate's group code
    (-1: none) and the cap."""

    blocked: np.ndarray
    caps: tuple[tuple[np.ndarray, int], ...] = ()


class CatalogStore:
    def __init__(self, rules: CatalogRules | None = None) -> None:
        self.rules = rules or CatalogRules()
        self._items: dict[str, Item] = {}
        self.blocked: set[str] = set()
        self._groups: dict[str, tuple[int, int]] = {}     # item -> (category code, brand code); -1: none
        self._cat_codes: dict[str, int] = {}
        self._brand_codes: dict[str, int] = {}
        self._dirty: set[str] = set()                      # changed since the model view was synced
        self._view_key: object = None
        self._view: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.version = 0
        self._n = dict.fromkeys(("catalog_records", "catalog_stale", "catalog_removed", "catalog_view_rebuilds"), 0)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    @property
    def active(self) -> bool:
        """Whether selection must consult the catalog at all (something blocked, or a cap with groups)."""
        return bool(self.blocked) or (self.rules.caps and bool(self._groups))

    def update(self, items: Iterable[Item]) -> int:
        """Apply records in arrival order; returns how many replaced (or added) an item."""
        applied = 0
        rules, held = self.rules, self._items
        for item in items:
            self._n["catalog_records"] += 1
            old = held.get(item.item_id)
            if old is not None and _time(item) < _time(old):
                self._n["catalog_stale"] += 1
                continue
            held[item.item_id] = item
            applied += 1
            iid = item.item_id
            if item.recommendable and rules.allows(item):
                self.blocked.discard(iid)
            else:
                self.blocked.add(iid)
            if rules.caps:
                group = (self._code(self._cat_codes, rules.group_of(item)) if rules.max_per_category else -1,
                         self._code(self._brand_codes, item.brand) if rules.max_per_brand else -1)
                if group != (-1, -1):
                    self._groups[iid] = group
                else:
                    self._groups.pop(iid, None)
            self._dirty.add(iid)
        if applied:
            self.version += 1
        return applied

    def remove(self, item_id: str) -> bool:
        """Forget an item (a tombstone): it is neither blocked nor grouped any more."""
        if self._items.pop(item_id, None) is None:
            return False
        self.blocked.discard(item_id)
        self._groups.pop(item_id, None)
        self._dirty.add(item_id)
        self.version += 1
        self._n["catalog_removed"] += 1
        return True

    @staticmethod
    def _code(codes: dict[str, int], name: str | None) -> int:
        if not name:
            return -1
        c = codes.get(name)
        if c is None:
            c = codes[name] = len(codes)
        return c

    # --- selection ---------------------------------------------------------------------------------
    def masks(self, codes: np.ndarray, model_ids: Sequence[str], index_of: Mapping[str, int],
              item_of: Callable[[int], str]) -> CatalogMasks | None:
        """Per-candidate arrays for the candidate ``codes`` of one batch (model codes first, then others, as
        in ``CodeSpace``); ``None`` when the catalog blocks nothing and caps nothing."""
        if not self.active:
            return None
        n_model = len(model_ids)
        view_blocked, view_cat, view_brand = self._sync_view(model_ids, index_of)
        codes = np.asarray(codes, dtype=np.int64)
        inside = codes < n_model
        caps = self.rules.caps and bool(self._groups)
        if inside.all():
            blocked = view_blocked[codes]
            cat = view_cat[codes] if caps else None
            brand = view_brand[codes] if caps else None
        else:
            blocked = np.zeros(len(codes), dtype=bool)
            cat = np.full(len(codes), -1, dtype=np.int32) if caps else None
            brand = np.full(len(codes), -1, dtype=np.int32) if caps else None
            inner = np.flatnonzero(inside)
            if len(inner):
                blocked[inner] = view_blocked[codes[inner]]
                if cat is not None and brand is not None:
                    cat[inner], brand[inner] = view_cat[codes[inner]], view_brand[codes[inner]]
            outer = np.flatnonzero(~inside)
            uniq, inv = np.unique(codes[outer], return_inverse=True)
            ids = [item_of(c) for c in uniq.tolist()]
            bset = self.blocked
            blocked[outer] = np.fromiter((i in bset for i in ids), dtype=bool, count=len(ids))[inv]
            if cat is not None and brand is not None:
                get = self._groups.get
                pairs = np.array([get(i, (-1, -1)) for i in ids], dtype=np.int32).reshape(-1, 2)
                cat[outer], brand[outer] = pairs[inv, 0], pairs[inv, 1]
        out: list[tuple[np.ndarray, int]] = []
        if cat is not None and self.rules.max_per_category:
            out.append((cat, self.rules.max_per_category))
        if brand is not None and self.rules.max_per_brand:
            out.append((brand, self.rules.max_per_brand))
        return CatalogMasks(blocked, tuple(out))

    def _sync_view(self, model_ids: Sequence[str],
                   index_of: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The blocked mask and group codes over the model's item codes: rebuilt for a new model (O(blocked +
        grouped items)), else patched with the items changed since the last call."""
        n = len(model_ids)
        if self._view is None or self._view_key is not model_ids:
            self._view = (np.zeros(n, dtype=bool), np.full(n, -1, dtype=np.int32), np.full(n, -1, dtype=np.int32))
            self._view_key = model_ids
            self._dirty.clear()
            self._n["catalog_view_rebuilds"] += 1
            changed: Iterable[str] = self.blocked | self._groups.keys() if n else ()
        else:
            changed, self._dirty = self._dirty, set()
        blocked, cat, brand = self._view
        groups, bset = self._groups, self.blocked
        for iid in changed:
            c = index_of.get(iid)
            if c is None or c >= n:
                continue
            blocked[c] = iid in bset
            cat[c], brand[c] = groups.get(iid, (-1, -1))
        return self._view

    def allowed(self, items: Sequence[Any]) -> list[Any]:
        """``items`` (objects with ``item_id``, best first) minus blocked items and items over a cap: the last
        check on a finished list (after stages that add items of their own)."""
        bset = self.blocked
        if not self.rules.caps or not self._groups:
            return [it for it in items if it.item_id not in bset] if bset else list(items)
        seen_cat: dict[int, int] = {}
        seen_brand: dict[int, int] = {}
        kc, kb = self.rules.max_per_category, self.rules.max_per_brand
        out = []
        for it in items:
            if it.item_id in bset:
                continue
            c, b = self._groups.get(it.item_id, (-1, -1))
            if (kc and c >= 0 and seen_cat.get(c, 0) >= kc) or (kb and b >= 0 and seen_brand.get(b, 0) >= kb):
                continue
            if c >= 0:
                seen_cat[c] = seen_cat.get(c, 0) + 1
            if b >= 0:
                seen_brand[b] = seen_brand.get(b, 0) + 1
            out.append(it)
        return out

    def stats(self) -> dict[str, Any]:
        return {**self._n, "catalog_items": len(self._items), "catalog_blocked": len(self.blocked)}


def _time(item: Item) -> int:
    return _NONE if item.updated_at_ms is None else item.updated_at_ms
