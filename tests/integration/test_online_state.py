"""Online learning on a real broker: a drift makes exactly one retrain request on the model topic, and the
reranker survives a restart through the ``<group>.online`` checkpoint topic."""

from __future__ import annotations

import json

import numpy as np
import river

from streamrec.consumers.online import decode_checkpoint, online_topic, read_latest
from streamrec.consumers.worker import Worker
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.online.features import FEATURES
from streamrec.models.online.layer import OnlineConfig
from streamrec.producers.replay import replay
from streamrec.stream.settings import Settings
from tests.integration.workers import ThreadWorker, read_all, wait_until
from tests.unit.test_drift import taste_shift
from tests.unit.test_reranker import planted_stream


def _retrain_requests(s: Settings) -> list[dict]:  # type: ignore[type-arg]
    return [v for _, v in read_all(s, s.model_topic, "model_chunk") if v and v["kind"] == "RETRAIN_REQUEST"]


def test_a_taste_shift_publishes_exactly_one_retrain_request(settings: Settings) -> None:
    s = settings.replace(max_batch=200, online_checkpoint_s=0.0)
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
        assert set(killed.online.restore(parts, meta["river_version"]).values()) == {"restored"}
        layer = first.worker.engine.online
        assert layer is not None and layer.reranker is not None and layer.reranker.pairs > 100
        expected = layer.reranker.score(probe)
        np.testing.assert_array_equal(killed.online.reranker.score(probe), expected)
    finally:
        first.stop()                                                  # SIGTERM path: a last checkpoint
    second = Worker(s, engine=Recommender(config), model_sync=False)  # restores when it starts
    try:
        assert second.online is not None and second.online.restored == {
            "items": "restored", "reranker": "restored", "river": "restored"}
        restored = second.engine.online
        assert restored is not None and restored.reranker is not None
        np.testing.assert_array_equal(restored.reranker.score(probe), expected)
        assert restored.reranker.pairs == layer.reranker.pairs and restored.stats()["reranker_active"]
    finally:
        second.close()
    records = read_all(s, online_topic(s), None)
    assert {r.key for r, _ in records} == {s.group.encode()}           # one key per group
