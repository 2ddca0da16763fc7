"""The interface a configuration implements to be compared by the prequential harness.

A policy only has to ``recommend`` and ``learn``; the optional methods make it faster or let it
simulate periodic base-model training. The harness calls them in this order for every chunk of events
(one event per chunk unless ``EvalConfig.batch_size`` says otherwise)::

    on_sync(events_before_now)      # only when a sync is due; the events strictly before the chunk
    recommend(...) / recommend_many # for each target event of the chunk, state as of the chunk start
    learn(...) / learn_many         # then every event of the chunk, targets and non-targets

``exclude`` is the harness's live, read-only view of the items to leave out for that user: a policy may
read it during the call but must neither mutate it nor keep a reference to it.

>>> class Constant:
...     name = "constant"
...     def recommend(self, user_id, k, now_ms, exclude):
...         return [i for i in ("a", "b", "c") if i not in exclude][:k]
...     def learn(self, event):
...         pass
>>> isinstance(Constant(), Policy)
True
>>> recommend_batch(Constant(), [Request("u1", 0, frozenset({"a"}))], k=2)
[['b', 'c']]
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from streamrec.models.events import Event


@dataclass(frozen=True, slots=True)
class Request:
    """One recommendation request: the user, the event time it is made at, and the items to leave out."""

    user_id: str
    now_ms: int
    exclude: AbstractSet[str]


@runtime_checkable
class Policy(Protocol):
    """A configuration under evaluation.

    Optional methods, used when present:

    * ``recommend_many(requests: Sequence[Request], k: int) -> list[list[str]]``
    * ``learn_many(events: Sequence[Event]) -> None`` (same effect as ``learn`` on each, in order)
    * ``on_sync(events: Sequence[Event]) -> None`` (retrain on exactly these events, all in the past)
    """

    @property
    def name(self) -> str: ...

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: AbstractSet[str]) -> list[str]: ...

    def learn(self, event: Event) -> None: ...


def recommend_batch(policy: Policy, requests: Sequence[Request], k: int) -> list[list[str]]:
    """Ask ``policy`` for a top-``k`` list per request, batched when it implements ``recommend_many``."""
    many = getattr(policy, "recommend_many", None)
    if many is not None:
        lists = list(many(requests, k))
        if len(lists) != len(requests):
            raise ValueError(f"policy {policy.name!r} answered {len(lists)} lists "
                             f"for {len(requests)} requests")
        return lists
    return [policy.recommend(r.user_id, k, r.now_ms, r.exclude) for r in requests]


def learn_batch(policy: Policy, events: Sequence[Event]) -> None:
    """Let ``policy`` learn ``events`` in order, batched when it implements ``learn_many``."""
    many = getattr(policy, "learn_many", None)
    if many is not None:
        many(events)
        return
    for e in events:
        policy.learn(e)


def has_sync(policy: Policy) -> bool:
    """Whether ``policy`` wants periodic ``on_sync`` calls."""
    return callable(getattr(policy, "on_sync", None))
