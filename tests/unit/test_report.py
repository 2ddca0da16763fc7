"""``streamrec report`` rendering: README and headline from step results, failed steps shown, bad step names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamrec.evaluate import EvalOptions, evaluate
from streamrec.models.errors import InputError
from streamrec.producers.synthetic import generate, write_log
from streamrec.report import run_report
from streamrec.report_md import _worker, render, splice, table
from streamrec.stream.settings import Settings

MACHINE = {"cpus": 2, "cpu": "test cpu", "memory_gb": 4.0, "python": "3.11", "platform": "linux"}


def _run(workers: int, kill: bool) -> dict[str, Any]:
    return {"workers": workers, "startup_s": 3.0, "offered_phase_at_s": 3.0, "backlog_resumed_at_s": 20.0,
            "throughput": {"events_per_s": 9000.0}, "latency_ms": {"p50": 20.0, "p90": 30.0, "p99": 80.0},
            "lists": {"lost": 0, "duplicated": 0, "emitted": 10, "users": 5},
            "lag_over_time": [{"t": 4.0, "committed_lag": 12}, {"t": 21.0, "committed_lag": 5000}],
            "processes": [{"cpu_s": 2.5, "peak_rss_mb": 180.0}] * workers,
            "kill": {"recovery_s": 10.2} if kill else None}


def _e2e(counts: list[int], kill: bool = False) -> dict[str, Any]:
    return {"runs": [_run(n, kill) for n in counts], "rate": 1000.0, "seconds": 10.0, "guarantee": "exactly-once",
            "partitions": 6, "users": 5000, "items": 10000, "backlog_events": 50000, "machine": MACHINE}


def test_readme_and_headline_cover_every_step(tmp_path: Path) -> None:
    log = tmp_path / "shop.jsonl"
    write_log(generate(users=30, items=80, events=1500, seed=5), log)
    ev = evaluate(EvalOptions.parse(dataset="jsonl", path=str(log), epochs=1, dim=8, sync_every=500)).to_dict()
    ok = {
        "evaluate-movielens-100k": ev, "e2e": _e2e([1, 2, 3]), "e2e-kill": _e2e([2], kill=True),
        "worker-at-least-once": {"events_per_s": 19000.0, "offered_rate": 5000.0,
                                 "latency_ms": {"p50": 40.0, "p90": 90.0, "p99": 300.0}, "rss_mb": 350.0},
        "train": {"device": "cpu", "threads": 1, "interactions_per_s": 50000.0, "seconds": 14.0, "epochs": 9,
                  "holdout": {"hr@10": 0.15, "popularity_hr@10": 0.04}},
        "replay": {"events": 1000, "produce_events_per_s": 25000.0, "read_events_per_s": 55000.0,
                   "compression": "lz4", "partitions": 6},
        "sync": {"workers": 2, "items": 100000, "sync_s": 2.5, "max_batch_gap_ms": 40.0,
                 "swap_gap_ms_per_worker": [40.0, 31.0], "swap_gap_phase_per_worker": ["preparing", "after swap"],
                 "swap_gap_loop_cpu_ms_per_worker": [12.0, 3.0], "swap_gap_loop_runqueue_ms_per_worker": [20.0, 25.0],
                 "ratio": {"sync_to_yardstick": 1.9, "max_gap_to_median_interval": 2.35}},
    }
    steps = {name: {"ok": True, "result": res, "command": f"streamrec {name}", "title": name, "seconds": 1.0}
             for name, res in ok.items()}
    steps["worker-exactly-once"] = {"ok": False, "error": "RuntimeError: boom", "trace": "Traceback ...",
                                    "command": "streamrec bench worker", "title": "eos", "seconds": 1.0}
    summary = {"date": "2026-01-01 00:00 UTC", "quick": False, "seconds": 600.0, "machine": MACHINE,
               "steps": steps, "command": "streamrec report --out reports"}
    readme, headline = render(summary, tmp_path)
    assert headline in readme
    assert "9,000 / 9,000 / 9,000" in headline          # e2e throughput per worker count
    assert "10.2 s, 0 lost, 0 duplicated" in headline
    assert "**Failed:** RuntimeError: boom" in readme
    for name in ok:
        assert f"streamrec {name}" in readme, name
    assert "| full |" in readme and "test cpu" in readme
    assert "| 12 |" in readme                            # lag at the offered rate, not the backlog spike
    assert "| 40 / 31 | preparing / after swap | 12 / 20; 3 / 25 | 2.35 |" in readme   # gaps, phase, split, ratio


def test_table_formats_numbers() -> None:
    assert table(["a", "b"], [[0.1234, 12345.6], [None, 0.0]]).splitlines()[2:] == [
        "| 0.123 | 12,346 |", "| n/a | 0 |"]


def test_unknown_step_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown report step"):
        run_report(Settings(), tmp_path, quick=True, only=["nope"])


def test_ecommerce_section_ratio_table_and_kept_benchmarks(tmp_path: Path) -> None:
    """``--only`` an evaluation step: no broker, the OTTO section with the ratio table, other figures kept."""
    import json

    train = {"device": "cpu", "threads": 1, "interactions_per_s": 50000.0, "seconds": 14.0, "epochs": 9,
             "holdout": {"hr@10": 0.15, "popularity_hr@10": 0.04}}
    (tmp_path / "train.json").write_text(json.dumps(train))
    summary = run_report(Settings(), tmp_path, quick=True, only=["evaluate-otto-sample"])
    assert list(summary["steps"]) == ["evaluate-otto-sample", "train"]   # report order, train kept
    st = summary["steps"]["evaluate-otto-sample"]
    assert st["ok"], st.get("trace")
    res = st["result"]
    assert {"popularity", "recent", "sknn", "river_mf", "full"} <= set(res["configs"])
    ratio = res["full_vs_best_baseline"]["hr@10"]
    best = max(("popularity", "recent", "sknn", "river_mf"), key=lambda c: res["configs"][c]["hr@10"])
    assert ratio["best"] == best and ratio["value"] == res["configs"]["full"]["hr@10"]
    readme = (tmp_path / "README.md").read_text()
    assert "## Evaluation: OTTO sample" in readme and "| metric | full | best baseline |" in readme
    assert "Targets by kind: " in readme and "| configuration | repeat | known | new | hr@10 overall |" in readme
    assert "(kept from the previous report)" in readme and "50,000" in readme
    assert "![HR@10 per window](evaluate-otto-sample.png)" in readme
    assert (tmp_path / "evaluate-otto-sample.png").read_bytes()[:4] == b"\x89PNG"
    assert "--only evaluate-otto-sample" in readme
    assert "OTTO sample: full's HR@10 / NDCG@10 over the best baseline" in summary["headline"]


def test_only_rewrites_the_named_sections_and_keeps_the_others_with_their_notes() -> None:
    previous = ("# streamrec: benchmarks and evaluation\n\nGenerated then by `streamrec report`.\n\n"
                "## Headline\n\n| old headline |\n\n## Model sync\n\nold sync table\n\nA note written by hand.\n\n"
                "## Replay into Kafka\n\nold replay table\n")
    fresh = ("# streamrec: benchmarks and evaluation\n\nGenerated now.\n\n## Headline\n\n| new headline |\n\n"
             "## Model sync\n\nregenerated sync, without the note\n\n## Replay into Kafka\n\nnew replay table\n\n"
             "## Catalog\n\nnew catalog\n")
    out = splice(previous, fresh, ["Replay into Kafka", "Catalog"], "Re-run now: replay, catalog.")
    assert out.splitlines()[2] == "Generated then by `streamrec report`. Re-run now: replay, catalog."
    assert "| new headline |" in out and "| old headline |" not in out
    assert "old sync table\n\nA note written by hand." in out and "regenerated sync" not in out
    assert "new replay table" in out and "old replay table" not in out
    assert out.index("## Model sync") < out.index("## Replay into Kafka") < out.index("## Catalog")   # new at end
    assert out.endswith("new catalog\n")


def test_worker_section_shows_the_yardstick_and_the_ratios() -> None:
    res = {"events_per_s": 4000.0, "latency_ms": {"p50": 100.0, "p90": 200.0, "p99": 300.0}, "offered_rate": 5000,
           "achieved_offered_rate": 4990.0, "rss_mb": 320.0, "users_in_state": 7000, "ratio_to_ceiling": 0.2,
           "p99_ratio_to_reference": 3.0, "reference": {"events_per_s": 20000.0, "achieved_offered_rate": 4995.0,
                                                        "latency_ms": {"p50": 20.0, "p90": 50.0, "p99": 100.0}},
           "stage_ms_per_batch": {"recommend": 50.0, "decode": 10.0}, "avg_batch": 900.0, "batches": 10,
           "bytes_per_event": {"recommendations": 30.0}, "payload_bytes_per_event": {"recommendations": 70.0}}
    text = "\n".join(_worker(res))
    assert "| bare kafka-python passthrough (yardstick) | 20,000 |" in text
    assert "0.200x (target 0.5x)" in text and "3x (target 2x)" in text
    assert "decode 10, recommend 50" in text and "recommendations 30 / 70" in text


def test_sessions_step_with_every_event_a_target(tmp_path: Path) -> None:
    from streamrec.report import Sizes, steps
    from streamrec.report_md import ECOMMERCE

    step = {s.name: s for s in steps(tmp_path, Sizes())}["evaluate-sessions-all"]
    assert " --targets all " in step.command and step.command.startswith("streamrec generate ")
    assert "evaluate-sessions-all" in dict(ECOMMERCE)
