"""``streamrec evaluate`` end to end on a small generated log: every configuration, JSON schema, plot, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamrec import cli
from streamrec.evaluate import CONFIGS, EvalOptions, reranker_option
from streamrec.models.errors import InputError
from streamrec.producers.synthetic import generate, write_log

METRICS = ("hr@10", "ndcg@10", "mrr@10", "recall@20", "coverage", "novelty")


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("evaluate") / "shop.jsonl"
    write_log(generate(users=40, items=120, events=3000, seed=3), path)
    return path


def test_all_five_configurations_side_by_side(small_log: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "eval.json", tmp_path / "hr.png"
    result = CliRunner().invoke(cli.app, [
        "evaluate", "--dataset", "jsonl", "--path", str(small_log), "--json", str(out), "--plot", str(png),
        "--configs", ",".join(CONFIGS), "--sync-every", "1000", "--epochs", "1", "--dim", "8",
        "--window", "200"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["dataset"] == "jsonl"
    assert report["events"] == 3000
    assert report["k"] == 10
    assert set(report["configs"]) == set(CONFIGS)
    for name in CONFIGS:
        assert set(METRICS) <= set(report["configs"][name]), name
        assert 0.0 <= report["configs"][name]["hr@10"] <= 1.0
        assert report["curves"][name], name
    assert report["policy"]["name"] == "ecommerce" and report["policy"]["exclude"] == "none"
    # planted structure (taste clusters, sessions): the full system clearly beats popularity
    assert report["configs"]["full"]["hr@10"] >= 1.2 * report["configs"]["popularity"]["hr@10"]
    assert report["configs"]["full"]["ndcg@10"] >= 1.2 * report["configs"]["popularity"]["ndcg@10"]
    # one training at the warm-up, then one per sync, shared by the three base-model configurations
    trainings = report["base_model_trainings"]
    assert trainings[0]["events"] == report["warmup"]
    assert report["timings"]["static_base"]["models_trained"] == 1
    assert report["timings"]["online_vectors"]["models_trained"] == 1
    assert report["timings"]["full"]["models_trained"] == len(trainings) > 1
    assert report["reranker"] == (reranker_option() or None)
    # the engine's own seen/purchased decision (filter_seen=auto) and the reranker's state are reported
    stats = report["full_engine_stats"]
    assert stats["filter_seen_effective"] in ("none", "purchased") and stats["repurchase_events"] > 0
    assert 0.0 <= stats["repurchase_rate"] <= 1.0 and stats["reranker_pairs"] > 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "full" in result.stdout


def test_rating_logs_get_the_movielens_policy(tmp_path: Path) -> None:
    rows = [f"{u}\t{i}\t{5 if (u + i) % 2 else 2}\t{1_000_000_000 + 60 * n}"
            for n, (u, i) in enumerate((u, i) for u in range(1, 30) for i in range(1, 12))]
    path = tmp_path / "u.data"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "ml.json"
    result = CliRunner().invoke(cli.app, [
        "evaluate", "--dataset", "movielens-100k", "--path", str(path), "--configs", "popularity,full,full_blend",
        "--json", str(out), "--epochs", "1", "--dim", "4", "--sync-every", "0", "--warmup-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["configs"]) == {"popularity", "full", "full_blend"}
    assert report["timings"]["full_blend"]["models_trained"] == report["timings"]["full"]["models_trained"] == 1
    assert report["policy"]["exclude"] == "seen"
    assert report["full_engine"]["filter_seen"] == "all"
    assert report["full_engine"]["seen_cap"] >= 11


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "netflix", "--path", "x"], "unknown dataset"),
    (["--dataset", "otto", "--path", "/no/such/file.jsonl"], "not found"),
    (["--dataset", "csv"], "--path is required"),
    (["--dataset", "otto", "--path", "tests/fixtures/otto-sample.jsonl", "--configs", "full,magic"],
     "unknown configuration"),
])
def test_bad_input_is_a_clear_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli.app, ["evaluate", *args])
    assert isinstance(result.exception, InputError)
    assert message in str(result.exception)


def test_bad_input_exits_with_code_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["streamrec", "evaluate", "--dataset", "netflix", "--path", "x"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    assert "unknown dataset 'netflix'" in capsys.readouterr().err


def test_options_default_to_movielens_100k_and_all_configurations() -> None:
    opts = EvalOptions.parse(dataset="otto", path="tests/fixtures/otto-sample.jsonl", configs="full, full,river_mf")
    assert opts.fmt == "otto" and opts.configs == ("full", "river_mf")
    with pytest.raises(InputError, match="warmup"):
        EvalOptions.parse(dataset="otto", path="tests/fixtures/otto-sample.jsonl", warmup_fraction=1.0)


# ------------------------------------------------------------------ any log: --targets, --map, folders, refusals

FAST = ["--epochs", "1", "--dim", "4", "--sync-every", "0", "--window", "100"]


def _run(args: list[str], tmp_path: Path) -> dict[str, object]:
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli.app, ["evaluate", *args, "--json", str(out), *FAST])
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(out.read_text())
    return report


def test_targets_choose_the_scored_event_types(small_log: Path, tmp_path: Path) -> None:
    from streamrec.producers.readers import read_events

    events = read_events(small_log, "jsonl").events
    warm = int(len(events) * 0.1)
    later = [e.event_type.value for e in events[warm:]]
    base = ["--dataset", "jsonl", "--path", str(small_log), "--configs", "popularity,recent"]
    default = _run(base, tmp_path)
    assert default["evaluated"] == sum(t in ("CLICK", "ADD_TO_CART", "PURCHASE") for t in later)
    carts = _run([*base, "--targets", "cart,purchase"], tmp_path)
    assert carts["evaluated"] == sum(t in ("ADD_TO_CART", "PURCHASE") for t in later) > 0
    assert carts["settings"]["targets"]["types"] == ["ADD_TO_CART", "PURCHASE"]  # type: ignore[index]
    every = _run([*base, "--targets", "all"], tmp_path)
    assert every["evaluated"] == len(later)
    result = CliRunner().invoke(cli.app, ["evaluate", *base, "--targets", "clicks,likes"])
    assert isinstance(result.exception, InputError) and "unknown target type(s) clicks, likes" in str(result.exception)


def _shop_csv(path: Path, kinds: tuple[str, ...]) -> Path:
    rows = ["visitorid,itemid,ts,event"]
    for n in range(600):
        rows.append(f"v{n % 13},item{(n * 7) % 41},{1_600_000_000_000 + 1000 * n},{kinds[n % len(kinds)]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_map_reads_a_log_with_its_own_columns(tmp_path: Path) -> None:
    log = _shop_csv(tmp_path / "shop.csv", ("view", "transaction", "addtocart", "view"))
    mapping = "user=visitorid,item=itemid,timestamp=ts,event_type=event,timestamp_unit=ms"
    report = _run(["--dataset", "csv", "--path", str(log), "--map", mapping,
                   "--configs", "popularity,recent,sknn,river_mf"], tmp_path)
    assert report["events"] == 600 and report["mapping"] == mapping and report["bad_rows"] == 0
    assert report["evaluated"] == sum(1 for n in range(60, 600) if n % 4 in (1, 2))
    # without the mapping the default column names are missing: every row is bad
    result = CliRunner().invoke(cli.app, ["evaluate", "--dataset", "csv", "--path", str(log)])
    assert isinstance(result.exception, InputError)
    both = CliRunner().invoke(cli.app, ["evaluate", "--dataset", "csv", "--path", str(log), "--map", mapping,
                                        "--preset", "retailrocket"])
    assert isinstance(both.exception, InputError) and "not both" in str(both.exception)


def test_a_log_without_targets_is_refused_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamrec.evaluate as ev

    def no_replay(*_a: object, **_k: object) -> None:
        raise AssertionError("the replay must not start")

    monkeypatch.setattr(ev, "prequential", no_replay)
    log = _shop_csv(tmp_path / "views.csv", ("view",))
    mapping = "user=visitorid,item=itemid,timestamp=ts,event_type=event,timestamp_unit=ms"
    result = CliRunner().invoke(cli.app, ["evaluate", "--dataset", "csv", "--path", str(log), "--map", mapping])
    assert isinstance(result.exception, InputError), result.output
    message = str(result.exception)
    assert "nothing to score" in message and "540 VIEW" in message and "--targets view" in message
    monkeypatch.undo()
    report = _run(["--dataset", "csv", "--path", str(log), "--map", mapping, "--targets", "view",
                   "--configs", "popularity,recent"], tmp_path)
    assert report["evaluated"] == 540


def test_movielens_folder_and_sync_in_event_time(tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    rows = [f"{u}\t{i}\t{5 if (u * i) % 3 else 2}\t{1_000_000_000 + 3600 * n}"
            for n, (u, i) in enumerate((u, i) for u in range(1, 25) for i in range(1, 15))]
    (folder / "u.data").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ml.json"
    result = CliRunner().invoke(cli.app, [
        "evaluate", "--dataset", "movielens-100k", "--path", str(folder), "--configs", "popularity,recent,full",
        "--json", str(out), "--epochs", "1", "--dim", "4", "--sync-every", "4d", "--warmup-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["path"] == str(folder / "u.data") and report["sync_every_ms"] == 4 * 86_400_000
    span_days = (len(rows) - int(len(rows) * 0.3)) * 3600 / 86_400
    assert report["timings"]["full"]["models_trained"] == 1 + int(span_days // 4)
    assert report["full_vs_best_baseline"]["hr@10"]["best"] in ("popularity", "recent")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli.app, ["evaluate", "--dataset", "movielens-100k", "--path", str(empty)])
    assert isinstance(result.exception, InputError) and "holds none of u.data" in str(result.exception)
    result = CliRunner().invoke(cli.app, ["evaluate", "--dataset", "movielens-100k", "--path", str(folder),
                                          "--sync-every", "soon"])
    assert isinstance(result.exception, InputError) and "--sync-every" in str(result.exception)


def test_training_ahead_and_the_side_replay_give_the_same_figures(small_log: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import streamrec.evaluate as ev
    from streamrec.evaluate import evaluate

    monkeypatch.setattr(ev, "SIDE_REPLAY_CPUS", 1)   # the side replay whatever the machine

    def run(jobs: int) -> dict[str, object]:
        opts = EvalOptions.parse(dataset="jsonl", path=str(small_log), configs="popularity,sknn,online_vectors,full",
                                 sync_every=700, epochs=1, dim=8, window=200, jobs=jobs)
        return evaluate(opts).to_dict()

    inline, ahead = run(0), run(2)
    assert ahead["configs"] == inline["configs"] and ahead["curves"] == inline["curves"]
    assert list(ahead["configs"]) == ["popularity", "sknn", "online_vectors", "full"]  # type: ignore[arg-type]
    assert [t["events"] for t in ahead["base_model_trainings"]] == [  # type: ignore[union-attr]
        t["events"] for t in inline["base_model_trainings"]] == [300, 1000, 1700, 2400]  # type: ignore[union-attr]
    assert ahead["training_processes"] == 2 and inline["training_processes"] == 0


def test_a_dead_pool_process_is_a_one_line_error() -> None:
    import os
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    import pytest

    from streamrec.evaluate import pool_result
    from streamrec.models.errors import StreamrecError

    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        ok, dead = pool.submit(abs, -3), None
        assert pool_result(ok, "abs") == 3
        dead = pool.submit(os._exit, 1)
        with pytest.raises(StreamrecError, match="the process training the base model on 10 events ended"):
            pool_result(dead, "training the base model on 10 events")
