"""Maximum inner-product search over the base model's item embeddings (faiss).

Item embeddings are L2-normalised, so inner product is cosine similarity. Four kinds:

``flat``  ``IndexFlatIP``, exact. Cost grows linearly with the catalog: on one core of the 2-core
          reference machine, batches of 500 queries at dim 64 cost ~5 us per query per 1,000 items
          (~500 us per query at 100k items).
``hnsw``  ``IndexHNSWFlat(d, M, METRIC_INNER_PRODUCT)``: ~40-70 us per query at 100k items with
          ``efSearch`` 32-64 and recall@50 of 0.98-1.0 for user-like queries on clustered or low-rank
          embeddings; no training, build ~8 s single-threaded (done off the hot path).
``ivf``   ``IndexIVFFlat`` with ``nlist ~ 4 sqrt(n)`` (and at least 39 training points per list),
          ``nprobe`` configurable: fastest at a given recall on well-clustered embeddings (~35 us,
          recall 0.88-1.0 at nprobe 16), but its recall collapses on embeddings without cluster
          structure (0.26 on isotropic data), so it is opt-in.
``auto``  ``flat`` up to ``flat_max_items`` (10,000: exact and still under ~50 us per query, the
          budget of a 20k events/s worker), ``hnsw`` above, because HNSW's recall holds up across
          embedding shapes without tuning, unlike IVF.

faiss threads default to 1 so a worker keeps its other core for Kafka; the setting is applied on the
calling thread before every build and search (OpenMP thread counts are per thread).

Shipping an index: :func:`serialize_index` / :func:`load_index` move a built index as bytes, so the
trainer builds it once and every worker only deserializes it (~0.3 s for 100k x 64 HNSW instead of a
5-20 s build that competes with the hot path; faiss releases the GIL while it reads). Build parameters
(``M``, ``efConstruction``, ``nlist``) are part of the bytes; search parameters (``efSearch``,
``nprobe``) are the reader's: faiss does serialize ``efSearch``, but the writer's value is ignored and
:meth:`ItemIndex.configured` passes the serving config's values with every search instead, which also
lets several engines share one deserialized index with different settings. :func:`index_vectors`
returns the stored vectors (flat storage keeps them bit for bit), so an artifact that ships an index
need not carry the embeddings twice.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> emb = rng.normal(size=(1000, 16)).astype(np.float32)
>>> emb /= np.linalg.norm(emb, axis=1, keepdims=True)
>>> index = build_index(emb, IndexConfig(kind="hnsw"), version="v1")
>>> index.kind, index.version
('hnsw', 'v1+hnsw32')
>>> scores, ids = index.search(emb[:3], k=5)
>>> ids[:, 0].tolist()
[0, 1, 2]
>>> recall_at_k(index, emb, emb[:50], k=10) >= 0.9
True
>>> shipped = load_index(serialize_index(index), "v1", IndexConfig(hnsw_ef_search=64))
>>> shipped.params == index.params == {"kind": "hnsw", "m": 32, "ef_construction": 80}, shipped.version
(True, 'v1+hnsw32')
>>> bool((index_vectors(shipped) == emb).all())
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from streamrec.models.errors import ArtifactError, ConfigError, InputError

INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")


@dataclass(frozen=True)
class IndexConfig:
    """How to index the item embeddings (see the module docstring for the trade-offs)."""

    kind: str = "auto"
    flat_max_items: int = 10_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 32       # faiss uses max(efSearch, k)
    ivf_nlist: int = 0              # 0: 4 * sqrt(n), capped at n / 39
    ivf_nprobe: int = 16
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(f"index kind {self.kind!r} is unknown; use one of {', '.join(INDEX_KINDS)}")
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"IndexConfig.{name} is {getattr(self, name)}; set it to 1 or more")

    def resolve(self, n_items: int) -> str:
        """The concrete kind for a catalog of ``n_items``."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n_items <= self.flat_max_items else "hnsw"

    def nlist(self, n_items: int) -> int:
        wanted = self.ivf_nlist or int(4 * math.sqrt(n_items))
        return max(1, min(wanted, n_items // 39))

    def params(self, n_items: int) -> dict[str, Any]:
        """The build parameters an index of ``n_items`` gets from this config (compare
        :attr:`ItemIndex.params`: equal dicts mean an equivalent index)."""
        kind = self.resolve(n_items)
        if kind == "hnsw":
            return {"kind": kind, "m": self.hnsw_m, "ef_construction": self.hnsw_ef_construction}
        if kind == "ivf":
            return {"kind": kind, "nlist": self.nlist(n_items)}
        return {"kind": kind}

    def search_params(self, kind: str, nlist: int = 1) -> faiss.SearchParameters | None:
        """Per-search settings for an index of ``kind`` (``None`` for flat, which has none)."""
        if kind == "hnsw":
            hnsw = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
            hnsw.efSearch = self.hnsw_ef_search
            return hnsw  # type: ignore[no-any-return]
        if kind == "ivf":
            ivf = faiss.SearchParametersIVF()
            ivf.nprobe = min(self.ivf_nprobe, nlist)
            return ivf
        return None


class ItemIndex:
    """A built faiss index, its kind and version (``<artifact version>+<kind and size parameter>``).

    ``search_params`` (from :meth:`configured`) override the index's own ``efSearch`` / ``nprobe`` on every
    search, so the faiss index itself is never mutated after it is built or loaded and may be shared.
    """

    def __init__(self, index: faiss.Index, kind: str, version: str, threads: int = 1,
                 search_params: faiss.SearchParameters | None = None) -> None:
        self._index = index
        self.kind = kind
        self.version = version
        self.threads = threads
        self._search_params = search_params

    @property
    def params(self) -> dict[str, Any]:
        """Build parameters read from the faiss index itself (see :meth:`IndexConfig.params`)."""
        return _build_params(self._index)

    def configured(self, config: IndexConfig) -> ItemIndex:
        """The same faiss index (shared, not copied) searched with ``config``'s threads and search settings."""
        nlist = int(self.params.get("nlist", 1))
        return ItemIndex(self._index, self.kind, self.version, config.threads, config.search_params(self.kind, nlist))

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` items for each row of ``queries`` (m, d): ``(scores (m, k) float32, ids (m, k) int64)``.

        Rows are best first; where fewer than ``k`` items are found the id is ``-1``.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"queries have shape {q.shape}; the index expects (m, {self.dim})")
        k = max(1, min(k, self.size))
        if len(q) == 0 or self.size == 0:
            return np.zeros((len(q), k), dtype=np.float32), np.full((len(q), k), -1, dtype=np.int64)
        faiss.omp_set_num_threads(self.threads)
        scores, ids = self._index.search(q, k, params=self._search_params)
        return scores, ids


def build_index(embeddings: np.ndarray, config: IndexConfig | None = None, version: str = "") -> ItemIndex:
    """Index ``embeddings`` (n, d) float32 (L2-normalised rows) as ``config`` says. Never mutates its input."""
    cfg = config or IndexConfig()
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise InputError(f"embeddings have shape {emb.shape}; expected (n_items > 0, dim)")
    n, d = emb.shape
    kind = cfg.resolve(n)
    faiss.omp_set_num_threads(cfg.threads)
    index: faiss.Index
    if kind == "flat":
        index, tag = faiss.IndexFlatIP(d), "flat"
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
        tag = f"hnsw{cfg.hnsw_m}"
    else:
        nlist = cfg.nlist(n)
        quantizer = faiss.IndexFlatIP(d)   # the faiss wrapper keeps it alive with the index
        ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = cfg.seed
        ivf.train(emb)
        ivf.nprobe = min(cfg.ivf_nprobe, nlist)
        index, tag = ivf, f"ivf{nlist}"
    index.add(emb)
    return ItemIndex(index, kind, f"{version}+{tag}" if version else tag, cfg.threads)


def serialize_index(index: ItemIndex) -> bytes:
    """The faiss index as bytes (faiss's own format: build parameters, graph or lists, and the vectors)."""
    return faiss.serialize_index(index._index).tobytes()


def _build_params(raw: faiss.Index) -> dict[str, Any]:
    """Kind and build parameters of a faiss index made by :func:`build_index` (or read back)."""
    if isinstance(raw, faiss.IndexHNSWFlat):
        m = raw.hnsw.nb_neighbors(1)  # type: ignore[attr-defined]  # missing from faiss's stubs
        return {"kind": "hnsw", "m": int(m), "ef_construction": int(raw.hnsw.efConstruction)}
    if isinstance(raw, faiss.IndexIVFFlat):
        return {"kind": "ivf", "nlist": int(raw.nlist)}
    if isinstance(raw, faiss.IndexFlat):
        return {"kind": "flat"}
    raise ArtifactError(f"the shipped item index is a {type(raw).__name__}; streamrec serves flat, hnsw or ivf "
                        "indexes from models.base.index.build_index: republish the model")


def _tag(params: dict[str, Any]) -> str:
    """The version suffix :func:`build_index` gives an index with these parameters."""
    kind = params["kind"]
    return f"hnsw{params['m']}" if kind == "hnsw" else f"ivf{params['nlist']}" if kind == "ivf" else kind


def load_index(data: bytes, version: str, config: IndexConfig | None = None) -> ItemIndex:
    """An :class:`ItemIndex` from :func:`serialize_index` bytes, versioned as :func:`build_index` would
    (``<version>+<tag>``) and searched with ``config``'s settings (default :class:`IndexConfig`).

    faiss releases the GIL while it reads, so a loader thread leaves the serving thread alone.
    """
    try:
        raw = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as exc:
        raise ArtifactError(f"the shipped item index cannot be read by faiss {faiss.__version__} ({exc}); "
                            "upgrade faiss on this host or republish the model") from exc
    if raw.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ArtifactError("the shipped item index does not search by inner product; build it with "
                            "models.base.index.build_index and republish the model")
    params = _build_params(raw)
    tag = _tag(params)
    loaded = ItemIndex(raw, params["kind"], f"{version}+{tag}" if version else tag)
    return loaded.configured(config or IndexConfig())


def read_index_file(path: str, version: str, config: IndexConfig | None = None, mmap: bool = True) -> ItemIndex:
    """An :class:`ItemIndex` read from a file written by :func:`write_index_file`, memory-mapped where faiss
    can (``IO_FLAG_MMAP_IFC``: flat and HNSW-flat storage are mapped, not copied, so two workers on one host
    share the pages and loading costs milliseconds); faiss holds no GIL while it reads. The file may be
    deleted once this returns: the mapping keeps its pages."""
    flags = getattr(faiss, "IO_FLAG_MMAP_IFC", 0) if mmap else 0
    try:
        try:
            raw = faiss.read_index(str(path), flags)
        except RuntimeError:
            if not flags:
                raise
            raw = faiss.read_index(str(path))   # a kind faiss cannot map: read it whole
    except RuntimeError as exc:
        raise ArtifactError(f"the item index file {path} cannot be read by faiss {faiss.__version__} ({exc})") from exc
    if raw.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ArtifactError("the item index does not search by inner product; build it with "
                            "models.base.index.build_index and republish the model")
    params = _build_params(raw)
    tag = _tag(params)
    return ItemIndex(raw, params["kind"], f"{version}+{tag}" if version else tag).configured(config or IndexConfig())


def write_index_file(index: ItemIndex, path: str) -> None:
    """Write ``index`` in faiss's format to ``path`` (read it back with :func:`read_index_file`)."""
    faiss.write_index(index._index, str(path))


def index_vectors(index: ItemIndex) -> np.ndarray:
    """A copy of the stored vectors as float32 (n, d), row ``i`` = item ``i`` (bit for bit what was added:
    flat and HNSW keep raw float32 rows; IVF-Flat keeps them in its lists)."""
    raw, n, d = index._index, index.size, index.dim
    if n == 0:
        return np.zeros((0, d), dtype=np.float32)
    flat = faiss.downcast_index(raw.storage) if isinstance(raw, faiss.IndexHNSW) else raw
    if not isinstance(flat, faiss.IndexFlat):   # IVF: rows live in the inverted lists
        return np.asarray(raw.reconstruct_n(0, n), dtype=np.float32).reshape(n, d)
    return np.array(faiss.rev_swig_ptr(flat.get_xb(), n * d), dtype=np.float32).reshape(n, d)


def exact_search(embeddings: np.ndarray, queries: np.ndarray, k: int,
                 chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-``k`` in numpy (the reference for recall)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    q = np.asarray(queries, dtype=np.float32)
    k = min(k, len(emb))
    out_s = np.empty((len(q), k), dtype=np.float32)
    out_i = np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), chunk):
        s = q[start:start + chunk] @ emb.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        part = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        out_i[start:start + chunk] = np.take_along_axis(top, order, axis=1)
        out_s[start:start + chunk] = np.take_along_axis(part, order, axis=1)
    return out_s, out_i


def recall_at_k(index: ItemIndex, embeddings: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean share of the exact top-``k`` items (by inner product) that ``index`` returns in its top ``k``."""
    if len(queries) == 0:
        return 1.0
    _, truth = exact_search(embeddings, queries, k)
    _, got = index.search(queries, k)
    hits = sum(len(set(t.tolist()) & set(g.tolist())) for t, g in zip(truth, got, strict=True))
    return hits / float(truth.size)
