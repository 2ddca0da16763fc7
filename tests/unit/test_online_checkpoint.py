"""Online checkpoints are plain data: each learner's state round-trips exactly (same scores, same detector
outputs, the same learning afterwards), malformed states are refused with a clear reason and change
nothing, and no part is ever unpickled."""

from __future__ import annotations

import copy
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from river import drift, metrics

from streamrec.models.errors import ArtifactError
from streamrec.models.online.checkpoint import dump_parts, load_parts
from streamrec.models.online.drift import Adwin, DriftConfig, DriftMonitor, PageHinkley
from streamrec.models.online.itemtable import ItemTable
from streamrec.models.online.plainstate import Fields, StateError, loads_json
from streamrec.models.online.reranker import LogLoss, OnlineReranker, RerankerConfig, ThresholdAUC
from streamrec.models.online.river_mf import RiverMF, RiverMFConfig

NAMES = ("a", "b", "c")


def hits(n: int, seed: int = 0) -> list[float]:
    """A hit stream whose rate drops, then recovers: several detections."""
    rng = np.random.default_rng(seed)
    rate = np.r_[np.full(n // 3, 0.6), np.full(n // 3, 0.15), np.full(n - 2 * (n // 3), 0.5)]
    return (rng.random(n) < rate).astype(float).tolist()


def json_trip(state: dict[str, Any]) -> dict[str, Any]:
    return loads_json(json.dumps(state, allow_nan=False).encode())


def trained_reranker(model: str = "logreg", n: int = 600) -> OnlineReranker:
    rr = OnlineReranker(RerankerConfig(model=model, seed=3), NAMES)
    X, y = pairs(n, 0)
    rr.learn(X, y, baseline=X[:, 1])
    return rr


def pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(NAMES))).astype(np.float32)
    return X, (X[:, 0] + 0.3 * rng.normal(size=n)) > 0


# --- the detectors and metrics are river's, output for output ----------------------------------------
def test_adwin_and_page_hinkley_match_river_output_for_output() -> None:
    for delta, seed in ((0.002, 0), (0.1, 1)):
        ours, theirs = Adwin(delta=delta), drift.ADWIN(delta=delta)
        ph, rph = PageHinkley(1_000, 0.05, 50.0, mode="down"), drift.PageHinkley(1_000, 0.05, 50.0, mode="down")
        detections = 0
        for x in hits(9_000, seed):
            ours.update(x)
            theirs.update(x)
            ph.update(x)
            rph.update(x)
            assert (ours.drift_detected, ours.estimation, ours.width) == (
                theirs.drift_detected, theirs.estimation, theirs.width)
            assert ph.drift_detected == rph.drift_detected
            detections += ours.drift_detected
        assert detections >= 2


def test_the_online_auc_and_log_loss_match_river() -> None:
    rng = np.random.default_rng(4)
    ours, theirs, ll, rll = ThresholdAUC(), metrics.ROCAUC(), LogLoss(), metrics.LogLoss()
    for _ in range(5_000):
        y = bool(rng.random() < 0.3)
        p = float(np.clip(rng.beta(2, 3) + 0.2 * y, 1e-7, 1 - 1e-7))
        for m in (ours, theirs, ll, rll):
            m.update(y, p)
    assert ours.get() == theirs.get() and ll.get() == rll.get()


# --- round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["adwin", "page_hinkley"])
def test_a_restored_detector_continues_exactly(kind: str) -> None:
    cls = Adwin if kind == "adwin" else PageHinkley
    stream = hits(8_000, 2)
    det = cls()
    for x in stream[:4_000]:
        det.update(x)
    back = cls.from_state(Fields(json_trip(det.to_state()), "state"))
    for x in stream[4_000:]:
        det.update(x)
        back.update(x)
        assert back.drift_detected == det.drift_detected
    assert back.to_state() == det.to_state()


