"""An item owner whose group join never hears an assignment leaves and joins again; one assigned nothing (more
owners than partitions) stays a member as it is."""

from __future__ import annotations

import time
from typing import Any

import structlog

from streamrec.consumers.itemplane import ItemOwner
from streamrec.consumers.rebalance import RebalanceTracker


class _Consumer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def close(self, autocommit: bool = False) -> None:
        self.log.append("close")

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.log.append(f"subscribe {topics[0]}")


def _owner(log: list[str]) -> ItemOwner:
    owner = ItemOwner.__new__(ItemOwner)          # no broker: only the rejoin rule is under test
    owner.log, owner.topic, owner.tables, owner.n = structlog.get_logger("test"), "t", {}, {"rejoins": 0}
    owner.consumer, owner.tracker, owner._heard = _Consumer(log), RebalanceTracker("t"), False
    owner._new_consumer = lambda: _Consumer(log)  # type: ignore[method-assign]  # a fake consumer
    return owner


def test_a_join_that_never_hears_an_assignment_is_done_again() -> None:
    log: list[str] = []
    owner = _owner(log)
    owner._unassigned_since = time.monotonic() - 5
    owner._rejoin_if_stuck()
    assert owner.n["rejoins"] == 0 and log == []                      # not yet
    owner._unassigned_since = time.monotonic() - ItemOwner.REJOIN_AFTER_S - 1
    owner._rejoin_if_stuck()
    assert owner.n["rejoins"] == 1 and log == ["close", "subscribe t"]
    assert owner._heard is False and owner._unassigned_since > time.monotonic() - 1


def test_an_owner_assigned_nothing_stays_and_a_stalled_revoke_rejoins() -> None:
    log: list[str] = []
    owner = _owner(log)
    owner.tracker.on_partitions_assigned([])                         # heard: an empty assignment
    owner._heard = True
    owner._unassigned_since = time.monotonic() - 10 * ItemOwner.REJOIN_AFTER_S
    owner._rejoin_if_stuck()
    assert owner.n["rejoins"] == 0 and log == []
    owner.tracker.on_partitions_revoked([])
    owner.tracker.awaiting_since = time.monotonic() - ItemOwner.REJOIN_AFTER_S - 1
    owner._rejoin_if_stuck()
    assert owner.n["rejoins"] == 1 and log == ["close", "subscribe t"]
