"""Offline, prequential evaluation of recommendation policies over a replayed event log.

* :mod:`models.evaluation.policy`   the :class:`Policy` protocol the compared configurations implement
* :mod:`models.evaluation.config`   :class:`EvalConfig`, :class:`TargetPolicy`: what is scored and excluded
* :mod:`models.evaluation.harness`  :func:`prequential`, the test-then-train replay
* :mod:`models.evaluation.report`   :class:`EvalReport` (stable JSON) and :func:`plot_curves` (PNG)

Ready-made policies live in :mod:`models.evaluation.policies`; ranking metrics in :mod:`models.evaluation.metrics`.
"""

from streamrec.models.evaluation.config import EvalConfig, Exclusion, TargetPolicy
from streamrec.models.evaluation.harness import ProgressCallback, prequential
from streamrec.models.evaluation.policy import Policy, Request, learn_batch, recommend_batch
from streamrec.models.evaluation.report import SCHEMA, EvalReport, plot_curves

__all__ = [
    "SCHEMA", "EvalConfig", "EvalReport", "Exclusion", "Policy", "ProgressCallback", "Request",
    "TargetPolicy", "learn_batch", "plot_curves", "prequential", "recommend_batch",
]
