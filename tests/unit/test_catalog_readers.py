"""Catalog readers: MovieLens u.item, generic CSV / JSON lines with a mapping, bad-row reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.models.errors import InputError
from streamrec.producers.catalog import iter_items, parse_catalog_mapping, read_items
from tests.conftest import SHARED_DATA

ML = SHARED_DATA / "movielens-100k" / "u.item"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_movielens_layout(tmp_path: Path) -> None:
    p = _write(tmp_path, "u.item",
               "1|Toy Story (1995)|01-Jan-1995||http://x/1|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "1373|Good Morning (1971)|4-Feb-1971||http://x/2|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "x|Broken|01-Jan-1995||u|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "4|Too few|01-Jan-1995\n")
    r = read_items(p, "movielens")
    toy = r.items[0]
    assert (toy.item_id, toy.title, toy.category, toy.tags) == \
        ("1", "Toy Story (1995)", ("Animation",), ("Animation", "Children's", "Comedy"))
    assert toy.created_at_ms == 788_918_400_000 and toy.attributes["release_date"] == "01-Jan-1995"
    assert r.items[1].created_at_ms is not None and r.items[1].category == ("Comedy",)
    assert [(b.line, b.reason.split(" ")[0]) for b in r.bad_rows] == [(3, "movie"), (4, "3")]
    assert r.bad_count == 2


@pytest.mark.skipif(not ML.is_file(), reason="MovieLens-100K not present")
def test_movielens_100k_reads_every_movie() -> None:
    r = read_items(ML.parent, "movielens")      # a folder means its u.item
    assert len(r.items) == 1682 and r.bad_count == 0 and r.duplicates == 0
    assert all(it.category for it in r.items)


def test_csv_with_mapping_and_bad_rows(tmp_path: Path) -> None:
    p = _write(tmp_path, "shop.csv",
               "sku,name,cat,brand,price,stock,labels,color\n"
               "s1,Blue shoe,shoes/running,acme,59.5,yes,sale|blue,blue\n"
               "s2,Old shoe,shoes,acme,,no,,\n"
               ",No id,shoes,acme,1,yes,,\n"
               "s4,Bad price,shoes,acme,cheap,yes,,\n"
               "s5,Bad flag,shoes,acme,1,maybe,,\n"
               "s6,Negative,shoes,acme,-3,yes,,\n"
               "s7,short row\n")
    m = parse_catalog_mapping("item=sku,title=name,category=cat,category_sep=/,available=stock,tags=labels,"
                              "attributes=color")
    r = read_items(p, "csv", m)
    assert [it.item_id for it in r.items] == ["s1", "s2"]
    s1, s2 = r.items
    assert s1.category == ("shoes", "running") and s1.price == 59.5 and s1.tags == ("sale", "blue")
    assert s1.attributes == {"color": "blue"} and s1.available and not s1.hidden
    assert s2.price is None and not s2.available and s2.attributes == {}
    assert [b.line for b in r.bad_rows] == [4, 5, 6, 7, 8]
    reasons = [b.reason for b in r.bad_rows]
    assert "item id" in reasons[0] and "price" in reasons[1] and "available" in reasons[2]
    assert "negative" in reasons[3] and "cells" in reasons[4]


def test_csv_named_column_missing_from_header(tmp_path: Path) -> None:
    p = _write(tmp_path, "shop.csv", "sku,name\ns1,x\n")
    with pytest.raises(InputError, match="brand=maker"):
        read_items(p, "csv", parse_catalog_mapping("item=sku,title=name,brand=maker"))


def test_jsonl_default_fields_and_lists(tmp_path: Path) -> None:
    rows = [{"item_id": "a", "title": "A", "category": ["x", "y"], "tags": "t1|t2", "price": 3,
             "hidden": True, "updated_at": 1_700_000_000_000, "attributes": {"size": "M", "n": 2}},
            {"item_id": "b", "price": "1e400"}, "not an object", {"item_id": "c", "created_at": "yesterday"}]
    p = _write(tmp_path, "c.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    r = read_items(p, "jsonl")
    (a,) = r.items
    assert a.category == ("x", "y") and a.tags == ("t1", "t2") and a.hidden and a.price == 3.0
    assert a.updated_at_ms == 1_700_000_000_000 and a.attributes == {"size": "M", "n": "2"}
    assert [b.line for b in r.bad_rows] == [2, 3, 4, 5]
    assert "finite" in r.bad_rows[0].reason and "JSON" in r.bad_rows[3].reason


def test_strict_and_unusable(tmp_path: Path) -> None:
    p = _write(tmp_path, "c.jsonl", '{"item_id": "a"}\n{"title": "no id"}\n')
    with pytest.raises(InputError, match="line 2"):
        read_items(p, "jsonl", strict=True)
    bad = _write(tmp_path, "bad.jsonl", '{"title": "no id"}\n')
    with pytest.raises(InputError, match="none of its 1 rows"):
        list(iter_items(bad, "jsonl"))
    with pytest.raises(InputError, match="unknown catalog format"):
        iter_items(p, "xml")
    with pytest.raises(InputError, match="not found"):
        iter_items(tmp_path / "nope.csv", "csv")
    with pytest.raises(InputError, match="bad catalog mapping item"):
        parse_catalog_mapping("colour=red")


def test_duplicates_are_kept_and_counted(tmp_path: Path) -> None:
    p = _write(tmp_path, "c.jsonl", '{"item_id": "a", "title": "1"}\n{"item_id": "a", "title": "2"}\n')
    r = read_items(p, "jsonl")
    assert [it.title for it in r.items] == ["1", "2"] and r.duplicates == 1
