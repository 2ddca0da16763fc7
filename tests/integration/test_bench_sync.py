"""``streamrec bench sync`` on a small model: every worker's time from publish to serving comes from its own
``model swapped`` record (the bench asks the workers nothing while they sync), beside the yardstick, the
ratios and the loop-gap figures of the same run. Figures are never asserted (they depend on the machine)."""

from __future__ import annotations

import pytest

from streamrec.bench import sync
from streamrec.stream.settings import Settings


def test_bench_sync_reports_each_worker_from_its_swap_record(kafka: Settings) -> None:
    result = sync.run(kafka, items=2000, dim=16, workers=2, rate=200.0, users=500)
    per_worker = result["sync_s_per_worker"]
    assert len(per_worker) == 2 and all(t is not None and t > 0 for t in per_worker), per_worker
    assert result["sync_s"] == pytest.approx(max(per_worker), abs=1e-3), result
    floor = result["yardstick"]
    assert floor["raw_messages"] >= result["chunks"] and floor["total_s"] > 0
    assert result["ratio"]["sync_to_yardstick"] == pytest.approx(result["sync_s"] / floor["total_s"], rel=0.02)
    assert result["sync_after_publish_s"] == pytest.approx(result["sync_s"] - result["publish_s"], abs=2e-3)
    assert result["ratio"]["sync_after_publish_to_yardstick"] == pytest.approx(
        result["sync_after_publish_s"] / floor["total_s"], rel=0.02)
    assert all(g is not None and g > 0 for g in result["swap_gap_ms_per_worker"]), result["swap_gap_ms_per_worker"]
    assert all(m is not None and m > 0 for m in result["median_batch_interval_ms_per_worker"]), result
