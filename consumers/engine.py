"""Build the worker's engine from the settings: the EngineConfig, and the starting model if one is given.

A bad artifact at ``--model`` is refused with a clear log line; the worker then serves co-visitation,
trending and cold-start lists until a valid model arrives on ``model-updates``.
"""

from __future__ import annotations

from typing import Any

from streamrec.models.base.artifact import load_artifact
from streamrec.models.catalog.rules import parse_categories
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.errors import ArtifactError
from streamrec.models.online.layer import OnlineConfig
from streamrec.stream.settings import Settings


def engine_config(settings: Settings) -> EngineConfig:
    sources = tuple(s.strip() for s in settings.sources.split(",")) if settings.sources else EngineConfig.sources
    return EngineConfig(sources=sources, top_n=settings.top_n, max_users=settings.max_users,
                        user_ttl_ms=int(settings.user_ttl_s * 1000),
                        reranker=settings.reranker, reranker_model=settings.reranker_model,
                        drift_detector=settings.drift_detector, explore_slots=settings.explore_slots, mf=settings.mf,
                        session_knn_max_sessions=settings.session_knn_max_sessions,
                        filter_seen=settings.filter_seen,
                        rule_max_per_category=settings.rule_max_per_category,
                        rule_category_depth=settings.rule_category_depth,
                        rule_max_per_brand=settings.rule_max_per_brand,
                        rule_exclude_categories=parse_categories(settings.rule_exclude_categories),
                        rule_min_price=settings.rule_min_price, rule_max_price=settings.rule_max_price,
                        online=OnlineConfig(drift_cooldown_ms=int(settings.drift_cooldown_s * 1000)))


def build_engine(settings: Settings, log: Any) -> Recommender:
    engine = Recommender(engine_config(settings))
    if settings.model_path:
        try:
            artifact = load_artifact(settings.model_path)
        except ArtifactError as exc:
            log.error("model refused; serving without a base model until one arrives on model-updates",
                      path=settings.model_path, reason=str(exc))
        else:
            engine.swap(engine.prepare_model(artifact))
            log.info("model loaded", version=artifact.version, items=artifact.manifest.item_count,
                     dim=artifact.manifest.dim, path=settings.model_path)
    return engine
