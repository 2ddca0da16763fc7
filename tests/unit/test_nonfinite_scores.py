"""One bad value must not poison other users' lists: the engine fed a NaN- or infinite-valued event directly
(bypassing the edge's validation) emits no non-finite score; co-visitation and trending refuse non-finite
strengths; the worker's last check drops any non-finite score from a list before it is emitted."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import structlog

from streamrec.consumers.engine import engine_config
from streamrec.consumers.lists import FiniteScores
from streamrec.consumers.loop import Loop
from streamrec.consumers.testing import MemoryCluster
from streamrec.models.base.artifact import Artifact, load_artifact, random_artifact
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType
from streamrec.models.serving.covisit import CoVisitation
from streamrec.models.serving.ranking import RecItem, RecList
from streamrec.models.serving.trending import Trending
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    path = tmp_path_factory.mktemp("a") / "v1"
    random_artifact(path, n_items=500, dim=16, seed=1, clusters=10, version="v1")
    return load_artifact(path)


def _engine(art: Artifact | None, **config: object) -> Recommender:
    rec = Recommender(EngineConfig(**config), artifact=art)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    n = 0
    for u in range(30):                      # 30 users who all touched i7 among their items
        items = ["i7", *(f"i{rng.integers(0, 500)}" for _ in range(5))]
        for it in items:
            n += 1
            rec.apply([Event(f"bg{n}", f"u{u}", it, EventType.CLICK, T0 + n * 1_000)])
    return rec


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("with_model", [True, False])
def test_a_non_finite_rating_never_reaches_any_list(art: Artifact, value: float, with_model: bool) -> None:
    rec = _engine(art if with_model else None, reranker=False)
    bad = Event("poison", "attacker", "i7", EventType.RATING, T0 + 10**6, value=value)
    rec.apply([Event("warm", "attacker", "i3", EventType.CLICK, T0 + 10**6 - 1), bad])
    users = ["attacker", *(f"u{u}" for u in range(30)), "newcomer"]
    lists = rec.recommend(users, now_ms=T0 + 10**6)
    scores = [it.score for rl in lists for it in rl.items]
    assert scores, "the engine emitted no items at all"
    bad_scores = [(rl.user_id, it.item_id, it.score) for rl in lists for it in rl.items
                  if not math.isfinite(it.score)]
    assert not bad_scores, f"{len(bad_scores)} non-finite scores emitted, e.g. {bad_scores[:3]}"


def test_covisitation_and_trending_refuse_non_finite_strengths() -> None:
    cv = CoVisitation(window=3)
    cv.update((), "a", 1.0, T0)
    cv.update(("a",), "b", 1.0, T0)
    for s in (math.nan, math.inf, -1.0):
        cv.update(("b", "a"), "c", s, T0)
    assert cv.refused == 3 and "c" not in cv
    assert all(math.isfinite(w) for w in cv.scores(["a"], [1.0]).values())
    tr = Trending(refresh_events=1)
    tr.update("a", 1.0, T0)
    for s in (math.nan, math.inf, -math.inf, -2.0):
        tr.update("x", s, T0)
    items, scores = tr.top(5)
    assert tr.refused == 4 and items == ["a"] and np.isfinite(scores).all() and tr.score("x") == 0.0


def test_the_worker_drops_non_finite_scores_before_a_list_is_emitted() -> None:
    guard = FiniteScores(structlog.get_logger("test"))
    rl = RecList("u", (RecItem("a", 1.0, "ann"), RecItem("b", math.nan, "covisit"),
                       RecItem("c", math.inf, "trending"), RecItem("d", 0.5, "ann")), "v1", "v1")
    items = guard.items(rl)
    assert [i["item_id"] for i in items] == ["a", "d"] and all(math.isfinite(i["score"]) for i in items)
    assert (guard.dropped, guard.lists) == (2, 1)
    assert len(guard.items(RecList("v", (RecItem("a", 0.1, "ann"),), None, None))) == 1 and guard.lists == 1


def _drain(loop: Loop) -> None:
    while loop.step() or any(loop.source.lag(loop.owned).values()):
        pass
    loop.finish()


@pytest.mark.parametrize(("max_id_bytes", "dead"), [(256, 1), (20_000, 0)])
def test_the_loop_applies_the_id_limit_setting(max_id_bytes: int, dead: int) -> None:
    s = Settings().replace(poll_ms=1, max_batch=50, commit_interval_ms=0, max_id_bytes=max_id_bytes)
    now = int(time.time() * 1000)
    cluster = MemoryCluster(partitions=1, settings=s)
    cluster.produce([Event("e1", "u" * 10_240, "i1", EventType.CLICK, now - 2_000),
                     Event("e2", "bob", "i1", EventType.CLICK, now - 1_000)])
    loop = Loop(s, Recommender(engine_config(s)), cluster.source(), cluster.sink(), cluster.changelog(),
                structlog.get_logger("test"), clock_ms=lambda: now)
    _drain(loop)
    dlq = cluster.outputs(s.dlq_topic)
    assert len(dlq) == dead
    if dead:
        assert b"user_id is 10240 bytes" in dict(dlq[0].headers or ())["error.message"]
    assert len(cluster.outputs(s.recommendations_topic)) == 2 - dead


def test_the_loop_never_emits_a_non_finite_score() -> None:
    s = Settings().replace(poll_ms=1, max_batch=50, commit_interval_ms=0)
    now = int(time.time() * 1000)
    cluster = MemoryCluster(partitions=1, settings=s)
    cluster.produce([Event(f"e{k}", f"u{k}", "i1", EventType.CLICK, now - 1_000 + k) for k in range(3)])
    engine = Recommender(engine_config(s))
    real = engine.recommend

    def poisoned(users: list[str], now_ms: int | None = None) -> list[RecList]:   # an engine bug, simulated
        return [RecList(rl.user_id, (RecItem("x", math.nan, "ann"), *rl.items, RecItem("y", math.inf, "ann")),
                        rl.model_version, rl.index_version, rl.trigger) for rl in real(users, now_ms)]

    engine.recommend = poisoned  # type: ignore[method-assign]
    loop = Loop(s, engine, cluster.source(), cluster.sink(), cluster.changelog(), structlog.get_logger("test"),
                clock_ms=lambda: now)
    _drain(loop)
    codec = codec_for("recommendation")
    emitted = [codec.decode(o.value) for o in cluster.outputs(s.recommendations_topic) if o.value is not None]
    assert len(emitted) == 3
    assert all(math.isfinite(i["score"]) and i["item_id"] not in ("x", "y") for r in emitted for i in r["items"])
    assert loop.snapshot()["nonfinite_scores_dropped"] == 6
