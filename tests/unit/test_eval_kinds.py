"""Target kinds in the evaluation report: the user's own repeat, an item only others touched, an item new to the log."""

from __future__ import annotations

from streamrec.evaluate import _merge, kinds_line
from streamrec.models.evaluation.config import EvalConfig
from streamrec.models.evaluation.harness import prequential
from streamrec.models.evaluation.report import EvalReport
from streamrec.models.events import Event, EventType
from tests.unit.test_eval_cold_start import Fixed


def _log() -> list[Event]:
    rows = [("u1", "a"), ("u2", "b"),                      # warm-up
            ("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "a"), ("u3", "c")]
    return [Event(f"e{k}", u, i, EventType.CLICK, 1000 * k) for k, (u, i) in enumerate(rows)]


def _report() -> EvalReport:
    cfg = EvalConfig.ecommerce(warmup_fraction=2 / 7 + 1e-9)
    return prequential(_log(), [Fixed("a_first", ["a"]), Fixed("c_first", ["c", "b"])], cfg)


def test_kinds_are_counted_and_scored_by_hand() -> None:
    r = _report()
    # e2 u1 a: repeat; e3 u1 b: known (u2's); e4 u1 c: new; e5 u2 a: known (u1's); e6 u3 c: known (u1's, e4)
    assert r.evaluated == 5
    assert r.kinds["targets"] == {"repeat": 1, "known": 3, "new": 1}
    assert r.kinds["hr@10"]["a_first"] == {"repeat": 1.0, "known": round(1 / 3, 6), "new": 0.0}
    assert r.kinds["hr@10"]["c_first"] == {"repeat": 0.0, "known": round(2 / 3, 6), "new": 1.0}
    for name, per in r.kinds["hr@10"].items():   # the kinds partition the targets: they add up to the overall HR
        n = r.kinds["targets"]
        assert abs(sum(per[k] * n[k] for k in n) / r.evaluated - r.configs[name]["hr@10"]) < 1e-6


def test_kinds_survive_json_merge_and_print() -> None:
    r = _report()
    assert EvalReport.from_json(r.to_json()).kinds == r.kinds
    side = prequential(_log(), [Fixed("other", ["b"])], EvalConfig.ecommerce(warmup_fraction=2 / 7 + 1e-9))
    merged = _merge(r, side, ["a_first", "other", "c_first"])
    assert list(merged.kinds["hr@10"]) == ["a_first", "other", "c_first"]
    assert merged.kinds["hr@10"]["other"] == {"repeat": 0.0, "known": round(1 / 3, 6), "new": 0.0}
    line = kinds_line(merged.kinds, 10)
    assert line.startswith("targets: 20.0% repeat the user's own items, 60.0% are items only others")
    assert "a_first 1.000 / 0.333 / 0.000" in line
    assert kinds_line({}, 10) == ""


def test_report_page_has_the_kinds_table() -> None:
    from streamrec.report_md import _evaluation

    r = _report()
    ev = {**r.to_dict(), "policy": {"text": "toy policy"}, "train_config": {}, "sync_every": None}
    text = "\n".join(_evaluation(ev, "toy.png"))
    assert "Targets by kind: 20.0 % repeat one of the user's own earlier items, 60.0 % are items only" in text
    assert "| a_first | 1 | 0.333 | 0 | 0.400 |" in text
    assert "| c_first | 0 | 0.667 | 1 | 0.600 |" in text

