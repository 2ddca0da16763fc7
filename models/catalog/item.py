"""One catalog record, as the engine sees it (the wire form is ``stream/schemas/item.avsc``).

An item is recommendable unless it is ``hidden`` (never recommend: withdrawn, adult, a test item) or not
``available`` (out of stock: it may come back). ``category`` is a path, most general first.

>>> it = Item("sku-1", "Blue running shoe", category=("shoes", "running"), brand="acme", price=59.0)
>>> it.recommendable, it.leaf_category
(True, 'running')
>>> Item("sku-2", "Old model", available=False).recommendable
False
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str = ""
    description: str | None = None
    category: tuple[str, ...] = ()          # most general first: ("shoes", "running")
    brand: str | None = None
    price: float | None = None
    tags: tuple[str, ...] = ()
    available: bool = True                  # in stock; False: not recommended until it is again
    hidden: bool = False                    # never recommended
    created_at_ms: int | None = None
    updated_at_ms: int | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def recommendable(self) -> bool:
        return self.available and not self.hidden

    @property
    def leaf_category(self) -> str | None:
        return self.category[-1] if self.category else None
