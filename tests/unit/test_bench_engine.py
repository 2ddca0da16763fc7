"""``streamrec bench engine`` (streamrec/bench/engine.py) on a small model: every stage measured, the engine's
split present, the profile listed when asked, bad sizes refused."""

from __future__ import annotations

import pytest

from streamrec.bench.engine import STAGES, run
from streamrec.models.errors import InputError
from streamrec.stream.settings import Settings


def test_a_small_run_reports_every_stage_and_the_profile() -> None:
    r = run(Settings(), events=3_000, items=500, dim=8, batch=500, warmup=1, profile=5)
    assert r["batches_measured"] == 5 and r["avg_lists_per_batch"] > 10
    assert set(r["stage_ms_per_batch"]) == set(STAGES) and all(v > 0 for v in r["stage_ms_per_batch"].values())
    assert {"apply", "ann", "score", "select", "stages"} <= set(r["engine_stage_ms_per_batch"])
    assert r["engine_stage_ms_per_batch"]["ann"] > 0 and r["events_per_s"] > 0
    assert len(r["profile_top"]) == 5 and all(p["own_s"] >= 0 for p in r["profile_top"])
    assert "ratio_to_ceiling" not in r                   # no broker, no yardstick


def test_nothing_to_measure_is_refused() -> None:
    with pytest.raises(InputError):
        run(Settings(), events=1_000, items=100, dim=4, batch=500, warmup=2)
    with pytest.raises(InputError):
        run(Settings(), events=0, items=100, dim=4)