def test_a_restored_drift_monitor_reports_the_same_signals() -> None:
    cfg = DriftConfig(window=300, cooldown_events=500, cooldown_ms=0, min_events=300)
    rng = np.random.default_rng(6)
    positions = [int(rng.random() < (0.6 if k < 3_000 or k >= 6_000 else 0.1)) - 1 for k in range(9_000)]
    a, b_signals, a_signals = DriftMonitor(cfg), [], []
    a.on_drift = a_signals.append
    for k, p in enumerate(positions[:2_000]):
        a.observe(p, k)
    b = DriftMonitor(cfg, on_drift=b_signals.append)
    assert load_parts({"drift": b}, dump_parts({"drift": a})) == {"drift": "restored"}
    for k, p in enumerate(positions[2_000:], start=2_000):
        a.observe(p, k)
        b.observe(p, k)
    assert a_signals and b_signals == a_signals[-len(b_signals):] and len(b_signals) == len(a_signals)
    assert b.stats() == a.stats()


@pytest.mark.parametrize("model", ["logreg", "fm"])
def test_a_restored_reranker_scores_and_learns_exactly_as_before(model: str) -> None:
    rr = trained_reranker(model)
    back = OnlineReranker(RerankerConfig(model=model, seed=3), NAMES)
    assert load_parts({"reranker": back}, dump_parts({"reranker": rr})) == {"reranker": "restored"}
    probe = np.random.default_rng(9).normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_array_equal(back.score(probe), rr.score(probe))
    assert back.stats() == rr.stats()
    x = {"a": 0.3, "b": -1.2, "c": 0.5}   # river's own probability of the restored pipeline
    assert back.score(np.array([[0.3, -1.2, 0.5]]))[0] == pytest.approx(back.pipeline.predict_proba_one(x)[True],
                                                                         rel=1e-5)
    X, y = pairs(300, 1)
    rr.learn(X, y, baseline=X[:, 2])
    back.learn(X, y, baseline=X[:, 2])
    np.testing.assert_array_equal(back.score(probe), rr.score(probe))
    assert back.stats() == rr.stats() and back.to_state() == rr.to_state()


def test_a_restored_item_table_answers_the_same() -> None:
    table = ItemTable(max_items=50)
    for k in range(80):
        table.observe(f"i{k % 60}", 1_000 * k, f"c{k % 4}" if k % 3 else None)
    back = ItemTable(max_items=50)
    assert load_parts({"items": back}, dump_parts({"items": table})) == {"items": "restored"}
    ids = [f"i{k}" for k in range(70)]
    assert back.first_seen(ids).tolist() == table.first_seen(ids).tolist()
    assert back.categories(ids).tolist() == table.categories(ids).tolist() and len(back) == len(table)


def test_a_restored_river_mf_ranks_and_learns_exactly_as_before() -> None:
    cfg = RiverMFConfig.for_ranking(n_factors=4, max_users=30)
    mf, rng = RiverMF(cfg), np.random.default_rng(2)
    stream = [(f"u{rng.integers(40)}", f"i{rng.integers(25)}", float(rng.random())) for _ in range(600)]
    for k, (u, i, yv) in enumerate(stream[:400]):
        mf.learn_one(u, i, yv, ts_ms=k)
    back = RiverMF(RiverMFConfig.for_ranking(n_factors=4))
    assert load_parts({"mf": back}, dump_parts({"mf": mf})) == {"mf": "restored"}
    for k, (u, i, yv) in enumerate(stream[400:], start=400):
        mf.learn_one(u, i, yv, ts_ms=k)
        back.learn_one(u, i, yv, ts_ms=k)
    for u in ("u1", "u7", "u33"):
        np.testing.assert_array_equal(back.score_all(u), mf.score_all(u))
    assert back.item_ids == mf.item_ids and back.n_users == mf.n_users


# --- nothing is unpickled --------------------------------------------------------------------------
class _Plant:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.path,))


