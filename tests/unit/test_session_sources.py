"""The session-aware sources: session neighbours (V-SKNN) and recent items, by hand-computed examples."""

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
from streamrec.models.serving.contract import Request
from streamrec.models.serving.recent import RecentSource
from streamrec.models.serving.session_knn import SessionKNN, SessionKnnSource
from streamrec.models.serving.state import StateLimits, UserState

LIM = StateLimits()
CLICK, VIEW, CART, BUY = (TYPE_INDEX[t] for t in ("CLICK", "VIEW", "ADD_TO_CART", "PURCHASE"))


def feed(source: SessionKnnSource, users: dict[str, UserState], stream: list[tuple[str, str]],
         kind: int = CLICK, ts: int = 0) -> None:
    for user, item in stream:
        st = users.setdefault(user, UserState(user))
        source.learn(Event("", user, item, EventType.CLICK, ts), item, 1.0, st, -1)
        st.observe(item, kind, ts, 1.0, LIM)


def block_items(req: Request, block: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[list[tuple[str, float]]]:
    rows, codes, scores = block
    out: list[list[tuple[str, float]]] = [[] for _ in req.user_ids]
    for r, c, s in zip(rows.tolist(), codes.tolist(), scores.tolist(), strict=True):
        out[r].append((req.space.item(c), round(s, 4)))
    return out


# ------------------------------------------------------------------------------------------ session knn


def test_neighbours_and_scores_by_hand() -> None:
    # v: a b c   w: c d   x: a   then u: a b -> u's items (b, a), weights 1 and 1/2
    src, users = SessionKnnSource(k=10), {}
    feed(src, users, [("v", "a"), ("v", "b"), ("v", "c"), ("w", "c"), ("w", "d"), ("x", "a"), ("u", "a"),
                      ("u", "b")])
    # v holds b and a: 1 + 0.5; x holds a: 0.5; w shares nothing; u is never its own neighbour
    assert src.table.neighbours("u", ("b", "a")) == [("v", 1.5), ("x", 0.5)]
    # a: v 1.5 + x 0.5 = 2.0; b, c: v 1.5; d: nobody
    assert src.table.scores("u", ("b", "a")) == {"c": 1.5, "b": 1.5, "a": 2.0}
    req = Request(["u"], [users["u"]], CodeSpace(), None, 0, "max", 20)
    got = block_items(req, src.candidates(req))[0]
    assert got[0] == ("a", 1.0) and sorted(got[1:]) == [("b", 0.75), ("c", 0.75)]


def test_top_k_neighbours_only() -> None:
    table = SessionKNN(k=1)
    for s, item in [("v", "a"), ("v", "b"), ("v", "c"), ("x", "a"), ("x", "e")]:
        table.update(s, item)
    # x holds a (0.5), v holds b and a (1.5): with k = 1 only v counts, and e is not scored
    assert table.scores("u", ("b", "a")) == {"c": 1.5, "b": 1.5, "a": 1.5}


def test_sample_keeps_the_most_recent_sessions() -> None:
    table = SessionKNN(sample=2)
    for s, item in [("p", "a"), ("q", "b"), ("r", "a")]:
        table.update(s, item)
    # p, q, r share an item with (b, a); the two most recently updated are r and q
    assert table.neighbours("u", ("b", "a")) == [("q", 1.0), ("r", 0.5)]
    table.update("s", "a")                      # a now lists three sessions: the oldest (p) is dropped
    assert table.trimmed == 1 and table.neighbours("u", ("a",)) == [("s", 1.0), ("r", 1.0)]


def test_window_drops_old_items_from_the_index() -> None:
    table = SessionKNN(window=2)
    for item in "abc":
        table.update("v", item)
    assert table.neighbours("u", ("a",)) == [] and table.neighbours("u", ("b",)) == [("v", 1.0)]
    assert table.scores("u", ("b",)) == {"c": 1.0, "b": 1.0}
    table.update("v", "b")                      # a repeat moves b to the front and keeps c
    assert table.items_of("v") == ("b", "c")


def test_session_and_item_caps_evict_and_count() -> None:
    table = SessionKNN(max_sessions=2, max_items=2)
    table.update("s1", "a")
    table.update("s2", "b")
    table.update("s3", "c")                     # s1 and item a go
    assert len(table) == 2 and table.evicted_sessions == 1 and table.evicted_items == 1
    assert table.items_of("s1") == () and "a" not in table._index and table.index_entries() == 2


def test_memory_stays_bounded_on_a_long_stream() -> None:
    rng = np.random.default_rng(0)
    src = SessionKnnSource(sample=8, window=5, max_sessions=300, max_items=400)
    for user, item in zip(rng.integers(0, 2_000, 30_000).tolist(), rng.integers(0, 5_000, 30_000).tolist(),
                          strict=True):
        src.table.update(f"u{user}", f"i{item}")
    t = src.table
    assert len(t) == 300 and len(t._index) == 400
    assert max(len(h) for h in t._index.values()) <= 8
    assert max(len(t.items_of(s)) for s in t._slot) <= 5 and len(t._items) == 300
    assert t.index_entries() <= 300 * 5
    # every index entry points at a live session that holds the item
    assert all(item in t._items[s] for item, holders in t._index.items() for s in holders)
    st = src.stats()
    assert st["session_knn_evicted_sessions"] > 0 and st["session_knn_evicted_items"] > 0


def test_forget_user_removes_the_session() -> None:
    src, users = SessionKnnSource(), {}
    feed(src, users, [("v", "a"), ("v", "b"), ("u", "a")])
    src.forget_user("v")
    assert src.table.neighbours("u", ("a",)) == [] and src.table.index_entries() == 1


def test_batch_block_filters_purchases_and_is_grouped_best_first() -> None:
    src, users = SessionKnnSource(k=2), {}
    feed(src, users, [("v", "a"), ("v", "b"), ("v", "c"), ("w", "a"), ("w", "d"), ("u", "a"), ("z", "d")])
    feed(src, users, [("u", "b")], kind=BUY)    # u bought b: under "purchased" it never comes back
    req = Request(["nobody", "u", "z"], [None, users["u"], users["z"]], CodeSpace(), None, 0, "max", 20)
    got = block_items(req, src.candidates(req))
    # u (b, a): v = 1.5, w = 0.5 -> a 2.0, c 1.5, d 0.5 (b bought); top 2
    assert got[0] == [] and got[1] == [("a", 1.0), ("c", 0.75)]
    # z (d,): w = 1 -> a, d
    assert sorted(got[2]) == [("a", 1.0), ("d", 1.0)]


# ------------------------------------------------------------------------------------------ recent items


def recent_state() -> UserState:
    st = UserState("u")
    for item, kind in [("a", VIEW), ("b", VIEW), ("a", CLICK), ("c", CART), ("d", BUY), ("e", VIEW)]:
        st.observe(item, kind, 0, 1.0, LIM)
    return st


@pytest.mark.parametrize(("policy", "expected"), [
    ("purchased", [("e", 1.0), ("c", 0.5), ("a", 0.3333), ("b", 0.25)]),          # d was bought
    ("none", [("e", 1.0), ("d", 0.5), ("c", 0.3333), ("a", 0.25), ("b", 0.2)]),
])
def test_recent_items_most_recent_first_under_the_policy(policy: str, expected: list[tuple[str, float]]) -> None:
    req = Request(["u", "cold"], [recent_state(), None], CodeSpace(), None, 0, "max", 20)
    assert block_items(req, RecentSource(k=10, filter_seen=policy).candidates(req)) == [expected, []]


def test_recent_items_capped_and_off_when_everything_seen_is_blocked() -> None:
    req = Request(["u"], [recent_state()], CodeSpace(), None, 0, "max", 20)
    assert [i for i, _ in block_items(req, RecentSource(k=2).candidates(req))[0]] == ["e", "c"]
    assert RecentSource(filter_seen="all").candidates(req) is None


# ------------------------------------------------------------------------------------------ the engine


def test_engine_lists_name_the_new_sources_and_never_return_a_purchase() -> None:
    cfg = EngineConfig(sources=("covisit", "session_knn", "recent", "trending"), diversity="none",
                       trending_refresh_events=1, covisit_window=1, covisit_seeds=1, filter_seen="purchased")
    rec = Recommender(cfg)
    assert rec.columns == ("covisit", "session_knn", "recent", "trending")
    events = [Event("e1", "v", "a", EventType.CLICK, 1_000), Event("e2", "v", "b", EventType.CLICK, 2_000),
              Event("e3", "v", "c", EventType.CLICK, 3_000), Event("e4", "u", "x", EventType.VIEW, 4_000),
              Event("e5", "u", "y", EventType.VIEW, 4_500), Event("e6", "u", "a", EventType.PURCHASE, 5_000)]
    rec.apply(events)
    items = {it.item_id: it.source for it in rec.recommend(["u"], now_ms=6_000)[0].items}
    assert "a" not in items                         # bought: filtered by every source and the selection
    assert items["x"] == "recent"                   # only u's own history proposes x (one covisit seed: a)
    assert items["c"] == "session_knn"              # v's item two steps from a: no co-visitation (window 1)
    assert items["b"] in ("covisit", "session_knn")
    st = rec.stats()
    assert st["session_knn_sessions"] == 2 and st["session_knn_evicted_sessions"] == 0


def test_features_of_the_new_sources_and_the_context() -> None:
    st = UserState("u")
    for item, kind, ts in [("a", CLICK, 0), ("b", CLICK, 3_600_000), ("c", VIEW, 3_660_000)]:
        st.observe(item, kind, ts, 1.0, LIM)           # a session break between a and b
    space = CodeSpace()
    codes = space.codes(["a", "c", "z"])
    rows = np.zeros(3, dtype=np.int64)
    batch = merge_candidates(1, [(1, rows[:1], codes[1:2], np.ones(1, dtype=np.float32)),
                                 (2, rows[:2], codes[[0, 2]], np.array([0.5, 1.0], dtype=np.float32))], n_sources=3)
    x = build_features(batch, np.ones(3, dtype=np.float32), [st], space, ItemTable(), now_ms=3_700_000,
                       columns=("covisit", "recent", "session_knn"))
    f = {name: x[:, k].round(4).tolist() for k, name in enumerate(FEATURES)}
    assert f["recent"] == [0.0, 1.0, 0.0] and f["from_recent"] == [0.0, 1.0, 0.0]
    assert f["session_knn"] == [0.5, 0.0, 1.0] and f["from_session_knn"] == [1.0, 0.0, 1.0]
    assert f["last_view"] == [1.0] * 3                              # the last event was a view of c
    assert f["session_length"] == pytest.approx([np.log1p(2)] * 3, abs=1e-4)   # b, c (a is an hour before)
    assert f["recent_after_view"] == [0.0, 1.0, 0.0]
    knn = np.log1p(2) / np.log1p(10)
    assert f["knn_in_session"] == pytest.approx([0.5 * knn, 0.0, knn], abs=1e-4)


def test_recent_linear_decay_and_a_bad_decay_refused() -> None:
    req = Request(["u"], [recent_state()], CodeSpace(), None, 0, "max", 20)
    got = block_items(req, RecentSource(k=4, decay="linear").candidates(req))[0]
    assert got == [("e", 1.0), ("c", 0.8), ("a", 0.6), ("b", 0.4)]          # 1 - p / (k + 1)
    with pytest.raises(ConfigError, match="recent_decay"):
        EngineConfig(recent_decay="cubic")


def test_the_worker_runs_the_sources_with_its_session_cap() -> None:
    from streamrec.consumers.engine import engine_config
    from streamrec.stream.settings import Settings

    assert "session_knn" not in Recommender(engine_config(Settings())).columns     # opt-in: it costs
    cfg = engine_config(Settings.from_env({"STREAMREC_SESSION_KNN_MAX_SESSIONS": "7",
                                           "STREAMREC_SOURCES": "ann,covisit,session_knn,recent,trending,cold_start"}))
    rec = Recommender(cfg)
    assert rec.columns == ("ann", "covisit", "session_knn", "recent", "trending", "cold_start")
    assert next(s for s in rec.sources if s.name == "session_knn").table.max_sessions == 7  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="SESSION_KNN_MAX_SESSIONS"):
        Settings.from_env({"STREAMREC_SESSION_KNN_MAX_SESSIONS": "0"})
