"""Candidate generation plumbing: user vectors, per-batch item codes, and the vectorised candidate merge.

* :func:`encode_user` / :func:`encode_users`: a user's vector from the recent items the model knows,
  with the model's :class:`~models.base.encoder.UserEncoder` (one user, or a whole batch in one numpy pass).
* :class:`CodeSpace`: integer codes for the items of one batch; an item of the model is its embedding
  row, any other item (new, never trained on) gets a code after the model's items.
* :func:`prepare_model`: an artifact made ready to serve (:class:`PreparedModel`, with its faiss index:
  the artifact's shipped index when it is what the engine's config asks for, else built here).
* :func:`normalise`: a source's scores normalised per user (each source's candidates are in
  :mod:`models.serving.sources` and :mod:`models.online`, behind :mod:`models.serving.contract`).
* :func:`merge_candidates`: blocks of ``(row, code, score)`` from each source, each block grouped by
  row and already normalised, become one :class:`CandidateBatch` with a per-source score column, so
  blending and features are matrix operations instead of per-candidate Python.

>>> space = CodeSpace(["a", "b"], {"a": 0, "b": 1})
>>> space.codes(["b", "new", "a"]).tolist(), space.item(2)
([1, 2, 0], 'new')
>>> rows = np.array([0, 0, 1]); codes = np.array([0, 1, 0])
>>> batch = merge_candidates(2, [(0, rows, codes, np.ones(3, dtype=np.float32)),
...                              (1, np.array([0]), np.array([1]), np.array([0.5], dtype=np.float32))],
...                          n_sources=2)
>>> batch.codes.tolist(), batch.scores.tolist(), batch.starts.tolist()
([0, 1, 0], [[1.0, 0.0], [1.0, 0.5], [1.0, 0.0]], [0, 2, 3])
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from streamrec.models.base.artifact import Artifact
from streamrec.models.base.encoder import UserEncoder
from streamrec.models.base.index import IndexConfig, ItemIndex, build_index
from streamrec.models.errors import ArtifactError
from streamrec.models.serving.runs import rank_in_runs, run_starts
from streamrec.models.serving.state import META, META_SIZE, UserState

#: The engine's default candidate sources, in the order of their score columns.
SOURCES: tuple[str, ...] = ("ann", "covisit", "trending", "cold_start")
ANN, COVISIT, TRENDING, COLD_START = range(len(SOURCES))


@dataclass(frozen=True)
class PreparedModel:
    """A model ready to serve: payload, encoder, index and lookups. Build with :func:`prepare_model`."""

    version: str
    item_ids: tuple[str, ...]
    index_of: Mapping[str, int]
    embeddings: np.ndarray
    encoder: UserEncoder
    index: ItemIndex
    categories: np.ndarray | None      # int code per item, -1 for none
    cold_start: np.ndarray             # item codes
    #: where the index came from: "shipped" (deserialized from the artifact), "built" (the artifact had
    #: none) or "rebuilt" (the artifact's index was built with other parameters than the engine's config)
    index_source: str = "built"

    @property
    def index_version(self) -> str:
        return self.index.version


def prepare_model(artifact: Artifact, index_config: IndexConfig | None = None, n_cold_start: int = 50,
                  seed: int = 0) -> PreparedModel:
    """Validate an artifact and make everything serving needs. The faiss index is the artifact's shipped
    one when present and built as ``index_config`` says (fast: already deserialized), else it is built
    here (slow: seconds for 100k items with HNSW). Reads nothing but its arguments and logs nothing, so
    any thread may call it; ``PreparedModel.index_source`` tells the caller which happened."""
    emb = artifact.embeddings
    if emb.ndim != 2 or emb.shape[0] != len(artifact.item_ids) or emb.shape[0] == 0:
        raise ArtifactError(f"artifact {artifact.version}: embeddings {emb.shape} do not match "
                            f"{len(artifact.item_ids)} item ids; republish the model")
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    enc = artifact.encoder or UserEncoder.identity(int(emb.shape[1]))
    if enc.dim != emb.shape[1]:
        raise ArtifactError(f"artifact {artifact.version}: user encoder dim {enc.dim} != embedding dim "
                            f"{emb.shape[1]}; republish the model")
    ids = tuple(sys.intern(str(i)) for i in artifact.item_ids)
    cats = None
    if artifact.categories is not None:
        if len(artifact.categories) != len(ids):
            raise ArtifactError(f"artifact {artifact.version}: {len(artifact.categories)} categories for "
                                f"{len(ids)} items; republish the model")
        names: dict[str, int] = {}
        cats = np.array([-1 if c is None else names.setdefault(c, len(names)) for c in artifact.categories],
                        dtype=np.int64)
    cold = np.random.default_rng(seed).permutation(len(ids))[:n_cold_start].astype(np.int64)
    index, source = choose_index(artifact, emb, index_config or IndexConfig())
    return PreparedModel(artifact.version, ids, {i: k for k, i in enumerate(ids)}, emb, enc, index, cats, cold,
                         source)


def choose_index(artifact: Artifact, emb: np.ndarray, config: IndexConfig) -> tuple[ItemIndex, str]:
    """The shipped index if its kind and build parameters are what ``config`` gives for this catalog (its
    search settings become ``config``'s; the faiss index is shared, not copied), else a fresh build.

    Build parameters must match too, not only the kind: a worker configured for, say, ``hnsw_m=16`` asked
    for that graph and gets it, at the price of building it itself."""
    shipped = artifact.index
    if shipped is not None and (shipped.size, shipped.dim) == emb.shape and shipped.params == config.params(len(emb)):
        return shipped.configured(config), "shipped"
    return build_index(emb, config, version=artifact.version), "built" if shipped is None else "rebuilt"


def encode_user(state: UserState, encoder: UserEncoder, index_of: Mapping[str, int],
                embeddings: np.ndarray) -> np.ndarray | None:
    """One user's vector from the recent items known to the model (``None`` when there are none).

    Items the model does not know are skipped (positions count known items only); ages are taken
    from the user's newest event, which gives the same vector as any later "now" (the decay is a
    common factor of the normalised pooling). This is the reference for :func:`encode_users`.
    """
    keep = [k for k, i in enumerate(state.recent_items) if i in index_of]
    if not keep:
        return None
    meta = np.frombuffer(state.recent_meta, dtype=META)[keep]
    codes = [index_of[state.recent_items[k]] for k in keep]
    ages = (state.last_ts - meta["ts"]) / 1000.0
    return encoder.encode(embeddings[codes], meta["type"].astype(np.int64), ages, meta["strength"])


def encode_users(states: Sequence[UserState], encoder: UserEncoder, index_of: Mapping[str, int],
                 embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """User vectors of many users in one vectorised pass (same maths as :func:`encode_user`).

    Returns ``(vectors (m, d) float32, has_vector (m,) bool)``; a user none of whose recent items is in
    the model gets a zero row and ``False``.
    """
    m, d = len(states), int(embeddings.shape[1])
    width = max((len(s.recent_items) for s in states), default=0)
    if m == 0 or width == 0:
        return np.zeros((m, d), dtype=np.float32), np.zeros(m, dtype=bool)
    get, pad = index_of.get, [-1] * width
    codes = np.array([[get(i, -1) for i in s.recent_items] + pad[len(s.recent_items):] for s in states],
                     dtype=np.int64)
    blank = bytes(META_SIZE * width)
    meta = np.frombuffer(b"".join(s.recent_meta + blank[len(s.recent_meta):] for s in states),
                         dtype=META).reshape(m, width)
    known = codes >= 0
    pos = np.minimum(np.cumsum(known, axis=1) - 1, encoder.max_items - 1).clip(0)
    last = np.array([s.last_ts for s in states], dtype=np.int64)
    ages = np.maximum((last[:, None] - meta["ts"]) / 1000.0, 0.0)
    a = (meta["strength"] * np.power(0.5, ages / encoder.half_life_s).astype(np.float32)
         * encoder.pos_weight[pos] * known).astype(np.float32)
    gathered = embeddings[np.where(known, codes, 0)]                      # (m, width, d)
    pooled = np.einsum("mw,mwd->md", a, gathered) / (a.sum(axis=1, keepdims=True) + 1e-9)
    u = pooled @ encoder.W.T + encoder.b
    norms = np.linalg.norm(u, axis=1, keepdims=True)
    u = (u / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    has: np.ndarray = np.asarray(known.any(axis=1))
    u[~has] = 0.0
    return u, has


class CodeSpace:
    """Integer codes for the items of one batch: model items first (their embedding row), then others."""

    def __init__(self, model_ids: Sequence[str] = (), index_of: Mapping[str, int] | None = None) -> None:
        self._ids = model_ids
        self._index_of: Mapping[str, int] = index_of if index_of is not None else {}
        self.n_model = len(model_ids)
        self._extra: dict[str, int] = {}
        self._extra_ids: list[str] = []

    @property
    def size(self) -> int:
        return self.n_model + len(self._extra_ids)

    def code(self, item: str) -> int:
        c = self._index_of.get(item)
        if c is None:
            c = self._extra.get(item)
            if c is None:
                c = self._extra[item] = self.n_model + len(self._extra_ids)
                self._extra_ids.append(item)
        return c

    def find(self, item: str) -> int:
        """The item's code, or -1 if it has none (unlike :meth:`code`, never assigns one)."""
        c = self._index_of.get(item)
        if c is None:
            c = self._extra.get(item, -1)
        return c

    def codes(self, items: Sequence[str]) -> np.ndarray:
        n = len(items)
        out = np.fromiter(map(self._index_of.get, items, repeat(-1, n)), dtype=np.int64, count=n)
        if n and out.min() < 0:
            code = self.code
            for k in np.flatnonzero(out < 0).tolist():
                out[k] = code(items[k])
        return out

    def finds(self, items: Sequence[str]) -> np.ndarray:
        """:meth:`find` of every item in one pass (int64; -1 where an item has no code)."""
        n = len(items)
        out = np.fromiter(map(self._index_of.get, items, repeat(-1, n)), dtype=np.int64, count=n)
        if self._extra and n and out.min() < 0:
            get = self._extra.get
            for k in np.flatnonzero(out < 0).tolist():
                out[k] = get(items[k], -1)
        return out

    def item(self, code: int) -> str:
        return self._ids[code] if code < self.n_model else self._extra_ids[code - self.n_model]

    def items(self, codes: Sequence[int]) -> list[str]:
        """The item of every code (:meth:`item` for a whole list of codes)."""
        ids, n = self._ids, self.n_model
        if not self._extra_ids:
            return [ids[c] for c in codes]
        extra = self._extra_ids
        return [ids[c] if c < n else extra[c - n] for c in codes]


