"""Simulated workers in the evaluation (``streamrec evaluate --workers N --items split|shared --restart-at X``):
production's sharding, one worker equal to the plain run, split and shared item knowledge, restarts, the CLI."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka.partitioner.default import DefaultPartitioner
from typer.testing import CliRunner

from streamrec import cli
from streamrec.models.engine.recommender import EngineConfig
from streamrec.models.errors import InputError
from streamrec.models.evaluation import EvalConfig, prequential
from streamrec.models.evaluation.policies import FullSystemPolicy
from streamrec.models.evaluation.sharding import ItemTables, ShardedEnginePolicy, item_table_sizes
from streamrec.models.events import Event
from streamrec.producers.synthetic import generate, write_log
from streamrec.sharding import partition_of, range_assignment, user_sharding

OTTO = "tests/fixtures/otto-sample.jsonl"
CONFIG = EngineConfig(top_n=20, seed=0, reranker=True, sources=("ann", "covisit", "session_knn", "recent",
                                                                "trending", "cold_start"))


class _Cluster:
    """What kafka-python's DefaultPartitioner reads from cluster metadata: the topic and its partitions."""

    def __init__(self, partitions: int) -> None:
        self.n = partitions

    def topics(self) -> set[str]:
        return {"events"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))


@dataclass(frozen=True)
class _Model:
    item_ids: list[str]
    embeddings: np.ndarray
    encoder: Any = None


class _Trainer:
    """A deterministic stand-in for the base-model training: a fixed random vector per item id."""

    def __call__(self, events: Sequence[Event]) -> _Model:
        items = sorted({e.item_id for e in events})
        emb = np.stack([np.random.default_rng(zlib.crc32(i.encode())).normal(size=8) for i in items])
        return _Model(items, emb.astype(np.float32))


@pytest.fixture(scope="module")
def log() -> list[Event]:
    return sorted(generate(users=60, items=150, events=1500, seed=5), key=lambda e: (e.timestamp_ms, e.event_id))


def _cfg() -> EvalConfig:
    return EvalConfig.ecommerce(warmup_fraction=0.2, sync_every_events=500, window=200)


def _sharded(name: str, workers: int, items: str = "split", restart_at: int | None = None) -> ShardedEnginePolicy:
    return ShardedEnginePolicy(name, CONFIG, _Trainer(), user_sharding(6, workers), workers, items,
                               restart_at=restart_at, is_target=_cfg().targets.is_target)


# --- sharding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("partitions", [1, 3, 6, 12])
def test_users_go_to_the_partition_kafka_pythons_default_partitioner_picks(partitions: int) -> None:
    keys = [f"u{n}" for n in range(300)] + ["", "ü-ñ", "user:42", "1234567890", "a" * 100]
    library, cluster = DefaultPartitioner(), _Cluster(partitions)
    expected = [library.partition("events", k, k.encode(), None, None, cluster) for k in keys]
    ours = partition_of(partitions)
    assert [ours(k) for k in keys] == expected
    if partitions > 1:
        assert len(set(expected)) > 1          # the keys really spread: the comparison can fail


def test_partitions_go_to_workers_in_ranges_and_users_follow_their_partition() -> None:
    assert range_assignment(6, 1) == [[0, 1, 2, 3, 4, 5]]
    assert range_assignment(6, 3) == [[0, 1], [2, 3], [4, 5]]
    assert range_assignment(6, 4) == [[0, 1], [2, 3], [4], [5]]
    assert range_assignment(6, 6) == [[p] for p in range(6)]
    part, shard = partition_of(6), user_sharding(6, 4)
    owner = {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 3}
    assert all(shard(f"u{n}") == owner[part(f"u{n}")] for n in range(200))
    with pytest.raises(InputError, match="1 to 6 workers"):
        range_assignment(6, 7)


# --- one worker is the plain run ---------------------------------------------------------------------


def test_one_worker_gives_exactly_the_plain_full_system(log: list[Event]) -> None:
    plain = FullSystemPolicy(CONFIG, trainer=_Trainer(), name="full")
    one = _sharded("full@1w", 1)
    report = prequential(log, [plain, one], _cfg())
    assert report.configs["full"] == report.configs["full@1w"]
    assert report.curves["full"] == report.curves["full@1w"]
    assert plain.syncs == one.syncs >= 2
    assert plain.engine.stats()["reranker_pairs"] == one.engines[0].stats()["reranker_pairs"] > 0


