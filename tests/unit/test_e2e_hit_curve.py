"""The end-to-end benchmark's online hit rate, computed from outside: an event is scored against the newest
list its user had received when it was sent, grouped by the killed worker's users and the others."""

from __future__ import annotations

from streamrec.bench.e2e import hit_curve
from streamrec.e2e import Arrival
from streamrec.models.events import Event, EventType

KILL = 100_000.0


def lst(user: str, at: float, items: list[str], partition: int, trigger: str = "t") -> Arrival:
    return Arrival(user, trigger, at, int(at), {"items": [{"item_id": i} for i in items],
                                                "trigger_partition": partition})


def ev(eid: str, user: str, item: str) -> Event:
    return Event(eid, user, item, EventType.CLICK, 1_700_000_000_000)


def test_hits_are_scored_against_the_list_held_when_the_event_was_sent() -> None:
    arrivals = [lst("a", KILL - 4_000, ["x", "y"], 0), lst("b", KILL - 4_000, ["p"], 1),
                lst("a", KILL + 3_000, ["z"], 0, trigger="after")]   # a's first list after the kill
    sent = {"e1": KILL - 3_000, "e2": KILL - 2_000, "e3": KILL - 1_000, "e4": KILL + 1_000, "e5": KILL + 3_500,
            "e6": KILL + 4_000, "e0": KILL - 9_000, "after": KILL + 2_000}
    paced = [ev("e0", "a", "x"),                    # before a's first list: not scored
             ev("e1", "a", "x"), ev("e2", "a", "q"),  # a (killed worker's partition 0): 1 of 2 before the kill
             ev("e3", "b", "p"),                      # b (another worker): a hit
             ev("e4", "a", "y"),                      # during the outage, against a's old list: a hit
             ev("e5", "a", "z"), ev("e6", "a", "x")]  # after a's new list arrived: 1 of 2
    out = hit_curve(paced, sent, arrivals, partitions=[0], killed_ms=KILL, window_s=1.0, k=10, settle_s=0.75)
    assert out["before"] == {"restarted": 0.5, "others": 1.0, "restarted_events": 2, "others_events": 1}
    # recovered at the first list for an event sent after the kill ("after", sent at +2 s, arrived at +3 s)
    assert out["recovered_after_s"] == 3.0
    assert out["first_5s"]["restarted"] == 0.5 and out["first_5s"]["restarted_events"] == 2
    assert out["settled"]["restarted"] == 0.0 and out["settled"]["restarted_events"] == 1   # e6, 1 s after
    assert out["settled_over_before"] == 0.0 and out["settled_vs_control"] is None       # no control after
    by_t = {p["t"]: p for p in out["curve"]}
    assert by_t[-1.0]["others"] == 1.0 and by_t[-1.0]["restarted_events"] == 0
    assert by_t[1.0]["restarted"] == 1.0 and by_t[3.0]["restarted"] == 1.0 and by_t[4.0]["restarted"] == 0.0
