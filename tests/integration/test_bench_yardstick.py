"""The benchmarks' yardsticks (streamrec/bench/yardstick.py): ``bench worker`` and ``bench replay`` report
their own figure, the bare kafka-python reference's from the same run, and the ratio computed from the two.
Short runs on the test broker; figures are never asserted (they depend on the machine and its load)."""

from __future__ import annotations

import pytest

from streamrec.bench import replay, worker
from streamrec.stream.settings import Settings


def test_bench_worker_reports_the_passthrough_loop_and_the_ratio(kafka: Settings) -> None:
    result = worker.run(kafka, events=1500, items=500, dim=16, rate=300.0, users=None, seconds=2.0,
                        guarantee="at-least-once", reranker=False)
    ref = result["reference"]
    assert result["events_per_s"] > 0 and ref["events_per_s"] > 0
    assert result["ceiling_events_per_s"] == ref["events_per_s"]
    assert result["ratio_to_ceiling"] == pytest.approx(result["events_per_s"] / ref["events_per_s"], abs=1e-3)
    assert ref["lists_emitted"] > 0 and ref["latency_samples"] > 0
    assert ref["latency_ms"]["p99"] >= ref["latency_ms"]["p50"] > 0
    assert result["latency_ms"]["p99"] >= result["latency_ms"]["p50"] > 0
    assert result["p99_ratio_to_reference"] == pytest.approx(
        result["latency_ms"]["p99"] / ref["latency_ms"]["p99"], abs=0.01)
    assert result["payload_bytes_per_event"]["recommendations"] > 0
    assert result["payload_bytes_per_event"]["changelog"] > 0
    if kafka.embedded:
        assert result["bytes_per_event"]["recommendations"] > 0 and result["bytes_per_event"]["changelog"] > 0


def test_bench_replay_reports_the_plain_producer_and_the_ratio(kafka: Settings) -> None:
    result = replay.run(kafka, events=3000, rounds=2)
    ref = result["reference"]
    assert result["produce_events_per_s"] > 0 and ref["events_per_s"] > 0
    assert result["ceiling_events_per_s"] == ref["events_per_s"]
    rounds = [r / c for r, c in zip(result["produce_events_per_s_per_round"], ref["events_per_s_per_round"],
                                    strict=True)]
    assert len(rounds) == 2 and result["ratio_per_round"] == pytest.approx(rounds, abs=1e-3)
    assert result["ratio_to_ceiling"] == pytest.approx(sum(rounds) / 2, abs=1e-3)   # the median of two
    assert result["read_back"] == 3000
