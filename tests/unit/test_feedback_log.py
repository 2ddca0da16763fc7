"""The reranker's feedback log holds little while there are few users (it grows as they come, up to its
capacity) and overwrites the oldest user first once full, wherever its arrays grew."""

from __future__ import annotations

import numpy as np

from streamrec.models.online.feedback import FeedbackLog


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