def test_one_worker_in_the_command_gives_the_plain_figures(tmp_path: Path) -> None:
    runs = {}
    for name, extra in (("plain", []), ("one", ["--workers", "1"])):
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(cli.app, ["evaluate", "--dataset", "otto", "--path", OTTO, "--configs",
                                              "recent,full", "--epochs", "1", "--dim", "8", "--jobs", "0",
                                              "--window", "200", "--json", str(out), *extra])
        assert result.exit_code == 0, result.output
        runs[name] = json.loads(out.read_text())
    assert runs["one"]["configs"]["full@1w"] == runs["plain"]["configs"]["full"]
    assert runs["one"]["curves"]["full@1w"] == runs["plain"]["curves"]["full"]
    assert runs["one"]["configs"]["recent"] == runs["plain"]["configs"]["recent"]
    scale = runs["one"]["scale_out"]
    assert scale["configs"]["full@1w"]["hr@10"] == runs["plain"]["configs"]["full"]["hr@10"]
    assert scale["configs"]["full@1w"]["events_per_worker"] == [runs["plain"]["events"]]


# --- split and shared item knowledge -----------------------------------------------------------------


class _ApplySpy:
    """Wraps an engine's ``apply``: records the users of every event it applies."""

    def __init__(self, engine: Any) -> None:
        self.users: list[str] = []
        self._apply = engine.apply
        engine.apply = self

    def __call__(self, events: Sequence[Event], partition: int = 0, offsets: Any = None) -> list[str]:
        self.users += [e.user_id for e in events]
        return self._apply(events, partition, offsets)


def test_split_engines_never_see_another_workers_events(log: list[Event]) -> None:
    policy = _sharded("full@3w-split", 3)
    spies = [_ApplySpy(e) for e in policy.engines]
    shard = user_sharding(6, 3)
    prequential(log, [policy], _cfg())
    for k, spy in enumerate(spies):
        assert spy.users and {shard(u) for u in spy.users} == {k}
    assert sum(len(s.users) for s in spies) == len(log)
    tables = [ItemTables.of(e) for e in policy.engines]
    assert len({id(t.covisit) for t in tables}) == len({id(t.trending) for t in tables}) == 3
    assert len({id(t.session_knn) for t in tables}) == len({id(t.online_items) for t in tables}) == 3
    # each worker's trending counts only its own users' events
    for k, t in enumerate(tables):
        own = [e for e in log if shard(e.user_id) == k]
        items = {e.item_id for e in own}
        assert set(t.trending.top(10_000, log[-1].timestamp_ms)[0]) <= items


def test_shared_tables_learn_every_event_once_in_log_order_after_it_is_scored(log: list[Event]) -> None:
    policy = _sharded("full@3w-shared", 3, "shared")
    tables = [ItemTables.of(e) for e in policy.engines]
    assert all(t == tables[0] for t in tables)            # one set of tables, the same objects everywhere
    seen: list[str] = []
    learn = tables[0].trending.update

    def spy_update(item: str, strength: float, ts: int) -> None:
        seen.append(item)
        learn(item, strength, ts)

    tables[0].trending.update = spy_update
    scored_after: list[tuple[int, int]] = []
    ask = policy.recommend_many

    def spy_recommend(requests: Any, k: int) -> list[list[str]]:
        scored_after.append((policy.learned, len(seen)))
        return ask(requests, k)

    policy.recommend_many = spy_recommend  # type: ignore[method-assign]
    prequential(log, [policy], _cfg())
    assert seen == [e.item_id for e in log]               # every event once, in the log's order
    assert scored_after and all(learned == n for learned, n in scored_after)   # test, then train
    assert len(set(policy.events_per_worker)) > 1 and sum(policy.events_per_worker) == len(log)


def test_shared_tables_change_what_other_workers_users_get(log: list[Event]) -> None:
    split, shared = _sharded("split", 3), _sharded("shared", 3, "shared")
    report = prequential(log, [split, shared], _cfg())
    assert report.configs["split"] != report.configs["shared"]
    assert item_table_sizes(shared.engines)["covisit_items"] > max(
        len(ItemTables.of(e).covisit) for e in split.engines)


# --- restarts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("items", ["split", "shared"])
def test_a_restart_empties_item_tables_and_keeps_every_user(log: list[Event], items: str) -> None:
    at = 700
    restarted, twin = _sharded("r", 3, items, restart_at=at), _sharded("t", 3, items)
    for p in (restarted, twin):
        p.learn_many(log[:at])
    assert restarted.restarts and restarted.restarts[0]["at_event"] == at
    sizes = item_table_sizes(restarted.engines)
    if items == "split":
        assert sizes == {"covisit_items": 0, "trending_items": 0, "session_knn_sessions": 0}
        assert item_table_sizes(twin.engines)["covisit_items"] > 0
    else:                                   # the shared tables are the item plane's: they survive
        assert sizes == item_table_sizes(twin.engines) and sizes["covisit_items"] > 0
        assert all(ItemTables.of(e) == restarted.tables for e in restarted.engines)
    for new, old in zip(restarted.engines, twin.engines, strict=True):
        users = sorted(s.user_id for s in old.store.states())
        assert users and sorted(s.user_id for s in new.store.states()) == users
        assert all(new.export_user(u) == old.export_user(u) for u in users)
    # and it goes on learning: the tables fill again
    for p in (restarted, twin):
        p.learn_many(log[at:])
    assert item_table_sizes(restarted.engines)["covisit_items"] > 0
    assert len(restarted.restarts) == 1


