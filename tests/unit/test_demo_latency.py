"""The demo's latency lines: every list of the replay, then those triggered after the warm-up, hand-computed."""

from __future__ import annotations

from streamrec.demo import latency_lines
from streamrec.e2e import Arrival


def test_both_lines_and_the_warmup_cut_are_hand_computed() -> None:
    sent = {"e0": 1_000.0, "e1": 1_500.0, "e2": 3_000.0, "e3": 3_500.0, "e4": 4_000.0}
    late = {"e0": 300.0, "e1": 200.0, "e2": 40.0, "e3": 60.0, "e4": 50.0}      # ms from send to arrival
    arrivals = [Arrival("u", e, sent[e] + late[e], 0, {}) for e in sent]
    arrivals.append(Arrival("u", "not-from-the-replay", 9_999.0, 0, {}))        # no send time: not counted
    every, steady = latency_lines(arrivals, sent, 3000.0, warmup_s=2.0)
    assert every.startswith("event -> recommendation latency over 5 lists: p50 60.0 ms")
    # sent 2 s or more after the first send (1,000 ms): e2, e3, e4 -> median 50
    assert steady.startswith("event -> recommendation latency over 3 lists after the first 2 s: p50 50.0 ms")
    assert steady.endswith("(offered 3,000 events/s)")


def test_no_list_is_one_clear_line() -> None:
    assert latency_lines([], {"e0": 1.0}, 3000.0) == [
        "no list arrived for an event of the replay: see the worker's log"]