def normalise(scores: np.ndarray, rows: np.ndarray, method: str = "max") -> np.ndarray:
    """Normalise a source's scores per row; ``rows`` is grouped (contiguous) and each row best first."""
    s = np.asarray(scores, dtype=np.float32)
    n = len(s)
    if n == 0:
        return s.copy()
    if rows[0] == rows[-1]:          # one row (grouped rows: first == last): no run bookkeeping
        if method == "rank":
            return (1.0 - np.arange(n) / n).astype(np.float32)
        top = np.abs(s).max()
        return (s / (top if top > 0 else np.float32(1.0))).astype(np.float32)
    starts = run_starts(rows)
    lengths = np.empty(len(starts), dtype=np.int64)
    np.subtract(starts[1:], starts[:-1], out=lengths[:-1])
    lengths[-1] = n - starts[-1]
    if method == "rank":
        rank = rank_in_runs(rows)
        return (1.0 - rank / np.repeat(lengths, lengths)).astype(np.float32)
    peak = np.repeat(np.maximum.reduceat(np.abs(s), starts), lengths)
    return (s / np.where(peak > 0, peak, 1.0)).astype(np.float32)


#: ``(column, rows, codes, normalised scores)``: one source's candidates for a batch, tagged with its column.
Block = tuple[int, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class CandidateBatch:
    """The candidates of a batch of users, grouped by row (user) and sorted by code within a row.

    ``scores[g, s]`` is source ``s``'s normalised score for candidate ``g`` (0 where the source did not
    propose it); row ``r``'s candidates are ``starts[r]:starts[r + 1]``.
    """

    rows: np.ndarray      # (G,) int64
    codes: np.ndarray     # (G,) int64
    scores: np.ndarray    # (G, S) float32
    starts: np.ndarray    # (n_rows + 1,) int64

    def __len__(self) -> int:
        return len(self.codes)


def merge_candidates(n_rows: int, blocks: Sequence[Block], n_sources: int = len(SOURCES)) -> CandidateBatch:
    """One row per distinct (user row, item code), with each source's score in its own column.

    A source must propose an item at most once per row (true of every source here).
    """
    blocks = [b for b in blocks if len(b[2])]
    if not blocks:
        empty = np.zeros(0, dtype=np.int64)
        return CandidateBatch(empty, empty, np.zeros((0, n_sources), dtype=np.float32),
                              np.zeros(n_rows + 1, dtype=np.int64))
    rows = np.concatenate([np.asarray(b[1], dtype=np.int64) for b in blocks])
    codes = np.concatenate([np.asarray(b[2], dtype=np.int64) for b in blocks])
    src = np.concatenate([np.full(len(b[2]), b[0], dtype=np.int64) for b in blocks])
    val = np.concatenate([np.asarray(b[3], dtype=np.float32) for b in blocks])
    key = rows * (int(codes.max()) + 1) + codes
    order = np.argsort(key)
    key = key[order]
    first = np.empty(len(key), dtype=bool)
    first[0] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    group = np.cumsum(first) - 1
    scores = np.zeros((int(group[-1]) + 1, n_sources), dtype=np.float32)
    scores[group, src[order]] = val[order]
    u_rows = rows[order][first]
    starts = np.searchsorted(u_rows, np.arange(n_rows + 1)).astype(np.int64)
    return CandidateBatch(u_rows, codes[order][first], scores, starts)
