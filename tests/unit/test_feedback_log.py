"""The reranker's feedback log holds little while there are few users (it grows as they come, up to its
capacity) and overwrites the oldest user first once full, wherever its arrays grew; the one-slot path of
``label_pairs`` returns what the vectorised path returns, from the same random numbers."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models.online.feedback import FeedbackLog, LabelPolicy, label_pairs, label_pairs_vectorised


def test_the_log_grows_with_its_users_and_overwrites_the_oldest_once_full() -> None:
    FeedbackLog.INITIAL_ROWS = 4   # class default 1,024; small here so the test crosses several doublings
    try:
        log = FeedbackLog(capacity=10, width=2, n_features=1)
        assert log._X.shape[0] == 4                    # not sized by the capacity
        for k in range(10):
            log.record([f"u{k}"], [(f"i{k}", f"j{k}")], [1], np.full((1, 2, 1), k, dtype=np.float32))
        assert log._X.shape[0] == 10 and len(log) == 10   # 4 -> 8 -> 10: capped at the capacity
        for k in range(10):
            slot, items = log.lookup(f"u{k}") or (-1, ())
            assert items == (f"i{k}", f"j{k}") and log.features(slot, 2)[0, 0] == k
        log.record(["new"], [("x", "y")], [2], np.full((1, 2, 1), 99, dtype=np.float32))
        assert log.lookup("u0") is None and len(log) == 10        # the oldest user made room
        slot, items = log.lookup("new") or (-1, ())
        assert slot == 0 and items == ("x", "y") and log.shown(slot) == 2 and log._X.shape[0] == 10
        assert log.lookup("u1") is not None
    finally:
        FeedbackLog.INITIAL_ROWS = 1_024


@pytest.mark.parametrize("policy", [LabelPolicy(), LabelPolicy(negatives=2, ipw=True, max_pairs=3),
                                    LabelPolicy(position_bias="none", unshown_negatives=False),
                                    LabelPolicy(negatives=0), LabelPolicy(negatives=9, ipw=True, max_pairs=5)])
def test_the_one_slot_path_equals_the_vectorised_labels(policy: LabelPolicy) -> None:
    data = np.random.default_rng(3)
    log = FeedbackLog(capacity=50, width=12, n_features=3)
    for k in range(50):
        n = int(data.integers(0, 13))
        X = data.normal(size=(1, 12, 3)).astype(np.float32)
        log.record([f"u{k}"], [tuple(f"i{j}" for j in range(n))], [int(data.integers(0, n + 1))], X)
    checked = 0
    for k in range(50):
        slot = (log.lookup(f"u{k}") or (-1, ()))[0]
        acted = {slot: {int(p) for p in data.integers(-1, 14, size=int(data.integers(0, 4)))}}
        fast_rng, ref_rng = np.random.default_rng(k), np.random.default_rng(k)
        fast, ref = label_pairs(log, acted, policy, fast_rng), label_pairs_vectorised(log, acted, policy, ref_rng)
        for a, b in zip(fast, ref, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        assert fast_rng.random() == ref_rng.random()          # the same random numbers were drawn
        checked += len(ref[1]) > 0
    assert checked > 10
