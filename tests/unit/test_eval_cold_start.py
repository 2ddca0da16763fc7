"""Item cold start in the evaluation: the harness's cold-target metric, the catalog fed to the engine before the
replay, and the ``--catalog`` option."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.evaluate import EvalOptions, build_policies, catalog_file
from streamrec.models.catalog.item import Item
from streamrec.models.engine.recommender import EngineConfig
from streamrec.models.errors import InputError
from streamrec.models.evaluation import EvalConfig, EvalReport, prequential
from streamrec.models.evaluation.policies import FullSystemPolicy
from streamrec.models.events import Event, EventType

T0 = 1_700_000_000_000


class Fixed:
    """Always recommends the same list."""

    def __init__(self, name: str, items: list[str]) -> None:
        self.name, self.items = name, items

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: object) -> list[str]:
        return self.items[:k]

    def learn(self, event: Event) -> None:
        pass


def click(k: int, user: str, item: str) -> Event:
    return Event(f"e{k}", user, item, EventType.CLICK, T0 + k)


def test_cold_targets_are_those_whose_item_had_fewer_than_n_earlier_events() -> None:
    # "hot" has many earlier events, "new" none before its first target, then 1 and 2 (cold below 3)
    log = [click(k, f"u{k}", "hot") for k in range(10)]
    log += [click(10, "a", "new"), click(11, "b", "new"), click(12, "c", "hot"), click(13, "d", "new"),
            click(14, "e", "new")]
    cfg = EvalConfig.ecommerce(warmup_fraction=0.5, cold_item_events=3)
    report = prequential(log, [Fixed("knows_new", ["new"]), Fixed("knows_hot", ["hot"])], cfg)
    # scored: the events from index 7 on: hot x3, new (0 before), new (1), hot, new (2), new (3: not cold)
    assert report.evaluated == 8
    assert report.cold["targets"] == 3 and report.cold["item_events_below"] == 3
    assert report.cold["configs"]["knows_new"]["hr@10"] == 1.0
    assert report.cold["configs"]["knows_hot"]["hr@10"] == 0.0
    assert EvalReport.from_json(report.to_json()) == report
    off = prequential(log, [Fixed("x", ["new"])], EvalConfig.ecommerce(warmup_fraction=0.5, cold_item_events=0))
    assert off.cold == {}


def test_a_report_written_before_the_cold_section_still_loads() -> None:
    r = EvalReport("toy", 10, 2, 4, 0, 10, 20, 5, {"pop": {"hr@10": 0.5}}, {"pop": []}, {}, {})
    raw = r.to_json().replace('"cold": {},', "")
    assert '"cold"' not in raw and EvalReport.from_json(raw) == r


def test_the_catalog_reaches_the_engine_before_the_first_event() -> None:
    catalog = [Item("sw", "Star Wars", tags=("sci-fi", "space")), Item("esb", "Empire Strikes Back",
                                                                        tags=("sci-fi", "space")),
               Item("rogue", "Rogue One: A Star Wars Story", tags=("sci-fi", "space")),
               Item("emma", "Emma", tags=("romance",))]
    cfg = EngineConfig(sources=("covisit", "recent", "content", "trending"), filter_seen="all")
    policy = FullSystemPolicy(cfg, trainer=lambda events: None, name="c", catalog=catalog)  # type: ignore[arg-type]
    policy.learn_many([click(0, "u", "sw"), click(1, "v", "emma")])
    assert policy.engine.stats()["content_items"] == 4
    got = policy.recommend("u", 10, T0 + 5, frozenset({"sw"}))
    assert got[0] in ("rogue", "esb") and "rogue" in got       # "rogue" has no event: content placed it


def test_full_content_adds_the_content_source_and_gets_the_catalog() -> None:
    items = (Item("a", "x"),)
    log = [click(k, "u", "a") for k in range(5)]
    policies, _ = build_policies(["full", "full_content"], EvalConfig.ecommerce(), log, None,  # type: ignore[arg-type]
                                 reranker=False, catalog=items)
    full, with_content = policies
    assert "content" not in full.engine_config.sources and "content" in with_content.engine_config.sources
    assert full.catalog == items and with_content.catalog == items


def test_catalog_option(tmp_path: Path) -> None:
    ratings = tmp_path / "u.data"
    ratings.write_text("1\t1\t5\t881250949\n")
    assert catalog_file(None, ratings, "movielens") is None
    (tmp_path / "u.item").write_text("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n")
    assert catalog_file(None, ratings, "movielens") == tmp_path / "u.item"
    assert catalog_file(None, ratings, "csv") is None
    assert catalog_file("none", ratings, "movielens") is None
    assert catalog_file(str(tmp_path), ratings, "csv") == tmp_path / "u.item"
    with pytest.raises(InputError, match="catalog .* not found"):
        catalog_file(str(tmp_path / "missing.csv"), ratings, "movielens")
    opts = EvalOptions.parse(dataset="movielens-100k", path=str(tmp_path), configs="full_content")
    assert opts.catalog == tmp_path / "u.item" and opts.configs == ("full_content",)
