"""The benchmarks' yardsticks (streamrec/bench/yardstick.py): ``bench worker`` and ``bench replay`` report
their own figure, the bare kafka-python reference's from the same run, and the ratio computed from the two.
Short runs on the test broker; figures are never asserted (they depend on the machine and its load)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from streamrec.bench import replay, worker, yardstick
from streamrec.bench.common import synthetic_events
from streamrec.e2e import wait_until
from streamrec.producers.replay import Pacing
from streamrec.producers.replay import replay as replay_events
from streamrec.stream.settings import Settings
from streamrec.stream.topics import ensure_topics, topic_specs


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


def test_the_passthrough_loop_reads_a_topic_created_after_it_started_and_reports_its_last_batch(
        kafka: Settings, tmp_path: Path) -> None:
    """The loop waits for its topic's partitions before joining its group: one that joined first got no
    partition and read nothing for the whole run (``bench worker`` waited on it for minutes). Once idle, the
    count it reports covers its last batch, which the bench waits for."""
    tag = uuid.uuid4().hex[:8]
    s = kafka.replace(events_topic=f"events-{tag}", recommendations_topic=f"recs-{tag}", dlq_topic=f"dlq-{tag}",
                      model_topic=f"models-{tag}", group=f"g-{tag}", events_partitions=3,
                      recommendations_partitions=3)
    progress, stop, result = tmp_path / "progress", threading.Event(), {}

    def loop() -> None:
        try:
            result["processed"] = yardstick.run_loop(s, progress, stop.is_set)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = repr(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        time.sleep(2.0)                       # the loop is up before its topic exists
        ensure_topics(s, topic_specs(s))
        replay_events(synthetic_events(1000, users=100, items=50), s, Pacing())
        reached = wait_until(lambda: yardstick._processed(progress) >= 1000 or not thread.is_alive(), 60)
        assert reached and yardstick._processed(progress) == 1000, (yardstick._processed(progress), result)
    finally:
        stop.set()
        thread.join(30)
    assert result.get("processed") == 1000, result
