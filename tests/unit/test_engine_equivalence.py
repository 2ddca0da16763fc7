"""The engine's lists on a fixed seeded workload are the lists it made before the hot path was vectorised.

``tests/fixtures/engine_lists.json.gz`` holds, for several engine configurations (the worker's defaults with
the learned reranker; every source with a catalog and its rules; MMR with exploration and rank
normalisation; no model), every list of a seeded session workload fed in batches through ``apply`` then
``recommend``: user, items, scores, sources and reasons, plus the engine's counters. The test replays the
workload and compares item for item (scores within a float tolerance). The fixture stores each configuration
in full, so a change of the engine's defaults does not move it. Regenerate it only for an intended change
of the lists: ``python -m tests.unit.test_engine_equivalence --write``.
"""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from streamrec.models.base.artifact import load_artifact, random_artifact
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.online.layer import OnlineConfig
from streamrec.producers.synthetic import SyntheticConfig, generate
from streamrec.producers.synthetic_catalog import synthetic_catalog

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "engine_lists.json.gz"
USERS, ITEMS, EVENTS, BATCH, START_MS = 300, 3000, 4000, 400, 1_700_000_000_000

CONFIGS: dict[str, dict[str, Any]] = {
    "worker": {"reranker": True, "drift_detector": "adwin", "filter_seen": "purchased"},
    "every_source": {"sources": ("ann", "covisit", "session_knn", "recent", "content", "trending", "cold_start"),
                     "rule_max_per_brand": 4, "rule_max_per_category": 6, "rule_exclude_categories": ("toys",),
                     "filter_seen": "purchased", "catalog": True},
    "mmr_explore": {"diversity": "mmr", "filter_seen": "all", "explore_slots": 2, "normalise": "rank"},
    "no_model": {"model": False, "diversity": "none", "filter_seen": "none", "k_trending": 5},
    "category_cap": {"diversity": "category", "max_category_share": 0.2, "filter_seen": "all", "k_ann": 100},
}
STATS = ("events_applied", "duplicates_event_id", "evaluated", "hits_at_10", "hits_at_20", "lists")


def frozen(config: Any) -> dict[str, Any]:
    """Every field of an ``EngineConfig`` (and its ``OnlineConfig``) as JSON-ready values."""
    out = {f.name: getattr(config, f.name) for f in fields(config)}
    out["online"] = {f.name: getattr(config.online, f.name) for f in fields(config.online)}
    return out


def thawed(values: dict[str, Any]) -> EngineConfig:
    """The ``EngineConfig`` of :func:`frozen`'s values (JSON lists back to tuples); fields added since the
    fixture was written keep their defaults."""
    def tup(v: Any) -> Any:
        return tuple(tup(x) for x in v) if isinstance(v, list) else v
    known = {f.name for f in fields(EngineConfig)}
    online = OnlineConfig(**{k: tup(v) for k, v in values["online"].items()
                             if k in {f.name for f in fields(OnlineConfig)}})
    return EngineConfig(**{k: tup(v) for k, v in values.items() if k in known and k != "online"}, online=online)


def lists_of(name: str, tmp: Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every list the engine of configuration ``name`` makes on the seeded workload, and its counters.
    ``config``: the full configuration to use (the fixture's), else today's defaults with ``CONFIGS[name]``."""
    opts = dict(CONFIGS[name])
    with_model, with_catalog = opts.pop("model", True), opts.pop("catalog", False)
    cfg = thawed(config) if config is not None else EngineConfig(**opts)
    rec = Recommender(cfg)
    if with_model:
        random_artifact(tmp / "model", ITEMS, 16, seed=0, clusters=ITEMS // 100, version="eq")
        rec.swap_model(load_artifact(tmp / "model"))
    if with_catalog:
        rec.update_catalog(synthetic_catalog(SyntheticConfig(USERS, ITEMS, EVENTS, seed=1, start_ms=START_MS)))
    events = generate(users=USERS, items=ITEMS, events=EVENTS, seed=1, start_ms=START_MS, days=1.0)
    out: list[list[Any]] = []
    for b in range(0, len(events), BATCH):
        batch = events[b:b + BATCH]
        touched = rec.apply(batch, partition=0, offsets=list(range(b, b + len(batch))))
        for rl in rec.recommend([*touched, "never-seen"], now_ms=batch[-1].timestamp_ms):   # + a cold user
            out.append([rl.user_id, [[it.item_id, it.score, it.source, it.reason] for it in rl.items]])
    stats = rec.stats()
    return {"lists": out, "stats": {k: stats[k] for k in STATS}, "config": frozen(cfg)}


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    with gzip.open(FIXTURE, "rt") as f:
        return json.load(f)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_lists_are_the_lists_made_before(name: str, expected: dict[str, Any], tmp_path: Path) -> None:
    want = expected[name]
    got = lists_of(name, tmp_path, want["config"])   # the fixture's configuration: defaults may move
    assert got["stats"] == want["stats"]
    assert len(got["lists"]) == len(want["lists"]) > 100
    for (user, items), (w_user, w_items) in zip(got["lists"], want["lists"], strict=True):
        assert user == w_user
        assert [i[0] for i in items] == [i[0] for i in w_items], user
        assert [i[2:] for i in items] == [i[2:] for i in w_items], user
        assert [i[1] for i in items] == pytest.approx([i[1] for i in w_items], rel=1e-4, abs=1e-6), user


def test_the_fixture_covers_every_source_and_reasons_with_evidence(expected: dict[str, Any]) -> None:
    sources = {it[2] for name in CONFIGS for _, items in expected[name]["lists"] for it in items}
    assert {"ann", "covisit", "session_knn", "recent", "content", "trending", "cold_start", "explore"} <= sources
    reasons = {it[3].split(":")[0] for _, items in expected["every_source"]["lists"] for it in items if ":" in it[3]}
    assert {"covisit", "session", "content"} <= reasons


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        data = {name: lists_of(name, Path(d) / name) for name in CONFIGS}
    with gzip.open(FIXTURE, "wt") as f:
        json.dump(data, f, separators=(",", ":"))
    print(FIXTURE, FIXTURE.stat().st_size, {k: len(v["lists"]) for k, v in data.items()})
