"""``full_sknn`` (``full`` plus the engine's ``session_knn`` source) in ``streamrec evaluate``: it runs alone, on
simulated workers, and ``--items split|shared`` really splits or shares its session tables (also across a
restart)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streamrec import cli
from streamrec.evaluate import DESCRIPTIONS, EXTRA_CONFIGS
from streamrec.models.evaluation.sharding import ShardedEnginePolicy
from streamrec.models.serving.session_knn import SessionKnnSource
from streamrec.producers.synthetic import generate, write_log
from streamrec.sharding import user_sharding

ARGS = ["--epochs", "1", "--dim", "4", "--jobs", "0", "--window", "200"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sknn") / "shop.jsonl"
    write_log(generate(users=40, items=120, events=1500, seed=4), path)
    return path


def _evaluate(shop: Path, out: Path, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli.app, ["evaluate", "--dataset", "jsonl", "--path", str(shop), "--json", str(out),
                                          *ARGS, *extra])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def _session_tables(policy: ShardedEnginePolicy) -> list[Any]:
    return [next(s.table for s in e.sources if isinstance(s, SessionKnnSource)) for e in policy.engines]


def test_full_sknn_is_full_plus_the_session_knn_source(shop: Path, tmp_path: Path) -> None:
    assert "full_sknn" in EXTRA_CONFIGS and "session_knn" in DESCRIPTIONS["full_sknn"]
    report = _evaluate(shop, tmp_path / "r.json", "--configs", "full,full_sknn")
    assert set(report["configs"]) == {"full", "full_sknn"}
    assert report["descriptions"]["full_sknn"] == DESCRIPTIONS["full_sknn"]
    assert report["timings"]["full_sknn"]["models_trained"] == report["timings"]["full"]["models_trained"] >= 1
    # the source is on: its lists differ from full's
    assert report["configs"]["full_sknn"] != report["configs"]["full"]


def test_full_sknn_on_workers_splits_or_shares_its_session_tables(shop: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import streamrec.evaluate_shards as shards

    made: dict[str, ShardedEnginePolicy] = {}

    class Recorded(ShardedEnginePolicy):
        def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
            super().__init__(name, *args, **kwargs)
            made[name] = self

    monkeypatch.setattr(shards, "ShardedEnginePolicy", Recorded)
    report = _evaluate(shop, tmp_path / "w.json", "--configs", "full,full_sknn", "--workers", "1,3",
                       "--items", "split,shared", "--restart-at", "0.6")
    names = {f"{b}@{v}{r}" for b in ("full", "full_sknn") for v in ("1w", "3w-split", "3w-shared")
             for r in ("", "+restart")}
    assert set(report["configs"]) == names == set(made)
    scale = report["scale_out"]["configs"]
    assert scale["full@3w-split"]["item_tables_end"]["session_knn_sessions"] == 0      # full has no session_knn
    users = {json.loads(line)["user_id"] for line in shop.read_text().splitlines()}
    shard = user_sharding(6, 3)
    split, shared = made["full_sknn@3w-split"], made["full_sknn@3w-shared"]
    assert sorted(split.events_per_worker) == sorted(shared.events_per_worker) and min(split.events_per_worker) > 0
    # split: one table per worker, holding exactly its own users' sessions
    tables = _session_tables(split)
    assert len({id(t) for t in tables}) == 3
    for k, t in enumerate(tables):
        assert {u for u in users if t.items_of(u)} == {u for u in users if shard(u) == k}
    # shared: one table for every worker, holding every user's session
    tables = _session_tables(shared)
    assert len({id(t) for t in tables}) == 1 and {u for u in users if tables[0].items_of(u)} == users
    assert scale["full_sknn@3w-shared"]["item_tables_end"]["session_knn_sessions"] == len(users)
    # a restart empties split session tables; the shared ones (the item plane's) survive it
    restarts = report["scale_out"]["restarts"]
    before = restarts["full_sknn@3w-split+restart"]["item_tables_before"]["session_knn_sessions"]
    assert before > 0 and restarts["full_sknn@3w-split+restart"]["item_tables_after"]["session_knn_sessions"] == 0
    kept = restarts["full_sknn@3w-shared+restart"]
    assert kept["item_tables_after"]["session_knn_sessions"] == kept["item_tables_before"]["session_knn_sessions"] > 0
    assert len({id(t) for t in _session_tables(made["full_sknn@3w-shared+restart"])}) == 1
