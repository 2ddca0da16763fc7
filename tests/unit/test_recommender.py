"""The engine end to end, in memory: taste, filters, dedup, restore, model swaps, cold start, bounds."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streamrec.models.base.artifact import Artifact, load_artifact, random_artifact, write_artifact
from streamrec.models.base.encoder import UserEncoder
from streamrec.models.base.index import exact_search
from streamrec.models.engine.recommender import EngineConfig, Recommender, Trigger
from streamrec.models.errors import ArtifactError, ConfigError, InputError
from streamrec.models.events import Event, EventType
from streamrec.models.serving.candidates import CandidateBatch, encode_user
from streamrec.models.serving.contract import Request
from streamrec.models.serving.ranking import blend

CLUSTERS = 10
T0 = 1_700_000_000_000
_ids = itertools.count()


def ev(user: str, item: str, kind: EventType = EventType.CLICK, ts: int | None = None,
       eid: str | None = None) -> Event:
    n = next(_ids)
    return Event(eid or f"e{n}", user, item, kind, T0 + (n if ts is None else ts) * 1_000)


def artifact(tmp: Path, version: str, seed: int, n: int = 2_000) -> Artifact:
    random_artifact(tmp / version, n_items=n, dim=16, seed=seed, clusters=CLUSTERS, version=version)
    return load_artifact(tmp / version)


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return artifact(tmp_path_factory.mktemp("a"), "v1", seed=1)


def cluster(item: str) -> int:
    return int(item[1:]) % CLUSTERS


def background(rec: Recommender, n_users: int = 40, per_user: int = 6, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rec.apply([ev(f"bg{u}", f"i{rng.integers(0, 2_000)}") for u in range(n_users) for _ in range(per_user)])


def items_of(rec: Recommender, user: str) -> list[str]:
    return rec.recommend([user], now_ms=T0)[0].item_ids


def test_a_user_of_one_taste_gets_a_list_dominated_by_it(art: Artifact) -> None:
    # the background users have no taste, so their sessions (session_knn) dilute the list a little
    classic = ("ann", "covisit", "trending", "cold_start")
    for config, floor in ((EngineConfig(), 0.5), (EngineConfig(diversity="none"), 0.7),
                          (EngineConfig(sources=classic, diversity="none"), 0.8)):
        rec = Recommender(config, artifact=art)
        background(rec)
        rec.apply([ev("fan", f"i{3 + CLUSTERS * k}") for k in range(8)])
        got = Counter(cluster(i) for i in items_of(rec, "fan"))
        assert len(items_of(rec, "fan")) == 20
        assert got.most_common(1)[0][0] == 3 and got[3] / 20 >= floor


def test_a_purchased_item_disappears_from_the_next_list(art: Artifact) -> None:
    rec = Recommender(EngineConfig(filter_seen="purchased"), artifact=art)
    background(rec)
    rec.apply([ev("u", "i3"), ev("u", "i13")])
    first = items_of(rec, "u")
    bought = first[0]
    rec.apply([ev("u", bought, EventType.PURCHASE)])
    assert bought not in items_of(rec, "u")
    keep_all = Recommender(EngineConfig(filter_seen="none", diversity="none"), artifact=art)
    keep_all.apply([ev("v", "i3", EventType.PURCHASE)])
    assert "i3" in items_of(keep_all, "v")


def test_filter_all_never_recommends_a_seen_item(art: Artifact) -> None:
    rec = Recommender(EngineConfig(filter_seen="all"), artifact=art)
    clicked = [f"i{3 + CLUSTERS * k}" for k in range(10)]
    rec.apply([ev("u", i) for i in clicked])
    got = items_of(rec, "u")
    assert len(got) == 20 and not set(got) & set(clicked)


def test_duplicates_by_event_id_are_skipped(art: Artifact) -> None:
    rec = Recommender(EngineConfig(), artifact=art)
    batch = [ev("u", "i1"), ev("u", "i2")]
    assert rec.apply(batch) == ["u"] and rec.last_applied_count == 2
    assert rec.apply(batch) == [] and rec.last_applied_count == 0
    s = rec.stats()
    assert (s["events_in"], s["events_applied"], s["duplicates_event_id"]) == (4, 2, 2)
    assert rec.export_user("u")["recent_items"] == ["i2", "i1"]          # type: ignore[index]


def test_replayed_offsets_are_skipped_after_a_restore(art: Artifact) -> None:
    a = Recommender(EngineConfig(), artifact=art)
    events = [ev("u", f"i{k}") for k in range(10)]
    a.apply(events, partition=2, offsets=list(range(100, 110)))
    b = Recommender(EngineConfig(), artifact=art)                       # a fresh worker: empty id window
    b.restore_user(a.export_user("u"), partition=2)                     # type: ignore[arg-type]
    assert b.apply(events, partition=2, offsets=list(range(100, 110))) == []
    assert b.stats()["duplicates_offset"] == 10
    assert b.apply([ev("u", "i99")], partition=2, offsets=[110]) == ["u"]
    assert b.export_user("u")["last_offset"] == 110                     # type: ignore[index]


def test_export_restore_round_trip_keeps_state_vector_and_shown_list(art: Artifact) -> None:
    a = Recommender(EngineConfig(), artifact=art)
    a.apply([ev("u", f"i{k}", EventType.ADD_TO_CART if k % 3 else EventType.VIEW) for k in range(0, 60, 7)],
            partition=1, offsets=list(range(9)))
    shown = items_of(a, "u")
    rec = a.export_user("u")
    b = Recommender(EngineConfig(), artifact=art)
    b.restore_user(rec, partition=1)                                    # type: ignore[arg-type]
    assert b.export_user("u") == rec and rec["shown"] == shown          # type: ignore[index]
    np.testing.assert_allclose(b.user_vector("u"), a.user_vector("u"))  # type: ignore[arg-type]
    assert b.store.partition_of("u") == 1 and b.export_user("nobody") is None


def test_swap_moves_every_user_to_the_new_space(tmp_path: Path, art: Artifact) -> None:
    new = artifact(tmp_path, "v2", seed=2)
    rec = Recommender(EngineConfig(diversity="none", weight_covisit=0.0, weight_trending=0.0), artifact=art)
    rec.apply([ev("u", "i5"), ev("u", "i15", EventType.PURCHASE), ev("w", "i7")])
    before = rec.user_vector("u")
    prepared = rec.prepare_model(new)                 # built off the hot path: nothing changes yet
    assert rec.recommend(["u"])[0].model_version == "v1"
    rec.swap(prepared)
    lists = rec.recommend(["u", "w"])
    assert {(rl.model_version, rl.index_version) for rl in lists} == {("v2", "v2+flat")}
    assert (rec.stats()["model_version"], rec.stats()["model_swaps"]) == ("v2", 2)
    model = rec.model
    assert model is not None
    after = rec.user_vector("u")
    expected = encode_user(rec.store.get("u"), model.encoder, model.index_of, model.embeddings)  # type: ignore[arg-type]
    np.testing.assert_allclose(after, expected, rtol=1e-6)               # type: ignore[arg-type]
    assert not np.allclose(after, before)                                # type: ignore[arg-type]
    _, best = exact_search(new.embeddings, after[None, :], k=25)         # type: ignore[index]
    got = [model.index_of[i] for i in lists[0].item_ids if i != "i5"]   # i15 was bought: filtered
    assert len(set(got) & set(best[0].tolist())) >= 18                  # ANN in the v2 space


def test_test_then_train_counts_hits_on_the_last_shown_list(art: Artifact) -> None:
    rec = Recommender(EngineConfig(), artifact=art)
    rec.apply([ev("u", "i3")])
    shown = items_of(rec, "u")
    for item in (shown[0], shown[15], "not-in-the-list"):   # one batch each; the list stays the one shown
        rec.apply([ev("u", item)])
    s = rec.stats()
    assert (s["evaluated"], s["hits_at_10"], s["hits_at_20"]) == (3, 1, 2)
    assert s["hit_rate_at_20"] == pytest.approx(2 / 3)
    rec.apply([ev("u", shown[0]), ev("u", shown[1])])      # in one batch only the user's first event counts
    assert (rec.stats()["evaluated"], rec.stats()["hits_at_10"]) == (4, 2)


def test_cold_start_without_history_and_without_a_model(art: Artifact) -> None:
    bare = Recommender(EngineConfig(trending_refresh_events=1))
    assert bare.recommend(["nobody"])[0].items == ()
    bare.apply([ev("a", "x"), ev("a", "y"), ev("b", "x"), ev("b", "z"), ev("b", "z")])
    nobody = bare.recommend(["nobody"], now_ms=T0)[0]
    assert nobody.item_ids[0] == "z" and {it.source for it in nobody.items} <= {"trending", "cold_start"}
    one = bare.recommend(["a"])[0]
    assert (one.model_version, one.index_version) == (None, None)
    assert {it.item_id for it in one.items if it.source in ("covisit", "session_knn")} >= {"z"}
    served = Recommender(EngineConfig(), artifact=art)
    cold = served.recommend(["nobody"])[0]
    assert len(cold.items) == 20 and {it.source for it in cold.items} == {"cold_start"}


def test_one_click_is_enough_for_covisitation_and_ann(art: Artifact) -> None:
    rec = Recommender(EngineConfig(diversity="none"), artifact=art)
    rec.apply([ev("other", "i42"), ev("other", "i1001")])                 # i1001 follows i42 somewhere else
    rec.apply([ev("new", "i42")])
    items = rec.recommend(["new"])[0].items
    sources = {it.item_id: it.source for it in items}
    assert sources.get("i1001") == "covisit"
    ann = [i for i, s in sources.items() if s == "ann"]
    assert ann and Counter(cluster(i) for i in ann).most_common(1)[0][0] == cluster("i42")


def test_a_scorer_replaces_the_blend(art: Artifact) -> None:
    seen: list[tuple[int, tuple[str, ...]]] = []

    class Reverse:
        """A scorer of the engine's contract: the blend, reversed."""

        def score(self, request: Request, batch: CandidateBatch,
                  columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
            seen.append((len(request.user_ids), tuple(columns)))
            assert batch.scores.shape == (len(batch), len(columns))
            scores, primary = blend(batch, np.ones(len(columns), dtype=np.float32))
            return -scores, primary

    class Fixed:
        def __init__(self, value: float, n: int | None = None) -> None:
            self.value, self.n = value, n

        def score(self, request: Request, batch: CandidateBatch,
                  columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
            n = len(batch) if self.n is None else self.n
            return np.full(n, self.value, dtype=np.float32), np.zeros(n, dtype=np.int8)

    rec = Recommender(EngineConfig(diversity="none"), artifact=art)
    rec.apply([ev("u", "i3")])
    default = items_of(rec, "u")
    rec.scorer = Reverse()
    assert items_of(rec, "u")[0] not in default and seen == [(1, EngineConfig().sources)]
    rec.scorer = Fixed(0.0, n=3)
    with pytest.raises(InputError, match="one score per candidate"):
        rec.recommend(["u"])
    rec.scorer = Fixed(np.nan)            # a NaN never reaches a list, and never fails the batch
    assert rec.recommend(["u"])[0].items == () and rec.stats()["dropped_non_finite"] > 0


def test_memory_is_bounded_with_eviction_counters() -> None:
    rec = Recommender(EngineConfig(max_users=5, user_ttl_ms=60_000))
    rec.apply([ev(f"u{k}", "i1", ts=k) for k in range(20)])
    s = rec.stats()
    assert (s["users"], s["evicted_lru"], s["evicted_ttl"]) == (5, 15, 0)
    # at the cap: one more LRU eviction; once the stream has moved on (most recent event times, not one
    # outlier: UserStore.watermark), the TTL (60 s of event time) drops the 4 others
    rec.apply([ev("late", f"i{k}", ts=10_000 + k) for k in range(100)])
    s = rec.stats()
    assert (s["users"], s["evicted_lru"], s["evicted_ttl"]) == (1, 16, 4) and s["state_bytes"] > 0


def test_partitions_forget_and_triggers(art: Artifact) -> None:
    rec = Recommender(EngineConfig(), artifact=art)
    rec.apply([ev("p0", "i1")], partition=0, offsets=[7])
    last = ev("p1", "i2", eid="last")
    rec.apply([ev("p1", "i1"), last], partition=1, offsets=[3, 4])
    rl = rec.recommend(["p1"])[0]
    assert rl.trigger == Trigger("last", last.timestamp_ms, 1, 4)
    assert rec.recommend(["p0"])[0].trigger == Trigger(rec.export_user("p0")["last_event_id"],  # type: ignore[index]
                                                       rec.export_user("p0")["last_ts"], 0, 7)  # type: ignore[index]
    assert rec.drop_partition(1) == 1 and rec.export_user("p1") is None
    assert rec.forget_user("p0") and rec.stats()["users"] == 0


def test_every_diversity_mode_and_normaliser_fills_the_list(art: Artifact) -> None:
    for config in (EngineConfig(diversity="mmr"), EngineConfig(normalise="rank"),
                   EngineConfig(index_kind="hnsw"), EngineConfig(diversity="category", max_category_share=0.1)):
        rec = Recommender(config, artifact=art)
        background(rec, n_users=10)
        rec.apply([ev("u", f"i{3 + CLUSTERS * k}") for k in range(5)])
        got = items_of(rec, "u")
        assert len(got) == len(set(got)) == 20


def test_inputs_are_not_mutated_and_bad_inputs_are_explained(tmp_path: Path, art: Artifact) -> None:
    rec = Recommender(EngineConfig(), artifact=art)
    events = [ev("u", "i1")]
    copy = list(events)
    rec.apply(events)
    assert events == copy
    with pytest.raises(InputError, match="one offset per event"):
        rec.apply([ev("u", "i2")], offsets=[1, 2])
    with pytest.raises(ConfigError, match="top_n"):
        EngineConfig(top_n=0)
    with pytest.raises(ConfigError, match="type_weights"):
        EngineConfig(type_weights=(("CLICK", 1.0),))
    with pytest.raises(ConfigError, match="use one of"):
        EngineConfig(index_kind="lsh")
    bad = replace(art, encoder=UserEncoder.identity(dim=8))
    with pytest.raises(ArtifactError, match="republish"):
        rec.prepare_model(bad)
    write_artifact(tmp_path / "c", ["a", "b"], np.eye(2, dtype=np.float32), categories=["x", None], version="c")
    small = Recommender(EngineConfig(), artifact=load_artifact(tmp_path / "c"))
    assert small.model is not None and small.model.categories.tolist() == [0, -1]  # type: ignore[union-attr]


def test_engine_index_defaults_are_the_index_defaults() -> None:
    """The trainer ships the index a default worker builds without importing the engine (base -> engine would
    run back up), so the two defaults must agree."""
    from streamrec.models.base.index import IndexConfig

    assert EngineConfig().index_config() == IndexConfig()
