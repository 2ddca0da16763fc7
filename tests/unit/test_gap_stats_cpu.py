"""``model swap gaps`` says how much of the longest gap the loop thread spent on the CPU itself
(``max_gap_loop_cpu_ms``): a loop that waited (for the interpreter lock or a core) shows little, a loop
that was busy shows about the whole gap."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streamrec.consumers.modelsync import GapStats


class Log:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def info(self, event: str, **kw: Any) -> None:
        if event == "model swap gaps":
            self.records.append(kw)


def _gap(busy: bool) -> dict[str, Any]:
    log = Log()
    gaps = GapStats(log, after_swap_s=0.0)
    for _ in range(10):
        gaps.tick()
    gaps.open("v2")
    gaps.phase("preparing")
    gaps.tick()
    if busy:   # 150 ms of this thread's own CPU time, however loaded the machine is
        until = time.thread_time() + 0.15
        while time.thread_time() < until:
            sum(range(1000))
    else:
        time.sleep(0.15)
    gaps.tick()
    gaps.tick(swapped="v2")
    assert len(log.records) == 1
    return log.records[0]


def test_a_gap_the_loop_spent_waiting_shows_little_loop_cpu() -> None:
    rec = _gap(busy=False)
    assert rec["max_gap_ms"] >= 150 and rec["max_gap_loop_cpu_ms"] < 50, rec


def test_a_gap_the_loop_spent_working_shows_about_the_whole_gap_as_loop_cpu() -> None:
    rec = _gap(busy=True)
    assert rec["max_gap_ms"] >= 150 and rec["max_gap_loop_cpu_ms"] >= 145, rec


def test_the_gap_says_how_long_the_loop_waited_for_a_core() -> None:
    rec = _gap(busy=False)
    rq = rec["max_gap_loop_runqueue_ms"]
    if not Path("/proc/thread-self/schedstat").exists():
        assert rq is None
        return
    assert rq is not None and 0 <= rq <= rec["max_gap_ms"], rec
