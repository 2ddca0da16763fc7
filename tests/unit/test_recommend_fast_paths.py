"""The recommend path's small-size fast paths give what the general (vectorised) paths give, bit for bit."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from streamrec.models.base.encoder import TYPE_INDEX
from streamrec.models.online.features import SESSION_GAP_MS, _History
from streamrec.models.serving.candidates import CodeSpace, normalise
from streamrec.models.serving.ranking import RecItem
from streamrec.models.serving.runs import rank_in_runs, run_starts
from streamrec.models.serving.state import StateLimits, UserState


def _reference(scores: np.ndarray, rows: np.ndarray, method: str) -> np.ndarray:
    """``normalise`` spelled with the general per-run bookkeeping only (no one-row shortcut)."""
    s = np.asarray(scores, dtype=np.float32)
    starts = run_starts(rows)
    lengths = np.diff(starts, append=len(s))
    if method == "rank":
        return (1.0 - rank_in_runs(rows) / np.repeat(lengths, lengths)).astype(np.float32)
    peak = np.repeat(np.maximum.reduceat(np.abs(s), starts), lengths)
    return (s / np.where(peak > 0, peak, 1.0)).astype(np.float32)


@pytest.mark.parametrize("method", ["max", "rank"])
def test_normalise_one_row_and_many_rows_match_the_general_path(method: str) -> None:
    rng = np.random.default_rng(3)
    one_row = 0
    for _ in range(500):
        n = int(rng.integers(1, 40))
        rows = np.sort(rng.integers(0, int(rng.integers(1, 4)), n)) + int(rng.integers(0, 5))
        one_row += rows[0] == rows[-1]
        scale = rng.choice([0.0, 1e-3, 1.0, 1e6])
        scores = (rng.normal(size=n) * scale).astype(rng.choice([np.float32, np.float64]))
        got = normalise(scores, rows, method)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, _reference(scores, rows, method))
    assert one_row > 100       # the one-row path was exercised


def test_normalise_one_row_of_zeros_stays_zero() -> None:
    np.testing.assert_array_equal(normalise(np.zeros(3), np.array([2, 2, 2])), np.zeros(3, dtype=np.float32))


def test_codes_and_finds_match_code_and_find() -> None:
    space = CodeSpace(["a", "b", "c"], {"a": 0, "b": 1, "c": 2})
    items = ["b", "x", "a", "y", "x", "c"]
    assert space.finds(items).tolist() == [1, -1, 0, -1, -1, 2]       # finds never assigns
    assert space.codes(items).tolist() == [1, 3, 0, 4, 3, 2]          # new items in order of first sight
    assert space.finds(items).tolist() == [space.find(i) for i in items] == [1, 3, 0, 4, 3, 2]
    assert space.codes([]).dtype == np.int64 and space.finds([]).tolist() == []
    assert CodeSpace().codes(["p", "q", "p"]).tolist() == [0, 1, 0]


def _session_alone(ts: list[int]) -> int:
    """Events in the current session of one user, counted back from the last (the per-user definition)."""
    n = 1
    while n < len(ts) and ts[n - 1] - ts[n] <= SESSION_GAP_MS:
        n += 1
    return n


def test_context_of_a_batch_matches_each_user_alone() -> None:
    rng = np.random.default_rng(5)
    states: list[UserState | None] = []
    for u in range(40):
        st = UserState(f"u{u}")
        t = 0
        for _ in range(int(rng.integers(0, 8))):
            t += int(rng.choice([1_000, SESSION_GAP_MS, SESSION_GAP_MS + 1, 3 * SESSION_GAP_MS]))
            st.observe(f"i{rng.integers(0, 5)}", int(rng.integers(0, 4)), t, 1.0, StateLimits())
        states.append(st if u % 7 else None)
    rows = [r for r, st in enumerate(states) if st is not None and st.recent_items]
    view, session = _History(states, rows).context()
    for j, r in enumerate(rows):
        st = states[r]
        assert st is not None
        alone_view, alone_session = _History(states, [r]).context()      # the one-user branch
        expected = _session_alone(st.recent_ts.tolist())
        assert session[j] == alone_session[0] == expected
        assert view[j] == alone_view[0] == float(int(st.recent_types[0]) in (TYPE_INDEX["VIEW"], TYPE_INDEX["OTHER"]))
    assert len(set(session.tolist())) > 2          # sessions of several lengths were exercised


def test_rec_item_written_out_init_behaves_like_the_generated_one() -> None:
    a = RecItem("a", 1.0, "ann")
    b = RecItem(item_id="a", score=1.0, source="ann", reason="")
    assert a == b and hash(a) == hash(b)
    assert repr(a) == "RecItem(item_id='a', score=1.0, source='ann', reason='')"
    assert dataclasses.replace(a, reason="ann:x") == RecItem("a", 1.0, "ann", "ann:x")
    assert copy.deepcopy(a) == a
    assert [f.name for f in dataclasses.fields(a)] == ["item_id", "score", "source", "reason"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.score = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        RecItem("a", 1.0)  # type: ignore[call-arg]
