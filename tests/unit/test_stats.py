"""The worker's latency ring buffer keeps exactly the most recent values."""

from __future__ import annotations

import numpy as np

from streamrec.consumers.stats import LatencyWindow


def test_ring_keeps_the_most_recent_values() -> None:
    w = LatencyWindow(size=5)
    w.extend(np.array([1.0, 2, 3]))
    w.extend(np.array([4.0, 5, 6, 7]))
    assert sorted(w.buf.tolist()) == [3, 4, 5, 6, 7] and w.n == 7
    assert w.percentiles()["max"] == 7.0


def test_a_batch_longer_than_the_ring_keeps_its_tail() -> None:
    w = LatencyWindow(size=3)
    w.extend(np.arange(10.0))
    assert sorted(w.buf.tolist()) == [7, 8, 9]
    assert LatencyWindow(size=3).percentiles() == {}
