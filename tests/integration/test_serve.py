"""``streamrec serve`` on a real broker: the read path (served, replaced, restored after a restart), event
ingest (bad events refused with 422 and nothing produced; good ones on the topic) and read-your-writes with a
real worker."""

from __future__ import annotations

import json
import math
import time

from streamrec.models.events import Event, EventType
from streamrec.stream.settings import Settings
from tests.integration.serving import call, produce_lists, rec_list, running, until
from tests.integration.workers import ThreadWorker, read_all

NOW = int(time.time() * 1000)


def test_lists_are_served_replaced_and_restored(settings: Settings) -> None:
    produce_lists(settings, [rec_list("alice", ["a1", "a2", "a3"], "e1", 10, NOW - 5000),
                             rec_list("bob", ["b1", "a2"], "e2", 11, NOW - 4000),
                             rec_list("carol", ["c1"], "e3", 12, NOW - 3000)])
    with running(settings) as (service, url):
        assert until(lambda: call(url + "/readyz")[0] == 200)
        status, body = call(url + "/v1/users/alice/recommendations?n=2")
        assert status == 200 and body["kind"] == "personal"
        assert [i["item_id"] for i in body["items"]] == ["a1", "a2"]
        assert body["items"][0]["source"] == "ann"
        assert body["lineage"]["trigger_event_id"] == "e1" and body["lineage"]["trigger_offset"] == 10
        assert body["lineage"]["model_version"] == "m1"

        # a newer list replaces the one served; a tombstone removes one; a list with a NaN score is skipped
        produce_lists(settings, [rec_list("alice", ["a9", "a8"], "e4", 20, NOW - 1000, model="m2"),
                                 ("carol", None),
                                 rec_list("bob", ["b7"], "e5", 21, NOW - 900, score=math.nan)])
        assert until(lambda: call(url + "/v1/users/alice/recommendations")[1]["lineage"]["trigger_event_id"]
                     == "e4")
        body = call(url + "/v1/users/alice/recommendations")[1]
        assert [i["item_id"] for i in body["items"]] == ["a9", "a8"] and body["lineage"]["model_version"] == "m2"
        assert until(lambda: call(url + "/v1/users/carol/recommendations")[1]["kind"] != "personal")
        assert until(lambda: service.follower.figures.skipped_lists == 1)
        assert call(url + "/v1/users/bob/recommendations")[1]["lineage"]["trigger_event_id"] == "e2"

        # an unknown user gets the trending list, marked as such: a2 was in two of the lists seen
        status, body = call(url + "/v1/users/nobody/recommendations?n=3")
        assert status == 200 and body["kind"] == "trending" and body["lineage"] is None
        assert body["items"][0]["item_id"] == "a2" and {i["source"] for i in body["items"]} == {"trending"}

        assert call(url + "/healthz")[0] == 200
        metrics = call(url + "/metrics")[1]
        assert "streamrec_serve_users 2.0" in metrics and "streamrec_serve_lists_skipped_total 1.0" in metrics
        assert 'streamrec_serve_requests_total{route="/v1/users/{user:path}/recommendations",status="200"}' \
            in metrics
        doc = call(url + "/openapi.json")[1]
        assert "/v1/users/{user}/recommendations" in doc["paths"] and "/v1/events" in doc["paths"]
        assert call(url + "/v1/users/" + "u" * 300 + "/recommendations")[0] == 422
        assert call(url + "/v1/users/alice/recommendations?n=0")[0] == 422

    # a restart restores the latest list of each user from the topic before it is ready
    with running(settings) as (service, url):
        assert until(lambda: call(url + "/readyz")[0] == 200)
        body = call(url + "/v1/users/alice/recommendations")[1]
        assert body["kind"] == "personal" and body["lineage"]["trigger_event_id"] == "e4"
        assert call(url + "/v1/users/carol/recommendations")[1]["kind"] == "trending"
        assert service.follower.restored == 2


