"""``streamrec worker ARGS`` up to the point where it would build the worker: the settings it would build it
with (the CLI tests of the worker's flags share this instead of each faking the worker)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streamrec import cli
from streamrec.stream.settings import Settings


class _Stop(Exception):
    pass


def worker_settings(monkeypatch: pytest.MonkeyPatch, args: list[str],
                    env: dict[str, str] | None = None) -> Settings:
    """The settings ``streamrec worker ARGS`` hands to ``Worker`` (which is replaced, so nothing runs)."""
    seen: list[Settings] = []

    def fake_worker(settings: Settings, model_sync: bool) -> None:
        seen.append(settings)
        raise _Stop

    monkeypatch.setattr("streamrec.consumers.worker.Worker", fake_worker)
    result = CliRunner().invoke(cli.app, ["worker", *args], env=env)
    assert isinstance(result.exception, _Stop), result.output
    (settings,) = seen
    return settings
