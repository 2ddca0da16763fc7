"""Online learning on a real broker: a drift makes exactly one retrain request on the model topic, the
reranker survives a restart through the ``<group>.online`` checkpoint topic, and a crafted pickle on that
topic is refused, never run."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import river

from streamrec.consumers.online import (
    decode_checkpoint,
    encode_checkpoint,
    ensure_online_topic,
    online_topic,
    read_latest,
)
from streamrec.consumers.worker import Worker
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.online.features import FEATURES
from streamrec.models.online.layer import OnlineConfig
from streamrec.producers.replay import replay
from streamrec.stream import clients
from streamrec.stream.settings import Settings
from tests.integration.workers import ThreadWorker, read_all, wait_until
from tests.unit.test_drift import taste_shift
from tests.unit.test_reranker import planted_stream


def _retrain_requests(s: Settings) -> list[dict]:  # type: ignore[type-arg]
    return [v for _, v in read_all(s, s.model_topic, "model_chunk") if v and v["kind"] == "RETRAIN_REQUEST"]


def test_a_taste_shift_publishes_exactly_one_retrain_request(settings: Settings) -> None:
    # small batches bounded by count only: the online hit rate depends on how many of a user's events share a
    # batch (those after the first are scored against a list the batch has not refreshed yet); with batches of
    # 200, a few 500-event windows of the stable phase dipped from 0.84 to 0.74 and ADWIN rightly read a drop
    s = settings.replace(max_batch=50, online_checkpoint_s=0.0, batch_target_ms=0)
    engine = Recommender(EngineConfig(drift_detector="adwin", online=OnlineConfig(drift_window=500)))
    events = taste_shift(6_000, 4_000)
    w = ThreadWorker(s, engine=engine, model_sync=False)
    try:
        w.wait_ready()
        replay(events[:6_000], s)
        assert wait_until(lambda: w.worker.stats.events >= 6_000, 120), w.worker.report()
        assert engine.stats()["hit_rate_at_10"] > 0.2 and not _retrain_requests(s)
        replay(events[6_000:], s)
        assert wait_until(lambda: w.worker.stats.events >= 10_000, 120), w.worker.report()
        assert wait_until(lambda: len(_retrain_requests(s)) >= 1, 30)
    finally:
        w.stop()
    requests = _retrain_requests(s)
    assert len(requests) == 1, requests
    reason = json.loads(requests[0]["data"])
    assert reason["reason"] == "online hit rate dropped" and reason["group"] == s.group
    assert reason["mean_after"] < reason["mean_before"]
    assert engine.stats()["drift_signals"] == 1 and w.worker.online is not None
    assert w.worker.online.requests_sent == 1


def test_a_new_worker_restores_the_reranker_from_kafka(settings: Settings) -> None:
    s = settings.replace(max_batch=200, online_checkpoint_s=0.3)
    config = EngineConfig(reranker=True, online=OnlineConfig(warmup_pairs=100))
    probe = np.random.default_rng(5).normal(size=(32, len(FEATURES))).astype(np.float32)
    first = ThreadWorker(s, engine=Recommender(config), model_sync=False)
    try:
        first.wait_ready()
        replay(planted_stream(3_000), s)
        assert wait_until(lambda: first.worker.stats.events >= 3_000, 120), first.worker.report()
        online = first.worker.online
        assert online is not None
        seen = online.checkpoints
        assert wait_until(lambda: online.checkpoints >= seen + 1, 30)   # a periodic checkpoint after the last batch
        # as if killed now: what a restarted worker would read is the periodic checkpoint
        meta, parts = decode_checkpoint(read_latest(s) or b"")
        assert meta["group"] == s.group and meta["river_version"] == river.__version__
        assert meta["worker_id"] == first.worker.worker_id and meta["events_applied"] == 3_000
        killed = Recommender(config)
        assert killed.online is not None and killed.online.reranker is not None
        assert set(killed.online.restore(parts).values()) == {"restored"}
        layer = first.worker.engine.online
        assert layer is not None and layer.reranker is not None and layer.reranker.pairs > 100
        expected = layer.reranker.score(probe)
        np.testing.assert_array_equal(killed.online.reranker.score(probe), expected)
    finally:
        first.stop()                                                  # SIGTERM path: a last checkpoint
    second = Worker(s, engine=Recommender(config), model_sync=False)  # restores when it starts
    try:
        assert second.online is not None and second.online.restored == {
            "items": "restored", "reranker": "restored"}
        restored = second.engine.online
        assert restored is not None and restored.reranker is not None
        np.testing.assert_array_equal(restored.reranker.score(probe), expected)
        assert restored.reranker.pairs == layer.reranker.pairs
        # the gate (reranker or blend) is re-decided from the restored window of labelled pairs, exactly as the
        # first worker would decide it now (which of the two wins on this stream depends on how it was batched)
        assert restored.stats()["reranker_active"] == layer._reranker_wins()
    finally:
        second.close()
    records = read_all(s, online_topic(s), None)
    assert {r.key for r, _ in records} == {s.group.encode()}           # one key per group


class _Plant:
    """A pickle that creates the file ``path`` when it is loaded: what a crafted checkpoint would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.path,))


def test_a_pickled_checkpoint_on_the_topic_is_never_executed(settings: Settings, tmp_path: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    """A record on ``<group>.online`` whose parts are a crafted pickle (labelled pickle, json and npz, and
    written with this process's river version, which earlier versions trusted) is refused at worker start
    and on a second restore (as on assignment) without running it; the log says refused."""
    s = settings.replace(online_checkpoint_s=0.0)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Plant(probe)))  # noqa: S301 - proves the payload runs when unpickled
    assert probe.exists()
    marker = tmp_path / "executed"
    payload = pickle.dumps(_Plant(marker))
    ensure_online_topic(s)
    record = encode_checkpoint(s, "intruder", [("river", "pickle", payload), ("reranker", "json", payload),
                                                ("items", "npz", payload), ("drift", "pickle", payload)])
    producer = clients.producer(s)
    try:
        producer.send(online_topic(s), key=s.group.encode(), value=record, partition=0).get(timeout=30)
    finally:
        producer.close()
    worker = Worker(s, engine=Recommender(EngineConfig(reranker=True, drift_detector="adwin")), model_sync=False)
    try:
        assert worker.online is not None
        restored = dict(worker.online.restored)
        assert worker.online.restore()                                 # again, as when partitions are taken over
    finally:
        worker.close()
    assert not marker.exists(), "a pickle read from the online topic was executed"
    assert restored["river"].startswith("refused: encoding 'pickle'"), restored
    assert restored["drift"].startswith("refused: encoding 'pickle'"), restored
    assert restored["reranker"].startswith("refused: not plain JSON"), restored
    assert restored["items"].startswith("refused: items is not an .npz archive"), restored
    logged = capfd.readouterr()
    text = logged.out + logged.err
    assert "online checkpoint parts refused" in text and "never decoded" in text
