"""Item-to-item co-visitation learned online from users' recent sequences.

When a user touches item ``j``, each of the user's previous ``window`` distinct items ``i`` (at distance
``1 .. window`` in the sequence) gains ``strength(j) / distance`` on the pairs ``(i, j)`` and ``(j, i)``.
Weights decay exponentially with event time (``half_life_ms``) without ever visiting old pairs: an
update at time ``t`` adds ``w * 2 ** ((t - t_ref) / half_life)`` (it *grows* with time instead of the
old weights shrinking), so every weight is in the same units and ranking is unchanged; when the growth
factor gets large the whole table is rescaled once and ``t_ref`` moves forward (every ~40 half-lives).

Bounded memory: at most ``max_neighbors`` neighbours per item (pruned to the strongest when an item
holds half as many again) and at most ``max_items`` items (least recently touched dropped first).
Items are plain strings, so items the base model has never seen work from their first co-occurrence.

Storage is packed: every item is interned to an int code, and an item's neighbours are one fixed-capacity
row of two numpy arrays (neighbour codes ``int32``, weights ``float64``: the growth factor reaches ``2**40``
between rescales, where float32 would round increments away), ``max_neighbors * 1.5 + window`` slots per
row; the arrays grow with the items held, never preallocated to ``max_items``. A row keeps its neighbours in
the order they arrived (pruning keeps the strongest, strongest first), so sums and ties come out as a
dict-of-dicts would give them. An evicted item's code stays interned (rows may still name it) until a
vectorised pass, once per ``max_items / 8`` dropped rows, frees the codes no row names.

>>> cv = CoVisitation(window=2)
>>> for prev, item in [((), "a"), (("a",), "b"), (("b", "a"), "c")]:
...     cv.update(prev, item, strength=1.0, ts_ms=0)
>>> cv.neighbors("a")
[('b', 1.0), ('c', 0.5)]
>>> items, scores = cv.candidates(["c"], [1.0], k=5)
>>> items, scores.tolist()
(['b', 'a'], [1.0, 0.5])
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from streamrec.models.decay import ForwardDecay
from streamrec.models.errors import ConfigError
from streamrec.models.timeunits import DAY_MS

_FIRST_ROWS = 256


class CoVisitation:
    """Time-decayed item-to-item co-occurrence counts with bounded memory, packed in numpy rows."""

    def __init__(self, window: int = 5, max_neighbors: int = 20, max_items: int = 100_000,
                 half_life_ms: int = 7 * DAY_MS) -> None:
        if window < 1 or max_neighbors < 1 or max_items < 1 or half_life_ms <= 0:
            raise ConfigError("CoVisitation needs window, max_neighbors, max_items >= 1 and half_life_ms > 0 "
                              f"(got {window}, {max_neighbors}, {max_items}, {half_life_ms})")
        self.window, self.max_neighbors, self.max_items = window, max_neighbors, max_items
        self.half_life_ms = half_life_ms
        self._hi = max_neighbors + max(1, max_neighbors // 2)
        self._width = self._hi + window          # a row holds at most hi + window before it is pruned
        self._rows: OrderedDict[str, int] = OrderedDict()   # items with a row -> code, least recent first
        self._ghosts: dict[str, int] = {}        # items without a row that other rows still name -> code
        self._ids: list[str] = []                # code -> item
        self._free: list[int] = []               # codes to reuse
        self._collect_at = max(1_024, max_items // 8)   # ghosts held before unnamed ones are freed
        self._nbr = np.zeros(0, dtype=np.int32)   # row slots, flat: row c is [c * width, (c + 1) * width)
        self._w = np.zeros(0, dtype=np.float64)
        # memoryviews of the two (``i`` and ``d`` items): typed Any, as typeshed's memoryview takes ints only
        self._nv: Any = self._nbr.data
        self._wv: Any = self._w.data
        self._len: list[int] = []                # neighbours held per code
        self._clock = ForwardDecay(half_life_ms)
        self.evicted = 0
        self.pruned = 0
        self.rebases = 0
        self.refused = 0     # updates with a strength that is negative, NaN or infinite (never stored)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item: object) -> bool:
        return item in self._rows

    @property
    def now_ms(self) -> int:
        return self._clock.now_ms

    @property
    def _nb(self) -> _RowsView:
        """The rows as a read-only mapping ``item -> {neighbour: stored weight}`` (built per lookup)."""
        return _RowsView(self)

    # --- codes and rows ---------------------------------------------------------------------------
    # Row ``c`` is slots ``c * width .. c * width + len[c]`` of the flat arrays ``_nbr`` / ``_w``; the per-pair
    # work reads and writes them through memoryviews (Python ints and floats, no numpy call per pair).
    def _grow(self) -> None:
        n = len(self._len)
        # double up to max_items rows, then by a quarter (codes of evicted items that rows still name)
        size = max(_FIRST_ROWS, min(2 * n, self.max_items) if n < self.max_items else n + n // 4)
        width = self._width
        nbr = np.zeros(size * width, dtype=np.int32)
        w = np.zeros(size * width, dtype=np.float64)
        nbr[:n * width], w[:n * width] = self._nbr, self._w
        self._nbr, self._w = nbr, w
        self._nv, self._wv = nbr.data, w.data
        self._len.extend([0] * (size - n))
        self._free.extend(range(size - 1, n - 1, -1))   # lowest code first
        self._ids.extend([""] * (size - n))

    def _code(self, item: str, keep: str | None = None) -> int:
        """A new row for ``item`` (its old code if other rows still name it), the least recent item dropped
        first when the table is full (never ``keep``: the item an update is adding pairs to)."""
        if len(self._rows) >= self.max_items:
            if keep is not None and next(iter(self._rows)) == keep:
                self._rows.move_to_end(keep)
            self._evict()
        code = self._ghosts.pop(item, None)
        if code is None:
            if not self._free:
                self._grow()
            code = self._free.pop()
            self._ids[code] = item
        self._len[code] = 0
        self._rows[item] = code
        return code

    def _evict(self) -> None:
        item, code = self._rows.popitem(last=False)
        self._drop_row(item, code)
        self.evicted += 1

    def _drop_row(self, item: str, code: int) -> None:
        """``item`` (already out of ``_rows``) loses its row; its code stays interned (a ghost) while other rows
        may name it, until :meth:`_collect` finds no row does."""
        self._len[code] = 0
        self._ghosts[item] = code
        if len(self._ghosts) > self._collect_at:
            self._collect()

    def _collect(self) -> None:
        """Free the codes of ghosts that no row names any more (one vectorised pass over the slots, once per
        ``max_items / 8`` dropped rows)."""
        lens = np.array(self._len, dtype=np.int32)
        slots = self._nbr.reshape(len(lens), self._width)
        named = slots[np.arange(self._width)[None, :] < lens[:, None]]
        ghosts = np.fromiter(self._ghosts.values(), dtype=np.int64, count=len(self._ghosts))
        for code in ghosts[~np.isin(ghosts, named)].tolist():
            del self._ghosts[self._ids[code]]
            self._ids[code] = ""
            self._free.append(code)
        self._collect_at = len(self._ghosts) + max(1_024, self.max_items // 8)

    def _prune(self, row: int) -> None:
        n, base, m = self._len[row], row * self._width, self.max_neighbors
        codes, weights = self._nv[base:base + n].tolist(), self._wv[base:base + n].tolist()
        order = sorted(range(n), key=weights.__getitem__, reverse=True)   # stable: ties keep arrival order
        self._nv[base:base + m] = array("i", [codes[k] for k in order[:m]])
        self._wv[base:base + m] = array("d", [weights[k] for k in order[:m]])
        self._len[row] = m
        self.pruned += 1

    # --- time -------------------------------------------------------------------------------------
    def _growth(self, ts_ms: int) -> float:
        g, rescale = self._clock.growth(ts_ms)
        if rescale is not None:
            self._rebase(rescale)
        return g

    def _rebase(self, factor: float) -> None:
        width = self._width
        for item, code in list(self._rows.items()):
            n, base = self._len[code], code * width
            w = self._w[base:base + n] * factor
            ok = w > 1e-9
            if ok.all():
                self._w[base:base + n] = w
                continue
            m = int(ok.sum())
            nbr = self._nbr[base:base + n]
            nbr[:m], self._w[base:base + m] = nbr[ok], w[ok]
            self._len[code] = m
            if not m:
                del self._rows[item]
                self._drop_row(item, code)
        self.rebases += 1

    def _scale(self) -> float:
        return self._clock.scale()

    # --- learning ---------------------------------------------------------------------------------
    def update(self, previous: Sequence[str], item: str, strength: float, ts_ms: int) -> None:
        """Record that a user touched ``item`` after ``previous`` (their recent items, most recent first).

        A repeat of the most recent item (a refresh, a second view) adds nothing, and so does a strength
        that is negative or not finite (counted in ``refused``): one bad value must not poison the pairs.
        """
        if not 0.0 <= strength < math.inf:   # also false for NaN
            self.refused += 1
            return
        rows = self._rows
        if not previous or previous[0] == item:
            if item in rows:
                rows.move_to_end(item)
            return
        g = strength * self._growth(ts_ms)
        cj = rows.get(item)
        if cj is None:
            cj = self._code(item)
        rows.move_to_end(item)
        hi, width, lens = self._hi, self._width, self._len
        base_j = cj * width
        row_j: list[int] | None = None           # row j's neighbour codes, read once
        done: list[str] = []
        for dist, i in enumerate(previous[:self.window], 1):
            if i == item or i in done:
                continue
            done.append(i)
            w = g / dist
            ci = rows.get(i)
            if ci is None:
                ci = self._code(i, keep=item)
            nv, wv = self._nv, self._wv              # (new rows may have grown the arrays)
            if row_j is None:
                row_j = nv[base_j:base_j + lens[cj]].tolist()
            try:                                     # row_j[i] += w
                k = row_j.index(ci)
            except ValueError:
                k = len(row_j)
                if k == width:                      # only a table smaller than its window gets here
                    self._prune(cj)
                    row_j = nv[base_j:base_j + lens[cj]].tolist()
                    k = len(row_j)
                nv[base_j + k] = ci
                wv[base_j + k] = w
                lens[cj] = k + 1
                row_j.append(ci)
            else:
                wv[base_j + k] += w
            n, base = lens[ci], ci * width           # row_i[j] += w
            try:
                k = nv[base:base + n].tolist().index(cj)
            except ValueError:
                nv[base + n] = cj
                wv[base + n] = w
                lens[ci] = n = n + 1
                if n > hi:
                    self._prune(ci)
            else:
                wv[base + k] += w
        if lens[cj] > hi:
            self._prune(cj)

    # --- reading ----------------------------------------------------------------------------------
    def row(self, item: str) -> dict[str, float]:
        """The item's neighbours and their stored weights (internal units), in the row's order."""
        code = self._rows.get(item)
        if code is None:
            return {}
        n, base, ids = self._len[code], code * self._width, self._ids
        return {ids[c]: w for c, w in zip(self._nv[base:base + n].tolist(), self._wv[base:base + n].tolist(),
                                          strict=True)}

    def weights(self, item: str, others: Sequence[str]) -> list[float]:
        """The stored weights (internal units, as :meth:`row` gives them) of the pairs ``(item, j)`` for each
        ``j`` of ``others``, 0.0 where the row does not hold ``j``: what :meth:`row` would answer for those
        ``j``, without building the whole row (an explanation needs a few chosen items per seed)."""
        code = self._rows.get(item)
        if code is None or not self._len[code]:
            return [0.0] * len(others)
        n, base, rows, ghosts = self._len[code], code * self._width, self._rows, self._ghosts
        codes = self._nv[base:base + n].tolist()
        out: list[float] = []
        got: list[float] | None = None
        held = set(codes)
        for j in others:
            c = rows.get(j)
            if c is None:
                c = ghosts.get(j)
            if c is None or c not in held:
                out.append(0.0)
                continue
            if got is None:
                got = self._wv[base:base + n].tolist()
            out.append(got[codes.index(c)])
        return out

    def neighbors(self, item: str, k: int | None = None) -> list[tuple[str, float]]:
        """The item's neighbours, strongest first, with their weights decayed to ``now_ms``."""
        code = self._rows.get(item)
        n = 0 if code is None else self._len[code]
        if code is None or not n:
            return []
        base = code * self._width
        w = self._w[base:base + n]
        order = np.argsort(-w, kind="stable")[:k or n]
        scale, ids = self._scale(), self._ids
        return [(ids[c], v * scale) for c, v in zip(self._nbr[base:base + n][order].tolist(), w[order].tolist(),
                                                     strict=True)]

    def scores(self, seeds: Sequence[str], weights: Sequence[float] | np.ndarray) -> dict[str, float]:
        """``sum_s weight_s * w(s, j)`` for every neighbour ``j`` of the seeds, unsorted, in internal
        units (a positive factor away from :meth:`candidates`' scores; for ranking and per-list
        normalisation the factor does not matter)."""
        acc: dict[str, float] = {}
        rows, lens, nv, wv, width, ids = self._rows, self._len, self._nv, self._wv, self._width, self._ids
        for s, ws in zip(seeds, weights, strict=True):
            code = rows.get(s)
            if code is None:
                continue
            n = lens[code]
            if not n:
                continue
            base = code * width
            names = [ids[c] for c in nv[base:base + n].tolist()]
            if not acc:
                acc = {j: ws * w for j, w in zip(names, wv[base:base + n].tolist(), strict=True)}
                continue
            get = acc.get
            for j, w in zip(names, wv[base:base + n].tolist(), strict=True):
                acc[j] = get(j, 0.0) + ws * w
        return acc

    def candidates(self, seeds: Sequence[str], weights: Sequence[float] | np.ndarray,
                   k: int) -> tuple[list[str], np.ndarray]:
        """Items co-visited with ``seeds``: ``score(j) = sum_s weight_s * w(s, j)``, the best ``k`` first.

        Returns ``(item ids, float32 scores)``; seeds are not excluded (the ranking filters decide).
        """
        acc = self.scores(seeds, weights)
        if not acc:
            return [], np.zeros(0, dtype=np.float32)
        keys = list(acc)
        vals = np.fromiter(acc.values(), dtype=np.float64, count=len(keys))
        order = np.argsort(-vals, kind="stable")[:k]
        return [keys[i] for i in order], (vals[order] * self._scale()).astype(np.float32)

    def memory_bytes(self) -> int:
        """Approximate bytes held: the row arrays, the item dicts and code list (item ids are shared with the
        rest of the engine)."""
        lists = sum(map(sys.getsizeof, (self._len, self._ids, self._free)))
        return self._nbr.nbytes + self._w.nbytes + lists + sys.getsizeof(self._rows) + 40 * len(self._rows) \
            + sys.getsizeof(self._ghosts) + 40 * len(self._ghosts)


class _RowsView:
    """``CoVisitation._nb``: the packed rows read as ``{item: {neighbour: stored weight}}``. Each row is built
    once per view (a source's ``explain`` takes one view per request and asks for each seed per chosen item);
    take a new view after the table has changed."""

    def __init__(self, table: CoVisitation) -> None:
        self._t = table
        self._built: dict[str, dict[str, float]] = {}

    def get(self, item: str, default: dict[str, float] | None = None) -> dict[str, float] | None:
        row = self._built.get(item)
        if row is None:
            if item not in self._t._rows:
                return default
            row = self._built[item] = self._t.row(item)
        return row

    def __getitem__(self, item: str) -> dict[str, float]:
        row = self.get(item)
        if row is None:
            raise KeyError(item)
        return row

    def __contains__(self, item: object) -> bool:
        return item in self._t._rows

    def __len__(self) -> int:
        return len(self._t._rows)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._t._rows))
