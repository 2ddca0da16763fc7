"""The ``auto`` seen/purchased policy (models/serving/repurchase.py) and the reranker's own-history features."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models.base.encoder import TYPE_INDEX
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.errors import ConfigError
from streamrec.models.events import Event, EventType
from streamrec.models.online.features import FEATURES, build_features
from streamrec.models.online.itemtable import ItemTable
from streamrec.models.serving.candidates import CodeSpace, merge_candidates
from streamrec.models.serving.state import StateLimits, UserState

CFG = {"sources": ("covisit", "recent", "trending"), "diversity": "none", "trending_refresh_events": 1,
       "repurchase_min_events": 4}


def click(n: int, user: str, item: str, kind: EventType = EventType.CLICK) -> Event:
    return Event(f"e{n}", user, item, kind, 1_000 * n)


def listed(rec: Recommender, user: str) -> list[str]:
    return [it.item_id for it in rec.recommend([user], now_ms=10**9)[0].items]


def test_auto_is_the_default_and_lets_purchases_back_where_buyers_return_to_them() -> None:
    assert (EngineConfig().filter_seen, EngineConfig().repurchase_start) == ("auto", "purchased")
    rec = Recommender(EngineConfig(**CFG))
    # buyers keep clicking what they bought: 3 of their 4 events are on a bought item
    rec.apply([click(1, "u", "a", EventType.PURCHASE), click(2, "u", "a"), click(3, "u", "b"), click(4, "u", "a"),
               click(5, "v", "c", EventType.PURCHASE), click(6, "v", "c")])
    st = rec.stats()
    assert st["repurchase_events"] == 4 and st["repurchase_hits"] == 3
    assert st["filter_seen_effective"] == "none"
    assert listed(rec, "u")[0] == "a"               # the recent source proposes it, the selection keeps it


def test_auto_blocks_purchases_once_buyers_never_return_to_them() -> None:
    rec = Recommender(EngineConfig(**CFG))
    rec.apply([click(1, "u", "a", EventType.PURCHASE), click(2, "u", "x")])
    assert "a" not in listed(rec, "u")              # too few events of buyers yet: the start policy, purchased
    loose = Recommender(EngineConfig(**CFG, repurchase_start="none"))
    loose.apply([click(1, "u", "a", EventType.PURCHASE), click(2, "u", "x")])
    assert "a" in listed(loose, "u")
    rec.apply([click(3, "u", "y"), click(4, "u", "z"), click(5, "u", "w")])
    assert rec.stats()["filter_seen_effective"] == "purchased"
    got = listed(rec, "u")
    assert "a" not in got and got[:4] == ["w", "z", "y", "x"]    # nor does any source propose it
    fixed = Recommender(EngineConfig(**{**CFG, "filter_seen": "purchased"}))
    fixed.apply([click(1, "u", "a", EventType.PURCHASE), click(2, "u", "a")])
    assert "a" not in listed(fixed, "u") and "filter_seen_effective" not in fixed.stats()


def test_a_bad_repurchase_rate_is_refused() -> None:
    with pytest.raises(ConfigError, match="repurchase_min_rate"):
        EngineConfig(repurchase_min_rate=1.5)
    with pytest.raises(ConfigError, match="repurchase_start"):
        EngineConfig(repurchase_start="maybe")
    with pytest.raises(ConfigError, match="filter_seen"):
        EngineConfig(filter_seen="sometimes")


def test_own_history_features_by_hand() -> None:
    lim = StateLimits()
    st = UserState("u")
    for item, kind, ts in [("a", "VIEW", 0), ("b", "PURCHASE", 60_000), ("a", "ADD_TO_CART", 1_800_000)]:
        st.observe(item, TYPE_INDEX[kind], ts, 1.0, lim)
    space = CodeSpace()
    codes = space.codes(["a", "b", "z"])
    batch = merge_candidates(1, [(0, np.zeros(3, dtype=np.int64), codes, np.ones(3, dtype=np.float32))],
                             n_sources=1)
    x = build_features(batch, np.ones(3, dtype=np.float32), [st], space, ItemTable(), now_ms=1_800_000,
                       columns=("covisit",))
    f = {name: x[:, k].round(4).tolist() for k, name in enumerate(FEATURES)}
    assert f["own_position"] == [1.0, 0.5, 0.0]          # a is the last distinct item, b the one before
    assert f["own_last"] == [1.0, 0.0, 0.0]
    # a touched now (its cart, not its older view), b 29 minutes ago: 1 / (1 + 29 / 30)
    assert f["own_recency"] == pytest.approx([1.0, round(1 / (1 + 29 / 30), 4), 0.0], abs=1e-4)
    assert f["own_cart"] == [1.0, 0.0, 0.0] and f["own_view"] == [0.0, 0.0, 0.0]
    assert f["own_purchase"] == [0.0, 1.0, 0.0] and f["own_purchased"] == [0.0, 1.0, 0.0]
