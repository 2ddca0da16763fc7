"""Bad values on the events topic, on a real broker: a NaN or infinite value, a 10 KB user id, a long item id
and a huge context each go to the dead-letter topic with the reason; no list carries a non-finite score."""

from __future__ import annotations

import math

from streamrec.e2e import Subscriber
from streamrec.models.events import Event, EventType
from streamrec.stream import clients
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from tests.integration.workers import T0, ThreadWorker, ev, read_all, wait_until


def test_bad_values_go_to_the_dead_letter_topic_with_the_reason(settings: Settings) -> None:
    codec = codec_for("event")
    long_user = "u" * 10_240
    poison = {
        "nan-rating": Event("nan-rating", "alice", "i7", EventType.RATING, T0 + 50_000, value=math.nan),
        "inf-value": Event("inf-value", "alice", "i7", EventType.PURCHASE, T0 + 51_000, value=math.inf),
        "long-user": Event("long-user", long_user, "i7", EventType.CLICK, T0 + 52_000),
        "long-item": Event("long-item", "alice", "i" * 300, EventType.CLICK, T0 + 53_000),
        "huge-context": Event("huge-context", "alice", "i7", EventType.CLICK, T0 + 54_000,
                              context={f"k{i}": "x" * 500 for i in range(40)}),
    }
    reasons = {"nan-rating": "value nan is not a finite number", "inf-value": "value inf is not a finite number",
               "long-user": "user_id is 10240 bytes, over the limit of 256",
               "long-item": "item_id is 300 bytes, over the limit of 256",
               "huge-context": "context has 40 entries, over the limit of 32"}
    # other users share item i7 with alice: before the fix the NaN rating reached their lists
    background = [ev(k, f"bg{k % 20}", f"i{k % 9}") for k in range(60)] + \
                 [ev(100 + k, f"bg{k}", "i7") for k in range(20)]
    prod = clients.producer(settings)
    for e in background:
        prod.send(settings.events_topic, key=e.user_id.encode(), value=codec.encode(e.to_record()))
    prod.send(settings.events_topic, key=b"alice", value=codec.encode(ev(1, "alice", "i3").to_record()))
    for e in poison.values():
        prod.send(settings.events_topic, key=e.user_id.encode(), value=codec.encode(e.to_record()))
    last = ev(999, "bg0", "i7", ts=T0 + 60_000)
    prod.send(settings.events_topic, key=b"bg0", value=codec.encode(last.to_record()))
    prod.flush()
    prod.close()
    sub = Subscriber(settings, from_beginning=True)
    sub.start()
    w = ThreadWorker(settings, model_sync=False)
    try:
        assert sub.wait_for(lambda a: any(x.trigger_event_id == last.event_id for x in a), 60)
        assert wait_until(lambda: len(read_all(settings, settings.dlq_topic, None)) >= len(poison), 30)
    finally:
        w.stop()
        sub.stop()
    dead = read_all(settings, settings.dlq_topic, None)
    by_id = {}
    for r, _ in dead:
        h = dict(r.headers)
        assert h["error.type"] == b"invalid_record"
        assert h["source.topic"].decode() == settings.events_topic and int(h["source.offset"]) >= 0
        by_id[codec.decode(r.value)["event_id"]] = h["error.message"].decode()
    assert set(by_id) == set(poison), by_id
    for eid, reason in reasons.items():
        assert reason in by_id[eid], (eid, by_id[eid])
    lists = sub.snapshot()
    assert lists, "no lists at all"
    assert not [a for a in lists if a.user_id == long_user], "a list was emitted for the 10 KB user id"
    non_finite = [(a.user_id, i["item_id"], i["score"]) for a in lists for i in a.value["items"]
                  if not math.isfinite(i["score"])]
    assert not non_finite, f"non-finite scores emitted: {non_finite[:5]}"
    assert all(len(i["item_id"]) <= 256 for a in lists for i in a.value["items"])
