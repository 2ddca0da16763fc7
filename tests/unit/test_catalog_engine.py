"""Selection under the catalog: blocked items (hidden, unavailable, excluded, out of the price range) never
appear in a list, with or without a model, in every diversity mode and with stages that add items; the hard
caps per category and brand hold; a blocked item comes back once it is recommendable again."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamrec.models.base.artifact import Artifact, load_artifact, random_artifact
from streamrec.models.catalog.item import Item
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.errors import ConfigError
from streamrec.models.events import Event, EventType
from streamrec.models.serving.candidates import CandidateBatch, CodeSpace
from streamrec.models.serving.ranking import Selection, select

T0 = 1_700_000_000_000
_ids = itertools.count()


def ev(user: str, item: str) -> Event:
    n = next(_ids)
    return Event(f"e{n}", user, item, EventType.CLICK, T0 + n * 1_000)


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    d = tmp_path_factory.mktemp("cat")
    random_artifact(d / "v1", n_items=500, dim=16, seed=3, clusters=10, version="v1")
    return load_artifact(d / "v1")


def busy(rec: Recommender, users: int = 30, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    rec.apply([ev(f"u{u}", f"i{rng.integers(0, 60)}") for u in range(users) for _ in range(8)])
    return [f"u{u}" for u in range(users)]


def listed(rec: Recommender, users: list[str]) -> Counter[str]:
    return Counter(i for rl in rec.recommend(users, now_ms=T0) for i in rl.item_ids)


@pytest.mark.parametrize("with_model", [False, True])
@pytest.mark.parametrize("diversity", ["none", "category", "mmr"])
def test_a_hidden_item_leaves_every_list_and_comes_back(art: Artifact, with_model: bool, diversity: str) -> None:
    rec = Recommender(EngineConfig(trending_refresh_events=1, diversity=diversity, filter_seen="none"),
                      artifact=art if with_model else None)
    users = busy(rec)
    before = listed(rec, users)
    popular = [i for i, _ in before.most_common(3)]
    rec.update_catalog([Item(popular[0], hidden=True, updated_at_ms=1), Item(popular[1], available=False,
                                                                               updated_at_ms=1)])
    after = listed(rec, users)
    assert popular[0] not in after and popular[1] not in after and popular[2] in after
    assert all(len(rl.items) == 20 for rl in rec.recommend(users, now_ms=T0))    # filled from further down
    rec.update_catalog([Item(popular[0], updated_at_ms=2), Item(popular[1], updated_at_ms=2)])
    again = listed(rec, users)
    assert popular[0] in again and popular[1] in again
    assert rec.stats()["catalog_blocked"] == 0


def test_exploration_stage_never_adds_a_blocked_item() -> None:
    rec = Recommender(EngineConfig(trending_refresh_events=1, explore_slots=5, filter_seen="none"))
    users = busy(rec)
    newest = rec.newest(50)
    rec.update_catalog([Item(i, hidden=True) for i in newest])
    got = listed(rec, users)
    assert not set(newest) & set(got) and got


def test_rules_exclude_and_cap(art: Artifact) -> None:
    cfg = EngineConfig(trending_refresh_events=1, filter_seen="none", rule_max_per_brand=2,
                       rule_max_per_category=3, rule_category_depth=1, rule_exclude_categories=("adult",),
                       rule_max_price=100.0)
    rec = Recommender(cfg, artifact=art)
    users = busy(rec)
    items = [f"i{k}" for k in range(500)]
    rec.update_catalog([Item(i, category=(f"c{k % 4}", f"sub{k % 7}"), brand=f"b{k % 9}",
                             price=float(k % 150)) for k, i in enumerate(items)])
    rec.update_catalog([Item("i5", category=("adult",))])
    catalog = {i: rec.catalog.get(i) for i in items}
    for rl in rec.recommend(users, now_ms=T0):
        got = [catalog[i] for i in rl.item_ids]
        assert got, "a list emptied by the rules"
        assert max(Counter(it.brand for it in got).values()) <= 2                      # type: ignore[union-attr]
        assert max(Counter(it.category[0] for it in got).values()) <= 3                # type: ignore[union-attr]
        assert all(it.price is None or it.price <= 100 for it in got)                  # type: ignore[union-attr]
        assert "i5" not in rl.item_ids


def test_rules_are_checked_in_the_engine_config() -> None:
    with pytest.raises(ConfigError):
        EngineConfig(rule_min_price=10, rule_max_price=5)


def test_select_drops_catalog_blocked_and_capped_candidates() -> None:
    from streamrec.models.catalog.store import CatalogMasks

    # two rows, four candidates each (codes 0..3), scores best first
    rows = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    codes = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    scores = np.array([4, 3, 2, 1, 4, 3, 2, 1], dtype=np.float32)
    batch = CandidateBatch(rows, codes, scores[:, None], np.array([0, 4, 8]))
    space = CodeSpace(["a", "b", "c", "d"], {"a": 0, "b": 1, "c": 2, "d": 3})
    primary = np.zeros(8, dtype=np.int8)
    how = Selection(top_n=3, diversity="none")
    blocked = codes == 1
    brand = np.array([0, 0, 0, 1] * 2, dtype=np.int32)
    out = select(batch, scores, primary, space, [None, None], how, sources=("x",),
                 catalog=CatalogMasks(blocked, ((brand, 1),)))
    assert [[it.item_id for it in lst] for lst in out] == [["a", "d"], ["a", "d"]]
    out = select(batch, scores, primary, space, [None, {"a"}], how, sources=("x",),
                 catalog=CatalogMasks(blocked))
    assert [[it.item_id for it in lst] for lst in out] == [["a", "c", "d"], ["c", "d"]]


def test_catalog_update_on_an_idle_engine_is_cheap_and_counted() -> None:
    rec = Recommender(EngineConfig())
    rec.update_catalog([Item(f"i{k}", hidden=k % 2 == 0) for k in range(100)])
    s = rec.stats()
    assert (s["catalog_items"], s["catalog_blocked"], s["catalog_records"]) == (100, 50, 100)
    rec.remove_items(["i0", "i1"])
    assert rec.stats()["catalog_blocked"] == 49 and "i0" not in rec.catalog.blocked


def test_no_catalog_means_no_masks(tmp_path: Path) -> None:
    rec = Recommender(EngineConfig(trending_refresh_events=1))
    users = busy(rec)
    rec.update_catalog([Item("zz")])            # known, recommendable, no caps: nothing to do
    assert not rec.catalog.active and listed(rec, users)
