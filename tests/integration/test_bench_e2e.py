"""Smoke test of ``streamrec bench e2e``: one worker process, about 2,000 events; shape of the result, no
lost list. Figures are never asserted (they depend on the machine and its load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.bench import e2e
from streamrec.bench.plots import plot_e2e
from streamrec.models.errors import InputError
from streamrec.stream.settings import Settings


def test_one_worker_end_to_end(kafka: Settings, tmp_path: Path) -> None:
    result = e2e.run(kafka, [1], rate=400.0, seconds=2.0, events=1200, guarantee="at-least-once",
                     items=2000, dim=16)
    assert result["benchmark"] == "e2e"
    assert {"cpus", "cpu", "memory_gb"} <= set(result["machine"])
    assert set(result["scaling"]) == {"1"}
    (run,) = result["runs"]
    for key in ("startup_s", "offered", "latency_ms", "latency_over_time", "throughput", "lists",
                "lag_over_time", "processes", "assignment"):
        assert key in run, key
    assert run["lists"]["lost"] == 0
    assert run["lists"]["users"] > 0 and run["lists"]["emitted"] >= run["lists"]["users"]
    assert run["throughput"]["all_lists_arrived"]
    assert run["throughput"]["events_per_s"] > 0
    assert run["latency_ms"]["samples"] > 0
    assert any(x["committed_lag"] is not None for x in run["lag_over_time"])
    (proc,) = run["processes"]
    assert proc["cpu_s"] > 0 and proc["peak_rss_mb"] > 0
    assert run["exit_codes"] == [0]
    png = tmp_path / "e2e.png"
    plot_e2e(result, png)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_worker_counts_are_checked() -> None:
    assert e2e.parse_counts("1, 2,3") == [1, 2, 3]
    with pytest.raises(InputError, match="worker counts"):
        e2e.parse_counts("one")


def test_workers_resume_after_a_broker_restart_and_lose_nothing(kafka: Settings, tmp_path: Path) -> None:
    if not kafka.embedded:
        pytest.skip("restarts the embedded broker")

    from streamrec.e2e import broker_ports

    # a broker of its own (the session's broker is shared with the other tests)
    own = kafka.replace(**broker_ports(), broker_dir=str(tmp_path / "broker"))
    result = e2e.run(own, [1], rate=300.0, seconds=4.0, events=600, guarantee="at-least-once", items=2000,
                     dim=16, broker_restart=True, down_s=2.0)
    (run,) = result["runs"]
    restart = run["broker_restart"]
    assert result["broker_restart"] and restart["back_after_s"] >= 2.0
    assert restart["resume_s"] is not None and restart["resume_s"] >= 0
    assert restart["users_before"] > 0 and restart["lost_before"] == 0
    assert run["lists"]["lost"] == 0 and run["throughput"]["all_lists_arrived"]
    assert run["exit_codes"] == [0]


def test_broker_restart_needs_the_embedded_broker() -> None:
    with pytest.raises(InputError, match="embedded broker"):
        e2e.run(Settings(bootstrap_servers="example.invalid:9092"), [1], rate=1.0, seconds=1.0, events=1,
                guarantee="at-least-once", broker_restart=True)
