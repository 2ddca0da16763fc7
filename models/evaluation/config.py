"""What the prequential harness scores, what it leaves out, and when base models retrain.

Target policy (which events are scored):

* MovieLens ratings: a rating of 4 or 5 stars is a target (the user liked the movie); ``any_rating=True``
  scores every rating, since even a low rating means the user chose to watch it.
* E-commerce: clicks, carts and purchases are targets; views (and ``OTHER``, which counts as a view) are
  learned but not scored, unless ``include_views=True``.

Every event is learned, target or not.

Exclusion policy (which items a list may not contain):

* ``"seen"``: anything the user interacted with before (MovieLens default: a user rates a movie once, so a
  seen movie can never be the next target and would only waste a slot).
* ``"purchased"``: only items the user bought.
* ``"none"``: nothing (e-commerce default: re-clicking and re-carting items the user already touched is
  normal behaviour; 39 % of the events in the OTTO sample are on an item earlier in the same session, so
  excluding seen items would make those targets unreachable and hide the value of recent-item sources).

A target the exclusion makes unreachable is still scored (as a miss) and counted in the report's
``unreachable`` field, so the choice stays visible.

>>> from streamrec.models.events import Event, EventType
>>> rating = lambda stars: Event("e", "u", "i", EventType.RATING, 0, value=stars)
>>> TargetPolicy.movielens().is_target(rating(4.0)), TargetPolicy.movielens().is_target(rating(3.0))
(True, False)
>>> TargetPolicy.movielens(any_rating=True).is_target(rating(1.0))
True
>>> view = Event("e", "u", "i", EventType.VIEW, 0)
>>> TargetPolicy.ecommerce().is_target(view), TargetPolicy.ecommerce(include_views=True).is_target(view)
(False, True)
>>> EvalConfig.movielens().exclude, EvalConfig.ecommerce().exclude
('seen', 'none')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from streamrec.models.errors import ConfigError
from streamrec.models.events import Event, EventType

Exclusion = Literal["seen", "purchased", "none"]

_ECOMMERCE = frozenset({EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE})


@dataclass(frozen=True)
class TargetPolicy:
    """Which events are scored. Ratings below ``min_rating`` are not targets (``None``: every rating is)."""

    types: frozenset[EventType] = _ECOMMERCE | {EventType.RATING}
    min_rating: float | None = 4.0

    def is_target(self, event: Event) -> bool:
        if event.event_type not in self.types:
            return False
        if event.event_type == EventType.RATING and self.min_rating is not None:
            return event.value is not None and event.value >= self.min_rating
        return True

    @classmethod
    def movielens(cls, any_rating: bool = False) -> TargetPolicy:
        return cls(types=frozenset({EventType.RATING}), min_rating=None if any_rating else 4.0)

    @classmethod
    def ecommerce(cls, include_views: bool = False) -> TargetPolicy:
        views = {EventType.VIEW, EventType.OTHER} if include_views else set()
        return cls(types=_ECOMMERCE | views, min_rating=None)

    def describe(self) -> dict[str, Any]:
        return {"types": sorted(t.value for t in self.types), "min_rating": self.min_rating}


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one prequential run.

    ``warmup_fraction`` of the log (by event count) is learned but not scored. Metrics use the top ``k``,
    recall the top ``recall_k``; curves have one point per ``window`` scored events. ``batch_size`` > 1
    scores a chunk of events against the state before the chunk, then learns the chunk (the worker's
    micro-batch; still leak-free, slightly pessimistic). ``on_sync`` runs after the warm-up
    (``sync_after_warmup``) and then every ``sync_every_events`` events or ``sync_every_ms`` of event time,
    whichever comes first. ``catalog_size`` defaults to the distinct items of the replayed log.
    """

    dataset: str = "events"
    k: int = 10
    recall_k: int = 20
    warmup_fraction: float = 0.1
    window: int = 1000
    targets: TargetPolicy = field(default_factory=TargetPolicy)
    exclude: Exclusion = "seen"
    batch_size: int = 1
    sync_every_events: int | None = None
    sync_every_ms: int | None = None
    sync_after_warmup: bool = True
    catalog_size: int | None = None
    progress_every: int = 1000
    #: item cold start: targets whose item had fewer than this many earlier events (of any user) are also
    #: scored on their own (the report's ``cold`` section); 0: not measured
    cold_item_events: int = 5

    def __post_init__(self) -> None:
        if self.cold_item_events < 0:
            raise ConfigError(f"cold_item_events must be 0 (off) or more, got {self.cold_item_events}")
        if min(self.k, self.recall_k, self.window, self.batch_size, self.progress_every) <= 0:
            raise ConfigError("evaluation k, recall_k, window, batch_size and progress_every must be positive")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.exclude not in ("seen", "purchased", "none"):
            raise ConfigError(f"exclude must be 'seen', 'purchased' or 'none', not {self.exclude!r}")
        for name in ("sync_every_events", "sync_every_ms", "catalog_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive (or None)")

    @classmethod
    def movielens(cls, any_rating: bool = False, **overrides: Any) -> EvalConfig:
        """Ratings >= 4 are targets (every rating with ``any_rating``); seen movies are excluded."""
        base: dict[str, Any] = {"dataset": "movielens", "targets": TargetPolicy.movielens(any_rating),
                                "exclude": "seen"}
        return cls(**{**base, **overrides})

    @classmethod
    def ecommerce(cls, include_views: bool = False, **overrides: Any) -> EvalConfig:
        """Clicks, carts and orders are targets (views with ``include_views``); nothing is excluded."""
        base: dict[str, Any] = {"dataset": "ecommerce", "targets": TargetPolicy.ecommerce(include_views),
                                "exclude": "none"}
        return cls(**{**base, **overrides})

    def describe(self) -> dict[str, Any]:
        """The settings as plain JSON values (for the report)."""
        d = asdict(self)
        d["targets"] = self.targets.describe()
        return d
