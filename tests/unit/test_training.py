"""Training the base model on a synthetic log with planted taste clusters."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from streamrec.models.base.artifact import Artifact, Manifest, load_artifact, random_artifact
from streamrec.models.base.encoder import TYPE_INDEX, event_strength
from streamrec.models.base.gate import decide
from streamrec.models.base.training import TrainConfig, TrainResult, evaluate, train, write_result
from streamrec.models.base.trainingdata import Plan, prepare
from streamrec.models.errors import ConfigError, InputError
from streamrec.models.events import Event, EventType
from streamrec.models.timeunits import DAY_MS

T0 = 1_700_000_000_000

TYPES = [EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE]


def planted_log(n_users: int = 200, n_items: int = 300, n_clusters: int = 10, per_user: int = 30,
                seed: int = 7) -> list[Event]:
    """Users like the items of 1-2 taste clusters (85% of their events); item popularity is Zipf-like
    across the whole catalogue. Returned user by user, so not in time order."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(n_items) % n_clusters
    pop = 1.0 / (1.0 + rng.permutation(n_items))
    events = []
    for u in range(n_users):
        liked = rng.choice(n_clusters, size=int(rng.integers(1, 3)), replace=False)
        taste = pop * np.isin(cluster, liked)
        taste, anything = taste / taste.sum(), pop / pop.sum()
        for k, t in enumerate(np.sort(rng.integers(0, 30 * DAY_MS, per_user))):
            item = rng.choice(n_items, p=taste if rng.random() < 0.85 else anything)
            etype = TYPES[rng.choice(4, p=[0.3, 0.5, 0.15, 0.05])]
            events.append(Event(f"e{u}-{k}", f"u{u}", f"i{item}", etype, T0 + int(t)))
    return events


CONFIG = TrainConfig(dim=16, epochs=6, batch_size=256, n_random_negatives=32, lr=0.03, patience=2, seed=0)


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return planted_log()


@pytest.fixture(scope="module")
def result(events: list[Event]) -> TrainResult:
    return train(events, CONFIG)


def test_beats_popularity_on_the_holdout(result: TrainResult) -> None:
    m = result.metrics
    assert m["hr@10"] > 1.3 * m["popularity_hr@10"], m
    assert m["ndcg@10"] > m["popularity_ndcg@10"], m
    assert 0 < m["holdout_size"] <= m["holdout_events"]


def test_result_shapes_and_stats(result: TrainResult, events: list[Event]) -> None:
    assert result.embeddings.dtype == np.float32 and result.embeddings.shape == (len(result.item_ids), 16)
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, rtol=1e-5)
    assert result.encoder.dim == 16 and result.encoder.max_items == CONFIG.max_history
    assert result.data_range["events"] == len(events)
    assert result.data_range["from_ms"] == min(e.timestamp_ms for e in events)
    assert result.data_range["to_ms"] == max(e.timestamp_ms for e in events)
    s = result.stats
    assert s["device"] == "cpu" and 1 <= s["best_epoch"] <= s["epochs"] <= CONFIG.epochs
    assert s["interactions_per_s"] > 0 and s["seconds"] > 0 and s["train_examples"] > 0


def _as_artifact(result: TrainResult) -> Artifact:
    manifest = Manifest("v", "", 16, len(result.item_ids), {}, data_range=dict(result.data_range))
    return Artifact(manifest, result.item_ids, result.embeddings, result.encoder)


def test_exported_arrays_score_the_holdout_as_training_did(result: TrainResult, events: list[Event]) -> None:
    """The exported embeddings + encoder, evaluated afresh, give the metrics training reported."""
    again = evaluate(_as_artifact(result), events, CONFIG)
    for key in ("hr@10", "ndcg@10", "popularity_hr@10", "holdout_size"):
        assert again[key] == pytest.approx(result.metrics[key], abs=2e-3), key
    assert again["holdout_overlap"] is False     # it never saw the holdout
    later = dataclasses.replace(result, data_range={**result.data_range, "holdout_from_ms": T0 + 40 * DAY_MS})
    assert evaluate(_as_artifact(later), events, CONFIG)["holdout_overlap"] is True


def test_artifact_round_trip_is_bit_for_bit(result: TrainResult, tmp_path: Path) -> None:
    gate = decide(result.metrics, None)
    manifest = write_result(result, tmp_path / "model", gate, version="v-test")
    art = load_artifact(tmp_path / "model")
    assert art.version == manifest.version == "v-test"
    assert art.item_ids == result.item_ids
    np.testing.assert_array_equal(art.embeddings, result.embeddings)
    assert art.encoder is not None
    for name, arr in result.encoder.to_arrays().items():
        np.testing.assert_array_equal(art.encoder.to_arrays()[name], arr)
    assert art.manifest.gate["passed"] is True
    assert art.manifest.libraries["torch"] == torch.__version__ and "numpy" in art.manifest.libraries
    assert art.manifest.metrics["hr@10"] == result.metrics["hr@10"]
    assert art.manifest.data_range == result.data_range


def test_same_seed_same_model(events: list[Event], result: TrainResult) -> None:
    again = train(events, CONFIG)
    np.testing.assert_array_equal(again.embeddings, result.embeddings)
    np.testing.assert_array_equal(again.encoder.W, result.encoder.W)
    assert again.metrics == result.metrics