def test_a_crafted_pickle_is_refused_in_every_part_and_never_run(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Plant(probe)))  # noqa: S301 - the payload does run when unpickled
    assert probe.exists()
    marker = tmp_path / "executed"
    payload = pickle.dumps(_Plant(marker))
    buf = io.BytesIO()   # an .npz whose member is an object array: numpy would unpickle it if allowed
    np.savez(buf, **{name: np.array([_Plant(marker)], dtype=object) for name in
                     ("ids_len", "ids_blob", "first", "cat", "cat_len", "cat_blob", "meta")})
    learners: dict[str, Any] = {"items": ItemTable(), "reranker": trained_reranker(), "drift": DriftMonitor(),
                                "mf": RiverMF(RiverMFConfig(n_factors=2))}
    before = learners["reranker"].to_state()
    parts = [("river", "pickle", payload), ("reranker", "json", payload), ("drift", "pickle", payload),
             ("items", "npz", buf.getvalue()), ("mf", "npz", payload)]
    outcome = load_parts(learners, parts)
    assert not marker.exists()
    assert all(v.startswith("refused") for v in outcome.values()), outcome
    assert "object" in outcome["items"] and "never decoded" in outcome["river"]
    assert learners["reranker"].to_state() == before                     # a refused part changes nothing


def test_checkpoints_of_the_previous_format_keep_their_plain_parts() -> None:
    """Format 1 (earlier versions): the reranker's and the monitor's JSON are restored, their metrics and
    detector start fresh, the pickled ``river`` part is refused."""
    rr = trained_reranker()
    state = rr.to_state()
    old = {k: v for k, v in state.items() if k not in ("auc", "logloss", "recent")}
    old["format"] = 1
    mon = DriftMonitor()
    for k in range(400):
        mon.observe(k % 5 - 1, k)
    old_drift = {k: v for k, v in mon.to_state().items() if k != "state"}
    old_drift["format"] = 1
    back, back_mon = OnlineReranker(RerankerConfig(seed=3), NAMES), DriftMonitor()
    outcome = load_parts({"reranker": back, "drift": back_mon},
                         [("reranker", "json", json.dumps(old).encode()),
                          ("drift", "json", json.dumps(old_drift).encode()), ("river", "pickle", b"\x80\x05N.")])
    assert outcome["reranker"].startswith("restored; the online AUC") and outcome["drift"].startswith("restored;")
    assert outcome["river"].startswith("refused")
    probe = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32)
    np.testing.assert_array_equal(back.score(probe), rr.score(probe))
    assert back_mon.evaluated == mon.evaluated and back_mon.detector.width == 0


# --- malformed states are refused with a reason ---------------------------------------------------
@pytest.mark.parametrize(("edit", "says"), [
    (lambda s: s["weights"].update(a=float("nan")), "not plain JSON: NaN"),
    (lambda s: s["weights"].update(zz=1.0), "unknown fields"),
    (lambda s: s.update(pairs=-1), "reranker.pairs is -1"),
    (lambda s: s.update(pairs="many"), "reranker.pairs must be an integer"),
    (lambda s: s["scaler"]["vars"].update(a=-1.0), "reranker.scaler.vars.a"),
    (lambda s: s["recent"].update(y=s["recent"]["y"][:-1]), "reranker.recent.y has"),
    (lambda s: s["auc"].update(tp=[1] * 10), "same positives and negatives"),
    (lambda s: s.update(model="fm"), "holds a 'fm' model"),
    (lambda s: s.update(names=["x", "y", "z"]), "features are"),
    (lambda s: s.pop("intercept"), "reranker.intercept is missing"),
])
def test_malformed_reranker_states_are_refused_clearly(edit: Any, says: str) -> None:
    rr = trained_reranker()
    state = rr.to_state()
    edit(state)
    target = OnlineReranker(RerankerConfig(seed=3), NAMES)
    fresh = target.to_state()
    outcome = load_parts({"reranker": target}, [("reranker", "json", json.dumps(state).encode())])
    assert outcome["reranker"].startswith("refused") and says in outcome["reranker"], outcome
    assert target.to_state() == fresh


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list) and value:
        out += _paths(value[0], (*prefix, 0)) + _paths(value[-1], (*prefix, len(value) - 1))
    return out


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                           | st.text(max_size=5), lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=6)

REFERENCE = {"reranker": trained_reranker(n=200).to_state(),
             "drift": (lambda m: ([m.observe(k % 9 - 1, k) for k in range(3_000)], m.to_state())[1])(DriftMonitor())}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(part=st.sampled_from(["reranker", "drift"]), data=st.data())
