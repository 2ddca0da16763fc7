"""Content vectors of catalog items, and the exact inner-product index the ``content`` source searches.

An item's vector is built from its metadata alone (no model, nothing downloaded):

* **tokens**: the title's words (``w:``), word bigrams (``b:``) and character 3-grams of its words
  (``c:``, each word padded as ``<word>``), the description's words (``w:``, weighted lower), every tag
  (``t:``), every prefix of the category path (``k:shoes``, ``k:shoes/running``) and the brand (``r:``), each
  with the weight of its field (:class:`ContentConfig`), summed per token (the term frequency);
* **IDF**: ``idf = log((1 + N) / (1 + df)) + 1`` with ``N`` the items indexed and ``df`` the items holding the
  token, counted incrementally in 2^20 hashed slots (4 MB, fixed); a record replaces its item's counts;
* **hashing**: token ``t`` with CRC-32 ``h`` adds ``sign(h) * tf * idf`` to dimension ``h mod dim`` (signed
  feature hashing: collisions cancel on average instead of adding up);
* the vector is L2-normalised, float32, so the inner product is the cosine.

A record places its item at once: the vector is computed with the IDF of that moment (a batch of records
first counts the whole batch, so a bulk load gets the full batch's IDF). As ``N`` grows, the IDF drifts;
when ``N`` has doubled since the vectors were last weighted (:attr:`ContentConfig.reweight_growth`), every
vector is recomputed from the tokens kept per item (one vectorised pass; the doublings make it amortised
O(1) per item, and a catalog of fixed size never pays it again).

The index is the vector matrix itself, searched with faiss's exact inner-product kernel (``faiss.knn``, the
search of ``IndexFlatIP`` without a second copy of the vectors): one matrix product for a whole batch of
queries, a record updates its row in place, and an item that is hidden or not available has its row
zeroed (its vector is kept aside, so it still works as a seed) until it is recommendable again. Exact
search is chosen over HNSW because catalogs here have up to ~100k items, where a batched exact search
costs about as much as the rest of a recommend call (measured in ``docs/architecture.md``), an HNSW graph
cannot take in-place updates or removals, and exact search needs no tuning. ``dim`` = 256 by default: the
cosine of two unrelated items is hashed-collision noise of standard deviation about ``1/sqrt(dim)`` (0.06;
0.09 at 128, where the doctest's two unrelated films scored 0.24 against 0.21 for the two that share both
genres), and items that share a genre or a title word score 0.2 and more; memory is 1 KB per item (102 MB
at 100k items).

>>> idx = ContentIndex()
>>> idx.update([Item("a", "Star Wars (1977)", tags=("action", "sci-fi")),
...             Item("b", "Return of the Jedi (1983)", tags=("action", "sci-fi")),
...             Item("c", "Sense and Sensibility (1995)", tags=("drama", "romance"))])
3
>>> q = idx.query([["a"]], [[1.0]])
>>> scores, found = idx.search(q, 3)
>>> [idx.item_of(int(r)) for r in found[0]]
['a', 'b', 'c']
>>> round(idx.similarity("a", "b"), 2) > round(idx.similarity("a", "c"), 2)
True
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamrec.models.catalog.item import Item
from streamrec.models.errors import ConfigError

__all__ = ["ContentConfig", "ContentIndex", "item_tokens"]

DF_BITS = 20
_DF_MASK = (1 << DF_BITS) - 1
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
TOKEN = np.dtype([("h", "<u4"), ("tf", "<f4")])


@dataclass(frozen=True)
class ContentConfig:
    """Dimension, field weights and bounds of the content vectors (see the module docstring)."""

    dim: int = 256
    title: float = 1.0          # title words
    bigrams: float = 0.5        # title word bigrams
    chars: float = 0.25         # character n-grams of title words
    char_n: int = 3
    description: float = 0.3    # description words
    tags: float = 1.0
    category: float = 1.0       # each prefix of the category path
    brand: float = 1.0
    max_items: int = 200_000    # items beyond this are not indexed (counted in stats: content_refused)
    reweight_growth: float = 2.0
    flat_max_items: int = 20_000  # exact search up to this many items, an HNSW graph above
    hnsw_m: int = 16
    hnsw_ef_construction: int = 40
    hnsw_ef_search: int = 64

    def __post_init__(self) -> None:
        if not 8 <= self.dim <= 4096:
            raise ConfigError(f"content dim is {self.dim}; use 8 to 4096")
        if self.char_n < 2 or self.max_items < 1 or self.reweight_growth <= 1.0:
            raise ConfigError("content char_n must be 2 or more, max_items 1 or more, reweight_growth above 1")
        if min(self.hnsw_m, self.hnsw_ef_construction, self.hnsw_ef_search) < 1:
            raise ConfigError("content hnsw_m, hnsw_ef_construction and hnsw_ef_search must be 1 or more")
        for name in ("title", "bigrams", "chars", "description", "tags", "category", "brand"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"content weight {name} is {value}; give a finite number >= 0")


def _words(text: str | None) -> list[str]:
    return _WORD.findall(text.lower()) if text else []


def item_tokens(item: Item, cfg: ContentConfig) -> dict[str, float]:
    """The item's weighted tokens (token -> summed field weight).

    >>> sorted(item_tokens(Item("x", "Red Shoe", category=("shoes", "running")), ContentConfig(chars=0)))
    ['b:red shoe', 'k:shoes', 'k:shoes/running', 'w:red', 'w:shoe']
    """
    fields: list[tuple[list[str], float]] = []
    words = _words(item.title)
    fields.append((["w:" + w for w in words], cfg.title))
    if cfg.bigrams > 0 and len(words) > 1:
        fields.append(([f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False)], cfg.bigrams))
    if cfg.chars > 0:
        n = cfg.char_n
        padded = [f"<{w}>" for w in words]
        fields.append((["c:" + p[j:j + n] for p in padded for j in range(len(p) - n + 1)], cfg.chars))
    if item.description:
        fields.append((["w:" + w for w in _words(item.description)], cfg.description))
    fields.append((["t:" + " ".join(t) for t in map(_words, item.tags) if t], cfg.tags))
    path: list[str] = []
    levels: list[str] = []
    for level in item.category:
        level_words = _words(level)
        if not level_words:
            break
        path.append(" ".join(level_words))
        levels.append("k:" + "/".join(path))
    fields.append((levels, cfg.category))
    brand = _words(item.brand)
    if brand:
        fields.append((["r:" + " ".join(brand)], cfg.brand))
    out: dict[str, float] = {}
    get = out.get
    for tokens, w in fields:
        if w > 0:
            for t in tokens:
                out[t] = get(t, 0.0) + w
    return out


def _pack(tokens: dict[str, float]) -> np.ndarray:
    packed = np.empty(len(tokens), dtype=TOKEN)
    crc = zlib.crc32
    packed["h"] = [crc(t.encode()) for t in tokens]
    packed["tf"] = list(tokens.values())
    return packed


class ContentIndex:
    """Content vectors of the catalog's items and their inner-product search (module docstring)."""

    def __init__(self, config: ContentConfig | None = None) -> None:
        self.config = cfg = config or ContentConfig()
        self.dim = cfg.dim
        self._mat = np.zeros((0, cfg.dim), dtype=np.float32)     # rows 0..n-1 (zero: not recommendable)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._tokens: list[np.ndarray] = []                       # row -> packed tokens
        self._held: dict[int, np.ndarray] = {}                    # rows of items not recommendable
        self._df = np.zeros(1 << DF_BITS, dtype=np.int32)
        self._weighted_at = 0                                     # N when every vector was last weighted
        self._ann: Any = None                                     # faiss HNSW above flat_max_items
        self._ann_row: list[int] = []                             # HNSW id -> row (-1: superseded)
        self._ann_of: dict[int, int] = {}                         # row -> its current HNSW id
        self.refused = 0
        self.empty = 0                                            # records with no token at all
        self.reweights = 0
        self.ann_builds = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._row

    def item_of(self, row: int) -> str:
        return self._ids[row]

    def row_of(self, item: str) -> int:
        return self._row.get(item, -1)

    @property
    def kind(self) -> str:
        """``flat`` (exact search over the vectors) or ``hnsw`` (above ``flat_max_items``)."""
        return "flat" if self._ann is None else "hnsw"

    # --- updates ------------------------------------------------------------------------------------
    def update(self, items: Sequence[Item]) -> int:
        """Index catalog records (the newest record of an item wins); returns the items (re)placed."""
        latest: dict[str, Item] = {}
        for it in items:
            latest.pop(it.item_id, None)
            latest[it.item_id] = it
        rows: list[int] = []
        packs: list[np.ndarray] = []
        shown: list[bool] = []
        gone: list[np.ndarray] = []
        for item_id, it in latest.items():
            packed = _pack(item_tokens(it, self.config))
            row = self._row.get(item_id)
            if row is None:
                if len(self._ids) >= self.config.max_items:
                    self.refused += 1
                    continue
                row = len(self._ids)
                self._ids.append(item_id)
                self._row[item_id] = row
                self._tokens.append(packed)
            else:
                gone.append(self._tokens[row]["h"])
                self._tokens[row] = packed
            self.empty += not len(packed)
            rows.append(row)
            packs.append(packed)
            shown.append(it.recommendable)
        if not rows:
            return 0
        if gone:   # counts of the replaced records out, the whole batch's in
            self._count(np.concatenate(gone), -1)
        self._count(np.concatenate([p["h"] for p in packs]), 1)
        self._grow(len(self._ids))
        n = len(self._ids)
        if n >= 64 and n >= self._weighted_at * self.config.reweight_growth:
            self._reweight(shown_rows=dict(zip(rows, shown, strict=True)))
        else:
            vecs = self._vectors(packs)
            for r, vec, ok in zip(rows, vecs, shown, strict=True):
                self._place(r, vec, ok)
            self._sync_ann(rows)
        return len(rows)

    def _count(self, hashes: np.ndarray, sign: int) -> None:
        slots = (hashes & _DF_MASK).astype(np.int64)
        if len(slots) < 50_000:          # a few records: scattered adds (a bincount would touch all 2^20 slots)
            np.add.at(self._df, slots, sign)
        else:
            self._df += sign * np.bincount(slots, minlength=1 << DF_BITS).astype(np.int32)

    def _grow(self, n: int) -> None:
        if n > len(self._mat):       # by a quarter: amortised O(1) per item, at most 25 % of the rows unused
            mat = np.zeros((max(n, len(self._mat) + len(self._mat) // 4, 64), self.dim), dtype=np.float32)
            mat[:len(self._mat)] = self._mat
            self._mat = mat

    def _place(self, row: int, vec: np.ndarray, recommendable: bool) -> None:
        if recommendable:
            self._mat[row] = vec
            self._held.pop(row, None)
        else:
            self._mat[row] = 0.0
            self._held[row] = vec

    def _vectors(self, packs: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised vectors of packed token lists, in one bincount."""
        m, d = len(packs), self.dim
        if m == 0:
            return np.zeros((0, d), dtype=np.float32)
        sizes = [len(p) for p in packs]
        flat = np.concatenate(packs) if sum(sizes) else np.zeros(0, dtype=TOKEN)
        h = flat["h"].astype(np.int64)
        n = max(len(self._ids), 1)
        idf = np.log((1.0 + n) / (1.0 + self._df[h & _DF_MASK].astype(np.float64))) + 1.0
        weight = flat["tf"] * idf * np.where(h >> 31, -1.0, 1.0)
        keys = np.repeat(np.arange(m, dtype=np.int64), sizes) * d + h % d
        mat = np.bincount(keys, weight, minlength=m * d).astype(np.float32).reshape(m, d)
        norm = np.linalg.norm(mat, axis=1, keepdims=True)
        return mat / np.where(norm > 0, norm, 1.0)

    def _reweight(self, shown_rows: dict[int, bool]) -> None:
        """Every vector again with the IDF of now (``shown_rows``: this batch's recommendable flags)."""
        n = len(self._ids)
        held = set(self._held)
        step = 20_000
        for start in range(0, n, step):
            vecs = self._vectors(self._tokens[start:start + step])
            for k in range(len(vecs)):
                r = start + k
                self._place(r, vecs[k], shown_rows.get(r, r not in held))
        self._weighted_at = n
        self.reweights += 1
        self._ann = None                  # every vector changed: the graph is rebuilt
        self._sync_ann([])

    # --- the HNSW graph above flat_max_items ------------------------------------------------------
    def _sync_ann(self, rows: Sequence[int]) -> None:
        n, cfg = len(self._ids), self.config
        if n <= cfg.flat_max_items:
            return
        dead = len(self._ann_row) - len(self._ann_of)
        if self._ann is None or dead > 0.25 * max(len(self._ann_row), 1):
            self._build_ann()
            return
        fresh: list[int] = []
        for r in rows:
            old = self._ann_of.pop(r, None)
            if old is not None:
                self._ann_row[old] = -1
            if r not in self._held:
                fresh.append(r)
        if fresh:
            base = len(self._ann_row)
            self._ann.add(np.ascontiguousarray(self._mat[fresh]))
            self._ann_row.extend(fresh)
            self._ann_of.update({r: base + k for k, r in enumerate(fresh)})

    def _build_ann(self) -> None:
        import faiss

        cfg = self.config
        ann = faiss.IndexHNSWFlat(self.dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        ann.hnsw.efConstruction = cfg.hnsw_ef_construction
        live = [r for r in range(len(self._ids)) if r not in self._held]
        if live:
            ann.add(np.ascontiguousarray(self._mat[live]))
        self._ann, self._ann_row = ann, live
        self._ann_of = {r: k for k, r in enumerate(live)}
        self.ann_builds += 1

    # --- queries ------------------------------------------------------------------------------------
    def vector(self, item: str) -> np.ndarray | None:
        """The item's vector (also for an item that is not recommendable), ``None`` if not indexed."""
        row = self._row.get(item)
        if row is None:
            return None
        held = self._held.get(row)
        return self._mat[row] if held is None else held

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.vector(a), self.vector(b)
        return 0.0 if va is None or vb is None else float(va @ vb)

    def query(self, seeds: Sequence[Sequence[str]], weights: Sequence[Sequence[float]]) -> np.ndarray:
        """One query per list of seeds: ``sum_s w_s * v_s``, so a candidate's inner product with it is the
        weighted sum of its cosines to the seeds (seeds not indexed add nothing; no seed: a zero row)."""
        q = np.zeros((len(seeds), self.dim), dtype=np.float32)
        for r, (items, ws) in enumerate(zip(seeds, weights, strict=True)):
            for item, w in zip(items, ws, strict=True):
                v = self.vector(item)
                if v is not None:
                    q[r] += np.float32(w) * v
        return q

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` rows by inner product per query: ``(scores, rows)``, ``-1`` rows where fewer (items
        not recommendable score 0 in flat mode and are left out in HNSW mode)."""
        import faiss

        n = len(self._ids)
        m = len(queries)
        if n == 0 or m == 0 or k < 1:
            return np.zeros((m, 0), dtype=np.float32), np.zeros((m, 0), dtype=np.int64)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self._ann is None:
            return faiss.knn(q, self._mat[:n], min(k, n), metric=faiss.METRIC_INNER_PRODUCT)
        self._ann.hnsw.efSearch = max(self.config.hnsw_ef_search, k)
        scores, ids = self._ann.search(q, k)
        mapping = np.asarray(self._ann_row, dtype=np.int64)
        rows = np.where(ids >= 0, mapping[np.maximum(ids, 0)], -1)
        stale = rows < 0
        if stale.any():                    # superseded entries: moved to the end, as missing
            order = np.argsort(stale, axis=1, kind="stable")
            rows = np.take_along_axis(rows, order, axis=1)
            scores = np.where(np.take_along_axis(stale, order, axis=1), -np.inf,
                              np.take_along_axis(scores, order, axis=1)).astype(np.float32)
        return scores, rows

    def memory_bytes(self) -> int:
        """Bytes held: vectors, token lists, IDF counts, and the HNSW graph's copy of the vectors and links."""
        ann = 0 if self._ann is None else self._ann.ntotal * (4 * self.dim + 8 * self.config.hnsw_m + 16)
        return int(self._mat.nbytes + self._df.nbytes + sum(t.nbytes + 112 for t in self._tokens)
                   + sum(v.nbytes for v in self._held.values()) + ann)

    def stats(self) -> dict[str, Any]:
        return {"content_items": len(self._ids), "content_hidden": len(self._held), "content_refused": self.refused,
                "content_empty": self.empty, "content_reweights": self.reweights, "content_index": self.kind}
