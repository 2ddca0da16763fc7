"""``streamrec bench catalog``'s figures from the lists seen (streamrec/bench/catalog.py), on hand-made lists:
batches are the distinct ``emitted_at`` values, delays count from the write's acknowledgement."""

from __future__ import annotations

import pytest

from streamrec.bench.catalog import ListSeen, pick_item, summarise, trial_figures
from streamrec.models.errors import InputError


def _batch(at: int, *lists: set[str]) -> list[ListSeen]:
    return [ListSeen(at, frozenset(items)) for items in lists]


def test_a_list_after_the_next_batch_counts_against_the_target() -> None:
    # the item "x" is in every batch up to 1200; the set is acknowledged at 1050; shown again at 1500
    lists = [*_batch(1000, {"x", "a"}, {"b"}), *_batch(1100, {"x"}, {"a"}), *_batch(1200, {"x", "b"}),
             *_batch(1300, {"a"}), *_batch(1400, {"b"}), *_batch(1600, {"x"})]
    fig = trial_figures(lists, "x", ack_ms=1050, show_ms=1500, show_ack_ms=1520)
    assert fig["last_with_at_ms"] == 1200 and fig["delay_ms"] == 150
    assert fig["delay_batches"] == 2                      # 1100 and 1200 held it after the acknowledgement
    assert fig["lists_with_item_after_next_batch"] == 1   # 1200 is after the next batch (1100)
    assert fig["first_without_ms"] == 250                 # 1300
    assert fig["batches_while_hidden"] == 4 and fig["lists_while_hidden"] == 5
    assert fig["came_back"] and fig["return_ms"] == 80 and fig["return_batches"] == 1
    # gone before the acknowledgement: a negative delay and no batch
    early = trial_figures(lists, "x", ack_ms=1250, show_ms=1500, show_ack_ms=1520)
    assert early["delay_ms"] == -50 and early["delay_batches"] == 0 and early["first_without_ms"] == 50
    never = trial_figures(lists[:-1], "x", ack_ms=1050, show_ms=1500, show_ack_ms=1520)
    assert not never["came_back"] and never["return_ms"] is None


def test_summary_is_computed_from_the_trials() -> None:
    trials = [{"delay_ms": d, "delay_batches": b, "first_without_ms": f, "set_ms": 5.0, "return_ms": 40.0,
               "return_batches": 1, "came_back": True, "lists_with_item_after_next_batch": 0}
              for d, b, f in ((-5.0, 0, 60.0), (30.0, 1, 90.0), (10.0, 1, 70.0))]
    out = summarise(trials, [0, 50, 100, 160, 260])
    assert out["delay_ms"] == {"p50": 10.0, "max": 30.0}
    assert out["delay_batches"] == {"p50": 1.0, "max": 1.0} and out["target_met"]
    assert out["median_batch_interval_ms"] == 55.0        # gaps 50, 50, 60, 100
    assert out["delay_in_batch_intervals"]["max"] == round(30 / 55, 2)
    trials[1]["delay_batches"] = 2
    assert not summarise(trials, [0, 50])["target_met"]


def test_the_picked_item_is_in_the_most_batches() -> None:
    lists = [*_batch(1000, {"x", "a"}, {"a"}, {"a"}), *_batch(1100, {"x"}), *_batch(1200, {"x", "a"})]
    assert pick_item(lists, since_ms=1000) == ("x", 1.0, 3)   # "a" is in more lists but fewer batches
    assert pick_item(lists, since_ms=5000) is None


def test_the_trial_count_is_bounded() -> None:
    from streamrec.bench.catalog import run
    from streamrec.stream.settings import Settings

    with pytest.raises(InputError, match="--trials"):
        run(Settings(), trials=0)
