"""The item plane's switch: ``streamrec worker --item-plane`` reaches the settings, STREAMREC_ITEM_PLANE puts the
plane sources in place of covisit and trending, and ``streamrec items`` is a command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streamrec import cli
from streamrec.consumers.itemcache import plane_settings
from streamrec.models.errors import ConfigError
from streamrec.stream.settings import Settings
from tests.unit.worker_cli import worker_settings


def test_the_worker_flag_reaches_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for args, want in ((["--item-plane"], True), (["--no-item-plane"], False), ([], False)):
        assert worker_settings(monkeypatch, args).item_plane is want
    assert worker_settings(monkeypatch, [], env={"STREAMREC_ITEM_PLANE": "1"}).item_plane is True
    assert CliRunner().invoke(cli.app, ["items", "--help"]).exit_code == 0


def test_the_plane_sources_replace_covisit_and_trending() -> None:
    assert plane_settings(Settings()).sources == ""                      # off: untouched
    on = plane_settings(Settings.from_env({"STREAMREC_ITEM_PLANE": "1"}))
    assert on.sources == "ann,covisit_global,recent,trending_global,cold_start"
    mine = plane_settings(Settings().replace(item_plane=True, sources="covisit,session_knn"))
    assert mine.sources == "covisit_global,session_knn"
    with pytest.raises(ConfigError, match="neither covisit nor trending"):
        plane_settings(Settings().replace(item_plane=True, sources="ann,recent"))
    with pytest.raises(ConfigError, match="at least 1"):
        Settings.from_env({"STREAMREC_ITEM_INTERVAL_MS": "0"})
