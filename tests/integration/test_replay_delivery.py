"""Replay on a real broker loses nothing silently: a record the topic refuses is a bad row with its line, the
records around it land, the summary and the exit code say so; a missing topic is a one-line error at once."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka.admin import NewTopic
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.e2e import settings_env
from streamrec.models.errors import InputError
from streamrec.models.events import Event, EventType
from streamrec.producers.replay import replay
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError
from streamrec.stream.settings import Settings
from streamrec.stream.tail import read
from streamrec.stream.topics import admin_client

SMALL_TOPIC_BYTES = 1200  # max.message.bytes of the test topic: a ~2.8 KB random context does not fit


def _big_context() -> dict[str, str]:
    """About 2.7 KB of incompressible text, within the readers' context limits (3 values under 1 KB)."""
    return {f"c{j}": base64.b64encode(os.urandom(675)).decode() for j in range(3)}


@pytest.fixture
def small_topic(settings: Settings) -> Settings:
    """Settings whose events topic takes records of at most SMALL_TOPIC_BYTES."""
    name = f"small-{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings)
    try:
        admin.create_topics([NewTopic(name, 2, 1, topic_configs={"max.message.bytes": str(SMALL_TOPIC_BYTES)})])
    finally:
        admin.close()
    deadline = time.monotonic() + 30
    s = settings.replace(events_topic=name)
    while not admin_topic_ready(s, name):
        assert time.monotonic() < deadline, f"topic {name} got no leader"
        time.sleep(0.1)
    return s


def admin_topic_ready(s: Settings, name: str) -> bool:
    admin = admin_client(s)
    try:
        desc = admin.describe_topics([name])
    finally:
        admin.close()
    return bool(desc and not desc[0].get("error_code") and desc[0]["partitions"]
                and all(p["leader_id"] >= 0 for p in desc[0]["partitions"]))


def _on_topic(s: Settings) -> list[dict[str, object]]:
    return [m.value for m in read(s, s.events_topic, from_beginning=True, timeout_s=3) if m.value]


def _log_with_a_big_line(path: Path) -> Path:
    """Five events of one user (one partition, so one batch) and line 3 too large for the topic."""
    rows = []
    for k in range(5):
        row: dict[str, object] = {"user_id": "u1", "item_id": f"i{k}", "event_type": "VIEW",
                                  "timestamp": 1_700_000_000_000 + k * 1000}
        if k == 2:
            row["context"] = _big_context()
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_refused_line_is_a_bad_row_and_the_others_land(small_topic: Settings, tmp_path: Path) -> None:
    log = _log_with_a_big_line(tmp_path / "big.jsonl")
    result = CliRunner().invoke(app, ["replay", str(log), "--format", "jsonl"], env=settings_env(small_topic))
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # immune to line wrapping
    assert "replayed 4 of 5 events" in out
    assert "bad rows: 1" in out
    assert "bad row line 3:" in out and "max.message.bytes (1,200)" in out
    got = _on_topic(small_topic)
    assert sorted(str(v["item_id"]) for v in got) == ["i0", "i1", "i3", "i4"]


def test_strict_fails_on_a_refused_line(small_topic: Settings, tmp_path: Path) -> None:
    log = _log_with_a_big_line(tmp_path / "big.jsonl")
    result = CliRunner().invoke(app, ["replay", str(log), "--format", "jsonl", "--strict"],
                                env=settings_env(small_topic))
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError)
    assert "big.jsonl, line 3:" in str(result.exception)
    assert sorted(str(v["item_id"]) for v in _on_topic(small_topic)) == ["i0", "i1"]


def test_records_taken_down_with_a_refused_batch_are_resent(small_topic: Settings) -> None:
    """With the size check told the topic takes 10 MB, the broker itself refuses the large records; Kafka
    then fails the producer and every batch in flight. Everything else must still land, in order per user."""
    events = [Event(f"e{k}", f"u{k % 2}", f"i{k}", EventType.VIEW, 1_700_000_000_000 + k,
                    context=_big_context() if k in (3, 17) else {}) for k in range(40)]
    stats = replay(events, small_topic, max_message_bytes=10_000_000)
    assert stats.refused_count == 2 and stats.failed_count == 0
    assert [(r.number, r.event.event_id) for r in stats.refused] == [(4, "e3"), (18, "e17")]
    assert all("MessageSizeTooLarge" in r.reason for r in stats.refused)
    assert stats.events == 38
    got = _on_topic(small_topic)
    assert sorted(str(v["event_id"]) for v in got) == sorted(f"e{k}" for k in range(40) if k not in (3, 17))
    for user in ("u0", "u1"):
        mine = [int(str(v["event_id"])[1:]) for v in got if v["user_id"] == user]
        assert mine == sorted(mine)


def test_a_missing_topic_fails_at_once(settings: Settings) -> None:
    missing = settings.replace(events_topic=f"missing-{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    with pytest.raises(BrokerError, match="does not exist"):
        replay([Event("e1", "u1", "i1", EventType.VIEW, 1_700_000_000_000)], missing)
    assert time.monotonic() - started < 15


def test_the_cli_says_a_missing_topic_in_one_line(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "one.jsonl"
    log.write_text(json.dumps({"user_id": "u1", "item_id": "i1", "timestamp": 1_700_000_000_000}) + "\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streamrec.cli", "replay", str(log), "--format", "jsonl",
                           "--topic", f"missing-{uuid.uuid4().hex[:8]}"],
                          env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 15
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: topic") and "does not exist" in lines[0], done.stderr


def test_losses_on_a_callers_producer_are_reported_not_hidden(small_topic: Settings) -> None:
    """A producer the caller owns cannot be replaced: what the broker took down with a refused record is
    reported as failed (and counted out of ``events``), never as sent."""
    events = [Event(f"e{k}", "u1", f"i{k}", EventType.VIEW, 1_700_000_000_000 + k,
                    context=_big_context() if k == 3 else {}) for k in range(20)]
    producer = clients.producer(small_topic)
    try:
        stats = replay(events, small_topic, producer=producer, max_message_bytes=10_000_000)
    finally:
        producer.close(timeout=5)
    landed = len(_on_topic(small_topic))
    assert stats.failed_count >= 1 and stats.failed[0].event.event_id == "e3"
    assert stats.events == landed == 20 - stats.failed_count - stats.refused_count
    assert not stats.complete
