"""`streamrec model publish | list | rollback` through the CLI on a real broker."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.e2e import settings_env
from streamrec.models.base.artifact import random_artifact
from streamrec.stream.settings import Settings


def _run(s: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=settings_env(s))
    return result.exit_code, result.output


def test_publish_list_rollback(settings: Settings, tmp_path: Path) -> None:
    for v in ("v1", "v2"):
        random_artifact(tmp_path / v, 300, 8, seed=len(v), version=v)
        code, out = _run(settings, "model", "publish", str(tmp_path / v))
        assert code == 0, out
    code, out = _run(settings, "model", "list", "--format", "json")
    listing = json.loads(out)
    assert code == 0 and listing["serving"] == "v2"
    assert [(e["version"], e["complete"]) for e in listing["versions"]] == [("v1", True), ("v2", True)]
    code, out = _run(settings, "model", "rollback", "v1", "--reason", "test")
    assert code == 0, out
    assert json.loads(_run(settings, "model", "list", "--format", "json")[1])["serving"] == "v1"
    code, _ = _run(settings, "model", "rollback", "nope")
    assert code != 0


def test_publish_refuses_a_corrupt_artifact(settings: Settings, tmp_path: Path) -> None:
    random_artifact(tmp_path / "bad", 100, 8, version="bad")
    emb = tmp_path / "bad" / "item_embeddings.npy"
    emb.write_bytes(emb.read_bytes()[:-8] + b"\x00" * 8)
    code, _ = _run(settings, "model", "publish", str(tmp_path / "bad"))
    assert code != 0
    assert json.loads(_run(settings, "model", "list", "--format", "json")[1])["versions"] == []