def test_the_restart_dip_is_measured_against_the_twin(log: list[Event]) -> None:
    from streamrec.models.evaluation.sharding import summarise

    at = 900
    policies = [_sharded("full@1w", 1), _sharded("full@1w+restart", 1, restart_at=at)]
    report = prequential(log, policies, _cfg())
    summary = summarise(policies, 10, 50)
    assert summary is not None
    entry = summary["restarts"]["full@1w+restart"]
    assert entry["twin"] == "full@1w" and entry["at_event"] == at
    assert entry["before"] == {**entry["before"]} and entry["before"]["evaluated"] + entry["after"]["evaluated"] == \
        report.evaluated
    assert summary["configs"]["full@1w+restart"]["hr@10"] == pytest.approx(report.configs["full@1w+restart"]["hr@10"])
    # before the restart both runs are the same run
    assert [p for p in entry["curve"] if p["window"] < 0] == [p for p in entry["twin_curve"] if p["window"] < 0]
    assert entry["item_tables_after"]["covisit_items"] == 0 < entry["item_tables_before"]["covisit_items"]


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "use 1 to 6 workers"),
    (["--workers", "7"], "7 workers on 6 partitions"),
    (["--workers", "3", "--partitions", "2"], "3 workers on 2 partitions"),
    (["--workers", "two"], "whole numbers"),
    (["--workers", "3", "--items", "both"], "--items 'both'"),
    (["--items", "shared"], "--items needs --workers"),
    (["--workers", "3", "--restart-at", "2.5"], "--restart-at 2.5"),
    (["--workers", "3", "--restart-at", "0"], "--restart-at 0"),
    (["--workers", "3", "--restart-at", "soon"], "event index"),
    (["--workers", "3", "--restart-at", "5000"], "outside the scored stream"),
    (["--workers", "3", "--restart-at", "0.05"], "outside the scored stream"),
])
def test_bad_scale_out_flags_are_one_line_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli.app, ["evaluate", "--dataset", "otto", "--path", OTTO, "--configs", "full",
                                          "--epochs", "1", "--dim", "4", "--jobs", "0", *args])
    assert isinstance(result.exception, InputError), result.output
    text = str(result.exception)
    assert message in text and "\n" not in text


def test_restart_alone_restarts_the_one_worker_beside_its_twin(tmp_path: Path) -> None:
    path, out = tmp_path / "shop.jsonl", tmp_path / "r.json"
    write_log(generate(users=30, items=80, events=1200, seed=2), path)
    result = CliRunner().invoke(cli.app, ["evaluate", "--dataset", "jsonl", "--path", str(path), "--configs",
                                          "full", "--epochs", "1", "--dim", "4", "--jobs", "0", "--restart-at",
                                          "0.6", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["configs"]) == {"full@1w", "full@1w+restart"}
    entry = report["scale_out"]["restarts"]["full@1w+restart"]
    assert entry["at_event"] == 720 and entry["item_tables_after"]["trending_items"] == 0
    assert entry["curve"] and entry["twin_curve"]


def test_every_worker_reads_the_whole_catalog_again_after_a_restart(log: list[Event],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrec.models.engine.recommender import Recommender

    fed: list[tuple[int, tuple[Any, ...]]] = []
    monkeypatch.setattr(Recommender, "update_catalog", lambda self, items: fed.append((id(self), tuple(items))))
    catalog = ("item-a", "item-b")
    policy = ShardedEnginePolicy("c", CONFIG, None, user_sharding(6, 3), 3, restart_at=300, catalog=catalog)
    before = policy.engines                         # held, so no id is reused
    first = {id(e) for e in before}
    assert len(fed) == 3 and {i for i, _ in fed} == first and all(c == catalog for _, c in fed)
    policy.learn_many(log[:300])
    restarted = {id(e) for e in policy.engines}
    assert policy.restarts and not restarted & first
    assert len(fed) == 6 and {i for i, _ in fed[3:]} == restarted and all(c == catalog for _, c in fed)
