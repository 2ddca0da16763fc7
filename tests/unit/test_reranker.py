"""The learned reranker in memory: river-equal vectorised scores, labels, features, lift over the static
blend on a stream with a planted preference, exploration, the river MF source, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import river

from streamrec.consumers.online import decode_checkpoint, encode_checkpoint
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.errors import ConfigError
from streamrec.models.events import Event, EventType
from streamrec.models.online.features import FEATURES, build_features
from streamrec.models.online.feedback import FeedbackLog, LabelPolicy, label_pairs
from streamrec.models.online.itemtable import ItemTable
from streamrec.models.online.layer import OnlineConfig
from streamrec.models.online.reranker import (
    LinearState,
    OnlineReranker,
    RerankerConfig,
    ThresholdAUC,
    make_pipeline,
)
from streamrec.models.serving.candidates import CodeSpace, merge_candidates
from streamrec.models.serving.state import StateLimits, UserState
from streamrec.stream.settings import Settings

T0 = 1_700_000_000_000


def planted_stream(n: int, users: int = 300, cats: int = 10, per_cat: int = 40, seed: int = 0) -> list[Event]:
    """Each user's next item is from their favourite category half of the time, from a random category
    otherwise (Zipf within a category). Co-visitation mixes categories, so the blend ranks by noisy
    co-visit counts and popularity; the user's category affinity is visible to the reranker's features
    only."""
    rng = np.random.default_rng(seed)
    fav = rng.integers(cats, size=users)
    out = []
    for k in range(n):
        u = int(rng.integers(users))
        c = int(fav[u]) if rng.random() < 0.5 else int(rng.integers(cats))
        item = f"c{c}-{min(int(rng.zipf(1.5)) - 1, per_cat - 1)}"
        out.append(Event(f"e{k}", f"u{u}", item, EventType.CLICK, T0 + k * 1_000, context={"category": f"c{c}"}))
    return out


def replay(rec: Recommender, events: list[Event], batch: int = 50) -> Recommender:
    for s in range(0, len(events), batch):
        chunk = events[s:s + batch]
        rec.recommend(rec.apply(chunk, offsets=list(range(s, s + len(chunk)))), now_ms=chunk[-1].timestamp_ms)
    return rec


@pytest.fixture(scope="module")
def stream() -> list[Event]:
    return planted_stream(12_000)


@pytest.fixture(scope="module")
def trained(stream: list[Event]) -> Recommender:
    return replay(Recommender(EngineConfig(reranker=True)), stream)


def test_the_learned_reranker_raises_online_hit_rate_over_the_static_blend(stream: list[Event],
                                                                            trained: Recommender) -> None:
    blend = replay(Recommender(EngineConfig()), stream).stats()
    learned = trained.stats()
    assert learned["evaluated"] == blend["evaluated"] > 10_000      # the same stream, the same tests
    assert learned["reranker_active"] and learned["reranker_pairs"] > 10_000
    assert learned["hit_rate_at_10"] >= blend["hit_rate_at_10"] + 0.05, (learned["hit_rate_at_10"],
                                                                        blend["hit_rate_at_10"])
    assert 0.6 < learned["reranker_auc"] <= 1.0 and 0.0 < learned["reranker_logloss"] < 0.7
    assert trained.online is not None and trained.online.reranker is not None
    weights = trained.online.reranker.weights()                    # it found the planted preference:
    assert weights["category_affinity"] > 0.2 > max(weights["blend"], weights["covisit"])


@pytest.mark.parametrize("model", ["logreg", "fm"])
def test_vectorised_scores_equal_river_predict_proba(model: str) -> None:
    names = ("a", "b", "c")
    rr = OnlineReranker(RerankerConfig(model=model, seed=3), names)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3)).astype(np.float32) * [1.0, 5.0, 0.0] + [0.0, 2.0, 1.0]   # "c" is constant
    rr.learn(X, (X[:, 0] + 0.2 * X[:, 1] > 0.3), np.full(300, 1.5))
    probe = rng.normal(size=(50, 3)).astype(np.float32)
    before = probe.copy()
    want = [rr.pipeline.predict_proba_one(dict(zip(names, map(float, row), strict=True)))[True] for row in probe]
    np.testing.assert_allclose(rr.score(probe), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(probe, before)                   # inputs are never modified
    assert rr.stats()["reranker_pairs"] == 300


def test_labels_sample_negatives_by_examination_and_cap_pairs() -> None:
    log = FeedbackLog(capacity=4, width=30, n_features=1)
    feats = np.arange(30, dtype=np.float32).reshape(1, 30, 1)
    log.record(["u"], [tuple(f"i{k}" for k in range(30))], [20], feats)
    slot = log.lookup("u")[0]  # type: ignore[index]
    rng = np.random.default_rng(0)
    counts = np.zeros(30)
    for _ in range(400):
        X, y, w = label_pairs(log, {slot: {25}}, LabelPolicy(negatives=4), rng)
        assert y.tolist() == [True, False, False, False, False] and X[0, 0] == 25.0
        assert (w == 1.0).all()                                      # no IPS by default
        counts[X[1:, 0].astype(int)] += 1
    assert counts[25] == 0 and counts[0] > counts[10] > counts[28]   # examined positions are sampled more
    _, _, w = label_pairs(log, {slot: {3, 25}}, LabelPolicy(ipw=True), rng)
    assert w[0] == pytest.approx(np.log2(5)) and w[1] == 1.0         # only shown positives get 1/theta
    X, y, _ = label_pairs(log, {slot: {1, 2, 3, 4}}, LabelPolicy(negatives=4, max_pairs=7), rng)
    assert len(y) == 7
    assert label_pairs(log, {slot: {40}}, LabelPolicy(), rng)[1].size == 0   # not logged: no pairs
    other = FeedbackLog(capacity=1, width=3, n_features=1)
    other.record(["a"], [("x",)], [1], np.zeros((1, 3, 1), dtype=np.float32))
    other.record(["b"], [("y",)], [1], np.zeros((1, 3, 1), dtype=np.float32))
    assert other.lookup("a") is None and len(other) == 1             # a fixed ring: memory never grows


def test_feature_matrix_of_a_small_batch() -> None:
    limits = StateLimits()
    table = ItemTable()
    for item, cat, ts in (("a", "red", 0), ("b", "red", 60_000), ("c", "blue", 120_000), ("d", None, 180_000)):
        table.observe(item, ts, cat)
    st = UserState("u")
    for k, item in enumerate(("a", "b", "c")):
        st.observe(item, 1, 1_000 * k, 1.0, limits)
    st.shown = ("d", "c")
    space = CodeSpace()
    codes = space.codes(["a", "c", "d", "zz"])
    ones = np.ones(4, dtype=np.float32)
    batch = merge_candidates(1, [(1, np.zeros(4, dtype=np.int64), codes, ones * 0.5)])
    x = build_features(batch, ones, [st], space, table, now_ms=180_000)
    f = {name: x[:, k].tolist() for k, name in enumerate(FEATURES)}
    assert f["covisit"] == [0.5] * 4 and f["from_covisit"] == [1.0] * 4 and f["ann"] == [0.0] * 4
    assert f["category_affinity"] == pytest.approx([2 / 3, 1 / 3, 0.0, 0.0])
    assert f["prev_position"] == pytest.approx([0.0, 0.5, 1.0, 0.0])
    assert f["recent_item"] == [1.0, 1.0, 0.0, 0.0]
    assert f["item_age"][:3] == pytest.approx(np.log1p([3.0, 1.0, 0.0]).tolist())
    assert f["item_age"][3] > 13                                        # never seen: a year
    assert f["user_activity"] == pytest.approx([np.log1p(3)] * 4)


def test_one_exploration_slot_from_new_items_in_the_second_half() -> None:
    cfg = EngineConfig(explore_slots=1, trending_refresh_events=1, diversity="none")
    rec = Recommender(cfg)
    events = [Event(f"e{k}", f"u{k % 7}", f"i{k % 40}", EventType.CLICK, T0 + k) for k in range(300)]
    events += [Event(f"n{k}", "fresh", f"new{k}", EventType.VIEW, T0 + 400 + k) for k in range(30)]
    rec.apply(events)
    lists = rec.recommend([f"u{k}" for k in range(7)], now_ms=T0 + 1_000)
    for rl in lists:
        explored = [(pos, it.item_id) for pos, it in enumerate(rl.items) if it.source == "explore"]
        assert len(explored) == 1 and len(rl.items) == cfg.top_n
        pos, item = explored[0]
        assert pos >= cfg.top_n // 2
        assert item in rec.trending.newest(100) and rl.item_ids.count(item) == 1
    again = Recommender(cfg)
    again.apply(events)
    assert [rl.items for rl in again.recommend([f"u{k}" for k in range(7)], now_ms=T0 + 1_000)] == \
        [rl.items for rl in lists]                                      # seeded: the same slots


def test_river_mf_is_a_candidate_source_for_rating_streams() -> None:
    rng = np.random.default_rng(0)
    rec = Recommender(EngineConfig(mf="rating", filter_seen="all", diversity="none",
                                   sources=("covisit", "trending", "cold_start")))
    events = []
    for k in range(3_000):
        u, i = int(rng.integers(60)), int(rng.integers(200))
        stars = 5.0 if (u % 2) == (i % 2) else 1.0                     # even users like even movies
        events.append(Event(f"r{k}", f"u{u}", f"m{i}", EventType.RATING, T0 + k, value=stars))
    rec.apply(events)
    items = rec.recommend(["u0", "u1"], now_ms=T0 + 5_000)
    from_mf = [[int(it.item_id[1:]) % 2 for it in rl.items if it.source == "mf"] for rl in items]
    assert len(from_mf[0]) >= 5 and sum(from_mf[0]) == 0 and sum(from_mf[1]) == len(from_mf[1])
    stats = rec.stats()
    assert stats["mf_users"] == 60 and stats["mf_items"] == 200
    assert rec.online is not None and rec.online.mf is not None
    bounded = Recommender(EngineConfig(mf="ranking", online=OnlineConfig(mf_max_users=10)))
    bounded.apply(events[:500])
    assert bounded.stats()["mf_users"] == 10 and bounded.stats()["mf_evicted_users"] > 0


def test_checkpoint_round_trip_keeps_the_reranker_predictions(trained: Recommender, stream: list[Event]) -> None:
    assert trained.online is not None and trained.online.reranker is not None
    envelope = encode_checkpoint(Settings(group="g"), "w-1", trained.online.checkpoint(), 123)
    meta, parts = decode_checkpoint(envelope)
    assert meta["river_version"] == river.__version__ and meta["worker_id"] == "w-1"
    restarted = Recommender(EngineConfig(reranker=True))
    assert restarted.online is not None and restarted.online.reranker is not None
    X = np.random.default_rng(2).normal(size=(64, len(FEATURES))).astype(np.float32)
    fresh = restarted.online.reranker.score(X)          # scored once before the restore (a fold is cached)
    outcome = restarted.online.restore(parts)
    assert set(outcome.values()) == {"restored"} and set(outcome) == {"items", "reranker"}
    np.testing.assert_array_equal(restarted.online.reranker.score(X), trained.online.reranker.score(X))
    assert not np.array_equal(fresh, trained.online.reranker.score(X))
    assert restarted.stats()["reranker_auc"] == trained.stats()["reranker_auc"]
    ids = [e.item_id for e in stream[-50:]]
    assert (restarted.online.items.first_seen(ids) == trained.online.items.first_seen(ids)).all()
    assert restarted.stats()["reranker_recent_auc"] == trained.stats()["reranker_recent_auc"]
    assert restarted.stats()["reranker_logloss"] == trained.stats()["reranker_logloss"]
    # a pickled part (as earlier versions wrote) is refused unread; the plain-data parts are still restored
    other = Recommender(EngineConfig(reranker=True))
    assert other.online is not None and other.online.reranker is not None
    outcome = other.online.restore([*parts, ("river", "pickle", b"\x80\x05N.")])
    assert outcome["river"].startswith("refused: encoding 'pickle'") and outcome["reranker"] == "restored"
    np.testing.assert_array_equal(other.online.reranker.score(X), trained.online.reranker.score(X))
    fm = Recommender(EngineConfig(reranker=True, reranker_model="fm"))
    assert fm.online is not None
    assert fm.online.restore(parts)["reranker"].startswith("refused")


def test_the_fm_reranker_is_a_configuration_switch(stream: list[Event]) -> None:
    rec = replay(Recommender(EngineConfig(reranker=True, reranker_model="fm",
                                          online=OnlineConfig(max_pairs=32, warmup_pairs=200))), stream[:3_000])
    stats = rec.stats()
    assert stats["reranker_model"] == "fm" and stats["reranker_pairs"] > 200 and stats["reranker_active"]


def test_unknown_online_options_are_refused() -> None:
    for bad in ({"reranker_model": "gbm"}, {"drift_detector": "cusum"}, {"mf": "als"}):
        with pytest.raises(ConfigError):
            EngineConfig(**bad)  # type: ignore[arg-type]
    assert dataclasses.replace(EngineConfig(), reranker=True).reranker


def test_the_blend_keeps_serving_while_it_ranks_the_labelled_pairs_better() -> None:
    rng = np.random.default_rng(0)
    blend = rng.normal(size=200).astype(np.float32)
    y = blend > 0.5                                                   # the blend ranks these pairs perfectly
    X = rng.normal(size=(200, len(FEATURES))).astype(np.float32)      # the model has not learned them yet
    for gate in (True, False):
        rec = Recommender(EngineConfig(reranker=True, online=OnlineConfig(warmup_pairs=100, gate=gate)))
        assert rec.online is not None and rec.online.reranker is not None
        rec.online.reranker.learn(X, y, baseline=blend)               # test (scores before learning), then train
        assert rec.online.reranker.recent.get() == (0.5, 1.0)         # an untrained model ties everything
        assert rec.online._reranker_wins() is not gate


def test_settings_switch_the_online_learners() -> None:
    from streamrec.consumers.engine import engine_config

    cfg = engine_config(Settings.from_env({"STREAMREC_RERANKER": "false", "STREAMREC_DRIFT_DETECTOR": "none",
                                           "STREAMREC_EXPLORE_SLOTS": "1", "STREAMREC_MF": "rating"}))
    assert not cfg.reranker and cfg.drift_detector == "none" and cfg.explore_slots == 1 and cfg.mf == "rating"
    default = engine_config(Settings())
    assert default.reranker and default.drift_detector == "adwin" and default.online.drift_cooldown_ms == 3_600_000


def test_numpy_learning_equals_rivers_own_learn_one() -> None:
    """The numpy model of ``OnlineReranker.learn`` leaves the scaler, weights and intercept river's loop would."""
    names = tuple(f"f{i}" for i in range(12))
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, len(names)))
    X[:, 5] = 1.0                                        # no variance: scaled to 0, as river does
    X[:, 7] = rng.random(600) < 0.05
    y = (X[:, 0] + 2 * X[:, 7] + rng.normal(size=600)) > 0.5
    w = rng.uniform(0.5, 3.0, 600)
    config = RerankerConfig(lr=0.05, l2=1e-3, clip_gradient=0.5)
    fast, slow = OnlineReranker(config, names), make_pipeline(config)
    for s in range(0, 600, 50):
        fast.learn(X[s:s + 50], y[s:s + 50], w[s:s + 50])
        for row, yi, wi in zip(X[s:s + 50].tolist(), y[s:s + 50].tolist(), w[s:s + 50].tolist(), strict=True):
            slow.learn_one(dict(zip(names, row, strict=True)), yi, w=wi)
    assert fast.pairs == 600
    copy = fast.pipeline                                 # the numpy state as a river pipeline
    scaler, clf = copy.steps["StandardScaler"], list(copy.steps.values())[-1]
    slow_scaler, slow_clf = slow.steps["StandardScaler"], list(slow.steps.values())[-1]
    assert scaler.counts == slow_scaler.counts
    for k in names:
        assert fast.weights()[k] == pytest.approx(slow_clf.weights[k], abs=1e-12)
        assert scaler.vars[k] == pytest.approx(slow_scaler.vars[k], abs=1e-12)
        assert scaler.means[k] == pytest.approx(slow_scaler.means[k], abs=1e-12)
    assert clf.intercept == pytest.approx(slow_clf.intercept, abs=1e-12)
    assert clf.optimizer.n_iterations == slow_clf.optimizer.n_iterations == 600
    probe = {n: 0.3 for n in names}
    assert float(fast.score(np.full((1, len(names)), 0.3))[0]) == pytest.approx(
        slow.predict_proba_one(probe)[True], abs=1e-6)
    assert copy.predict_proba_one(probe)[True] == pytest.approx(slow.predict_proba_one(probe)[True], abs=1e-9)


