"""Training and evaluation data for the base model, built from an event log in time order.

:func:`prepare` deduplicates events by ``event_id`` and sorts them by ``(timestamp, user, item,
event_id)`` into parallel numpy arrays (a :class:`Log`). :class:`Histories` then answers, for any event
of the log taken as a *target*, "which items did this user touch before it?": the previous up to
``max_history`` items (most recent first) that exist in a given item vocabulary, with their type
index, their age relative to the target in seconds and their strength
(:func:`models.base.encoder.event_strength`). Histories are gathered per batch with index arithmetic, so memory
stays linear in the number of events however long the histories are.

:func:`rank_metrics` turns a score matrix into HR@k / NDCG@k sums (pessimistic on ties, so a user
vector of zeros never scores a hit).

>>> from streamrec.models.events import Event, EventType
>>> evs = [Event(f"e{k}", "u1", f"i{k}", EventType.CLICK, 1000 * k) for k in range(3)]
>>> log = prepare(evs)
>>> h = Histories.build(log, np.arange(len(log.item_ids)))
>>> b = h.gather(np.array([2]), max_history=4)
>>> b.items.tolist(), b.mask.tolist(), b.ages_s.tolist()
([[1, 0, 0, 0]], [[True, True, False, False]], [[1.0, 2.0, 0.0, 0.0]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from streamrec.models.base.encoder import TYPE_INDEX, event_strength
from streamrec.models.errors import InputError
from streamrec.models.events import Event


@dataclass(frozen=True)
class Log:
    """An event log as parallel arrays, deduplicated and sorted by time (ties by user, item, event id)."""

    user_ids: list[str]
    item_ids: list[str]        # distinct item ids of the whole log, sorted
    user: np.ndarray           # (n,) int64 index into user_ids
    item: np.ndarray           # (n,) int64 index into item_ids
    type_idx: np.ndarray       # (n,) int64 index into models.base.encoder.TYPE_NAMES
    strength: np.ndarray       # (n,) float32, event_strength of each event
    ts_ms: np.ndarray          # (n,) int64
    duplicates: int            # events dropped because their event_id was seen before

    def __len__(self) -> int:
        return int(self.user.shape[0])


def prepare(events: Sequence[Event]) -> Log:
    """Deduplicate (first occurrence of an event id wins) and sort; the input is not modified."""
    seen: set[str] = set()
    rows: list[tuple[int, str, str, str, Event]] = []
    for e in events:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        rows.append((int(e.timestamp_ms), e.user_id, e.item_id, e.event_id, e))
    if not rows:
        raise InputError("the event log is empty: give the trainer a file or topic that holds events")
    rows.sort(key=lambda r: r[:4])
    user_ids = sorted({r[1] for r in rows})
    item_ids = sorted({r[2] for r in rows})
    uix = {u: k for k, u in enumerate(user_ids)}
    iix = {i: k for k, i in enumerate(item_ids)}
    return Log(
        user_ids=user_ids,
        item_ids=item_ids,
        user=np.fromiter((uix[r[1]] for r in rows), dtype=np.int64, count=len(rows)),
        item=np.fromiter((iix[r[2]] for r in rows), dtype=np.int64, count=len(rows)),
        type_idx=np.fromiter((TYPE_INDEX[r[4].event_type.value] for r in rows), dtype=np.int64,
                             count=len(rows)),
        strength=np.fromiter((event_strength(r[4].event_type.value, r[4].value) for r in rows),
                             dtype=np.float32, count=len(rows)),
        ts_ms=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        duplicates=len(events) - len(rows),
    )


@dataclass(frozen=True)
class HistoryBatch:
    """Padded histories of a batch of targets, most recent item first; ``mask`` marks real entries."""

    items: np.ndarray      # (B, H) int64 vocabulary rows (0 where masked)
    types: np.ndarray      # (B, H) int64
    ages_s: np.ndarray     # (B, H) float64 seconds between the history event and the target
    strengths: np.ndarray  # (B, H) float32 (0 where masked)
    mask: np.ndarray       # (B, H) bool

    def to(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                     torch.Tensor]:
        """``(items, types, ages_s, strengths, mask)`` as tensors on ``device``."""
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(device)
        return t(self.items), t(self.types), t(self.ages_s), t(self.strengths), t(self.mask)


@dataclass(frozen=True)
class Histories:
    """Per-user histories of one item vocabulary, addressable by log position.

    ``row_of`` maps each log item index to a vocabulary row, or -1 for an item outside the vocabulary;
    such items are left out of every history (a worker cannot embed them either) and as a target they
    can never be hit.
    """

    h_item: np.ndarray     # vocabulary events grouped by user, each user's in time order: row
    h_type: np.ndarray
    h_strength: np.ndarray
    h_ts: np.ndarray
    start: np.ndarray      # (n,) first index in h_* of the target's user
    end: np.ndarray        # (n,) one past the last h_* index before the target
    target: np.ndarray     # (n,) vocabulary row of the target item, -1 when outside the vocabulary
    ts_ms: np.ndarray      # (n,) target timestamps

    @classmethod
    def build(cls, log: Log, row_of: np.ndarray) -> Histories:
        rows = row_of[log.item]
        known = rows >= 0
        order = np.argsort(log.user, kind="stable")           # group by user, keep time order
        u_sorted = log.user[order]
        k_sorted = known[order].astype(np.int64)
        incl = np.cumsum(k_sorted)
        excl = incl - k_sorted                                  # known events before, across users
        first = np.searchsorted(u_sorted, u_sorted, side="left")
        before = excl - excl[first]                             # known events of the same user before
        start_sorted = excl[first]                              # that user's offset into h_*
        start = np.empty(len(log), dtype=np.int64)
        end = np.empty(len(log), dtype=np.int64)
        start[order] = start_sorted
        end[order] = start_sorted + before
        kept = order[known[order]]
        return cls(
            h_item=rows[kept], h_type=log.type_idx[kept], h_strength=log.strength[kept], h_ts=log.ts_ms[kept],
            start=start, end=end, target=rows, ts_ms=log.ts_ms,
        )

    def history_length(self, idx: np.ndarray) -> np.ndarray:
        return self.end[idx] - self.start[idx]

    def gather(self, idx: np.ndarray, max_history: int) -> HistoryBatch:
        """Histories of the targets at log positions ``idx``."""
        end, start = self.end[idx], self.start[idx]
        g = end[:, None] - 1 - np.arange(max_history)[None, :]
        mask = g >= start[:, None]
        g = np.where(mask, g, 0)
        if len(self.h_item) == 0:
            z = np.zeros(g.shape, dtype=np.int64)
            return HistoryBatch(z, z, z.astype(np.float64), z.astype(np.float32), mask)
        ages = (self.ts_ms[idx][:, None] - self.h_ts[g]).astype(np.float64) / 1000.0
        return HistoryBatch(
            items=np.where(mask, self.h_item[g], 0),
            types=np.where(mask, self.h_type[g], 0),
            ages_s=np.where(mask, ages, 0.0),
            strengths=np.where(mask, self.h_strength[g], np.float32(0)).astype(np.float32),
            mask=mask,
        )

    def seen(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(batch_row, vocabulary_row)`` pairs of every item each target's user touched before it."""
        lengths = self.history_length(idx)
        batch_rows = np.repeat(np.arange(len(idx)), lengths)
        offsets = np.repeat(self.start[idx] - np.cumsum(lengths) + lengths, lengths)
        return batch_rows, self.h_item[np.arange(int(lengths.sum())) + offsets]


