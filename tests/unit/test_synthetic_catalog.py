"""The synthetic catalog agrees with the synthetic log (leaf category = the events' category, price = the
purchases' value), is seeded, and reads back through the jsonl catalog reader without a mapping."""

from __future__ import annotations

from pathlib import Path

from streamrec.producers.catalog import read_items
from streamrec.producers.synthetic import SyntheticConfig, simulate
from streamrec.producers.synthetic_catalog import synthetic_catalog, write_catalog


def test_catalog_matches_the_log_and_reads_back(tmp_path: Path) -> None:
    config = SyntheticConfig(users=50, items=300, events=3000, seed=11)
    items = synthetic_catalog(config)
    catalog = {it.item_id: it for it in items}
    log = simulate(config)
    assert len(catalog) == 300
    for e in log.events:
        it = catalog[e.item_id]
        assert it.category[1] == e.context["category"]
        if e.value is not None:
            assert it.price == e.value
    assert all(it.title and it.brand and it.tags for it in items)
    assert 0 < sum(not it.available for it in items) < 30
    assert synthetic_catalog(config) == items and synthetic_catalog(SyntheticConfig(50, 300, 3000, 12)) != items
    assert write_catalog(items, tmp_path / "items.jsonl") == 300
    read = read_items(tmp_path / "items.jsonl", "jsonl")
    assert list(read.items) == items and read.bad_count == 0
