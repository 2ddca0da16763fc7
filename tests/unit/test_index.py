"""The faiss item index: recall against exact search for every kind, kind selection, shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models.base.artifact import load_artifact, random_artifact
from streamrec.models.base.index import IndexConfig, build_index, exact_search, recall_at_k
from streamrec.models.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    d = tmp_path_factory.mktemp("art")
    random_artifact(d, n_items=4000, dim=16, seed=5, clusters=40)
    emb = load_artifact(d).embeddings
    rng = np.random.default_rng(1)
    # user-like queries: the normalised mean of a few items of one cluster
    picks = rng.integers(0, 40, size=(200, 1)) + 40 * rng.integers(0, 100, size=(200, 4))
    q = emb[picks].mean(axis=1)
    return emb, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("config", "floor"), [
    (IndexConfig(kind="flat"), 1.0),
    (IndexConfig(kind="hnsw"), 0.95),
    (IndexConfig(kind="ivf", ivf_nprobe=8), 0.9),
])
def test_recall_against_exact_search(clustered: tuple[np.ndarray, np.ndarray], config: IndexConfig,
                                     floor: float) -> None:
    emb, queries = clustered
    index = build_index(emb, config, version="v7")
    assert recall_at_k(index, emb, queries, k=20) >= floor
    assert index.version.startswith("v7+") and index.size == len(emb) and index.dim == emb.shape[1]


def test_auto_is_exact_for_small_catalogs_and_hnsw_above_the_threshold(
        clustered: tuple[np.ndarray, np.ndarray]) -> None:
    emb, _ = clustered
    assert build_index(emb[:500], IndexConfig(flat_max_items=1000)).kind == "flat"
    index = build_index(emb, IndexConfig(flat_max_items=1000, hnsw_m=16), version="v1")
    assert (index.kind, index.version) == ("hnsw", "v1+hnsw16")
    assert IndexConfig().resolve(10_000) == "flat" and IndexConfig().resolve(10_001) == "hnsw"


def test_search_is_batched_and_sorted_and_never_mutates_its_input(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    emb, queries = clustered
    before = queries.copy()
    scores, ids = build_index(emb, IndexConfig(kind="flat")).search(queries, k=10)
    assert scores.shape == ids.shape == (len(queries), 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    np.testing.assert_array_equal(queries, before)
    exact_scores, exact_ids = exact_search(emb, queries, 10)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-5)


def test_k_larger_than_the_catalog_and_empty_batches() -> None:
    emb = np.eye(4, dtype=np.float32)
    index = build_index(emb, IndexConfig(kind="flat"))
    scores, ids = index.search(emb[:2], k=10)
    assert ids.shape == (2, 4) and ids[:, 0].tolist() == [0, 1]
    assert index.search(np.zeros((0, 4), dtype=np.float32), k=3)[1].shape == (0, 3)


def test_ivf_caps_nlist_for_small_catalogs() -> None:
    assert IndexConfig().nlist(100_000) == int(4 * 100_000 ** 0.5)
    assert IndexConfig().nlist(1_000) == 1_000 // 39
    emb = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    assert build_index(emb, IndexConfig(kind="ivf")).version == "ivf5"


def test_errors_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="use one of"):
        IndexConfig(kind="annoy")
    with pytest.raises(ConfigError, match="threads"):
        IndexConfig(threads=0)
    index = build_index(np.eye(3, dtype=np.float32), IndexConfig(kind="flat"))
    with pytest.raises(InputError, match=r"expects \(m, 3\)"):
        index.search(np.ones((2, 5), dtype=np.float32), k=1)
    with pytest.raises(InputError):
        build_index(np.zeros((0, 3), dtype=np.float32))
