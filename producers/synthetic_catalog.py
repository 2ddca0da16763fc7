"""A catalog for the synthetic log's items (``streamrec generate --catalog PATH``).

Item ``i{k}`` keeps what the log already says of it: its taste cluster ``c{n}`` (the events'
``context["category"]``) is the leaf of its category path, and its price is the price of its purchases. The
rest comes from a small seeded vocabulary (a generator of its own, so the log does not change): a department
per cluster (the top of the path), three brands per cluster, a title ``"<brand> <adjective> <noun>"`` with a
noun of the department, two adjectives as tags, and about 3 % of the items out of stock. The same seed and
sizes give the same catalog.

>>> items = synthetic_catalog(SyntheticConfig(users=10, items=50, events=100, seed=7))
>>> len(items), items[0].item_id, len(items[0].category)
(50, 'i0', 2)
>>> synthetic_catalog(SyntheticConfig(users=10, items=50, events=100, seed=7)) == items
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from streamrec.models.catalog.item import Item
from streamrec.models.timeunits import DAY_MS
from streamrec.producers.synthetic import SyntheticConfig, item_table

__all__ = ["synthetic_catalog", "write_catalog"]

DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "shoes": ("sneaker", "boot", "sandal", "loafer", "runner"),
    "books": ("novel", "atlas", "cookbook", "memoir", "guide"),
    "kitchen": ("pan", "kettle", "knife", "blender", "mug"),
    "garden": ("hose", "rake", "planter", "shears", "lantern"),
    "toys": ("puzzle", "robot", "kite", "blocks", "doll"),
    "audio": ("headphones", "speaker", "turntable", "radio", "earbuds"),
    "outdoor": ("tent", "backpack", "jacket", "stove", "sleeping bag"),
    "home": ("lamp", "rug", "cushion", "clock", "vase"),
}
ADJECTIVES = ("classic", "compact", "deluxe", "eco", "light", "pro", "retro", "smart", "soft", "sturdy",
              "travel", "vintage", "wireless", "blue", "black", "red", "green", "silver")
BRANDS = ("acme", "borealis", "cobalt", "dunmore", "elmwood", "fennec", "gala", "harbor", "ionic", "juniper",
          "kestrel", "lumen", "meridian", "northfold", "orchid", "pinnacle", "quill", "rowan", "solace", "tundra")


def synthetic_catalog(config: SyntheticConfig) -> list[Item]:
    """One :class:`Item` per synthetic item, in item order."""
    item_cluster, _, price = item_table(np.random.default_rng(config.seed), config)
    rng = np.random.default_rng([config.seed, 1])
    n_clusters = config.n_clusters
    depts = list(DEPARTMENTS)
    dept_of = [depts[k % len(depts)] for k in range(n_clusters)]
    brands_of = rng.integers(0, len(BRANDS), size=(n_clusters, 3))
    which_brand = rng.integers(0, 3, size=config.items)
    adj = rng.integers(0, len(ADJECTIVES), size=(config.items, 2))
    noun = rng.integers(0, 5, size=config.items)
    in_stock = rng.random(config.items) >= 0.03
    age_days = rng.integers(1, 365, size=config.items)
    out = []
    for k, (cluster, p) in enumerate(zip(item_cluster.tolist(), price.tolist(), strict=True)):
        dept = dept_of[cluster]
        brand = BRANDS[int(brands_of[cluster, which_brand[k]])]
        a1, a2 = ADJECTIVES[int(adj[k, 0])], ADJECTIVES[int(adj[k, 1])]
        title = f"{brand.capitalize()} {a1} {DEPARTMENTS[dept][int(noun[k])]}"
        out.append(Item(f"i{k}", title, category=(dept, f"c{cluster}"), brand=brand, price=float(p),
                        tags=tuple(dict.fromkeys((a1, a2))), available=bool(in_stock[k]),
                        created_at_ms=config.start_ms - int(age_days[k]) * DAY_MS))
    return out


def write_catalog(items: Iterable[Item], path: str | Path) -> int:
    """JSON lines with the field names of ``stream/schemas/item.avsc`` (``catalog load --format jsonl`` reads
    them without a mapping); written to a temporary file, then renamed. Returns the number of items."""
    from streamrec.stream.items import item_to_record

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for item in items:
                fh.write(json.dumps(item_to_record(item), separators=(",", ":")) + "\n")
                count += 1
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return count
