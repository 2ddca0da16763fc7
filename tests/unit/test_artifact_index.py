"""Artifacts that ship a prebuilt item index: round trip, same search results as the original index,
embeddings read back bit for bit, refusals, and prepare_model using the shipped index instead of a build."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

import streamrec.models.serving.candidates as cand
from streamrec.models.base.artifact import (
    EMBEDDINGS,
    FORMAT,
    FORMAT_INDEX_ONLY,
    INDEX,
    ITEM_IDS,
    MANIFEST,
    Manifest,
    build_manifest,
    decode_artifact,
    encode_payload,
    load_artifact,
    random_artifact,
    read_files,
)
from streamrec.models.base.encoder import UserEncoder
from streamrec.models.base.index import IndexConfig, ItemIndex, build_index, index_vectors, load_index, serialize_index
from streamrec.models.base.training import TrainResult, write_result
from streamrec.models.errors import ArtifactError
from streamrec.models.serving.candidates import prepare_model

N, DIM = 2000, 16
HNSW = IndexConfig(kind="hnsw")


def _queries(emb: np.ndarray, n: int = 100) -> np.ndarray:
    rng = np.random.default_rng(3)
    q = emb[rng.integers(0, len(emb), size=(n, 3))].mean(axis=1)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plain")
    random_artifact(d, N, DIM, seed=4, clusters=20, version="v1")
    return d


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shipped")
    random_artifact(d, N, DIM, seed=4, clusters=20, version="v1", with_index=HNSW)
    return d


def test_a_shipped_index_round_trips_and_replaces_the_embeddings_file(plain: Path, shipped: Path) -> None:
    art, ref = load_artifact(shipped), load_artifact(plain)
    m = art.manifest
    assert set(m.files) == {ITEM_IDS, INDEX, "item_categories.json"} and EMBEDDINGS not in m.files
    assert m.format == FORMAT_INDEX_ONLY and ref.manifest.format == FORMAT
    assert m.index == {"kind": "hnsw", "m": 32, "ef_construction": 80} and ref.manifest.index == {}
    assert m.metrics["index_build_s"] >= 0 and m.libraries["faiss"] == faiss.__version__
    assert art.embeddings.dtype == np.float32 and art.embeddings.shape == (N, DIM)
    np.testing.assert_array_equal(art.embeddings, ref.embeddings)       # bit for bit
    assert art.item_ids == ref.item_ids and art.categories == ref.categories
    assert art.index is not None and ref.index is None
    assert (art.index.kind, art.index.version, art.index.size, art.index.dim) == ("hnsw", "v1+hnsw32", N, DIM)


@pytest.mark.parametrize("config", [IndexConfig(kind="flat"), HNSW, IndexConfig(kind="ivf", ivf_nprobe=4)])
def test_a_loaded_index_answers_exactly_as_the_original(plain: Path, config: IndexConfig) -> None:
    emb = load_artifact(plain).embeddings
    original = build_index(emb, config, version="v1")
    loaded = load_index(serialize_index(original), "v1", config)
    assert (loaded.kind, loaded.version, loaded.size, loaded.dim) == (original.kind, original.version, N, DIM)
    assert loaded.params == original.params == config.params(N)
    np.testing.assert_array_equal(index_vectors(loaded), emb)
    q = _queries(emb)
    (s1, i1), (s2, i2) = original.search(q, 20), loaded.search(q, 20)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)


@pytest.mark.parametrize("ef", [4, 16, 128])
def test_search_settings_come_from_the_reader_not_the_bytes(plain: Path, ef: int) -> None:
    """efSearch is serialized, but the serving config's value is what a loaded index searches with; per-search
    parameters give exactly what efSearch set on the index gives."""
    emb = load_artifact(plain).embeddings
    q = _queries(emb)
    written = build_index(emb, IndexConfig(kind="hnsw", hnsw_ef_search=200), version="v1")
    same_graph_own_ef = build_index(emb, IndexConfig(kind="hnsw", hnsw_ef_search=ef), version="v1")
    loaded = load_index(serialize_index(written), "v1", IndexConfig(kind="hnsw", hnsw_ef_search=ef))
    np.testing.assert_array_equal(loaded.search(q, 10)[1], same_graph_own_ef.search(q, 10)[1])


def test_one_shared_index_serves_engines_with_different_search_settings(shipped: Path) -> None:
    art = load_artifact(shipped)
    q = _queries(art.embeddings)
    narrow = prepare_model(art, IndexConfig(kind="hnsw", hnsw_ef_search=4))
    before = narrow.index.search(q, 10)[1]
    wide = prepare_model(art, IndexConfig(kind="hnsw", hnsw_ef_search=256))
    assert narrow.index_source == wide.index_source == "shipped"
    np.testing.assert_array_equal(narrow.index.search(q, 10)[1], before)   # untouched by the second engine
    assert not np.array_equal(wide.index.search(q, 10)[1], before)


def test_a_corrupted_index_file_is_refused_by_checksum(shipped: Path) -> None:
    manifest, files = read_files(shipped)
    data = bytearray(files[INDEX])
    data[len(data) // 2] ^= 0x55
    with pytest.raises(ArtifactError, match=f"checksum of {INDEX}"):
        decode_artifact(manifest, {**files, INDEX: bytes(data)})


def test_the_manifest_must_describe_the_shipped_index(shipped: Path) -> None:
    manifest, files = read_files(shipped)
    raw = json.loads(manifest.to_json())
    with pytest.raises(ArtifactError, match="describes the index"):
        decode_artifact(Manifest.from_json(json.dumps({**raw, "index": {**raw["index"], "m": 16}})), files)
    with pytest.raises(ArtifactError, match="must come together"):
        decode_artifact(Manifest.from_json(json.dumps({**raw, "index": {}})), files)


def test_old_manifests_without_an_index_field_still_load(plain: Path) -> None:
    raw = json.loads((plain / MANIFEST).read_text())
    raw.pop("index")
    manifest = Manifest.from_json(json.dumps(raw))
    assert manifest.index == {}
    assert decode_artifact(manifest, read_files(plain)[1]).index is None


def _index_only(emb: np.ndarray, index: ItemIndex) -> tuple[Manifest, dict[str, bytes]]:
    """A hand-made payload that skips encode_payload's write-time checks (what a broken writer could send)."""
    files = {ITEM_IDS: json.dumps([f"i{k}" for k in range(len(emb))]).encode(), INDEX: serialize_index(index)}
    return build_manifest(files, dim=emb.shape[1], item_count=len(emb), version="bad", index=index.params), files


