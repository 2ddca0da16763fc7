"""The quality gate: publish only a model that is not worse than the one in service."""

from __future__ import annotations

import json
import math

import pytest

from streamrec.models.base.gate import GateDecision, decide

SERVING = {"hr@10": 0.40, "ndcg@10": 0.20}


def test_passes_with_no_model_in_service() -> None:
    d = decide({"hr@10": 0.01, "ndcg@10": 0.005}, None)
    assert d.passed and d.serving is None
    assert "no model in service" in d.reason


def test_fails_when_worse_beyond_tolerance() -> None:
    d = decide({"hr@10": 0.38, "ndcg@10": 0.21}, SERVING, tolerance=0.02)  # 0.38 < 0.392
    assert not d.passed
    assert "hr@10" in d.reason and "ndcg@10" not in d.reason


def test_names_every_metric_that_is_worse() -> None:
    d = decide({"hr@10": 0.1, "ndcg@10": 0.1}, SERVING)
    assert not d.passed and "hr@10" in d.reason and "ndcg@10" in d.reason


def test_passes_within_tolerance_and_when_better() -> None:
    assert decide({"hr@10": 0.393, "ndcg@10": 0.197}, SERVING, tolerance=0.02).passed
    assert decide({"hr@10": 0.5, "ndcg@10": 0.3}, SERVING).passed
    assert decide(dict(SERVING), SERVING, tolerance=0.0).passed


def test_zero_tolerance_fails_on_any_drop() -> None:
    assert not decide({"hr@10": 0.3999, "ndcg@10": 0.2}, SERVING, tolerance=0.0).passed


def test_candidate_without_a_finite_metric_fails() -> None:
    assert not decide({"hr@10": 0.5}, None).passed
    assert not decide({"hr@10": math.nan, "ndcg@10": 0.3}, SERVING).passed
    assert not decide({"hr@10": "0.5", "ndcg@10": 0.3}, SERVING).passed


def test_serving_metrics_it_lacks_are_not_compared() -> None:
    assert decide({"hr@10": 0.1, "ndcg@10": 0.3}, {"ndcg@10": 0.2}).passed
    d = decide({"hr@10": 0.1, "ndcg@10": 0.1}, {"other": 1.0})
    assert d.passed and "nothing to compare" in d.reason


def test_custom_keys() -> None:
    d = decide({"recall@50": 0.2}, {"recall@50": 0.3}, keys=("recall@50",))
    assert not d.passed and d.keys == ("recall@50",)


def test_dict_form_round_trips_through_json() -> None:
    d = decide({"hr@10": 0.41, "ndcg@10": 0.2, "holdout_size": 10}, SERVING, tolerance=0.05)
    raw = json.loads(json.dumps(d.to_dict()))
    assert raw["passed"] is True and raw["candidate"] == {"hr@10": 0.41, "ndcg@10": 0.2}
    assert GateDecision.from_dict(raw) == d


def test_rejects_a_tolerance_out_of_range() -> None:
    with pytest.raises(ValueError):
        decide(SERVING, SERVING, tolerance=1.5)