def test_input_is_not_modified_and_order_does_not_matter(events: list[Event], result: TrainResult) -> None:
    shuffled = list(events)
    np.random.default_rng(1).shuffle(shuffled)
    before = list(shuffled)
    cfg = dataclasses.replace(CONFIG, epochs=1)
    a, b = train(shuffled, cfg), train(sorted(events, key=lambda e: e.timestamp_ms), cfg)
    assert shuffled == before
    np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_progress_reports_steps_and_epochs(events: list[Event]) -> None:
    seen: list[dict[str, Any]] = []
    train(events, dataclasses.replace(CONFIG, epochs=2, patience=0), progress=seen.append)
    steps = [p for p in seen if p["phase"] == "train"]
    assert steps and {"epoch", "step", "steps", "loss", "interactions_per_s"} <= steps[0].keys()
    assert [p["epoch"] for p in seen if p["phase"] == "epoch"] == [1, 2]
    assert seen[-1]["phase"] == "done" and "hr@10" in seen[-1]


def test_exclude_seen_changes_only_the_evaluation(events: list[Event], result: TrainResult) -> None:
    cfg = dataclasses.replace(CONFIG, exclude_seen=True, patience=0, epochs=2)
    r = train(events, cfg)
    assert r.metrics["exclude_seen"] is True
    assert 0.0 <= r.metrics["popularity_hr@10"] <= 1.0 and r.metrics["hr@10"] > r.metrics["popularity_hr@10"]


def test_warm_start_copies_known_rows(events: list[Event], result: TrainResult, tmp_path: Path) -> None:
    write_result(result, tmp_path / "old")
    old = load_artifact(tmp_path / "old")
    frozen = dataclasses.replace(CONFIG, lr=1e-9, epochs=1, patience=0)
    r = train(events, frozen, warm_start=old)
    assert r.stats["warm_started_items"] == len(result.item_ids)
    np.testing.assert_allclose(r.embeddings, result.embeddings, atol=1e-5)
    np.testing.assert_allclose(r.encoder.W, result.encoder.W, atol=1e-5)
    np.testing.assert_allclose(r.encoder.pos_weight, result.encoder.pos_weight, rtol=1e-4)
    random_artifact(tmp_path / "other", n_items=10, dim=8)
    with pytest.raises(ConfigError, match="dim"):
        train(events, frozen, warm_start=load_artifact(tmp_path / "other"))


def test_histories_match_a_plain_python_walk(events: list[Event]) -> None:
    plan = Plan.build(events, 0.1, 0.1)
    log = plan.log
    vocab = [i for i in log.item_ids if int(i[1:]) % 3]          # leave a third of the items out
    hist = plan.histories(vocab)
    ordered = sorted(events, key=lambda e: (e.timestamp_ms, e.user_id, e.item_id, e.event_id))
    picks = list(range(0, len(ordered), 97))
    batch = hist.gather(np.array(picks), 8)
    past: dict[str, list[Event]] = {}
    for pos, e in enumerate(ordered):
        if pos in picks:
            row = picks.index(pos)
            want = [p for p in reversed(past.get(e.user_id, [])) if p.item_id in vocab][:8]
            n = len(want)
            assert batch.mask[row].sum() == n
            assert [vocab[k] for k in batch.items[row, :n]] == [p.item_id for p in want]
            assert batch.types[row, :n].tolist() == [TYPE_INDEX[p.event_type.value] for p in want]
            assert batch.ages_s[row, :n].tolist() == [(e.timestamp_ms - p.timestamp_ms) / 1000 for p in want]
            assert batch.strengths[row, :n].tolist() == [event_strength(p.event_type.value) for p in want]
            assert hist.target[pos] == (vocab.index(e.item_id) if e.item_id in vocab else -1)
            seen = {vocab[k] for k in hist.seen(np.array([pos]))[1]}
            assert seen == {p.item_id for p in past.get(e.user_id, []) if p.item_id in vocab}
        past.setdefault(e.user_id, []).append(e)


def test_duplicate_event_ids_are_dropped(events: list[Event]) -> None:
    log = prepare(events + events[:10])
    assert len(log) == len(events) and log.duplicates == 10


@pytest.mark.parametrize("make, match", [
    (lambda ev: [], "empty"),
    (lambda ev: ev[:30], "at least"),
    (lambda ev: [dataclasses.replace(e, user_id="u1") for e in ev], "user"),
    (lambda ev: [dataclasses.replace(e, item_id="i0") for e in ev], "item"),
    (lambda ev: [dataclasses.replace(e, user_id=f"new{k}") if e.timestamp_ms > T0 + 26 * DAY_MS else e
                 for k, e in enumerate(ev)], "nothing to evaluate"),
])
def test_bad_input_says_what_to_do(events: list[Event], make: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        train(make(events), CONFIG)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError):
        TrainConfig(holdout_fraction=0.0)
    with pytest.raises(ConfigError):
        TrainConfig(device="tpu")
    with pytest.raises(ConfigError):
        TrainConfig(dim=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            train(planted_log(n_users=5), TrainConfig(device="cuda"))


def test_ratings_weigh_by_stars() -> None:
    evs = [Event(f"r{k}", "u", f"i{k}", EventType.RATING, T0 + k, value=float(1 + k % 5)) for k in range(5)]
    assert prepare(evs).strength.tolist() == [1.0, 1.0, 1.0, 2.0, 3.0]