@pytest.mark.parametrize("n_features", [1, 7, 12, 33, 40])
def test_the_two_pass_learning_leaves_the_bits_of_the_row_by_row_reference(n_features: int) -> None:
    """``LinearState.learn`` (scaler pass, then SGD pass) leaves exactly the state of ``learn_rowwise``."""
    rng = np.random.default_rng(n_features)
    for l2, clip in ((1e-4, 5.0), (0.0, 0.5)):
        config = RerankerConfig(lr=0.3, l2=l2, clip_gradient=clip)
        fast, ref = LinearState(config, n_features), LinearState(config, n_features)
        for n in (1, 5, 64, 2, 17, 1, 40):
            X = rng.normal(size=(n, n_features)) * rng.choice([1e-3, 1.0, 300.0], size=n_features)
            X[:, 0] = 2.0 if n_features > 1 else X[:, 0]      # a constant column: variance 0, scaled to 0
            y = (rng.random(n) < 0.3).tolist()
            w = rng.uniform(0.5, 40.0, n).tolist()             # large weights: the clipped and >18 branches
            fast.learn(X, y, w)
            ref.learn_rowwise(X, y, w)
        for a, b in ((fast.count, ref.count), (fast.mean, ref.mean), (fast.var, ref.var), (fast.w, ref.w)):
            assert a.tobytes() == b.tobytes()
        assert fast.b == ref.b and fast.steps == ref.steps and np.abs(ref.w).max() > 0


