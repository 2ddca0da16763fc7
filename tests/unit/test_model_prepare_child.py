"""Model preparation out of the worker's interpreter lock: ``models.serving.prepfiles`` writes what
``prepare_model`` makes as numpy/faiss files in a child process and the worker maps them; the model sync
thread uses it for a real engine, refuses what the child refuses, and logs what a sync cost the loop."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.consumers.modelsync import GapStats
from streamrec.models.base.artifact import build_manifest, encode_payload, load_artifact, random_artifact
from streamrec.models.base.index import IndexConfig
from streamrec.models.engine.recommender import EngineConfig
from streamrec.models.errors import ArtifactError
from streamrec.models.serving.candidates import prepare_model
from streamrec.models.serving.prepfiles import main, open_prepared, prepare_files
from streamrec.stream.modelbus import chunk_records
from tests.unit.test_modelbus_sync import CODEC, Log, Topic, make, wait


@pytest.mark.parametrize("shipped", [IndexConfig(kind="hnsw"), None])
def test_the_mapped_model_is_the_one_prepare_model_makes(tmp_path: Path, shipped: IndexConfig | None) -> None:
    random_artifact(tmp_path / "a", 600, 8, seed=4, clusters=7, version="v1", with_index=shipped)
    config = IndexConfig(kind="hnsw", hnsw_ef_search=48)
    summary = prepare_files(tmp_path / "a", tmp_path / "p", config, n_cold_start=20, seed=3)
    got = open_prepared(tmp_path / "p", config)
    want = prepare_model(load_artifact(tmp_path / "a"), config, 20, 3)
    assert summary["index_source"] == want.index_source == ("shipped" if shipped else "built")
    assert got.item_ids == want.item_ids and dict(got.index_of) == dict(want.index_of)
    assert np.array_equal(got.embeddings, want.embeddings) and np.array_equal(got.cold_start, want.cold_start)
    assert want.categories is not None and np.array_equal(got.categories, want.categories)  # type: ignore[arg-type]
    assert got.index.version == want.index.version and got.index.params == want.index.params
    q = want.embeddings[:5]
    assert np.array_equal(got.index.search(q, 10)[1], want.index.search(q, 10)[1])


def nan_artifact(directory: Path, version: str) -> None:
    emb = np.ones((4, 3), dtype=np.float32) / np.sqrt(3)
    emb[2, 1] = np.nan   # checksums are right, the values are not: only decoding can tell
    files = encode_payload([f"i{k}" for k in range(4)], emb)
    manifest = build_manifest(files, 3, 4, version=version)
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / "manifest.json").write_text(manifest.to_json())


def test_the_child_refuses_with_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nan_artifact(tmp_path / "a", "bad")
    assert main([str(tmp_path / "a"), str(tmp_path / "p"), "{}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "NaN" in err and "\n" not in err and not (tmp_path / "p" / "prepared.json").exists()
    with pytest.raises(ArtifactError):
        open_prepared(tmp_path / "p", IndexConfig())


class ChildEngine:
    """An engine with an EngineConfig: the sync thread must prepare in the child, never here."""

    def __init__(self) -> None:
        self.config = EngineConfig()
        self.model: Any = None

    def prepare_model(self, art: Any) -> Any:
        raise AssertionError("prepared on the sync thread")

    def swap(self, prepared: Any) -> None:
        self.model = prepared


def published(directory: Path) -> list[bytes]:
    from streamrec.models.base.artifact import read_files

    manifest, files = read_files(directory)
    return [CODEC.encode(r) for r in chunk_records(manifest, files, chunk_bytes=4096)]


def test_the_sync_thread_serves_a_child_prepared_model_and_keeps_it_when_the_next_is_refused(tmp_path: Path) -> None:
    random_artifact(tmp_path / "v1", 300, 8, seed=1, version="v1")
    nan_artifact(tmp_path / "v2", "v2")
    topic = Topic(published(tmp_path / "v1"))
    engine = ChildEngine()
    sync, log, _ = make(topic, engine)   # type: ignore[arg-type]
    sync.start()
    try:
        assert wait(lambda: (sync.swap_if_ready(), engine.model is not None)[1], 60)
        assert engine.model.version == "v1" and engine.model.embeddings.shape == (300, 8)
        assert isinstance(engine.model.index_of, dict) and engine.model.index_of["i7"] == 7
        topic.append(*published(tmp_path / "v2"))
        assert wait(lambda: "v2" in sync.refused, 60)
    finally:
        sync.stop()
    assert "NaN" in sync.refused["v2"] and engine.model.version == "v1"
    assert not list(Path(tempfile.gettempdir()).glob("streamrec-model-v2-*")), "the work directory is removed"


def test_gap_stats_report_the_longest_gap_of_a_sync_beside_the_median_interval() -> None:
    log = Log()
    gaps = GapStats(log, after_swap_s=0.0)
    for _ in range(20):
        gaps.tick()
        time.sleep(0.002)
    gaps.open("v2")
    gaps.phase("preparing")
    gaps.tick()
    time.sleep(0.06)
    gaps.tick()              # the stall, while preparing
    gaps.tick(swapped="v2")  # closes the window (after_swap_s=0)
    recs = [kw for _, event, kw in log.lines if event == "model swap gaps"]
    assert len(recs) == 1 and recs[0]["version"] == "v2" and recs[0]["max_gap_phase"] == "preparing"
    assert recs[0]["max_gap_ms"] >= 60 and recs[0]["median_interval_ms"] < 30 and recs[0]["ratio_to_median"] > 2
    gaps.tick()
    assert len([1 for _, event, _ in log.lines if event == "model swap gaps"]) == 1


def test_the_model_swapped_out_is_released_on_the_sync_thread_not_the_loop() -> None:
    import threading
    import weakref

    freed_on: list[str] = []

    class Model:
        def __init__(self, version: str) -> None:
            self.version = version

        def __del__(self) -> None:
            freed_on.append(threading.current_thread().name)

    class Engine:
        model: Any = None

        def swap(self, prepared: Any) -> None:
            self.model = prepared

    topic = Topic([])
    sync, _, _ = make(topic, Engine())   # type: ignore[arg-type]
    sync.engine.model = Model("v1")
    old = weakref.ref(sync.engine.model)
    sync._pending = ("v2", Model("v2"))
    sync.swap_if_ready()                 # the loop's thread
    assert sync.engine.model.version == "v2" and old() is not None and freed_on == []
    sync.start()
    try:
        assert wait(lambda: old() is None, 10)
    finally:
        sync.stop()
    assert freed_on == ["model-sync"]
