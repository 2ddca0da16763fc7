"""The streaming worker on a real broker: personalisation, lineage, dead letters, rebalancing."""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path

import fastavro

from streamrec.e2e import Subscriber
from streamrec.models.base.artifact import random_artifact
from streamrec.models.events import Event, EventType
from streamrec.producers.replay import replay
from streamrec.stream import clients
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from tests.integration.workers import T0, ThreadWorker, ev, latest_states, read_all, wait_until


def _lists_for(sub: Subscriber, user: str) -> list[dict]:  # type: ignore[type-arg]
    return [a.value for a in sub.snapshot() if a.user_id == user]


def test_clicks_of_one_cluster_dominate_the_next_list(settings: Settings, tmp_path: Path) -> None:
    random_artifact(tmp_path / "m", n_items=3000, dim=16, seed=1, clusters=10, version="m1")
    s = settings.replace(model_path=str(tmp_path / "m"))
    sub = Subscriber(s)
    sub.start()
    sub.ready.wait(10)
    w = ThreadWorker(s, model_sync=False)
    try:
        w.wait_ready()
        clicks = [ev(k, "alice", f"i{10 * k + 3}") for k in range(5)]  # items of cluster 3
        replay(clicks, s)
        assert sub.wait_for(lambda a: any(x.trigger_event_id == clicks[-1].event_id for x in a), 30)
        last = [v for v in _lists_for(sub, "alice") if v["trigger_event_id"] == clicks[-1].event_id][0]
        cluster = [int(i["item_id"][1:]) % 10 for i in last["items"]]
        assert len(last["items"]) == s.top_n
        # the default diversity rule caps one category at half the list: the clicked cluster fills that cap
        # and is the largest cluster in the list
        assert Counter(cluster).most_common(1)[0][0] == 3, cluster
        assert cluster.count(3) >= 0.5 * len(cluster), cluster
        # lineage: trigger, partition, offset, versions
        assert last["trigger_timestamp"] == clicks[-1].timestamp_ms
        assert last["model_version"] == "m1" and last["index_version"].startswith("m1")
        events = {r.value: r for r, _ in read_all(s, s.events_topic, None)}
        trigger_rec = [r for r in events.values() if r.offset == last["trigger_offset"]
                       and r.partition == last["trigger_partition"]][0]
        assert codec_for("event").decode(trigger_rec.value)["event_id"] == clicks[-1].event_id
        assert last["emitted_at"] >= trigger_rec.timestamp
        # a purchased item disappears from the next list
        bought = last["items"][0]["item_id"]
        purchase = Event("alice-buy", "alice", bought, EventType.PURCHASE, T0 + 10_000)
        replay([purchase], s)
        assert sub.wait_for(lambda a: any(x.trigger_event_id == "alice-buy" for x in a), 30)
        after = [v for v in _lists_for(sub, "alice") if v["trigger_event_id"] == "alice-buy"][0]
        assert bought not in {i["item_id"] for i in after["items"]}
    finally:
        w.stop()
        sub.stop()


def test_poison_messages_go_to_the_dead_letter_topic(settings: Settings) -> None:
    codec = codec_for("event")
    good = ev(1, "bob", "i1").to_record()
    encoded = codec.encode(good)
    absurd = codec.encode({**good, "event_id": "absurd", "timestamp": 5})
    empty_user = codec.encode({**good, "event_id": "nouser", "user_id": ""})
    partial_schema = fastavro.parse_schema({"type": "record", "name": "Event", "fields": [
        {"name": "event_id", "type": "string"}, {"name": "user_id", "type": "string"}]})
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, partial_schema, {"event_id": "partial", "user_id": "bob"})
    poison = {
        "missing_fields": encoded[:10] + buf.getvalue(),  # our fingerprint, required fields absent
        "bad_marker": random.Random(0).randbytes(40),
        "corrupt_record": encoded[:14],                       # truncated body
        "unknown_schema": encoded[:2] + b"\x01" * 8 + encoded[10:],
        "invalid_record": absurd,
    }
    prod = clients.producer(settings)
    for _name, data in poison.items():
        prod.send(settings.events_topic, key=b"bob", value=data)
    prod.send(settings.events_topic, key=b"bob", value=empty_user)
    prod.send(settings.events_topic, key=b"bob", value=b"{\"user_id\": \"bob\"}")  # JSON, not Avro
    prod.send(settings.events_topic, key=b"bob", value=encoded)
    prod.flush()
    prod.close()
    sub = Subscriber(settings, from_beginning=True)
    sub.start()
    w = ThreadWorker(settings, model_sync=False)
    try:
        assert sub.wait_for(lambda a: any(x.trigger_event_id == good["event_id"] for x in a), 30)
        assert wait_until(lambda: len(read_all(settings, settings.dlq_topic, None)) >= 7, 30)
    finally:
        w.stop()
        sub.stop()
    dead = read_all(settings, settings.dlq_topic, None)
    assert len(dead) == 7
    types = Counter(dict(r.headers)["error.type"].decode() for r, _ in dead)
    assert types == Counter({"bad_marker": 2, "corrupt_record": 2, "unknown_schema": 1, "invalid_record": 2})
    originals = {r.value for r, _ in dead}
    assert poison["corrupt_record"] in originals and absurd in originals
    for r, _ in dead:
        h = dict(r.headers)
        assert h["source.topic"].decode() == settings.events_topic
        assert int(h["source.offset"]) >= 0 and h["error.message"]


def test_workers_joining_and_leaving_lose_nothing(settings: Settings) -> None:
    s = settings.replace(events_partitions=6)
    from streamrec.stream.topics import ensure_topics, topic_specs
    s = s.replace(events_topic=s.events_topic + "-6", group=s.group + "-6")
    ensure_topics(s, topic_specs(s))
    users = [f"u{k}" for k in range(60)]
    rng = random.Random(3)
    events = [ev(k, rng.choice(users), f"i{rng.randrange(500)}") for k in range(3000)]
    sent = Counter(e.user_id for e in events)
    last_of = {e.user_id: e.event_id for e in events}
    sub = Subscriber(s)
    sub.start()
    sub.ready.wait(10)
    w1, w2 = ThreadWorker(s, model_sync=False), ThreadWorker(s, model_sync=False)
    w3 = None
    try:
        w1.wait_ready()
        w2.wait_ready()
        replay(events[:1000], s)
        assert wait_until(lambda: w1.worker.stats.events + w2.worker.stats.events >= 1000, 60)
        w3 = ThreadWorker(s, model_sync=False)
        w3.wait_ready()
        replay(events[1000:2000], s)
        assert wait_until(lambda: sum(w.worker.stats.events for w in (w1, w2, w3)) >= 2000, 60)
        w1.stop()
        replay(events[2000:], s)
        done = lambda arr: {a.trigger_event_id for a in arr} >= set(last_of.values())  # noqa: E731
        assert sub.wait_for(done, 90)
    finally:
        for w in (w2, w3):
            if w is not None:
                w.stop()
        sub.stop()
    states = latest_states(s)
    applied = {u: sum(st["counts"].values()) for u, st in states.items()}
    assert applied == dict(sent)  # every event applied exactly once to state that followed its partition
    assert w3 is not None and w3.worker.stats.events > 0