def test_the_binned_auc_counts_equal_a_comparison_per_threshold() -> None:
    """``ThresholdAUC`` files each pair by bisection and adds the counts up when read: the counts of one
    comparison per threshold, for values on, between and beyond the thresholds, and NaN."""
    rng = np.random.default_rng(5)
    auc = ThresholdAUC()
    p = [*rng.random(300).tolist(), *auc.thresholds, 0.0, 1.0, -0.5, 1.5, float("nan"), 1 / 9, 2 / 9]
    y = (rng.random(len(p)) < 0.4).tolist()
    tp, fp, fn, tn = ([0] * 10 for _ in range(4))
    for k, (yi, pi) in enumerate(zip(y, p, strict=True)):
        for i, t in enumerate(auc.thresholds):
            if pi > t:
                (tp if yi else fp)[i] += 1
            else:
                (fn if yi else tn)[i] += 1
        if k % 3:
            auc.update(yi, pi)
        else:
            auc.update_many([yi], [pi])
        if k % 50 == 0:
            assert (auc.tp, auc.fp, auc.fn, auc.tn) == (tp, fp, fn, tn)
    assert (auc.tp, auc.fp, auc.fn, auc.tn) == (tp, fp, fn, tn) and auc.to_state()["tp"] == tp
    assert 0.0 < auc.get() < 1.0


