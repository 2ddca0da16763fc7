"""The recommendation engine a worker (or the evaluation harness) drives: state, sources, ranking.

``apply`` deduplicates (event-id window; offset at or below the user's last applied offset), scores what
each user was last shown (test, then train: ``hit@10`` / ``hit@20`` counters in ``stats()``), then updates
the user state, co-visitation and trending. ``recommend`` builds one list per user with one batched
user encoding, one faiss search, one vectorised candidate merge and blend for the whole batch.

Sources: ``ann`` (user vector against the model's items), ``covisit`` (items co-visited with the user's
recent items), ``session_knn`` (opt-in: the items of the sessions most similar to the user's recent items),
``recent`` (the user's own recent items, under the filter policy), ``content`` (catalog items similar in
content to the user's recent items; nothing without a catalog, see ``update_catalog``), ``trending``, and
``cold_start`` (a seeded sample of the catalog, or the newest items when there is no model) for users with
few candidates.
A user with no history gets trending and cold start; one click is enough for the others; without a model
the engine serves every source but ``ann``.

Model swaps: ``prepare_model(artifact)`` builds the index (slow; call it off the hot path, it touches no
engine state), ``swap(prepared)`` installs model and index together in one assignment. User vectors are
never cached: every batch encodes its users with the model in service, so a swap moves every user to the
new space at once, and a restored user gets a vector from their recent items.

>>> from streamrec.models.events import Event, EventType
>>> rec = Recommender(EngineConfig(trending_refresh_events=1))
>>> rec.apply([Event("e1", "u1", "a", EventType.CLICK, 1_000), Event("e2", "u2", "a", EventType.CLICK, 2_000),
...            Event("e3", "u2", "b", EventType.CLICK, 3_000)], offsets=[0, 1, 2])
['u1', 'u2']
>>> [(it.item_id, it.source) for it in rec.recommend(["u1"], now_ms=4_000)[0].items]
[('a', 'recent'), ('b', 'covisit')]
>>> rec.apply([Event("e3", "u2", "b", EventType.CLICK, 3_000)]), rec.stats()["duplicates_event_id"]
([], 1)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from streamrec.models.base.artifact import Artifact
from streamrec.models.base.encoder import DEFAULT_TYPE_WEIGHTS, TYPE_INDEX, event_strength
from streamrec.models.base.index import IndexConfig
from streamrec.models.catalog.content import ContentConfig
from streamrec.models.catalog.item import Item
from streamrec.models.catalog.rules import CatalogRules
from streamrec.models.catalog.store import CatalogStore
from streamrec.models.errors import ConfigError, InputError
from streamrec.models.events import Event
from streamrec.models.online.layer import OnlineConfig, OnlineLayer, OnlineSwitches
from streamrec.models.online.plugins import Exploration, FeedbackStage, MFSource, OnlineLearning, RerankerScorer
from streamrec.models.serving import candidates as cand
from streamrec.models.serving.candidates import PreparedModel, prepare_model
from streamrec.models.serving.content import ContentSource
from streamrec.models.serving.contract import Plugin, Request, Scorer, Selected, Source, Stage, overrides
from streamrec.models.serving.itemplane import ItemPlane, PlaneCovisitSource, PlaneTrendingSource
from streamrec.models.serving.ranking import (
    BlendScorer,
    RecItem,
    RecList,
    Selection,
    Trigger,
    blocked_items,
    check_options,
    select,
)
from streamrec.models.serving.reasons import explain_lists, explainers
from streamrec.models.serving.recent import DECAYS as RECENT_DECAYS
from streamrec.models.serving.recent import RecentSource
from streamrec.models.serving.repurchase import RepurchasePolicy
from streamrec.models.serving.runs import offsets
from streamrec.models.serving.session_knn import SessionKnnSource
from streamrec.models.serving.sources import AnnSource, ColdStartSource, CovisitSource, TrendingSource
from streamrec.models.serving.state import IdWindow, StateLimits, UserState, UserStore
from streamrec.models.timeunits import DAY_MS

__all__ = ["SOURCE_FACTORIES", "EngineConfig", "PreparedModel", "RecItem", "RecList", "Recommender", "Trigger",
           "prepare_model"]


@dataclass(frozen=True)
class EngineConfig:
    """Every knob of the engine. Defaults suit a 2-core worker with ~100k items at dim 64: one faiss
    thread, HNSW above 10k items, 50 candidates per source, lists of 20."""

    recent_items: int = 50             # recent history per user (the encoder's input)
    seen_cap: int = 100
    purchased_cap: int = 100
    max_users: int = 1_000_000         # LRU beyond this
    user_ttl_ms: int = 30 * DAY_MS     # users idle this long (event time) are dropped; 0: never
    dedup_window: int = 200_000        # event ids remembered for duplicate detection
    type_weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_TYPE_WEIGHTS.items())
    index_kind: str = "auto"           # auto | flat | hnsw | ivf (see models/base/index.py)
    flat_max_items: int = 10_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 32           # faiss searches with max(efSearch, k)
    ivf_nlist: int = 0
    ivf_nprobe: int = 16
    faiss_threads: int = 1
    #: candidate sources, in the order of their score columns (names of :data:`SOURCE_FACTORIES`); ``mf`` and
    #: ``explore`` join when their switches below are on. ``session_knn`` is opt-in: it tripled the worker's
    #: recommend stage (bench worker: 9,536 -> 6,533 events/s) for +0.01 HR@10 on MovieLens-100K and no gain
    #: on the e-commerce logs once ``recent`` is on (add it here or with STREAMREC_SOURCES)
    sources: tuple[str, ...] = ("ann", "covisit", "recent", "trending", "cold_start")
    covisit_window: int = 5
    covisit_max_neighbors: int = 20
    covisit_max_items: int = 100_000
    covisit_half_life_ms: int = 7 * DAY_MS
    covisit_seeds: int = 5             # recent items whose neighbours are candidates
    trending_half_life_ms: int = DAY_MS
    trending_max_items: int = 100_000
    trending_refresh_events: int = 1_000
    trending_refresh_ms: int = 1_000
    # session_knn (models/serving/session_knn.py): V-SKNN over every user's last session_knn_window items
    session_knn_sample: int = 500      # m: the most recently updated sessions sharing an item
    session_knn_neighbours: int = 100  # k: of those, the most similar
    session_knn_window: int = 20       # distinct recent items per session (and of the user's own query)
    session_knn_max_sessions: int = 50_000
    session_knn_max_items: int = 100_000
    k_session_knn: int = 50
    k_recent: int = 20                 # recent (models/serving/recent.py): the user's last distinct items
    recent_decay: str = "harmonic"     # harmonic: 1 / (1 + p) | linear: 1 - p / (k_recent + 1)
    k_ann: int = 50
    k_covisit: int = 50
    k_trending: int = 50
    k_cold_start: int = 50
    weight_ann: float = 1.0
    weight_covisit: float = 1.0
    weight_trending: float = 0.3
    weight_cold_start: float = 0.05
    weight_session_knn: float = 1.0
    #: 3: the user's last item outranks the other sources' best (HR@10 / NDCG@10 of full, weight 1 -> 3: OTTO
    #: sample 0.339 / 0.222 -> 0.343 / 0.230; generated session log, first 20,000 events, 0.995 / 0.972 ->
    #: 0.997 / 0.975); nothing changes under filter_seen="all" (MovieLens), where recent proposes nothing
    weight_recent: float = 3.0
    # content (models/serving/content.py): catalog items similar in content to the user's recent items
    k_content: int = 50
    content_seeds: int = 5             # recent items whose content neighbours are candidates
    content_dim: int = 256             # hashed n-gram dimensions (models/catalog/content.py)
    #: 0.3: on MovieLens-100K (first 20,000 ratings) 1.0 raised the cold-item HR@10 from 0.010 to 0.024 but cut
    #: the overall from 0.162 to 0.153; 0.3 kept the overall (0.165) for a cold-item 0.0115
    weight_content: float = 0.3
    #: blend weights of other registered sources, by name (a source with no weight gets 1.0)
    source_weights: tuple[tuple[str, float], ...] = ()
    normalise: str = "max"             # max | rank
    #: none | purchased | all | auto: purchased items may come back while the stream shows users return to
    #: them (models/serving/repurchase.py: per purchased item, at least repurchase_min_rate of the events of
    #: users who bought, decided after repurchase_min_events of them, repurchase_start before); "purchased"
    #: cost full 0.023 HR@10 on the OTTO sample and 0.022 on the generated session log
    filter_seen: str = "auto"
    repurchase_min_rate: float = 0.01
    repurchase_min_events: int = 10
    repurchase_start: str = "purchased"  # the policy until repurchase_min_events decide: purchased | none
    diversity: str = "category"        # none | category | mmr
    max_category_share: float = 0.5    # of top_n per category, with diversity="category"; 0 or 1: no cap
    mmr_lambda: float = 0.7
    top_n: int = 20
    seed: int = 0
    # the catalog's per-list rules (models/catalog/rules.py; the store blocks hidden and unavailable items)
    rule_max_per_category: int = 0     # at most K items of one category per list; 0: no cap
    rule_category_depth: int = 0       # a cap counts the first N levels of the category path; 0: all of it
    rule_max_per_brand: int = 0        # at most K items of one brand per list; 0: no cap
    rule_exclude_categories: tuple[str, ...] = ()   # never list an item with one of these at any level
    rule_min_price: float = 0.0
    rule_max_price: float = 0.0        # 0: no maximum; items without a price pass the price rules
    # online learning (models/online/); any of these switches gives the engine an OnlineLayer
    reranker: bool = False             # a river model learned from feedback replaces the blend
    reranker_model: str = "logreg"     # logreg | fm (models/online/reranker.py)
    drift_detector: str = "none"       # none | adwin | page_hinkley: windowed online quality, drift signals
    explore_slots: int = 0             # items per list from new arrivals, source "explore"
    mf: str = "none"                   # none | rating | ranking: river BiasedMF as candidate source "mf"
    k_mf: int = 50
    weight_mf: float = 1.0
    online: OnlineConfig = OnlineConfig()

    def __post_init__(self) -> None:
        check_options("purchased" if self.filter_seen == "auto" else self.filter_seen, self.diversity, self.normalise)
        if self.repurchase_start not in ("none", "purchased"):
            raise ConfigError(f"EngineConfig.repurchase_start is {self.repurchase_start!r}; use none or purchased")
        if self.repurchase_min_rate > 1:
            raise ConfigError(f"EngineConfig.repurchase_min_rate is {self.repurchase_min_rate}; give a rate in [0, 1]")
        if self.recent_decay not in RECENT_DECAYS:
            raise ConfigError(f"recent_decay is {self.recent_decay!r}; use one of {', '.join(RECENT_DECAYS)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and not math.isfinite(value):
                raise ConfigError(f"EngineConfig.{f.name} is {value}; give a finite number")
            if isinstance(value, int | float) and value < 0:
                raise ConfigError(f"EngineConfig.{f.name} is {value}; it must not be negative")
        for name in ("top_n", "k_ann", "k_covisit", "k_trending", "covisit_seeds", "recent_items", "k_session_knn",
                     "k_recent", "k_content", "content_seeds", "session_knn_sample", "session_knn_neighbours",
                     "session_knn_window",
                     "session_knn_max_sessions", "session_knn_max_items"):
            if getattr(self, name) < 1:
                raise ConfigError(f"EngineConfig.{name} is {getattr(self, name)}; set it to 1 or more")
        if not 0.0 <= self.max_category_share <= 1.0 or not 0.0 <= self.mmr_lambda <= 1.0:
            raise ConfigError("max_category_share and mmr_lambda must lie in [0, 1]")
        unknown = {t for t, _ in self.type_weights} - set(TYPE_INDEX)
        if unknown or set(TYPE_INDEX) - {t for t, _ in self.type_weights}:
            raise ConfigError(f"type_weights must give a weight for exactly {sorted(TYPE_INDEX)}")
        names = self.source_names()
        bad = [s for s in names if s not in SOURCE_FACTORIES]
        if bad or len(set(names)) != len(names):
            raise ConfigError(f"sources {list(self.sources)}: each once, from {', '.join(SOURCE_FACTORIES)}")
        if any(not math.isfinite(w) or w < 0 for _, w in self.source_weights):
            raise ConfigError("source_weights must be finite and not negative")
        self.index_config()
        self.catalog_rules()
        ContentConfig(dim=self.content_dim)
        self.online_switches().check()

    def index_config(self) -> IndexConfig:
        return IndexConfig(self.index_kind, self.flat_max_items, self.hnsw_m, self.hnsw_ef_construction,
                           self.hnsw_ef_search, self.ivf_nlist, self.ivf_nprobe, self.faiss_threads, self.seed)

    def catalog_rules(self) -> CatalogRules:
        return CatalogRules(self.rule_max_per_category, self.rule_category_depth, self.rule_max_per_brand,
                            tuple(self.rule_exclude_categories), self.rule_min_price, self.rule_max_price)

    def online_switches(self) -> OnlineSwitches:
        return OnlineSwitches(self.reranker, self.reranker_model, self.drift_detector, self.explore_slots, self.mf,
                              self.k_mf, self.top_n, self.filter_seen, self.seed)

    def source_names(self) -> tuple[str, ...]:
        """The score columns: ``sources``, then ``mf`` and ``explore`` when switched on."""
        extra = [s for s, on in (("mf", self.mf != "none"), ("explore", self.explore_slots > 0))
                 if on and s not in self.sources]
        return (*self.sources, *extra)

    def source_weights_map(self) -> dict[str, float]:
        return {"ann": self.weight_ann, "covisit": self.weight_covisit, "trending": self.weight_trending,
                "cold_start": self.weight_cold_start, "mf": self.weight_mf, "explore": 0.0,
                "session_knn": self.weight_session_knn, "recent": self.weight_recent,
                "content": self.weight_content,
                **dict(self.source_weights)}

    def selection(self) -> Selection:
        cap = math.ceil(self.max_category_share * self.top_n) if self.max_category_share < 1 else 0
        return Selection(self.top_n, self.diversity, max(cap, 1) if cap else 0, self.mmr_lambda)


def _item_plane(engine: Recommender) -> ItemPlane:
    """The item plane the ``covisit_global`` / ``trending_global`` sources share (docs/item-plane.md)."""
    if engine.item_plane is None:
        c = engine.config
        engine.item_plane = ItemPlane(c.covisit_window, c.covisit_half_life_ms, c.trending_half_life_ms)
    return engine.item_plane


def _online(engine: Recommender) -> OnlineLayer:
    if engine.online is None:
        raise ConfigError("this source needs the online layer (switch on reranker, drift, explore_slots or mf)")
    return engine.online


#: Every source the engine can build, by name: ``factory(engine) -> Source``. A new source is a class in its
#: own file and one line here; list its name in ``EngineConfig.sources`` to use it.
SOURCE_FACTORIES: dict[str, Callable[[Recommender], Source]] = {
    "ann": lambda e: AnnSource(e.config.k_ann),
    "covisit": lambda e: CovisitSource(e.config.k_covisit, e.config.covisit_seeds, e.config.covisit_window,
                                       e.config.covisit_max_neighbors, e.config.covisit_max_items,
                                       e.config.covisit_half_life_ms),
    "trending": lambda e: TrendingSource(e.config.k_trending, e.config.trending_half_life_ms,
                                         e.config.trending_max_items, e.config.trending_refresh_events,
                                         e.config.trending_refresh_ms),
    "session_knn": lambda e: SessionKnnSource(e.config.k_session_knn, e.config.session_knn_sample,
                                              e.config.session_knn_neighbours, e.config.session_knn_window,
                                              e.config.session_knn_max_sessions, e.config.session_knn_max_items,
                                              e.config.filter_seen),
    "recent": lambda e: RecentSource(e.config.k_recent, e.config.filter_seen, e.config.recent_decay),
    "content": lambda e: ContentSource(e.config.k_content, e.config.content_seeds,
                                       ContentConfig(dim=e.config.content_dim), e.config.filter_seen),
    # the item plane (docs/item-plane.md): the covisit and trending columns served from every worker's traffic
    "covisit_global": lambda e: PlaneCovisitSource(_item_plane(e), e.config.k_covisit, e.config.covisit_seeds,
                                                   e.config.covisit_window, e.config.covisit_max_neighbors,
                                                   e.config.covisit_max_items, e.config.covisit_half_life_ms),
    "trending_global": lambda e: PlaneTrendingSource(_item_plane(e), e.config.k_trending,
                                                     e.config.trending_half_life_ms, e.config.trending_max_items,
                                                     e.config.trending_refresh_events,
                                                     e.config.trending_refresh_ms),
    "cold_start": lambda e: ColdStartSource(e.config.k_cold_start, e.newest, short_of=2 * e.config.top_n),
    "mf": lambda e: MFSource(_online(e), e.config.k_mf, e.config.filter_seen),
    "explore": lambda e: Exploration(_online(e), e.config.explore_slots, _online(e).config.explore_pool, e.newest,
                                     e.config.top_n),
}


class Recommender:
    """User state, then sources, one scorer and the stages for the users of one worker (see the module
    docstring and :mod:`models.serving.contract`)."""

    def __init__(self, config: EngineConfig | None = None, artifact: Artifact | None = None,
                 scorer: Scorer | None = None) -> None:
        cfg = config or EngineConfig()
        self.config: EngineConfig = cfg
        self.limits = StateLimits(cfg.recent_items, cfg.seen_cap, cfg.purchased_cap)
        self.store = UserStore(self.limits, cfg.max_users, cfg.user_ttl_ms)
        self._ids = IdWindow(cfg.dedup_window)
        self._type_weights = dict(cfg.type_weights)
        self._selection = cfg.selection()
        switches = cfg.online_switches()
        self.online = OnlineLayer(switches, cfg.online) if switches.wanted() else None
        self.sources: list[Source] = []
        self.trending: Any = None            # the trending source's counts (cold start and exploration use them)
        self.item_plane: ItemPlane | None = None   # set by the covisit_global / trending_global sources
        self.covisit: Any = None
        for name in cfg.source_names():
            source = SOURCE_FACTORIES[name](self)
            self.sources.append(source)
            if isinstance(source, TrendingSource):
                self.trending = source.table
            elif isinstance(source, CovisitSource):
                self.covisit = source.table
        self.columns: tuple[str, ...] = tuple(s.name for s in self.sources)
        if len(set(self.columns)) != len(self.columns):   # covisit_global serves the covisit column, and so on
            raise ConfigError(f"sources {list(cfg.sources)} give a score column twice ({list(self.columns)}); "
                              "list covisit or covisit_global, trending or trending_global")
        self._column = {name: c for c, name in enumerate(self.columns)}
        self._run_order = sorted(self.sources, key=lambda s: s.phase)   # stable: configuration order per phase
        base = BlendScorer(cfg.source_weights_map() | {n: 1.0 for n in self.columns
                                                       if n not in cfg.source_weights_map()})
        self.scorer: Scorer = scorer or base
        self.stages: list[Stage] = []
        plugins: list[object] = list(self.sources)
        #: the seen/purchased policy in force ("auto": decided from the stream by ``self.repurchase``)
        self.repurchase = None if cfg.filter_seen != "auto" else RepurchasePolicy(
            cfg.repurchase_min_rate, cfg.repurchase_min_events, [s for s in self.sources if hasattr(s, "filter_seen")],
            cfg.repurchase_start)
        if self.repurchase is not None:
            plugins.append(self.repurchase)
        if self.online is not None:
            if scorer is None:
                self.scorer = RerankerScorer(self.online, base)
            plugins.insert(0, OnlineLearning(self.online))
            self.stages += [s for s in self.sources if isinstance(s, Exploration)]
            if self.online.reranker is not None:
                self.stages.append(FeedbackStage(self.online))
        plugins += [s for s in self.stages if s not in plugins]
        self._learners = [p.learn for p in plugins if overrides(p, "learn")]         # type: ignore[attr-defined]
        self._end_apply = [p.end_apply for p in plugins if overrides(p, "end_apply")]  # type: ignore[attr-defined]
        self._forget = [p.forget_user for p in plugins if overrides(p, "forget_user")]  # type: ignore[attr-defined]
        self._catalog = [p.catalog for p in plugins if overrides(p, "catalog")]  # type: ignore[attr-defined]
        self._plugins = plugins
        self.catalog = CatalogStore(cfg.catalog_rules())   # newest record per item (update_catalog)
        if self.item_plane is not None:                     # a new item's category goes out with its deltas
            self.item_plane.catalog = self.catalog
            if self.online is not None:       # the reranker's item ages and categories: every worker's traffic
                self.online.items.global_facts = self.item_plane.cache.facts
        self._explain = explainers(self.sources)
        self._model: PreparedModel | None = None
        self._triggers: dict[str, tuple[str, int, int, int]] = {}
        self.last_applied_count = 0
        #: cumulative seconds per stage: apply, each source by name, score (merge, scorer), select (filters,
        #: diversity, lists), stages (post-selection steps and lineage)
        self.timings = dict.fromkeys(("apply", *self.columns, "score", "select", "stages"), 0.0)
        self._n = dict.fromkeys(("events_in", "events_applied", "duplicates_event_id", "duplicates_offset",
                                 "evaluated", "hits_at_10", "hits_at_20", "lists", "model_swaps",
                                 "dropped_non_finite"), 0)
        if artifact is not None:
            self.swap(self.prepare_model(artifact))

    def newest(self, k: int) -> list[str]:
        """The ``k`` newest items (first seen most recently), from the trending source's counts; with the item
        plane, by the global first-seen times of every worker's traffic (this worker's newest not yet known there
        first)."""
        local = self.trending.newest(k) if self.trending is not None else []
        return local if self.item_plane is None else self.item_plane.newest(k, local)

    # --- model -------------------------------------------------------------------------------------
    @property
    def model(self) -> PreparedModel | None:
        return self._model

    def prepare_model(self, artifact: Artifact) -> PreparedModel:
        """Build the index and lookups for ``artifact``; touches no engine state, so the model-sync
        thread can call it while the worker thread keeps serving."""
        cfg = self.config
        return prepare_model(artifact, cfg.index_config(), cfg.k_cold_start, cfg.seed)

    def swap(self, prepared: PreparedModel) -> None:
        """Serve ``prepared`` from the next ``recommend`` on (model and index change together)."""
        self._model = prepared
        self._n["model_swaps"] += 1

    def swap_model(self, artifact: Artifact) -> None:
        self.swap(self.prepare_model(artifact))

    # --- events ------------------------------------------------------------------------------------
    def apply(self, events: Sequence[Event], partition: int = 0,
              offsets: Sequence[int] | None = None, end_batch: bool = True) -> list[str]:
        """Apply a batch of one partition's events; returns the users touched, in first-touch order.

        ``end_batch`` (default) ends the batch: the plug-ins' end-of-batch learning runs (the reranker learns
        the batch's labelled pairs, the repurchase policy decides). A batch of several partitions is applied
        partition by partition with ``end_batch=False`` and then :meth:`end_apply` once, so it learns as one
        apply of all its events would: the reranker's cap of labelled pairs is per batch
        (``OnlineConfig.max_pairs``, ``pairs_per_event``), where ending each partition would give a small batch
        one cap per partition."""
        started = time.perf_counter()
        if offsets is not None and len(offsets) != len(events):
            raise InputError(f"apply got {len(events)} events and {len(offsets)} offsets; pass one offset "
                             "per event (or none)")
        n, store, ids, lim, tw = self._n, self.store, self._ids, self.limits, self._type_weights
        learners = self._learners
        plane = self.item_plane        # the item plane's exact redo rule: each event's source offset, where asked
        at = plane.collector.at if plane is not None and plane.collector.fine else None
        touched: dict[str, None] = {}
        triggers = self._triggers = {}
        applied = dup_id = dup_off = evaluated = hit10 = hit20 = 0
        for k, e in enumerate(events):
            eid = e.event_id
            if eid and ids.check_and_add(eid):
                dup_id += 1
                continue
            off = -1 if offsets is None else offsets[k]
            st = store.touch(e.user_id, partition)
            if 0 <= off <= st.last_offset:
                dup_off += 1
                continue
            item, ts, t = sys.intern(e.item_id), e.timestamp_ms, TYPE_INDEX[e.event_type]
            s = event_strength(e.event_type, e.value, tw)
            pos = -1
            if st.shown:                     # test, then train: where was the item in the user's last list?
                pos = st.shown.index(item) if item in st.shown else -1
                if e.user_id not in touched:  # the hit rate scores a user's first event of a batch only (the
                    evaluated += 1            # later ones were made before this batch's list was sent)
                    hit10 += 0 <= pos < 10
                    hit20 += 0 <= pos < 20
            if at is not None:
                at(off)
            for learn in learners:
                learn(e, item, s, st, pos)
            st.observe(item, t, ts, s, lim, eid, off)
            touched[e.user_id] = None
            triggers[e.user_id] = (eid, ts, partition, off)
            applied += 1
        store.expire_partition(partition, [e.timestamp_ms for e in events])  # TTL: UserStore.watermark
        if end_batch:
            for end in self._end_apply:
                end()
        for key, v in (("events_in", len(events)), ("events_applied", applied), ("duplicates_event_id", dup_id),
                       ("duplicates_offset", dup_off), ("evaluated", evaluated), ("hits_at_10", hit10),
                       ("hits_at_20", hit20)):
            n[key] += v
        self.last_applied_count = applied
        self.timings["apply"] += time.perf_counter() - started
        return list(touched)

    def end_apply(self) -> None:
        """End a batch applied with ``apply(..., end_batch=False)``: the plug-ins' end-of-batch learning."""
        started = time.perf_counter()
        for end in self._end_apply:
            end()
        self.timings["apply"] += time.perf_counter() - started

    # --- recommendations ---------------------------------------------------------------------------
    def recommend(self, user_ids: Sequence[str], now_ms: int | None = None) -> list[RecList]:
        """One list per distinct user, in order; each user's ``shown`` becomes the list's items.

        Every source proposes candidates for the whole batch, the scorer scores them, the selection applies
        the filters and diversity, then the stages run in order. ``now_ms`` only paces the trending cache:
        every score decays exponentially, so lists do not depend on the serving time. Users the engine does
        not hold get the cold-start list.
        """
        clock, timings = time.perf_counter, self.timings
        cfg, model = self.config, self._model       # one model for the whole batch, even across a swap
        uids = list(dict.fromkeys(user_ids))
        states = [self._state(u) for u in uids]
        space = cand.CodeSpace(model.item_ids, model.index_of) if model is not None else cand.CodeSpace()
        req = Request(uids, states, space, model, now_ms, cfg.normalise, cfg.top_n)
        column = self._column
        for source in self._run_order:
            t = clock()
            block = source.candidates(req)
            if block is not None:
                req.blocks.append((column[source.name], *block))
            timings[source.name] += clock() - t
        t = clock()
        batch = cand.merge_candidates(len(uids), req.blocks, n_sources=len(self.columns))
        scores, primary = self.scorer.score(req, batch, self.columns)
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != (len(batch),) or len(primary) != len(batch):
            raise InputError(f"the scorer returned {scores.shape} scores for {len(batch)} candidates; return "
                             "one score per candidate")
        finite = np.isfinite(scores)
        if not finite.all():                 # never select a NaN or infinite score: drop those candidates
            self._n["dropped_non_finite"] += int((~finite).sum())
            batch, scores, primary = _keep(batch, finite), scores[finite], np.asarray(primary)[finite]
        t2 = clock()
        timings["score"] += t2 - t
        policy = cfg.filter_seen if self.repurchase is None else self.repurchase.current
        blocked = [blocked_items(st, policy) for st in states]
        masks = None if not self.catalog.active else self.catalog.masks(
            batch.codes, () if model is None else model.item_ids, {} if model is None else model.index_of,
            space.item)
        chosen = select(batch, scores, primary, space, blocked, self._selection,
                        None if model is None else model.categories,
                        model.embeddings if model is not None and cfg.diversity == "mmr" else None,
                        sources=self.columns, catalog=masks)
        t3 = clock()
        timings["select"] += t3 - t2
        if self.stages:
            selected = Selected(batch, scores, primary, blocked, self.columns)
            for stage in self.stages:
                chosen = stage.apply(req, selected, chosen)
            if masks is not None:    # stages may add items of their own: the catalog has the last word
                chosen = [self.catalog.allowed(items) for items in chosen]
        chosen = explain_lists(req, chosen, self._explain)
        version = None if model is None else model.version
        index_version = None if model is None else model.index_version
        out = []
        for uid, st, items in zip(uids, states, chosen, strict=True):
            if st is not None:
                st.shown = tuple([it.item_id for it in items])
            out.append(RecList(uid, tuple(items), version, index_version, self.trigger(uid, st)))
        timings["stages"] += clock() - t3
        self._n["lists"] += len(uids)
        return out

    def _state(self, user_id: str) -> UserState | None:
        trig = self._triggers.get(user_id)
        return self.store.get(user_id, None if trig is None else trig[2])

    def trigger(self, user_id: str, state: UserState | None) -> Trigger | None:
        """The list's lineage: the user's last event applied in this batch, else the last one restored."""
        t = self._triggers.get(user_id)
        if t is not None:
            return Trigger(t[0], t[1], t[2], t[3])
        if state is None or not state.last_event_id:
            return None
        p = self.store.partition_of(user_id)
        return Trigger(state.last_event_id, state.last_ts, -1 if p is None else p, state.last_offset)

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The user's vector in the space of the model in service (``None``: no model or no known item)."""
        st, model = self.store.get(user_id), self._model
        if st is None or model is None:
            return None
        return cand.encode_user(st, model.encoder, model.index_of, model.embeddings)

    # --- state -------------------------------------------------------------------------------------
    def export_user(self, user_id: str) -> dict[str, Any] | None:
        """The user's ``UserState`` record for the changelog (``None`` if the user is not held)."""
        st = self.store.get(user_id)
        return None if st is None else st.to_record()

    def restore_user(self, record: Mapping[str, Any], partition: int) -> None:
        """Install a user from a changelog record (the newest record of a user wins)."""
        self.store.put(UserState.from_record(record, self.limits), partition)

    def forget_user(self, user_id: str) -> bool:
        """Drop one user (a changelog tombstone)."""
        for forget in self._forget:
            forget(user_id)
        return self.store.remove(user_id)

    def update_catalog(self, items: Sequence[Item]) -> None:
        """Catalog records (new items, changes): the engine's catalog store keeps the newest record of each
        item (blocked items leave every list from the next ``recommend`` on), then every plug-in with a
        ``catalog`` hook sees them, in order."""
        self.catalog.update(items)
        for hook in self._catalog:
            hook(items)

    def remove_items(self, item_ids: Sequence[str]) -> None:
        """Items deleted from the catalog (tombstones): the store forgets them (they are no longer blocked)."""
        for item_id in item_ids:
            self.catalog.remove(item_id)

    def forget_event_ids(self) -> None:
        """Forget the event ids remembered for duplicate detection: a caller that rewinds to its last commit
        redoes those events, and they must not be dropped as duplicates (offsets still guard state)."""
        self._ids = IdWindow(self.config.dedup_window)

    def drop_partition(self, partition: int) -> int:
        """Forget every user of a revoked or lost partition; returns how many were dropped."""
        return self.store.drop_partition(partition)

    def stats(self) -> dict[str, Any]:
        """Counters and gauges (names distinct from the worker's own): events in and applied, duplicates,
        online hit rates of the last shown lists (test, then train), lists, users, evictions, sizes, the
        model in service, cumulative seconds per stage (``engine_stage_s``), and each plug-in's own."""
        n, model = self._n, self._model
        ev = max(n["evaluated"], 1)
        out: dict[str, Any] = {
            **n, "hit_rate_at_10": n["hits_at_10"] / ev, "hit_rate_at_20": n["hits_at_20"] / ev,
            "users": len(self.store), "evicted_lru": self.store.evicted_lru,
            "evicted_ttl": self.store.evicted_ttl, "covisit_items": 0, "trending_items": 0,
            "state_bytes": self.store.memory_bytes(),
            "model_version": None if model is None else model.version,
            "index_version": None if model is None else model.index_version,
            "model_items": 0 if model is None else len(model.item_ids),
            "engine_stage_s": {k: round(v, 3) for k, v in self.timings.items()}}
        out.update(self.catalog.stats())
        for p in self._plugins:
            if isinstance(p, Plugin):
                out.update(p.stats())
        return out


def _keep(batch: cand.CandidateBatch, mask: np.ndarray) -> cand.CandidateBatch:
    """The candidates of ``batch`` where ``mask`` is true (order kept, row starts recomputed)."""
    rows = batch.rows[mask]
    starts = offsets(np.bincount(rows, minlength=len(batch.starts) - 1))
    return cand.CandidateBatch(rows, batch.codes[mask], batch.scores[mask], starts)
