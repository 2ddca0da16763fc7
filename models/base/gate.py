"""The quality gate: publish a newly trained model only if it is not worse than the one in service.

A candidate passes when there is no model in service, or when each gated metric of the candidate is at
least ``serving * (1 - tolerance)``. A metric the candidate lacks, or that is not a finite number, fails
the gate; a metric the serving model lacks is not compared (an older artifact may not have it), and a
serving model with none of the gated metrics lets the candidate through, saying so in the reason.

Compare like with like: both sets of metrics should come from the same holdout
(``models.base.training.evaluate`` scores the serving artifact on the candidate's holdout).

>>> decide({"hr@10": 0.30, "ndcg@10": 0.15}, None).passed
True
>>> d = decide({"hr@10": 0.30, "ndcg@10": 0.15}, {"hr@10": 0.40, "ndcg@10": 0.15})
>>> d.passed, d.reason
(False, 'hr@10 0.3000 is below 0.3920 (serving 0.4000 - 2.0%)')
>>> decide({"hr@10": 0.395, "ndcg@10": 0.15}, {"hr@10": 0.40, "ndcg@10": 0.15}).passed
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_KEYS: tuple[str, ...] = ("hr@10", "ndcg@10")


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    candidate: dict[str, float]
    serving: dict[str, float] | None
    tolerance: float = 0.02
    keys: tuple[str, ...] = field(default=DEFAULT_KEYS)

    def to_dict(self) -> dict[str, Any]:
        """The form stored in an artifact manifest's ``gate`` field (JSON-ready)."""
        return {
            "passed": self.passed, "reason": self.reason, "candidate": dict(self.candidate),
            "serving": None if self.serving is None else dict(self.serving),
            "tolerance": self.tolerance, "keys": list(self.keys),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GateDecision:
        serving = raw.get("serving")
        return cls(passed=bool(raw["passed"]), reason=str(raw["reason"]), candidate=dict(raw["candidate"]),
                   serving=None if serving is None else dict(serving),
                   tolerance=float(raw.get("tolerance", 0.02)), keys=tuple(raw.get("keys", DEFAULT_KEYS)))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def decide(candidate_metrics: Mapping[str, Any], serving_metrics: Mapping[str, Any] | None,
           tolerance: float = 0.02, keys: Sequence[str] = DEFAULT_KEYS) -> GateDecision:
    """Whether the candidate may replace the serving model (see the module docstring)."""
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    keys = tuple(keys)
    cand = {k: v for k in keys if (v := _number(candidate_metrics.get(k))) is not None}
    serv = None if serving_metrics is None else {
        k: v for k in keys if (v := _number(serving_metrics.get(k))) is not None}

    def out(passed: bool, reason: str) -> GateDecision:
        return GateDecision(passed, reason, cand, serv, tolerance, keys)

    missing = [k for k in keys if k not in cand]
    if missing:
        return out(False, f"candidate has no finite {', '.join(missing)}: evaluate it before publishing")
    if serv is None:
        return out(True, "no model in service")
    if not serv:
        return out(True, f"serving model has none of {', '.join(keys)}; nothing to compare")
    worse = [f"{k} {cand[k]:.4f} is below {s * (1.0 - tolerance):.4f} (serving {s:.4f} - {tolerance:.1%})"
             for k, s in serv.items() if cand[k] < s * (1.0 - tolerance)]
    if worse:
        return out(False, "; ".join(worse))
    shown = ", ".join(f"{k} {cand[k]:.4f} vs {serv[k]:.4f}" for k in serv)
    return out(True, f"within {tolerance:.1%} of serving or better: {shown}")
