"""Every wait in the benchmarks is bounded and says why it stopped (streamrec/bench/common.py
``await_count``): a process that exited, a count that stopped moving, or the overall deadline."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest

from streamrec.bench.common import await_count
from streamrec.e2e import start_subscriber


class FakeProc:
    def __init__(self, returncode: int | None = None) -> None:
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


def test_returns_once_the_count_is_reached(tmp_path: Path) -> None:
    counts = itertools.count(0, 100)
    await_count("the loop", lambda: next(counts), 500, FakeProc(), 5, tmp_path / "log", every_s=0.001)
    assert next(counts) == 600       # it stopped asking at the first count that reached the target


def test_a_process_that_exited_fails_at_once_with_its_status_and_log(tmp_path: Path) -> None:
    log = tmp_path / "loop.log"
    log.write_text("starting\nRuntimeError: no partition of 'events' for 30 s\n")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"the loop exited with status 1 at 5 of 10 events; see .*loop\.log"
                                           r".*no partition of 'events'"):
        await_count("the loop", lambda: 5, 10, FakeProc(returncode=1), 600, log)
    assert time.monotonic() - started < 1.0


def test_a_final_count_written_on_the_way_out_still_counts(tmp_path: Path) -> None:
    counts = iter([5, 10])
    await_count("the loop", lambda: next(counts), 10, FakeProc(returncode=0), 600, tmp_path / "log")
    assert next(counts, None) is None   # the count after the exit was read (and reached the target)


def test_a_count_that_stops_moving_fails_after_the_stall_limit(tmp_path: Path) -> None:
    counts = itertools.chain([0, 3, 7], itertools.repeat(7))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"made no progress for 0.3 s at 7 of 10 events"):
        await_count("the loop", lambda: next(counts), 10, FakeProc(), 600, tmp_path / "log", stall_s=0.3,
                    every_s=0.01)
    assert 0.3 <= time.monotonic() - started < 5


def test_a_count_that_keeps_moving_too_slowly_fails_at_the_deadline(tmp_path: Path) -> None:
    counts = itertools.count()
    with pytest.raises(RuntimeError, match=r"did not finish in 0.2 s"):
        await_count("the loop", lambda: next(counts), 10**9, FakeProc(), 0.2, tmp_path / "log", every_s=0.01)


class FakeSubscriber:
    def __init__(self, reads: bool) -> None:
        self.ready, self.reads, self.stopped = threading.Event(), reads, False

    def start(self) -> None:
        if self.reads:
            self.ready.set()

    def is_alive(self) -> bool:
        return self.reads and not self.stopped

    def stop(self) -> None:
        self.stopped = True


def test_a_subscriber_that_never_reads_is_stopped_and_the_bench_fails() -> None:
    sub = FakeSubscriber(reads=False)
    with pytest.raises(RuntimeError, match="subscriber of the recommendations topic did not start in 0.1 s"):
        start_subscriber(sub, timeout_s=0.1)
    assert sub.stopped


def test_a_subscriber_that_reads_is_left_running() -> None:
    sub = FakeSubscriber(reads=True)
    start_subscriber(sub)
    assert not sub.stopped
