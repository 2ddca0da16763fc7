"""The user encoder: a user's vector from their recent items, in numpy.

This is the single definition of the user side of the base model. The torch user tower
(``models/two_tower.py``) computes exactly the same function, so a vector the worker builds online lives
in the same space as the item embeddings the base model was trained with, and a model sync only needs
to re-run this function over each user's recent items.

For recent items ``i = 0 .. n-1`` (``0`` is the most recent), with item embedding ``e_i``::

    a_i    = type_weight[type_i] * 0.5 ** (age_i / half_life_s) * pos_weight[min(i, P - 1)]
    pooled = sum_i a_i * e_i / (sum_i a_i + 1e-9)
    u      = normalize(W @ pooled + b)

``type_weight`` is fixed configuration (purchase > cart > click > view; a rating of r stars weighs
``RATING_BASE + max(r - 3, 0)``, so liked movies count more), ``half_life_s`` is the time decay and
``pos_weight`` (length ``P``), ``W`` and ``b`` are learned by the trainer. An encoder with no trained
weights uses ``pos_weight = 1``, ``W = I``, ``b = 0``: the plain time-decayed, type-weighted mean.

>>> import numpy as np
>>> enc = UserEncoder.identity(dim=2)
>>> emb = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
>>> u = enc.encode(emb, np.array([TYPE_INDEX["PURCHASE"], TYPE_INDEX["VIEW"]]), np.zeros(2))
>>> bool(u[0] > u[1])  # the purchase outweighs the view
True
>>> round(float(np.linalg.norm(u)), 5)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Order of event types in ``type_weight`` arrays (matches ``EventType`` values).
TYPE_NAMES: tuple[str, ...] = ("VIEW", "CLICK", "ADD_TO_CART", "PURCHASE", "RATING", "OTHER")
TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(TYPE_NAMES)}

#: Default strengths of each event type: purchase > cart > click > view.
DEFAULT_TYPE_WEIGHTS: dict[str, float] = {
    "VIEW": 0.5, "CLICK": 1.0, "ADD_TO_CART": 2.0, "PURCHASE": 4.0, "RATING": 1.0, "OTHER": 0.5,
}
RATING_BASE = 1.0


def event_strength(event_type: str, value: float | None = None,
                   weights: dict[str, float] | None = None) -> float:
    """Strength of one interaction: the type weight, or for a rating ``RATING_BASE + max(r - 3, 0)``.

    >>> event_strength("PURCHASE"), event_strength("RATING", 5.0), event_strength("RATING", 2.0)
    (4.0, 3.0, 1.0)
    """
    if event_type == "RATING" and value is not None:
        return RATING_BASE + max(float(value) - 3.0, 0.0)
    return (weights or DEFAULT_TYPE_WEIGHTS)[event_type]


@dataclass(frozen=True)
class UserEncoder:
    """Learned (or identity) parameters of the user side. Arrays are float32 and never mutated."""

    pos_weight: np.ndarray          # (P,)
    W: np.ndarray                   # (d, d)
    b: np.ndarray                   # (d,)
    half_life_s: float = 7 * 24 * 3600.0
    type_weight: np.ndarray = field(
        default_factory=lambda: np.array([DEFAULT_TYPE_WEIGHTS[t] for t in TYPE_NAMES], dtype=np.float32)
    )

    @property
    def dim(self) -> int:
        return int(self.W.shape[0])

    @property
    def max_items(self) -> int:
        return int(self.pos_weight.shape[0])

    @classmethod
    def identity(cls, dim: int, max_items: int = 50, half_life_s: float = 7 * 24 * 3600.0) -> UserEncoder:
        return cls(
            pos_weight=np.ones(max_items, dtype=np.float32),
            W=np.eye(dim, dtype=np.float32),
            b=np.zeros(dim, dtype=np.float32),
            half_life_s=half_life_s,
        )

    def weights(self, types: np.ndarray, ages_s: np.ndarray, strengths: np.ndarray | None = None) -> np.ndarray:
        """The pooling weights ``a_i`` (most recent first). ``strengths`` overrides the type weight."""
        n = len(types)
        pos = np.minimum(np.arange(n), self.max_items - 1)
        base = self.type_weight[types] if strengths is None else strengths.astype(np.float32)
        decay = np.power(0.5, np.maximum(ages_s, 0.0) / self.half_life_s).astype(np.float32)
        return (base * decay * self.pos_weight[pos]).astype(np.float32)

    def encode(self, item_vectors: np.ndarray, types: np.ndarray, ages_s: np.ndarray,
               strengths: np.ndarray | None = None) -> np.ndarray:
        """One user's vector from the embeddings of their recent items (rows most recent first)."""
        if len(item_vectors) == 0:
            return np.zeros(self.dim, dtype=np.float32)
        a = self.weights(types, ages_s, strengths)
        pooled = (a[:, None] * item_vectors).sum(axis=0) / (a.sum() + 1e-9)
        u = self.W @ pooled + self.b
        norm = float(np.linalg.norm(u))
        return (u / norm).astype(np.float32) if norm > 0 else u.astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "pos_weight": self.pos_weight, "W": self.W, "b": self.b,
            "type_weight": self.type_weight, "half_life_s": np.array([self.half_life_s], dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> UserEncoder:
        return cls(
            pos_weight=np.asarray(arrays["pos_weight"], dtype=np.float32),
            W=np.asarray(arrays["W"], dtype=np.float32),
            b=np.asarray(arrays["b"], dtype=np.float32),
            half_life_s=float(np.asarray(arrays["half_life_s"]).reshape(-1)[0]),
            type_weight=np.asarray(arrays["type_weight"], dtype=np.float32),
        )