def rank_metrics(scores: torch.Tensor, targets: torch.Tensor, k: int = 10,
                 exclude: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[float, float]:
    """Sums of HR@k and NDCG@k over the rows of ``scores`` (B, N); ``targets`` (B,) rows, -1 = unknown.

    The rank of a target counts every item scoring at least as high (pessimistic on ties). ``exclude``
    holds ``(row, column)`` pairs that cannot be recommended (already seen items).

    >>> s = torch.tensor([[0.9, 0.5, 0.1], [0.0, 0.0, 0.0]])
    >>> rank_metrics(s, torch.tensor([1, 0]), k=2)
    (1.0, 0.6309297535714575)
    """
    if exclude is not None and len(exclude[0]):
        scores = scores.clone()
        scores[exclude] = float("-inf")
    t = scores.gather(1, targets.clamp_min(0)[:, None])
    rank = (scores >= t).sum(dim=1) - 1
    hit = (targets >= 0) & torch.isfinite(t[:, 0]) & (rank < k)
    gain = (1.0 / torch.log2(rank.double() + 2.0)).masked_fill(~hit, 0.0)
    return float(hit.sum().item()), float(gain.sum().item())


def eval_rows(n_items: int) -> int:
    """How many targets to score at once so a (rows, n_items) score matrix stays near 16M entries."""
    return max(1, min(4096, (1 << 24) // max(n_items, 1)))


def seen_tensors(hist: Histories, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    r, c = hist.seen(idx)
    return torch.from_numpy(r).to(device), torch.from_numpy(c).to(device)


def popularity_metrics(hist: Histories, idx: np.ndarray, counts: np.ndarray, k: int = 10,
                       exclude_seen: bool = False) -> tuple[float, float]:
    """HR@k / NDCG@k sums of recommending the most frequent items (``counts`` per vocabulary row).

    Ties are broken by row so the list is deterministic; ``hist`` must use the same vocabulary.
    """
    n = len(counts)
    key = torch.from_numpy(counts.astype(np.float64) * (n + 1) + (n - np.arange(n)))
    hr = ndcg = 0.0
    step = eval_rows(n)
    for s in range(0, len(idx), step):
        chunk = idx[s:s + step]
        scores = key[None, :].expand(len(chunk), n)
        excl = seen_tensors(hist, chunk, torch.device("cpu")) if exclude_seen else None
        h, g = rank_metrics(scores, torch.from_numpy(hist.target[chunk]), k, excl)
        hr, ndcg = hr + h, ndcg + g
    return hr, ndcg


@dataclass(frozen=True)
class Plan:
    """The time split of a log and the targets each phase uses (shared by training and evaluation).

    Log positions ``[0, val_start)`` are the fit part, ``[val_start, hold_start)`` the validation slice
    and ``[hold_start, n)`` the holdout. ``val_idx`` and ``hold_idx`` are the targets of the last two
    whose user has an earlier event (cold targets are left to the fallbacks).
    """

    log: Log
    val_start: int
    hold_start: int
    every: Histories                    # histories over all items of the log
    val_idx: np.ndarray
    hold_idx: np.ndarray

    @classmethod
    def build(cls, events: Sequence[Event], holdout_fraction: float, validation_fraction: float,
              min_events: int = 50, max_validation: int = 20_000, seed: int = 0) -> Plan:
        log = prepare(events)
        n = len(log)
        if n < min_events:
            raise InputError(f"only {n} distinct events: the trainer needs at least {min_events}; "
                             "give it a longer log")
        hold_start = n - max(1, math.ceil(n * holdout_fraction))
        val_start = hold_start - math.ceil(hold_start * validation_fraction)
        fit_users, fit_items = np.unique(log.user[:val_start]), np.unique(log.item[:val_start])
        if len(fit_users) < 2 or len(fit_items) < 2:
            raise InputError(f"the training part has {len(fit_users)} user(s) and {len(fit_items)} item(s); "
                             "it needs at least 2 of each: give the trainer a longer or wider log")
        every = Histories.build(log, np.arange(len(log.item_ids)))
        pos = np.arange(n)
        warm = every.history_length(pos) > 0
        hold_idx = pos[hold_start:][warm[hold_start:]]
        if len(hold_idx) == 0:
            raise InputError("no holdout event belongs to a user seen before it, so there is nothing to "
                             "evaluate: raise holdout_fraction or give the trainer a longer log")
        val_idx = pos[val_start:hold_start][warm[val_start:hold_start]]
        if len(val_idx) > max_validation:
            rng = np.random.default_rng(seed + 1)
            val_idx = np.sort(rng.choice(val_idx, max_validation, replace=False))
        return cls(log, val_start, hold_start, every, val_idx, hold_idx)

    def histories(self, item_ids: Sequence[str]) -> Histories:
        """Histories over the vocabulary ``item_ids`` (rows in that order)."""
        row = {i: r for r, i in enumerate(item_ids)}
        rows = np.array([row.get(i, -1) for i in self.log.item_ids], dtype=np.int64)
        return Histories.build(self.log, rows)

    def popularity(self, k: int = 10, exclude_seen: bool = False) -> tuple[float, float]:
        """HR@k / NDCG@k sums of the most frequent items before the holdout, over the holdout targets."""
        counts = np.bincount(self.log.item[:self.hold_start], minlength=len(self.log.item_ids))
        return popularity_metrics(self.every, self.hold_idx, counts, k, exclude_seen)

    def data_range(self) -> dict[str, int]:
        ts = self.log.ts_ms
        return {"from_ms": int(ts[0]), "to_ms": int(ts[-1]), "events": len(self.log),
                "holdout_from_ms": int(ts[self.hold_start])}
