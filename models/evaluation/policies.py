"""The configurations the evaluation compares, each a :class:`models.evaluation.Policy`.

=====================  ==========================================================================
``PopularityPolicy``    time-decayed trending counts (half-life configurable); same list for everyone
``RiverMFPolicy``       online biased matrix factorisation (:mod:`models.online.river_mf`), updated per event
``BaseModelPolicy``     the torch base model (``models.base.training.train``), retrained at each ``on_sync``
                        on exactly the events before that point; ``online=False`` freezes user vectors
                        at the sync (*static base model*), ``online=True`` re-encodes each user from
                        their recent items after every event (*base model + online user vectors*)
``FullSystemPolicy``    the worker's own engine (``models.engine.recommender.Recommender``): ``apply`` per
                        event, ``recommend`` per request, ``swap_model`` at each ``on_sync``
=====================  ==========================================================================

The last two import the trainer and the engine lazily, so this module loads without torch. Both accept
an injected ``trainer`` (``events -> object with item_ids, embeddings, encoder``) so they can be tested,
or run with another trainer, without ``models.base.training``.

>>> from streamrec.models.events import Event, EventType
>>> pop = PopularityPolicy(half_life_ms=None)
>>> for n, item in enumerate(["a", "b", "b", "c", "b", "c"]):
...     pop.learn(Event(str(n), "u", item, EventType.CLICK, n))
>>> pop.recommend("anyone", 2, now_ms=6, exclude=set())
['b', 'c']
>>> pop.recommend("anyone", 2, now_ms=6, exclude={"b"})
['c', 'a']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal, Protocol

import numpy as np

from streamrec.models.base.artifact import Artifact, build_manifest, decode_artifact, encode_payload
from streamrec.models.base.encoder import TYPE_INDEX, UserEncoder, event_strength
from streamrec.models.decay import ForwardDecay
from streamrec.models.evaluation.policy import Request
from streamrec.models.events import Event
from streamrec.models.online.river_mf import RiverMF, RiverMFConfig, top_k


class PopularityPolicy:
    """Trending items: every event adds its weight, decayed by ``0.5 ** (age / half_life_ms)``.

    ``half_life_ms=None`` never forgets (plain popularity). ``weighting="strength"`` weighs each event by
    :func:`models.base.encoder.event_strength` instead of 1. Scores are kept relative to an anchor time, so
    ranking needs no pass over all items per event (:class:`models.decay.ForwardDecay`, the clock of the
    engine's trending and co-visitation counts).
    """

    def __init__(self, half_life_ms: float | None = 7 * 24 * 3600 * 1000.0,
                 weighting: Literal["count", "strength"] = "count", name: str = "popularity") -> None:
        self.name = name
        self.half_life_ms = half_life_ms
        self.weighting = weighting
        self._row: dict[str, int] = {}
        self._ids: list[str] = []
        self._score = np.zeros(1024, dtype=np.float64)
        self._clock = ForwardDecay(half_life_ms) if half_life_ms is not None else None

    def learn(self, event: Event) -> None:
        row = self._row.get(event.item_id)
        if row is None:
            row = len(self._ids)
            if row == len(self._score):
                self._score = np.concatenate([self._score, np.zeros_like(self._score)])
            self._row[event.item_id] = row
            self._ids.append(event.item_id)
        w = 1.0 if self.weighting == "count" else event_strength(event.event_type.value, event.value)
        if self._clock is not None:       # forward decay (models/decay.py): the same clock as trending
            growth, rescale = self._clock.growth(event.timestamp_ms)
            if rescale is not None:
                self._score[: len(self._ids)] *= rescale
            w *= growth
        self._score[row] += w

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            self.learn(e)

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: AbstractSet[str]) -> list[str]:
        banned = [r for i in exclude if (r := self._row.get(i)) is not None] if exclude else []
        return [self._ids[r] for r in top_k(self._score[: len(self._ids)], k, banned)]


class RiverMFPolicy:
    """Online biased MF (:class:`models.online.river_mf.RiverMF`): one SGD step per event, numpy ranking.

    The default configuration is :meth:`RiverMFConfig.for_ranking` (strength targets with sampled
    negatives); pass ``RiverMFConfig()`` for plain star-rating regression.
    """

    def __init__(self, config: RiverMFConfig | None = None, name: str = "river_mf") -> None:
        self.name = name
        self.mf = RiverMF(config if config is not None else RiverMFConfig.for_ranking())

    def learn(self, event: Event) -> None:
        self.mf.learn_event(event)

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            self.mf.learn_event(e)

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: AbstractSet[str]) -> list[str]:
        return self.mf.rank(user_id, k, exclude)


# ---------------------------------------------------------------------------------- base model


class TrainedModel(Protocol):
    """What ``models.base.training.train`` returns (its ``TrainResult``), as far as the policies need it."""

    @property
    def item_ids(self) -> Sequence[str]: ...

    @property
    def embeddings(self) -> np.ndarray: ...

    @property
    def encoder(self) -> UserEncoder | None: ...


Trainer = Callable[[Sequence[Event]], TrainedModel]


def torch_trainer(train_config: Any | None = None) -> Trainer:
    """``models.base.training.train`` with ``train_config`` (default ``TrainConfig()``), imported on first use."""

    def _train(events: Sequence[Event]) -> TrainedModel:
        from streamrec.models.base.training import TrainConfig, train  # lazy: torch is only needed when training

        config = train_config if train_config is not None else TrainConfig()
        result: TrainedModel = train(list(events), config)
        return result

    return _train


def artifact_from(result: TrainedModel, version: str) -> Artifact:
    """An in-memory, verified :class:`Artifact` built from a training result (no files written)."""
    emb = np.ascontiguousarray(result.embeddings, dtype=np.float32)
    files = encode_payload([str(i) for i in result.item_ids], emb, result.encoder)
    manifest = build_manifest(files, dim=int(emb.shape[1]), item_count=len(result.item_ids), version=version)
    return decode_artifact(manifest, files)


class BaseModelPolicy:
    """The base model alone: items by ``embeddings @ user_vector``, user vector from the shared encoder.

    Each user's recent events (most recent ``history`` of them) are kept as they are learned. With
    ``online=True`` the vector is re-encoded from them at every request, at the request's time; with
    ``online=False`` only events before the last sync count and ages are taken at the sync time, as if
    user vectors were computed in the batch job and shipped with the model. Items the model was not
    trained on cannot be recommended, and a user with no usable history gets an empty list: the base
    model has no cold-start fallback of its own (the full system does). Before the first sync every
    list is empty.
    """

    def __init__(self, online: bool = True, trainer: Trainer | None = None, history: int = 50,
                 name: str | None = None) -> None:
        self.online = online
        self.name = name or ("base_online" if online else "base_static")
        self.trainer = trainer or torch_trainer()
        self.history = history
        self._recent: dict[str, deque[tuple[int, str, int, int, float]]] = {}
        self._seq = 0               # events learned so far
        self._sync_seq = 0          # events learned at the last sync
        self._sync_ms = 0
        self._emb: np.ndarray | None = None
        self._row: dict[str, int] = {}
        self._ids: list[str] = []
        self._encoder: UserEncoder | None = None
        self._frozen: dict[str, np.ndarray] = {}

    def learn(self, event: Event) -> None:
        q = self._recent.get(event.user_id)
        if q is None:
            q = self._recent[event.user_id] = deque(maxlen=self.history)
        strength = event_strength(event.event_type.value, event.value)
        q.append((self._seq, event.item_id, TYPE_INDEX[event.event_type.value], event.timestamp_ms, strength))
        self._seq += 1

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            self.learn(e)

    def on_sync(self, events: Sequence[Event]) -> None:
        result = self.trainer(events)
        self._emb = np.ascontiguousarray(result.embeddings, dtype=np.float32)
        self._ids = [str(i) for i in result.item_ids]
        self._row = {item: r for r, item in enumerate(self._ids)}
        self._encoder = result.encoder or UserEncoder.identity(int(self._emb.shape[1]))
        self._sync_seq = self._seq
        self._sync_ms = events[-1].timestamp_ms if events else 0
        self._frozen = {}

    def user_vector(self, user_id: str, now_ms: int) -> np.ndarray | None:
        """The user's vector in the base model's space, or ``None`` (no model yet, or no usable history)."""
        if self._emb is None or self._encoder is None:
            return None
        if not self.online:
            if user_id not in self._frozen:
                self._frozen[user_id] = self._encode(user_id, self._sync_ms, self._sync_seq)
            vec = self._frozen[user_id]
        else:
            vec = self._encode(user_id, now_ms, self._seq)
        return vec if bool(np.any(vec)) else None

    def _encode(self, user_id: str, now_ms: int, before_seq: int) -> np.ndarray:
        if self._emb is None or self._encoder is None:
            raise RuntimeError("_encode needs a synced model")
        rows, types, ages, strengths = [], [], [], []
        for seq, item, t, ts, s in reversed(self._recent.get(user_id, ())):  # most recent first
            r = self._row.get(item)
            if seq < before_seq and r is not None:
                rows.append(r)
                types.append(t)
                ages.append((now_ms - ts) / 1000.0)
                strengths.append(s)
        if not rows:
            return np.zeros(self._encoder.dim, dtype=np.float32)
        return self._encoder.encode(self._emb[rows], np.array(types), np.array(ages),
                                    np.array(strengths, dtype=np.float32))

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: AbstractSet[str]) -> list[str]:
        vec = self.user_vector(user_id, now_ms)
        if vec is None or self._emb is None:
            return []
        banned = [r for i in exclude if (r := self._row.get(i)) is not None] if exclude else []
        return [self._ids[r] for r in top_k(self._emb @ vec, k, banned)]


class StaticBaseModelPolicy(BaseModelPolicy):
    """The base model with user vectors frozen at each sync (``BaseModelPolicy(online=False)``)."""

    def __init__(self, trainer: Trainer | None = None, history: int = 50, name: str = "base_static") -> None:
        super().__init__(online=False, trainer=trainer, history=history, name=name)


class OnlineBaseModelPolicy(BaseModelPolicy):
    """The base model with user vectors updated per event (``BaseModelPolicy(online=True)``)."""

    def __init__(self, trainer: Trainer | None = None, history: int = 50, name: str = "base_online") -> None:
        super().__init__(online=True, trainer=trainer, history=history, name=name)


# ---------------------------------------------------------------------------------- full system


class FullSystemPolicy:
    """The worker's engine, run in-process: ``Recommender.apply`` per event, ``recommend`` per request.

    The engine starts without a model (its cold-start sources still work) and receives
    ``swap_model(artifact)`` at every ``on_sync``, with an artifact trained on exactly the events before
    that point. Events are applied on partition 0 with consecutive offsets. The engine applies its own
    filters; the harness's ``exclude`` is applied on top, and lists are cut to ``k`` (the engine's list
    length, set in ``engine_config``, should be at least the harness's ``max(k, recall_k)``).
    ``engine_factory`` builds the engine (default ``Recommender(engine_config or EngineConfig())``).
    ``catalog`` (catalog records, :class:`~models.catalog.item.Item`) goes to ``engine.update_catalog`` as soon
    as the engine is built, before any event: the shop's catalog exists before its first click.
    """

    def __init__(self, engine_config: Any | None = None, trainer: Trainer | None = None,
                 engine_factory: Callable[[], Any] | None = None, name: str = "full_system",
                 catalog: Sequence[Any] | None = None) -> None:
        self.name = name
        self.catalog = catalog
        self.engine_config = engine_config
        self.trainer = trainer or torch_trainer()
        self._factory = engine_factory or self._default_engine
        self._engine: Any | None = None
        self._offset = 0
        self.syncs = 0

    def _default_engine(self) -> Any:
        from streamrec.models.engine.recommender import EngineConfig, Recommender  # lazy: the engine is optional here

        return Recommender(self.engine_config if self.engine_config is not None else EngineConfig(),
                           artifact=None)

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = self._factory()
            if self.catalog:
                self._engine.update_catalog(self.catalog)
        return self._engine

    def learn(self, event: Event) -> None:
        self.learn_many([event])

    def learn_many(self, events: Sequence[Event]) -> None:
        if not events:
            return
        offsets = list(range(self._offset, self._offset + len(events)))
        self.engine.apply(list(events), partition=0, offsets=offsets)
        self._offset += len(events)

    def on_sync(self, events: Sequence[Event]) -> None:
        result = self.trainer(events)
        self.syncs += 1
        self.engine.swap_model(artifact_from(result, version=f"eval-{self.syncs:04d}-{len(events)}"))

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: AbstractSet[str]) -> list[str]:
        return self.recommend_many([Request(user_id, now_ms, exclude)], k)[0]

    def recommend_many(self, requests: Sequence[Request], k: int) -> list[list[str]]:
        """One batched ``engine.recommend`` per distinct request time (normally one per chunk).

        The engine's ``now_ms`` only paces its trending cache (rebuilt every ``trending_refresh_events``
        events or ``trending_refresh_ms``); a worker passes its wall clock, so under load it rebuilds about
        every 1,000 events. The request's event time would rebuild it at almost every request (events are
        seconds apart), which is fresher than any worker and was 0.75 ms of each 2-4 ms request (profile of
        the generated session log), so the harness passes none: the cache is paced by events, as in a busy
        worker."""
        by_user: dict[tuple[str, int], list[str]] = {}
        for now_ms in sorted({r.now_ms for r in requests}):
            users = list(dict.fromkeys(r.user_id for r in requests if r.now_ms == now_ms))
            for rec_list in self.engine.recommend(users, now_ms=None):
                by_user[(rec_list.user_id, now_ms)] = [it.item_id for it in rec_list.items]
        out = []
        for r in requests:
            items = by_user.get((r.user_id, r.now_ms), [])
            out.append([i for i in items if i not in r.exclude][:k])
        return out

