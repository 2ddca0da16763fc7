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
