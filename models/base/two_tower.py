"""The torch two-tower retrieval model: the base model streamrec trains in batch.

*Item tower*: an embedding table ``(n_items, d)``; an item's vector is its row, L2-normalised.

*User tower*: exactly the function of :meth:`models.base.encoder.UserEncoder.encode`. A user's vector is a
pooling of the (normalised) vectors of their recent items, most recent first, with weights
``a_i = strength_i * 0.5 ** (age_i / half_life_s) * pos_weight[i]``, followed by ``W @ pooled + b`` and
L2 normalisation. ``pos_weight`` (kept positive as the softplus of a parameter), ``W`` and ``b`` are
learned; ``type_weight`` and ``half_life_s`` are fixed buffers. A row with an empty history gives the zero
vector, as the numpy encoder does.

There is deliberately **no user-id embedding**: a worker must be able to compute a user's vector with
numpy from that user's recent items alone (:meth:`TwoTower.to_encoder`), update it on every click, and
serve a user it has never seen from their first click on. The model learns what a user wants from what
they did, never who they are, so the same vectors work for users who arrived after training.

>>> import torch
>>> m = TwoTower(n_items=5, dim=4, max_history=3, seed=0)
>>> items = torch.tensor([[1, 2, 0]]); mask = torch.tensor([[True, True, False]])
>>> u = m.user_vectors(items, torch.zeros_like(items), torch.zeros(1, 3, dtype=torch.float64), None, mask)
>>> u.shape, round(float(u.detach().norm()), 5)
(torch.Size([1, 4]), 1.0)
>>> enc = m.to_encoder()
>>> enc.dim, enc.max_items
(4, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamrec.models.base.encoder import DEFAULT_TYPE_WEIGHTS, TYPE_NAMES, UserEncoder
from streamrec.models.base.trainingdata import Histories, eval_rows, rank_metrics, seen_tensors

DEFAULT_HALF_LIFE_S = 7 * 24 * 3600.0


def inverse_softplus(x: np.ndarray) -> np.ndarray:
    """The parameter whose softplus is ``x`` (``x > 0``), in float64."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 1e-6)
    return np.where(x > 20.0, x, np.log(np.expm1(np.minimum(x, 20.0))))


