"""Base-model sync through Kafka: hot swap while events flow, refusal of corrupt artifacts, rollback."""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path

from streamrec.e2e import Subscriber
from streamrec.models.base.artifact import random_artifact, read_files
from streamrec.producers.replay import Pacing, replay
from streamrec.stream import clients
from streamrec.stream.modelbus import chunk_records, publish, send_control
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from tests.integration.workers import ThreadWorker, ev, latest_states, wait_until


def _publish_dir(s: Settings, path: Path) -> str:
    manifest, files = read_files(path)
    publish(s, manifest, files)
    return manifest.version


def test_publish_rollback_and_corrupt_artifacts_while_events_flow(settings: Settings, tmp_path: Path) -> None:
    random_artifact(tmp_path / "v1", 2000, 16, seed=1, clusters=8, version="v1")
    random_artifact(tmp_path / "v2", 2000, 16, seed=2, clusters=8, version="v2")
    random_artifact(tmp_path / "v3", 2000, 16, seed=3, clusters=8, version="v3")
    _publish_dir(settings, tmp_path / "v1")
    rng = random.Random(5)
    users = [f"u{k}" for k in range(50)]
    events = [ev(k, rng.choice(users), f"i{rng.randrange(2000)}") for k in range(6000)]
    sent = Counter(e.user_id for e in events)
    sub = Subscriber(settings)
    sub.start()
    sub.ready.wait(10)
    workers = [ThreadWorker(settings), ThreadWorker(settings)]
    producer = threading.Thread(target=replay, args=(events, settings, Pacing("rate", 1500)))

    def serving(version: str) -> bool:
        return all(w.worker.engine.model is not None and w.worker.engine.model.version == version for w in workers)

    try:
        assert wait_until(lambda: serving("v1"), 30)
        producer.start()
        assert sub.wait_for(lambda a: sum(x.value["model_version"] == "v1" for x in a) >= 20, 30)
        _publish_dir(settings, tmp_path / "v2")
        assert wait_until(lambda: serving("v2"), 30)
        assert sub.wait_for(lambda a: sum(x.value["model_version"] == "v2" for x in a) >= 20, 30)

        # a corrupted chunk: every worker refuses v3 and keeps serving v2
        manifest, files = read_files(tmp_path / "v3")
        codec = codec_for("model_chunk")
        prod = clients.producer(settings, compression_type=None)
        for rec in chunk_records(manifest, files, chunk_bytes=64 * 1024):
            if rec["kind"] == "CHUNK" and rec["index"] == 1:
                rec = {**rec, "data": bytes(b ^ 0x55 for b in rec["data"])}
            prod.send(settings.model_topic, key=b"v3", value=codec.encode(rec), partition=0)
        prod.flush()
        prod.close()
        assert wait_until(lambda: all("v3" in w.worker.sync.refused for w in workers), 30)  # type: ignore[union-attr]
        assert "checksum" in workers[0].worker.sync.refused["v3"]  # type: ignore[union-attr]
        assert serving("v2")

        send_control(settings, "ROLLBACK", "v1", {"reason": "test"})
        assert wait_until(lambda: serving("v1"), 30)
        n_before = len(sub.snapshot())
        assert sub.wait_for(lambda a: any(x.value["model_version"] == "v1" for x in a[n_before:]), 30)
        producer.join(60)
        last_of = {e.user_id: e.event_id for e in events}
        assert sub.wait_for(lambda a: {x.trigger_event_id for x in a} >= set(last_of.values()), 60)
    finally:
        for w in workers:
            w.stop()
        sub.stop()
    # every event applied exactly once across two swaps, a refusal and a rollback
    states = latest_states(settings)
    assert {u: sum(st["counts"].values()) for u, st in states.items()} == dict(sent)
    versions = {x.value["model_version"] for x in sub.snapshot()}
    assert versions <= {"v1", "v2"}