def test_bad_events_get_422_and_nothing_is_produced(settings: Settings) -> None:
    good = {"event_id": "g1", "user_id": "u1", "item_id": "i1", "event_type": "CLICK", "timestamp": NOW}
    bad_bodies = {
        "not json": "{user_id: u1",
        "missing": json.dumps({"user_id": "u1", "event_type": "CLICK"}),
        "nan": '{"user_id": "u1", "item_id": "i1", "event_type": "RATING", "value": NaN}',
        "infinite": '{"user_id": "u1", "item_id": "i1", "event_type": "RATING", "value": 1e999}',
        "huge int": '{"user_id": "u1", "item_id": "i1", "event_type": "CLICK", "value": 1' + "0" * 400 + "}",
        "long id": json.dumps({**good, "user_id": "u" * (settings.max_id_bytes + 1)}),
        "type": json.dumps({**good, "event_type": "LIKE"}),
        "unknown field": json.dumps({**good, "usr": "x"}),
        "old": json.dumps({**good, "timestamp": 5}),
        "one bad in a batch": json.dumps([good, {**good, "event_id": "g2", "item_id": ""}]),
        "empty batch": "[]",
    }
    with running(settings) as (_service, url):
        for name, body in bad_bodies.items():
            status, answer = call(url + "/v1/events", body)
            assert status == 422, (name, status, answer)
            assert answer["errors"] and all(isinstance(e, str) for e in answer["errors"]), name
        assert "missing field item_id" in call(url + "/v1/events", bad_bodies["missing"])[1]["errors"][0]
        assert "not a finite number" in call(url + "/v1/events", bad_bodies["nan"])[1]["errors"][0]
        assert "over the limit" in call(url + "/v1/events", bad_bodies["long id"])[1]["errors"][0]
        assert "event 1: empty item" in call(url + "/v1/events", bad_bodies["one bad in a batch"])[1]["errors"][0]
        assert read_all(settings, settings.events_topic, "event", timeout_s=5) == []

        status, answer = call(url + "/v1/events", json.dumps([good, {**good, "event_id": "g2", "value": 2.5,
                                                                     "event_type": "purchase",
                                                                     "context": {"page": "home"}}]))
        assert status == 200 and answer["accepted"] == 2
        assert all(e["offset"] >= 0 for e in answer["events"])
        status, single = call(url + "/v1/events", json.dumps({"user_id": "u2", "item_id": "i2",
                                                              "event_type": "view"}))
        assert status == 200 and len(single["events"][0]["event_id"]) == 32   # a generated id
        landed = {Event.from_record(v).event_id: Event.from_record(v) for _, v in
                  read_all(settings, settings.events_topic, "event")}
        assert set(landed) == {"g1", "g2", single["events"][0]["event_id"]}
        assert landed["g2"] == Event("g2", "u1", "i1", EventType.PURCHASE, NOW, value=2.5, context={"page": "home"})
        keys = {r.key for r, _ in read_all(settings, settings.events_topic, None)}
        assert keys == {b"u1", b"u2"}
        # the service shows the posted events as the user's recent events
        recent = call(url + "/v1/users/u1/events")[1]["events"]
        assert [e["event_id"] for e in recent][:2] == ["g2", "g1"]


def test_read_your_writes_with_a_worker(settings: Settings) -> None:
    worker = ThreadWorker(settings, model_sync=False)
    try:
        worker.wait_ready()
        with running(settings) as (_service, url):
            assert until(lambda: call(url + "/readyz")[0] == 200)
            for k in range(3):
                status, answer = call(url + "/v1/events", json.dumps(
                    {"event_id": f"w{k}", "user_id": "dana", "item_id": f"i{k}", "event_type": "CLICK"}))
                assert status == 200
                status, body = call(url + f"/v1/users/dana/recommendations?after_event=w{k}&wait_ms=10000")
                assert status == 200 and body["after_event"]["arrived"] is True, body
                assert body["kind"] == "personal" and body["lineage"]["trigger_offset"] >= answer["events"][0]["offset"]
            stats = call(url + "/v1/stats")[1]
            assert stats["ingested"] == 3 and stats["users"] >= 1 and stats["latency_ms"]["n"] >= 1
            lag = until(lambda: call(url + "/v1/stats")[1]["lag"])     # the group's committed offsets
            assert lag and set(lag) <= {"0", "1", "2"} and all(v >= 0 for v in lag.values())
            # an event that never produces a list: the wait is bounded and says so
            status, body = call(url + "/v1/users/dana/recommendations?after_event=never&wait_ms=200")
            assert status == 200 and body["after_event"]["arrived"] is False and body["kind"] == "personal"
    finally:
        worker.stop()
