"""One bad value must not poison other users' lists: the engine fed a NaN- or infinite-valued event directly
(bypassing the edge's validation) emits no non-finite score; co-visitation and trending refuse non-finite
strengths; the worker's last check drops any non-finite score from a list before it is emitted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import structlog

from streamrec.consumers.lists import FiniteScores
from streamrec.models.base.artifact import Artifact, load_artifact, random_artifact
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType
from streamrec.models.serving.covisit import CoVisitation
from streamrec.models.serving.ranking import RecItem, RecList
from streamrec.models.serving.trending import Trending

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


def test_the_worker_drops_non_finite_scores_before_a_list_is_emitted(tmp_path: Path) -> None:
    guard = FiniteScores(structlog.get_logger("test"))
    rl = RecList("u", (RecItem("a", 1.0, "ann"), RecItem("b", math.nan, "covisit"),
                       RecItem("c", math.inf, "trending"), RecItem("d", 0.5, "ann")), "v1", "v1")
    items = guard.items(rl)
    assert [i["item_id"] for i in items] == ["a", "d"] and all(math.isfinite(i["score"]) for i in items)
    assert (guard.dropped, guard.lists) == (2, 1)
    assert len(guard.items(RecList("v", (RecItem("a", 0.1, "ann"),), None, None))) == 1 and guard.lists == 1
