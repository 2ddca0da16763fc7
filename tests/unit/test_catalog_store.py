"""The engine's catalog store and the per-list rules (pure, no Kafka)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from streamrec.models.catalog.item import Item
from streamrec.models.catalog.rules import CatalogRules, parse_categories
from streamrec.models.catalog.store import CatalogStore
from streamrec.models.errors import ConfigError


def test_newest_record_wins_by_updated_at_then_arrival() -> None:
    s = CatalogStore()
    assert s.update([Item("a", "v1", updated_at_ms=10)]) == 1
    assert s.update([Item("a", "old", updated_at_ms=9)]) == 0            # older: dropped
    assert s.update([Item("a", "undated")]) == 0                         # no time: older than any time
    assert s.update([Item("a", "v2", updated_at_ms=10)]) == 1            # same time: the later arrival
    assert s.get("a").title == "v2"                                      # type: ignore[union-attr]
    assert s.update([Item("b", "x"), Item("b", "y")]) == 2 and s.get("b").title == "y"  # type: ignore[union-attr]
    assert s.stats()["catalog_stale"] == 2 and len(s) == 2


def test_blocked_follows_the_newest_record() -> None:
    s = CatalogStore()
    s.update([Item("a", hidden=True, updated_at_ms=1), Item("b", available=False, updated_at_ms=1), Item("c")])
    assert s.blocked == {"a", "b"}
    s.update([Item("b", available=True, updated_at_ms=2)])
    assert s.blocked == {"a"}
    s.update([Item("a", hidden=True, available=True, updated_at_ms=3)])   # still hidden
    assert s.blocked == {"a"}
    assert s.remove("a") and not s.remove("a") and s.blocked == set()


def test_rules_block_items_by_category_and_price() -> None:
    s = CatalogStore(CatalogRules(exclude_categories=("adult",), min_price=5, max_price=100))
    s.update([Item("a", category=("books", "adult")), Item("b", price=1.0), Item("c", price=500.0),
              Item("d", price=50.0), Item("e")])
    assert s.blocked == {"a", "b", "c"}


def test_rules_are_checked() -> None:
    with pytest.raises(ConfigError):
        CatalogRules(max_per_brand=-1)
    with pytest.raises(ConfigError):
        CatalogRules(min_price=10, max_price=5)
    with pytest.raises(ConfigError):
        CatalogRules(max_price=float("nan"))
    assert parse_categories(" adult, ,test ") == ("adult", "test")
    assert CatalogRules(category_depth=1).group_of(Item("x", category=("shoes", "running"))) == "shoes"


def test_masks_over_model_and_other_codes() -> None:
    ids = ["m0", "m1", "m2"]
    index_of = {i: k for k, i in enumerate(ids)}
    extra = ["x0", "x1"]

    def item_of(c: int) -> str:
        return ids[c] if c < 3 else extra[c - 3]

    s = CatalogStore()
    codes = np.array([0, 1, 2, 3, 4, 1])
    assert s.masks(codes, ids, index_of, item_of) is None                # nothing blocked: no work
    s.update([Item("m1", hidden=True), Item("x1", available=False)])
    m = s.masks(codes, ids, index_of, item_of)
    assert m is not None and m.blocked.tolist() == [False, True, False, False, True, True] and m.caps == ()
    s.update([Item("m1", hidden=False), Item("m2", hidden=True)])        # patched view, same model
    m = s.masks(codes, ids, index_of, item_of)
    assert m is not None and m.blocked.tolist() == [False, False, True, False, True, False]
    assert s.stats()["catalog_view_rebuilds"] == 1
    new_ids = ["m2", "m0"]                                               # a new model: rebuilt
    m = s.masks(np.array([0, 1]), new_ids, {i: k for k, i in enumerate(new_ids)}, lambda c: new_ids[c])
    assert m is not None and m.blocked.tolist() == [True, False] and s.stats()["catalog_view_rebuilds"] == 2


def test_masks_carry_caps_and_allowed_enforces_them() -> None:
    s = CatalogStore(CatalogRules(max_per_category=1, max_per_brand=2))
    s.update([Item("a", category=("c1",), brand="b1"), Item("b", category=("c1",), brand="b2"),
              Item("c", category=("c2",), brand="b1"), Item("d", category=("c3",), brand="b1")])
    ids = ["a", "b", "c", "d"]
    m = s.masks(np.array([0, 1, 2, 3]), ids, {i: k for k, i in enumerate(ids)}, ids.__getitem__)
    assert m is not None and len(m.caps) == 2
    (cat, kc), (brand, kb) = m.caps
    assert kc == 1 and kb == 2 and cat[0] == cat[1] != cat[2] and brand[0] == brand[2] == brand[3]

    @dataclass
    class It:
        item_id: str

    assert [it.item_id for it in s.allowed([It("a"), It("b"), It("c"), It("d"), It("z")])] == ["a", "c", "z"]