def test_the_default_worker_never_imports_river() -> None:
    """river pulls in scipy (~60 MB of resident memory): the worker's modules and its default engine (learned
    logistic reranker, drift detector, every default source) must run without it; the FM reranker imports it."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import streamrec.consumers.worker\n"
            "from streamrec.consumers.engine import engine_config\n"
            "from streamrec.consumers.online import encode_checkpoint\n"
            "from streamrec.models.engine.recommender import Recommender\n"
            "from streamrec.models.events import Event, EventType\n"
            "from streamrec.stream.settings import Settings\n"
            "s = Settings(group='g')\n"
            "rec = Recommender(engine_config(s))\n"
            "ev = [Event(f'e{k}', f'u{k % 9}', f'i{k * k % 31}', EventType.CLICK, 1000 * k) for k in range(900)]\n"
            "for a in range(0, 900, 30):\n"
            "    rec.recommend(rec.apply(ev[a:a + 30]), now_ms=ev[a + 29].timestamp_ms)\n"
            "assert rec.online.reranker.pairs > 0\n"
            "encode_checkpoint(s, 'w', rec.online.checkpoint())\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('river', 'scipy')))\n"
            "Recommender(engine_config(Settings(reranker_model='fm')))\n"
            "print('river' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stdout + out.stderr


def test_a_batch_applied_partition_by_partition_learns_at_most_one_cap_of_pairs(stream: list[Event]) -> None:
    """``apply(..., end_batch=False)`` per partition and then ``end_apply()`` learns at most the per-batch
    cap (``max(max_pairs, pairs_per_event * events)``); ending every partition would learn up to one cap each."""
    def run(end_each: bool) -> tuple[int, int]:
        rec = Recommender(EngineConfig(reranker=True))
        cfg, most = rec.online.config, 0       # type: ignore[union-attr]
        for s in range(0, 6_000, 120):
            chunk = stream[s:s + 120]
            before = rec.online.reranker.pairs   # type: ignore[union-attr]
            touched: list[str] = []
            for p in range(4):
                touched += rec.apply([e for e in chunk if int(e.user_id[1:]) % 4 == p], partition=p,
                                     end_batch=end_each)
            if not end_each:
                rec.end_apply()
            rec.recommend(touched, now_ms=chunk[-1].timestamp_ms)
            most = max(most, rec.online.reranker.pairs - before)   # type: ignore[union-attr]
        cap = max(cfg.max_pairs, int(cfg.pairs_per_event * 120))
        return most, cap

    once, cap = run(end_each=False)
    each, _ = run(end_each=True)
    assert 0 < once <= cap           # the batch learned, within one cap
    assert each > cap                # one cap per partition: more than the batch's cap