class TwoTower(nn.Module):
    """Item embedding table plus the learned parameters of the user encoder."""

    type_weight: torch.Tensor
    half_life_s: torch.Tensor

    def __init__(self, n_items: int, dim: int, max_history: int = 50,
                 half_life_s: float = DEFAULT_HALF_LIFE_S, type_weight: Sequence[float] | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.item_embedding = nn.Embedding(n_items, dim)
        with torch.no_grad():
            self.item_embedding.weight.copy_(torch.randn(n_items, dim, generator=gen) / math.sqrt(dim))
        self.pos_raw = nn.Parameter(torch.full((max_history,), float(inverse_softplus(np.ones(1))[0])))
        self.W = nn.Parameter(torch.eye(dim))
        self.b = nn.Parameter(torch.zeros(dim))
        tw = [DEFAULT_TYPE_WEIGHTS[t] for t in TYPE_NAMES] if type_weight is None else list(type_weight)
        self.register_buffer("type_weight", torch.tensor(tw, dtype=torch.float32))
        self.register_buffer("half_life_s", torch.tensor(float(half_life_s), dtype=torch.float64))

    @property
    def dim(self) -> int:
        return int(self.W.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_embedding.num_embeddings)

    @property
    def max_history(self) -> int:
        return int(self.pos_raw.shape[0])

    def pos_weight(self) -> torch.Tensor:
        return F.softplus(self.pos_raw)

    def item_vectors(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised vectors of the items at ``rows`` (any shape), or of every item."""
        if rows is None:
            return F.normalize(self.item_embedding.weight, dim=-1)
        index, vectors = self._distinct(rows)
        return F.embedding(index, vectors)

    def _distinct(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, vectors)`` with ``vectors[index] == item_vectors(rows)``, normalising each row once:
        the whole (small) table, or only the distinct rows asked for when the table is larger."""
        if self.n_items <= rows.numel():
            return rows, F.normalize(self.item_embedding.weight, dim=-1)
        uniq, inverse = torch.unique(rows, return_inverse=True)
        return inverse, F.normalize(self.item_embedding(uniq), dim=-1)

    def pooling_weights(self, types: torch.Tensor, ages_s: torch.Tensor, strengths: torch.Tensor | None,
                        mask: torch.Tensor) -> torch.Tensor:
        """``a_i`` for padded histories (B, H); ``strengths`` overrides the type weight, as in numpy."""
        base = self.type_weight[types] if strengths is None else strengths.to(torch.float32)
        decay = torch.pow(0.5, ages_s.to(torch.float64).clamp_min(0.0) / self.half_life_s).to(torch.float32)
        slots = torch.arange(types.shape[1], device=types.device).clamp_max(self.max_history - 1)
        pos = self.pos_weight()[slots].to(torch.float32)     # position i weighs pos_weight[min(i, P - 1)]
        a = base * decay * pos
        return torch.where(mask, a, torch.zeros((), dtype=a.dtype, device=a.device))

    def user_vectors(self, items: torch.Tensor, types: torch.Tensor, ages_s: torch.Tensor,
                     strengths: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """User vectors (B, d) from padded histories (B, H), most recent item first."""
        a = self.pooling_weights(types, ages_s, strengths, mask)
        index, vectors = self._distinct(items)
        # sum_i a_i * e_i as one weighted embedding bag (masked entries have a_i = 0)
        weighted = F.embedding_bag(index, vectors, per_sample_weights=a.to(vectors.dtype), mode="sum")
        pooled = weighted / (a.sum(dim=1, keepdim=True) + 1e-9)
        u = F.normalize(pooled @ self.W.T + self.b, dim=-1)
        return torch.where(mask.any(dim=1, keepdim=True), u, torch.zeros((), dtype=u.dtype, device=u.device))

    def forward(self, items: torch.Tensor, types: torch.Tensor, ages_s: torch.Tensor,
                strengths: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(items, types, ages_s, strengths, mask)

    # -- export and import ------------------------------------------------------------------------

    @torch.no_grad()
    def item_embeddings(self) -> np.ndarray:
        """All item vectors, L2-normalised, as a float32 numpy array (a copy)."""
        return np.array(self.item_vectors().float().cpu().numpy(), dtype=np.float32, copy=True)

    @torch.no_grad()
    def to_encoder(self) -> UserEncoder:
        """The user tower as a numpy :class:`UserEncoder` (arrays are copies)."""
        def arr(t: torch.Tensor) -> np.ndarray:
            return np.array(t.detach().float().cpu().numpy(), dtype=np.float32, copy=True)
        return UserEncoder(pos_weight=arr(self.pos_weight()), W=arr(self.W), b=arr(self.b),
                           half_life_s=float(self.half_life_s.item()), type_weight=arr(self.type_weight))

    @torch.no_grad()
    def load_item_rows(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Overwrite the embeddings of ``rows`` with ``vectors`` (e.g. from a model in service)."""
        w = self.item_embedding.weight
        w[torch.as_tensor(rows, dtype=torch.long, device=w.device)] = torch.as_tensor(
            np.asarray(vectors, dtype=np.float32), device=w.device)

    @torch.no_grad()
    def load_encoder(self, encoder: UserEncoder) -> None:
        """Take ``W``, ``b`` and ``pos_weight`` from ``encoder`` (extra positions repeat its last one)."""
        if encoder.dim != self.dim:
            raise ValueError(f"encoder has dim {encoder.dim}, the model {self.dim}")
        pos = encoder.pos_weight[np.minimum(np.arange(self.max_history), encoder.max_items - 1)]
        dev = self.W.device
        self.pos_raw.copy_(torch.as_tensor(inverse_softplus(pos), dtype=torch.float32, device=dev))
        self.W.copy_(torch.as_tensor(encoder.W, device=dev))
        self.b.copy_(torch.as_tensor(encoder.b, device=dev))

    @classmethod
    def from_arrays(cls, embeddings: np.ndarray, encoder: UserEncoder | None = None) -> TwoTower:
        """A model holding exported arrays (to evaluate an artifact with the same code path)."""
        n, d = embeddings.shape
        enc = encoder or UserEncoder.identity(d)
        m = cls(n, d, max_history=enc.max_items, half_life_s=enc.half_life_s,
                type_weight=[float(x) for x in enc.type_weight])
        m.load_item_rows(np.arange(n), embeddings)
        m.load_encoder(enc)
        return m


def sampled_softmax_loss(model: TwoTower, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                         weight: torch.Tensor, log_q: torch.Tensor | None,
                         temperature: float) -> torch.Tensor:
    """Weighted sampled softmax of ``users`` (B, d) over in-batch positives ``pos`` plus shared ``neg``.

    ``log_q`` (per item row) is subtracted from every logit; a candidate equal to the row's positive,
    other than the positive itself, is masked (an accidental hit).
    """
    cand = torch.cat([pos, neg])
    logits = (users.float() @ model.item_vectors(cand).float().T) / temperature
    if log_q is not None:
        logits = logits - log_q[cand][None, :]
    b = pos.shape[0]
    own = torch.zeros(b, cand.shape[0], dtype=torch.bool, device=pos.device)
    own[:, :b] = torch.eye(b, dtype=torch.bool, device=pos.device)
    logits = logits.masked_fill((cand[None, :] == pos[:, None]) & ~own, float("-inf"))
    ce = F.cross_entropy(logits, torch.arange(b, device=pos.device), reduction="none")
    return (ce * weight).sum() / weight.sum()


@torch.no_grad()
def model_metrics(model: TwoTower, hist: Histories, idx: np.ndarray, k: int = 10,
                  exclude_seen: bool = False) -> tuple[float, float]:
    """HR@k / NDCG@k sums of ``model`` over the targets ``idx`` (exact scores of every item)."""
    was_training = model.training
    model.eval()
    device = model.W.device
    items = model.item_vectors()
    hr = ndcg = 0.0
    step = eval_rows(model.n_items)
    for s in range(0, len(idx), step):
        chunk = idx[s:s + step]
        u = model.user_vectors(*hist.gather(chunk, model.max_history).to(device))
        excl = seen_tensors(hist, chunk, device) if exclude_seen else None
        h, g = rank_metrics(u @ items.T, torch.from_numpy(hist.target[chunk]).to(device), k, excl)
        hr, ndcg = hr + h, ndcg + g
    model.train(was_training)
    return hr, ndcg
