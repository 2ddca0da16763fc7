"""The worker's /healthz, /readyz and /metrics endpoints, served on a free loopback port."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from streamrec.consumers.health import WorkerMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Flag:
    def __init__(self) -> None:
        self.value = False

    def __call__(self) -> bool:
        return self.value


@pytest.fixture
def served() -> Iterator[tuple[WorkerMetrics, str, FakeClock, Flag]]:
    clock, ready = FakeClock(), Flag()
    metrics = WorkerMetrics(stale_after_s=5.0, ready=ready, clock=clock, wall_clock=lambda: 10_000.0)
    server = metrics.serve(0, host="127.0.0.1")
    try:
        yield metrics, f"http://127.0.0.1:{server.server_address[1]}", clock, ready
    finally:
        metrics.shutdown()


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status, resp.read().decode(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), err.headers.get("Content-Type", "")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_readyz_is_503_until_the_worker_is_ready(served: tuple[WorkerMetrics, str, FakeClock, Flag]) -> None:
    _, base, _, ready = served
    assert get(base + "/readyz")[0] == 503
    ready.value = True
    assert get(base + "/readyz")[:2] == (200, "ready\n")


def test_readyz_is_503_when_the_check_raises() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    assert not WorkerMetrics(ready=broken).is_ready()
    assert not WorkerMetrics().is_ready()   # no check given: never ready


def test_healthz_fails_once_the_beat_is_stale(served: tuple[WorkerMetrics, str, FakeClock, Flag]) -> None:
    metrics, base, clock, _ = served
    assert get(base + "/healthz")[0] == 200
    clock.now += 4.9
    assert get(base + "/healthz")[0] == 200
    clock.now += 0.2
    status, body, _ = get(base + "/healthz")
    assert status == 503 and "stale" in body
    metrics.beat()
    assert get(base + "/healthz")[0] == 200


def test_healthz_with_the_real_clock_and_a_tiny_threshold() -> None:
    metrics = WorkerMetrics(stale_after_s=0.002)
    port = metrics.serve(0, host="127.0.0.1").server_address[1]
    try:
        metrics.beat()
        time.sleep(0.005)
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 503
    finally:
        metrics.shutdown()


def test_metrics_text_has_every_metric_and_its_values(served: tuple[WorkerMetrics, str, FakeClock, Flag]) -> None:
    metrics, base, clock, _ = served
    metrics.observe_batch(events=10, dead_letters=2, duplicates=3, batch_seconds=0.012,
                          latencies_ms=np.array([0.5, 4.0, 40.0, 400.0, 4000.0, -3.0]))
    metrics.observe_batch(events=5, dead_letters=0, duplicates=0, batch_seconds=0.003,
                          latencies_ms=np.array([], dtype=np.float64))
    metrics.set_lag({0: 12, 3: 7})
    metrics.set_lag({3: 1, 4: 0})          # partition 0 revoked: its series goes away
    metrics.set_state(users=1234, evicted=5)
    metrics.set_state(users=1200, evicted=9)
    metrics.set_model("20250101T000000-abc", updated_at=9_940.0)
    metrics.rebalanced()
    metrics.rebalanced()
    clock.now += 1.5

    status, text, ctype = get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    got = samples(text)
    assert got[("streamrec_events_total", ())] == 15
    assert got[("streamrec_dead_letters_total", ())] == 2
    assert got[("streamrec_duplicates_total", ())] == 3
    assert got[("streamrec_recommendations_total", ())] == 6
    assert got[("streamrec_rebalances_total", ())] == 2
    assert got[("streamrec_state_users", ())] == 1200
    assert got[("streamrec_state_evictions_total", ())] == 9
    assert got[("streamrec_consumer_lag", (("partition", "3"),))] == 1
    assert got[("streamrec_consumer_lag", (("partition", "4"),))] == 0
    assert ("streamrec_consumer_lag", (("partition", "0"),)) not in got
    assert got[("streamrec_model_info", (("version", "20250101T000000-abc"),))] == 1
    assert got[("streamrec_model_age_seconds", ())] == 60
    assert got[("streamrec_loop_heartbeat_age_seconds", ())] == 1.5

    lat = "streamrec_event_to_emit_latency_milliseconds"
    assert got[(lat + "_count", ())] == 6
    assert got[(lat + "_sum", ())] == pytest.approx(4444.5)     # the negative latency counts as 0
    assert got[(lat + "_bucket", (("le", "1.0"),))] == 2
    assert got[(lat + "_bucket", (("le", "5.0"),))] == 3
    assert got[(lat + "_bucket", (("le", "50.0"),))] == 4
    assert got[(lat + "_bucket", (("le", "500.0"),))] == 5
    assert got[(lat + "_bucket", (("le", "+Inf"),))] == 6
    batch = "streamrec_batch_duration_milliseconds"
    assert got[(batch + "_count", ())] == 2
    assert got[(batch + "_sum", ())] == pytest.approx(15.0)
    assert got[(batch + "_bucket", (("le", "5.0"),))] == 1
    assert got[(batch + "_bucket", (("le", "15.0"),))] == 2


def test_openmetrics_on_request(served: tuple[WorkerMetrics, str, FakeClock, Flag]) -> None:
    _, base, _, _ = served
    status, text, ctype = get(base + "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")


def test_model_age_is_nan_before_the_first_model_and_unknown_paths_404(
        served: tuple[WorkerMetrics, str, FakeClock, Flag]) -> None:
    _, base, _, _ = served
    got = samples(get(base + "/metrics")[1])
    assert np.isnan(got[("streamrec_model_age_seconds", ())])
    assert get(base + "/nope")[0] == 404


def test_a_dedicated_registry_so_two_workers_do_not_collide() -> None:
    a, b = WorkerMetrics(), WorkerMetrics()
    a.observe_batch(1, 0, 0, 0.001, np.array([1.0]))
    assert b"streamrec_events_total 0.0" in b.render()
    assert REGISTRY.get_sample_value("streamrec_events_total") is None


def test_shutdown_is_idempotent_and_serve_twice_is_refused() -> None:
    m = WorkerMetrics()
    m.serve(0, host="127.0.0.1")
    with pytest.raises(RuntimeError):
        m.serve(0, host="127.0.0.1")
    m.shutdown()
    m.shutdown()
