"""``streamrec bench memory`` on a small model: a point per mark, with the users held and a slope between marks;
bad arguments are one clear error through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from streamrec.bench import memory
from streamrec.cli import app
from streamrec.models.errors import InputError
from streamrec.stream.settings import Settings


def test_memory_points_per_mark() -> None:
    result = memory.run(Settings(), [300, 100], items=500, dim=8, events_per_user=3, batch=90, list_every=7)
    points = result["points"]
    assert [p["users"] for p in points] == [100, 300] and [p["users_held"] for p in points] == [100, 300]
    assert "bytes_per_user_since_last" in points[1] and "bytes_per_user_since_last" not in points[0]
    assert result["empty_with_model_mb"] >= result["engine_without_model_mb"] > 0
    assert all(p["rss_mb"] > 0 and p["state_bytes_per_user"] > 0 for p in points)
    assert 0 < points[0]["covisit_mb"] <= points[1]["covisit_mb"] and isinstance(result["river_imported"], bool)


def test_the_cli_writes_json_and_refuses_bad_marks(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    ok = CliRunner().invoke(app, ["bench", "memory", "--users", "50", "--items", "300", "--dim", "8",
                                  "--json", str(out)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(out.read_text())["points"][0]["users"] == 50
    bad = CliRunner().invoke(app, ["bench", "memory", "--users", "ten"])   # main() prints it as one line
    assert isinstance(bad.exception, InputError) and "--users takes comma-separated whole numbers" in str(bad.exception)
