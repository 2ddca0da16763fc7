"""Meaningless numbers on `streamrec replay | generate | tail | demo` are one-line errors (exit 2), checked
before anything is read or any broker is contacted."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from streamrec import cli
from streamrec.models.errors import InputError
from tests.unit.worker_cli import worker_settings

LOG = "tests/fixtures/otto-sample.jsonl"  # any existing log: the options are refused before it is read

CASES = [
    (["replay", LOG, "--format", "otto", "--limit", "-3"], "--limit must be at least 1, got -3"),
    (["replay", LOG, "--format", "otto", "--limit", "0"], "--limit must be at least 1, got 0"),
    (["replay", LOG, "--format", "otto", "--rate", "0"], "--rate must be a positive number, got 0.0; omit it"),
    (["replay", LOG, "--format", "otto", "--rate", "-5"], "--rate must be a positive number"),
    (["replay", LOG, "--format", "otto", "--rate", "nan"], "--rate must be a positive number, got nan"),
    (["replay", LOG, "--format", "otto", "--speedup", "0"], "--speedup must be a positive number, got 0.0"),
    (["replay", LOG, "--format", "otto", "--speedup", "-2"], "--speedup must be a positive number"),
    (["replay", LOG, "--format", "otto", "--speedup", "inf"], "--speedup must be a positive number, got inf"),
    (["replay", LOG, "--format", "otto", "--max", "--rate", "10"], "choose one of --max, --rate, --speedup"),
    (["generate", "--events", "0", "--out", "never.jsonl"], "--events must be at least 1, got 0"),
    (["generate", "--users", "-1", "--out", "never.jsonl"], "--users must be at least 1, got -1"),
    (["generate", "--items", "0", "--out", "never.jsonl"], "--items must be at least 1, got 0"),
    (["generate", "--seed", "-1", "--out", "never.jsonl"], "--seed must be at least 0, got -1"),
    (["tail", "events", "--max-messages", "0"], "--max-messages must be at least 1, got 0"),
    (["tail", "events", "-n", "-4"], "--max-messages must be at least 1, got -4"),
    (["tail", "events", "--timeout", "-1"], "--timeout must be 0 or more, got -1.0"),
    (["tail", "events", "--format", "yaml"], "--format must be text or json"),
    (["demo", "--rate", "0"], "--rate must be a positive number, got 0.0"),
    (["demo", "--epochs", "0"], "--epochs must be at least 1, got 0"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a[2:] if a[0] == "replay" else a)
                                                          for a, _ in CASES])
def test_a_bad_number_is_an_input_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli.app, args)
    assert isinstance(result.exception, InputError), result.output
    assert message in str(result.exception)


@pytest.mark.parametrize(("args", "message"), CASES[:3] + CASES[9:10] + CASES[13:14])
def test_the_command_line_prints_one_line_and_exits_2(args: list[str], message: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["streamrec", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_the_worker_rule_flags_reach_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # the flags are checked by the settings object before the worker is built or a broker contacted
    from streamrec.models.errors import ConfigError

    result = CliRunner().invoke(cli.app, ["worker", "--rule-min-price", "50", "--rule-max-price", "10"])
    assert isinstance(result.exception, ConfigError), result.output
    assert "STREAMREC_RULE_MAX_PRICE=10.0 is below STREAMREC_RULE_MIN_PRICE=50.0" in str(result.exception)
    s = worker_settings(monkeypatch, ["--rule-max-per-brand", "2", "--rule-exclude-categories", "adult,test",
                                      "--no-catalog"])
    assert (s.rule_max_per_brand, s.rule_exclude_categories, s.catalog) == (2, "adult,test", False)


def test_the_worker_filter_seen_flag_reaches_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrec.consumers.engine import engine_config
    from streamrec.models.errors import ConfigError
    from streamrec.stream.settings import Settings

    bad = CliRunner().invoke(cli.app, ["worker", "--filter-seen", "sometimes"])
    assert isinstance(bad.exception, ConfigError) and "STREAMREC_FILTER_SEEN='sometimes'" in str(bad.exception)
    assert engine_config(worker_settings(monkeypatch, ["--filter-seen", "purchased"])).filter_seen == "purchased"
    assert engine_config(Settings.from_env({"STREAMREC_FILTER_SEEN": "all"})).filter_seen == "all"
    assert engine_config(Settings()).filter_seen == "auto"


def test_the_worker_item_plane_flags_reach_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrec.models.errors import ConfigError
    from streamrec.stream.settings import Settings

    bad = CliRunner().invoke(cli.app, ["worker", "--item-exact-redo", "-1"])
    assert isinstance(bad.exception, ConfigError) and "STREAMREC_ITEM_EXACT_REDO" in str(bad.exception), bad.output
    s = worker_settings(monkeypatch, ["--item-plane", "--no-item-owner", "--item-owner-thread",
                                      "--item-exact-redo", "0"])
    assert (s.item_plane, s.item_owner, s.item_owner_process, s.item_exact_redo) == (True, False, False, 0)
    default = Settings()
    assert (default.item_owner, default.item_owner_process, default.item_exact_redo) == (True, True, 5_000)