def test_any_edit_of_a_json_state_is_restored_or_refused_never_an_error(part: str, data: st.DataObject) -> None:
    state = copy.deepcopy(REFERENCE[part])
    path = data.draw(st.sampled_from(_paths(state)[1:]))
    node = state
    for key in path[:-1]:
        node = node[key]
    if data.draw(st.booleans()) and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = data.draw(json_values)
    learner: Any = OnlineReranker(RerankerConfig(seed=3), NAMES) if part == "reranker" else DriftMonitor()
    fresh = learner.to_state()
    try:
        raw = json.dumps(state, allow_nan=False).encode()
    except ValueError:
        return
    outcome = load_parts({part: learner}, [(part, "json", raw)])[part]
    assert outcome.startswith(("restored", "refused: ")), outcome
    if outcome.startswith("refused"):
        assert learner.to_state() == fresh
    else:   # whatever was accepted is a usable learner
        json.dumps(learner.to_state(), allow_nan=False)
        if part == "reranker":   # (scores are checked finite where lists are emitted)
            assert learner.score(np.ones((2, 3), dtype=np.float32)).shape == (2,)
        else:
            learner.observe(3, 10**6)


NPZ = {"items": (lambda: (lambda t: ([t.observe(f"i{k}", k, f"c{k % 3}") for k in range(40)], t)[1])(ItemTable()),
                 ItemTable),
       "mf": (lambda: (lambda m: ([m.learn_one(f"u{k % 7}", f"i{k % 11}", 1.0, ts_ms=k) for k in range(80)], m)[1])(
           RiverMF(RiverMFConfig.for_ranking(n_factors=3))), lambda: RiverMF(RiverMFConfig.for_ranking(n_factors=3)))}
NPZ_BYTES = {name: make().to_state() for name, (make, _) in NPZ.items()}


@settings(max_examples=200, deadline=None)
@given(part=st.sampled_from(sorted(NPZ)), cut=st.integers(0, 10**6), flips=st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4))
def test_damaged_npz_states_are_restored_or_refused_never_an_error(part: str, cut: int,
                                                                   flips: list[tuple[int, int]]) -> None:
    data = bytearray(NPZ_BYTES[part])
    for at, x in flips:
        data[at % len(data)] ^= x
    if cut % 3 == 0:
        data = data[: cut % len(data)]
    learner = NPZ[part][1]()
    outcome = load_parts({part: learner}, [(part, "npz", bytes(data))])[part]
    assert outcome.startswith(("restored", "refused: ")), outcome


def test_npz_states_are_checked_field_by_field() -> None:
    table = NPZ["items"][0]()
    good = dict(np.load(io.BytesIO(table.to_state()), allow_pickle=False))

    def refused(**change: np.ndarray) -> str:
        buf = io.BytesIO()
        np.savez(buf, **{**good, **change})
        with pytest.raises(ArtifactError) as err:
            ItemTable().load_state(buf.getvalue())
        return str(err.value)

    assert "codes outside" in refused(cat=np.full_like(good["cat"], 99))
    assert "do not add up" in refused(ids_len=good["ids_len"] + 1)
    assert "dtype" in refused(first=good["first"].astype(np.float64))
    assert "more than once" in refused(ids_len=np.full_like(good["ids_len"], 0), ids_blob=np.zeros(0, np.uint8))
    assert "holds arrays" in refused(extra=np.zeros(1))
    with pytest.raises(StateError, match="not an .npz archive"):
        RiverMF.from_bytes(b"not a zip")
    mf = NPZ["mf"][0]()
    arrays = dict(np.load(io.BytesIO(mf.to_state()), allow_pickle=False))
    arrays["item_latents"] = np.full_like(arrays["item_latents"], np.inf)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(StateError, match="NaN or infinite"):
        RiverMF.from_bytes(buf.getvalue())
    with pytest.raises(StateError, match="factors"):
        RiverMF(RiverMFConfig(n_factors=5)).load_state(mf.to_state())
