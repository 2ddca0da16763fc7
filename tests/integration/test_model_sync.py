"""Base-model sync through Kafka: hot swap while events flow, refusal of corrupt artifacts, rollback."""

from __future__ import annotations

import random
import threading
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path

from streamrec.e2e import Subscriber
from streamrec.models.base.artifact import random_artifact, read_files
from streamrec.producers.replay import Pacing, replay
from streamrec.stream import clients
from streamrec.stream.modelbus import chunk_records, model_log, model_status, publish, send_control
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


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_jamming_records_on_the_model_topic_neither_stop_sync_nor_hide_from_model_list(
        settings: Settings, tmp_path: Path) -> None:
    """The issue's jam (a chunk with index=1, count=1, then its manifest) and its neighbours, written to the
    real topic between two valid models: the running worker and one started afterwards both serve the
    valid model, /healthz stays 200 with the sync thread alive, and `model list` refuses what they refuse."""
    for v, seed in (("v1", 1), ("v3", 3), ("v4", 4)):
        random_artifact(tmp_path / v, 300, 8, seed=seed, clusters=4, version=v)
    _publish_dir(settings, tmp_path / "v1")
    codec = codec_for("model_chunk")
    jam_manifest, jam_files = read_files(tmp_path / "v4")
    jam_manifest = replace(jam_manifest, version="vX")
    jam = [codec.encode({"version": "vX", "kind": "CHUNK", "file": name, "index": 1, "count": 1, "data": data,
                         "sent_at": 0}) for name, data in jam_files.items()]
    jam += [codec.encode({"version": "vX", "kind": "MANIFEST", "file": "manifest.json", "index": 0, "count": 1,
                          "data": jam_manifest.to_json().encode(), "sent_at": 0}),
            b"\xc3\x01 not a model record", b"",
            codec.encode({"version": "vY", "kind": "CHUNK", "file": "item_ids.json", "index": -4, "count": 2,
                          "data": b"[]", "sent_at": 0}),
            codec.encode({"version": "vY", "kind": "MANIFEST", "file": "manifest.json", "index": 0, "count": 1,
                          "data": b'{"format": "streamrec-artifact/1", "version": "vY", "files": [1]}',
                          "sent_at": 0}),
            codec.encode({"version": "", "kind": "ROLLBACK", "file": "", "index": 0, "count": 0,
                          "data": b"[[[", "sent_at": 0})]
    workers = [ThreadWorker(settings)]
    server = workers[0].worker.metrics.serve(0)
    healthz = f"http://127.0.0.1:{server.server_address[1]}/healthz"

    def serving(w: ThreadWorker, version: str) -> bool:
        return w.worker.engine.model is not None and w.worker.engine.model.version == version

    try:
        assert wait_until(lambda: serving(workers[0], "v1"), 30)
        prod = clients.producer(settings, compression_type=None)
        for value in jam:
            prod.send(settings.model_topic, key=b"jam", value=value, partition=0)
        prod.flush()
        prod.close()
        _publish_dir(settings, tmp_path / "v3")
        assert wait_until(lambda: serving(workers[0], "v3"), 30), "the valid model after the jam never swapped in"
        # v4 with a corrupted chunk: refused, v3 keeps serving
        manifest, files = read_files(tmp_path / "v4")
        prod = clients.producer(settings, compression_type=None)
        for rec in chunk_records(manifest, files, chunk_bytes=4096):
            if rec["kind"] == "CHUNK" and rec["index"] == 1:
                rec = {**rec, "data": bytes(b ^ 0x55 for b in rec["data"])}
            prod.send(settings.model_topic, key=b"v4", value=codec.encode(rec), partition=0)
        prod.flush()
        prod.close()
        sync = workers[0].worker.sync
        assert sync is not None
        assert wait_until(lambda: "v4" in sync.refused, 30)
        assert {"vX", "vY"} <= set(sync.refused) and serving(workers[0], "v3")
        assert sync.is_alive() and _get(healthz)[0] == 200

        # a worker started now reads all of it from the beginning, and serves v3 too
        workers.append(ThreadWorker(settings.replace(worker_id="late-worker")))
        assert wait_until(lambda: serving(workers[1], "v3"), 30)
        assert workers[1].worker.sync is not None and workers[1].worker.sync.is_alive()
        assert workers[1].worker.metrics.liveness_problems() == []

        # `model list`: what the workers serve, the refused versions as refused, never "in service"
        def listed() -> bool:
            st = model_status(settings)
            return {workers[0].worker.worker_id, "late-worker"} <= set(st.workers) \
                and all(st.workers[w]["serving"] == "v3" for w in ("late-worker", workers[0].worker.worker_id))
        assert wait_until(listed, 30)
        entries, in_service = model_log(settings)
        by = {e["version"]: e for e in entries}
        assert in_service == "v3" and by["v3"]["status"] == "in service"
        assert set(by["v3"]["workers"]) == {workers[0].worker.worker_id, "late-worker"}
        assert by["v4"]["status"] == "refused" and "checksum" in by["v4"]["reason"]
        assert by["vX"]["status"] == "refused" and by["vY"]["status"] == "refused"
        assert by["v1"]["status"] == "available"
    finally:
        for w in workers:
            w.stop()


def test_a_worker_with_a_signing_key_serves_only_models_signed_with_it(settings: Settings, tmp_path: Path) -> None:
    signed = settings.replace(model_signing_key="trainer-key")
    for v, seed in (("v1", 1), ("v2", 2), ("v3", 3)):
        random_artifact(tmp_path / v, 200, 8, seed=seed, clusters=4, version=v)
    worker = ThreadWorker(signed)
    try:
        _publish_dir(settings, tmp_path / "v1")                                      # unsigned
        _publish_dir(settings.replace(model_signing_key="someone-else"), tmp_path / "v2")   # wrong key
        _publish_dir(signed, tmp_path / "v3")
        assert wait_until(lambda: worker.worker.engine.model is not None
                          and worker.worker.engine.model.version == "v3", 30)
        sync = worker.worker.sync
        assert sync is not None
        assert "not signed" in sync.refused["v1"] and "does not match" in sync.refused["v2"]
        skipped = sync.skipped
        send_control(settings, "ROLLBACK", "v3", {"reason": "unsigned rollback"})
        send_control(signed, "ROLLBACK", "v3", {"reason": "signed rollback"})
        assert wait_until(lambda: sync.skipped == skipped + 1, 30)   # the unsigned rollback, not the signed one
        by = {e["version"]: e for e in model_log(signed)[0]}
        assert by["v1"]["status"] == by["v2"]["status"] == "refused" and by["v3"]["status"] == "in service"
        assert model_log(settings)[1] == "v3"   # a reader without the key ignores signatures
    finally:
        worker.stop()
