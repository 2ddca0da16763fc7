"""Per-list business rules on catalog records, as configuration (``EngineConfig`` ``rule_*`` fields,
``STREAMREC_RULE_*`` settings).

* ``exclude_categories``: an item with any of these at any level of its category path is never listed;
* ``min_price`` / ``max_price``: an item priced outside the range is never listed (``max_price`` 0: no
  maximum); an item without a price passes;
* ``max_per_category`` / ``max_per_brand``: at most K items of one category (its first ``category_depth``
  levels; 0: the whole path) or of one brand in a list; 0: no cap. The cap is hard: an item over it is left
  out, never put back at the end of a short list.

Items the catalog does not know pass every rule (they have no category, brand or price).

>>> rules = CatalogRules(max_per_brand=2, exclude_categories=("adult",), max_price=100.0)
>>> rules.allows(Item("a", category=("books", "adult"))), rules.allows(Item("b", price=150.0))
(False, False)
>>> rules.allows(Item("c", price=20.0)), rules.group_of(Item("c", category=("shoes", "running")))
(True, 'shoes>running')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streamrec.models.catalog.item import Item
from streamrec.models.errors import ConfigError

__all__ = ["CatalogRules", "parse_categories"]


@dataclass(frozen=True, slots=True)
class CatalogRules:
    max_per_category: int = 0
    category_depth: int = 0
    max_per_brand: int = 0
    exclude_categories: tuple[str, ...] = ()
    min_price: float = 0.0
    max_price: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_per_category", "category_depth", "max_per_brand"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"rule {name} is {value!r}; give a whole number, 0 or more")
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"rule {name} is {value!r}; give a finite price, 0 or more")
        if self.max_price and self.max_price < self.min_price:
            raise ConfigError(f"rule max_price {self.max_price} is below min_price {self.min_price}")

    @property
    def static(self) -> bool:
        """Whether any rule decides about an item on its own (exclusion, price)."""
        return bool(self.exclude_categories or self.min_price or self.max_price)

    @property
    def caps(self) -> bool:
        return bool(self.max_per_category or self.max_per_brand)

    def allows(self, item: Item) -> bool:
        """The item-level rules (not the per-list caps): excluded categories and the price range."""
        if self.exclude_categories and any(level in self.exclude_categories for level in item.category):
            return False
        p = item.price
        return p is None or (p >= self.min_price and not (self.max_price and p > self.max_price))

    def group_of(self, item: Item) -> str | None:
        """The category a per-category cap counts (``None``: uncapped)."""
        if not item.category:
            return None
        path = item.category[: self.category_depth] if self.category_depth else item.category
        return ">".join(path)


def parse_categories(text: str) -> tuple[str, ...]:
    """``"adult, test"`` -> ``("adult", "test")`` (the settings' spelling of ``exclude_categories``)."""
    return tuple(c.strip() for c in text.split(",") if c.strip())
