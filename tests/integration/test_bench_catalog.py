"""``streamrec bench catalog`` on the test broker with two trials: every trial hides an item that was in the
lists, watches batches go by and shows it again; the JSON's figures are those of its trials and its batches
are the worker's. Delays are printed, never asserted (they depend on the machine and its load)."""

from __future__ import annotations

import numpy as np

from streamrec.bench import catalog
from streamrec.stream.settings import Settings


def test_bench_catalog_figures_come_from_its_trials(kafka: Settings) -> None:
    result = catalog.run(kafka, trials=2, rate=200.0, users=100, items=300, hidden_s=1.0, min_hidden_batches=3)
    trials = result["trials"]
    assert len(trials) == 2 and result["catalog_items"] == 300
    for t in trials:
        assert t["presence_before"] > 0 and t["last_with_at_ms"] is not None   # it was in the lists
        assert t["batches_while_hidden"] >= 3 and t["came_back"]
        assert t["set_ms"] > 0 and t["return_batches"] >= 1
    delays = [t["delay_ms"] for t in trials]
    assert result["delay_ms"] == {"p50": round(float(np.median(delays)), 1), "max": round(max(delays), 1)}
    assert result["delay_batches"]["max"] == max(t["delay_batches"] for t in trials)
    assert result["target_met"] == all(t["delay_batches"] <= 1 for t in trials)
    assert result["came_back"] == 2
    assert result["median_batch_interval_ms"] > 0
    # one distinct emitted_at per batch: the subscriber saw as many batches as the worker processed
    assert result["batches_on_topic"] == result["worker_batches"] and result["worker_exit_code"] == 0
    print(f"\ndelay after the acknowledgement: {delays} ms, {[t['delay_batches'] for t in trials]} batches; "
          f"median batch interval {result['median_batch_interval_ms']} ms")
