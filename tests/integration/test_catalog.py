"""The catalog on the real broker: load / set / show / remove through the CLI and its functions, a running
worker that drops a hidden item from every list emitted after the batch in which it read the change (the delay
from ``catalog set`` is measured and printed), the item's return once it is visible again, dead letters for
bad catalog records, and a full read before serving."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from typer.testing import CliRunner

from streamrec import cli
from streamrec.cmd_catalog import current_item, set_item
from streamrec.consumers.catalog import CatalogFollower
from streamrec.models.catalog.item import Item
from streamrec.models.engine.recommender import Recommender
from streamrec.models.errors import InputError
from streamrec.models.events import Event, EventType
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError
from streamrec.stream.items import encode_item, item_to_record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from streamrec.stream.topics import ensure_topics, topic_specs
from tests.integration.workers import ThreadWorker, read_all, wait_until


def _own_items_topic(settings: Settings) -> Settings:
    s = settings.replace(items_topic=f"items-{uuid.uuid4().hex[:8]}")
    ensure_topics(s, topic_specs(s))
    return s


def _env(s: Settings) -> dict[str, str]:
    return {"STREAMREC_BOOTSTRAP_SERVERS": s.bootstrap, "STREAMREC_ITEMS_TOPIC": s.items_topic,
            "STREAMREC_LOG_LEVEL": "warning"}


def test_load_set_show_remove(settings: Settings, tmp_path: Path) -> None:
    s = _own_items_topic(settings)
    path = tmp_path / "shop.csv"
    path.write_text("sku,name,cat,price\ns1,Blue shoe,shoes>running,59.5\ns2,Red shoe,shoes,x\ns3,Hat,hats,10\n")
    result = CliRunner().invoke(cli.app, ["catalog", "load", str(path), "--format", "csv",
                                          "--map", "item=sku,title=name,category=cat"], env=_env(s))
    assert result.exit_code == 0, result.output
    assert "loaded 2 items" in result.output and "bad rows: 1" in result.output and "line 3" in result.output
    s1 = current_item(s, "s1")
    assert s1 is not None and s1.category == ("shoes", "running") and s1.price == 59.5
    assert s1.updated_at_ms is not None                                  # stamped by the load
    # a single change: the whole record, changed, with a later updated_at
    written, existed = set_item(s, "s1", hidden=True, now_ms=s1.updated_at_ms - 5_000)  # a clock behind
    assert existed and written.hidden and written.title == "Blue shoe" and written.price == 59.5
    assert written.updated_at_ms == s1.updated_at_ms + 1                 # still after the record it replaces
    result = CliRunner().invoke(cli.app, ["catalog", "set", "s1", "--no-hidden", "--unavailable"], env=_env(s))
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli.app, ["catalog", "show", "s1", "--format", "json"], env=_env(s))
    shown = json.loads(result.stdout)
    assert (shown["hidden"], shown["available"], shown["title"]) == (False, False, "Blue shoe")
    result = CliRunner().invoke(cli.app, ["catalog", "set", "new-item", "--hidden"], env=_env(s))
    assert result.exit_code == 0 and "new record" in result.output
    assert CliRunner().invoke(cli.app, ["catalog", "remove", "s3"], env=_env(s)).exit_code == 0
    assert CliRunner().invoke(cli.app, ["catalog", "show", "s3"], env=_env(s)).exit_code == 1
    result = CliRunner().invoke(cli.app, ["catalog", "set", "s1"], env=_env(s))
    assert isinstance(result.exception, InputError) and "changes nothing" in str(result.exception)
    result = CliRunner().invoke(cli.app, ["catalog", "set", "s1", "--price", "-3"], env=_env(s))
    assert isinstance(result.exception, InputError) and "negative" in str(result.exception)
    missing = _env(s) | {"STREAMREC_ITEMS_TOPIC": "no-such-items"}
    result = CliRunner().invoke(cli.app, ["catalog", "load", str(path), "--format", "csv"], env=missing)
    assert isinstance(result.exception, BrokerError) and "topics create" in str(result.exception)
    # a worker starting now reads all of it first: s1 unavailable and new-item hidden are blocked, s3 forgotten
    engine = Recommender()
    follower = CatalogFollower(s, engine, structlog.get_logger("test"))
    try:
        assert follower.load() >= 6
    finally:
        follower.close()
    assert engine.catalog.blocked == {"s1", "new-item"} and engine.catalog.get("s3") is None


class Clicks:
    """Clicks from 40 users at about 300 events/s, half of them on the hot item, on a thread."""

    def __init__(self, s: Settings, hot: str) -> None:
        self.s, self.hot, self.stop = s, hot, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        codec, rng = codec_for("event"), np.random.default_rng(0)
        prod = clients.producer(self.s)
        k = 0
        try:
            while not self.stop.is_set():
                for _ in range(30):
                    user = f"u{rng.integers(40)}"
                    item = self.hot if rng.random() < 0.5 else f"p{rng.integers(1, 30)}"
                    e = Event(f"c{k}", user, item, EventType.CLICK, int(time.time() * 1000))
                    prod.send(self.s.events_topic, key=user.encode(), value=codec.encode(e.to_record()))
                    k += 1
                prod.flush()
                time.sleep(0.1)
        finally:
            prod.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def _lists(s: Settings) -> list[dict[str, Any]]:
    return [v for _, v in read_all(s, s.recommendations_topic, "recommendation")]


def test_a_hidden_item_leaves_every_list_after_the_next_batch(settings: Settings) -> None:
    s = _own_items_topic(settings).replace(poll_ms=10, max_batch=200)
    hot = "p0"
    load = [Item(f"p{k}", f"Product {k}", category=("c",)) for k in range(30)]
    ensure = clients.producer(s)
    for it in load:
        ensure.send(s.items_topic, key=it.item_id.encode(), value=encode_item(it))
    # bad catalog records: not Avro, a negative price, a key that is not the item id; a worker must skip them
    ensure.send(s.items_topic, key=b"junk", value=b"not avro at all")
    ensure.send(s.items_topic, key=b"neg", value=codec_for("item").encode({**item_to_record(Item("neg")),
                                                                           "price": -1.0}))
    ensure.send(s.items_topic, key=b"other", value=encode_item(Item("p5")))
    ensure.flush()
    ensure.close()
    w = ThreadWorker(s, model_sync=False)
    clicks = Clicks(s, hot)
    try:
        w.wait_ready()
        follower = w.worker.parts.catalog
        assert follower is not None and follower.loaded and len(w.worker.engine.catalog) == 30
        assert wait_until(lambda: any(hot in {i["item_id"] for i in v["items"]} for v in _lists(s)), 30)
        set_item(s, hot, hidden=True)
        set_at = time.time() * 1000                               # the record is on the topic (acknowledged)
        batches_at_set = w.worker.loop.stats.batches
        assert wait_until(lambda: hot in w.worker.engine.catalog.blocked, 10)
        applied_at = follower.last_update_at * 1000               # type: ignore[operator]
        batches_at_apply = w.worker.loop.stats.batches
        time.sleep(2.0)                                           # lists keep coming without it
        set_item(s, hot, hidden=False)
        visible_at = time.time() * 1000
        assert wait_until(lambda: any(hot in {i["item_id"] for i in v["items"]} and v["emitted_at"] > visible_at
                                      for v in _lists(s)), 30), "the item did not come back"
    finally:
        clicks.close()
        w.stop()
    lists = _lists(s)
    with_hot = [v["emitted_at"] for v in lists if hot in {i["item_id"] for i in v["items"]}
                and v["emitted_at"] < visible_at]
    after_apply = [v for v in lists if applied_at < v["emitted_at"] < visible_at]
    assert after_apply, "no list was emitted while the item was hidden"
    assert all(v["emitted_at"] <= applied_at for v in lists if v["emitted_at"] < visible_at
               and hot in {i["item_id"] for i in v["items"]}), "a list emitted after the update holds the item"
    last_with = max(with_hot)
    print(f"\ncatalog set -> applied by the worker: {applied_at - set_at:+.0f} ms "
          f"({batches_at_apply - batches_at_set} batches after the set); "
          f"set -> last list holding the item: {last_with - set_at:+.0f} ms; "
          f"{len(after_apply)} lists emitted without it while hidden")
    dead = read_all(s, s.dlq_topic, None)
    assert {dict(r.headers)["source.topic"].decode() for r, _ in dead} == {s.items_topic}
    assert sorted(dict(r.headers)["error.type"].decode() for r, _ in dead) == \
        ["bad_marker", "invalid_record", "invalid_record"]
