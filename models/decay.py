"""Forward decay: exponentially decayed counts without touching every stored value as time passes.

A weight ``w`` added at time ``t`` is stored as ``w * 2 ** ((t - t_ref) / half_life)``; values read at
``now`` are multiplied by ``2 ** (-(now - t_ref) / half_life)``. Every stored value decays together for
free. When the growth exponent passes :data:`REBASE_AT` half-lives, the reference moves to ``t`` and the
owner rescales what it stores once (a rare O(n) pass, far from float overflow).

>>> clock = ForwardDecay(half_life_ms=1000)
>>> clock.growth(0), clock.growth(1000)
((1.0, None), (2.0, None))
>>> clock.scale()  # a value stored at t=1000 is worth half of that at now=1000 in stored units
0.5
"""

from __future__ import annotations

REBASE_AT = 40.0  # half-lives of growth before stored values are rescaled (2**40 ~ 1e12)


class ForwardDecay:
    def __init__(self, half_life_ms: float) -> None:
        self.half_life_ms = half_life_ms
        self.t_ref: int | None = None
        self.now_ms = 0

    def growth(self, ts_ms: int) -> tuple[float, float | None]:
        """The factor for a weight added at ``ts_ms``, and a rescale factor the owner must apply to every
        stored value first (None almost always)."""
        if self.t_ref is None:
            self.t_ref = ts_ms
        if ts_ms > self.now_ms:
            self.now_ms = ts_ms
        x = (ts_ms - self.t_ref) / self.half_life_ms
        if x > REBASE_AT:
            self.t_ref = ts_ms
            return 1.0, float(2.0 ** -x)
        return float(2.0 ** x), None

    def scale(self) -> float:
        """Multiply a stored value by this to read it as of the latest time seen."""
        if self.t_ref is None:
            return 1.0
        return float(2.0 ** (-(self.now_ms - self.t_ref) / self.half_life_ms))