def test_vectors_read_from_an_index_must_be_normalised_and_finite(plain: Path) -> None:
    emb = load_artifact(plain).embeddings * 2.0
    with pytest.raises(ArtifactError, match="L2-normalised"):
        encode_payload([f"i{k}" for k in range(N)], emb, index=build_index(emb, IndexConfig(kind="flat")))
    with pytest.raises(ArtifactError, match="L2-normalised"):
        decode_artifact(*_index_only(emb, build_index(emb, IndexConfig(kind="flat"))))
    emb[5, 0] = np.nan
    with pytest.raises(ArtifactError, match="NaN"):
        decode_artifact(*_index_only(emb, build_index(emb, IndexConfig(kind="flat"))))


def test_an_index_of_other_vectors_or_metric_is_refused(plain: Path) -> None:
    emb = load_artifact(plain).embeddings
    other = build_index(emb[::-1].copy(), IndexConfig(kind="flat"))
    with pytest.raises(ArtifactError, match="not the artifact's"):
        encode_payload([f"i{k}" for k in range(N)], emb, index=other)
    manifest, files = read_files(plain)          # both files, disagreeing
    files = {**files, INDEX: serialize_index(other)}
    both = build_manifest(files, dim=DIM, item_count=N, version="both", index=other.params)
    with pytest.raises(ArtifactError, match="does not hold the vectors"):
        decode_artifact(both, files)
    l2 = faiss.IndexFlatL2(DIM)
    l2.add(emb)
    with pytest.raises(ArtifactError, match="inner product"):
        load_index(serialize_index(ItemIndex(l2, "flat", "x")), "x")
    with pytest.raises(ArtifactError, match="cannot be read"):
        load_index(b"not a faiss index", "x")


def test_prepare_model_uses_the_shipped_index_when_the_config_asks_for_it(
        shipped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    art = load_artifact(shipped)
    assert art.index is not None
    q = _queries(art.embeddings)
    built: list[IndexConfig] = []
    real_build = cand.build_index

    def counting_build(emb: np.ndarray, config: IndexConfig | None = None, version: str = "") -> ItemIndex:
        built.append(config or IndexConfig())
        return real_build(emb, config, version)

    monkeypatch.setattr(cand, "build_index", counting_build)
    served = prepare_model(art, IndexConfig(kind="auto", flat_max_items=1000))   # auto resolves to hnsw here
    assert (served.index_source, served.index_version, built) == ("shipped", "v1+hnsw32", [])
    np.testing.assert_array_equal(served.index.search(q, 10)[1], art.index.search(q, 10)[1])

    for other in (IndexConfig(kind="flat"), IndexConfig(kind="hnsw", hnsw_m=16), IndexConfig()):  # auto: flat
        prepared = prepare_model(art, other)
        assert prepared.index_source == "rebuilt" and prepared.index.params == other.params(N)
    assert len(built) == 3


def test_prepare_model_builds_when_the_artifact_has_no_index(plain: Path) -> None:
    prepared = prepare_model(load_artifact(plain), HNSW)
    assert (prepared.index_source, prepared.index_version) == ("built", "v1+hnsw32")


def test_write_result_ships_the_serving_default_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    result = TrainResult([f"i{k}" for k in range(300)], emb, UserEncoder.identity(8), {"hr@10": 0.1}, {}, {})
    manifest = write_result(result, tmp_path / "m", version="t1")
    assert manifest.index == {"kind": "flat"} and INDEX in manifest.files and "index_build_s" in manifest.metrics
    art = load_artifact(tmp_path / "m")
    np.testing.assert_array_equal(art.embeddings, emb)
    assert prepare_model(art).index_source == "shipped"
    bare = write_result(result, tmp_path / "bare", version="t2", ship_index=False)
    assert bare.index == {} and EMBEDDINGS in bare.files and bare.format == FORMAT


def test_chunk_messages_of_a_large_artifact_stay_under_1_mb() -> None:
    """Brokers and clients refuse messages over 1 MB by default; CHUNK_BYTES leaves room for the framing."""
    from streamrec.stream.modelbus import CHUNK_BYTES, chunk_records
    from streamrec.stream.serde import codec_for

    files = {INDEX: np.random.default_rng(0).bytes(3 * CHUNK_BYTES + 5), ITEM_IDS: b"[]"}
    manifest = build_manifest(files, dim=DIM, item_count=0, version="big", index={"kind": "flat"})
    codec = codec_for("model_chunk")
    sizes = [len(codec.encode(rec)) for rec in chunk_records(manifest, files)]
    assert len(sizes) == 4 + 1 + 1 and max(sizes) < 1_000_000
