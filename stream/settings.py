"""One frozen settings object per process, read from ``STREAMREC_*`` environment variables.

Every field ``name`` is read from ``STREAMREC_<NAME>`` (upper case); CLI flags override with
:meth:`Settings.replace`. Unknown ``STREAMREC_*`` variables are an error, so a typo is never ignored.

>>> s = Settings.from_env({"STREAMREC_EVENTS_PARTITIONS": "3"})
>>> s.events_partitions, s.bootstrap
(3, '127.0.0.1:9092')
>>> Settings.from_env({"STREAMREC_BOOTSTRAP_SERVERS": "k1:9092"}).embedded
False
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from streamrec.models.errors import ConfigError

PREFIX = "STREAMREC_"
GUARANTEES = ("at-least-once", "exactly-once")


def _default_home() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "streamrec")


@dataclass(frozen=True)
class Settings:
    # --- Kafka connection -------------------------------------------------------------------------
    bootstrap_servers: str = ""          # empty: use the embedded broker below
    client_id: str = "streamrec"
    compression: str = "lz4"             # none | gzip | lz4 | zstd | snappy
    # --- the embedded broker ------------------------------------------------------------------------
    home: str = dataclasses.field(default_factory=_default_home)   # jar cache and broker data
    kafka_version: str = "4.3.1"
    kafka_home: str = ""                 # an existing Kafka distribution (uses its libs/)
    broker_host: str = "127.0.0.1"
    broker_port: int = 9092
    controller_port: int = 9093
    broker_dir: str = ""                 # data + logs; default <home>/broker-<port>
    broker_heap: str = "512m"
    broker_start_timeout_s: float = 60.0
    # --- topics -----------------------------------------------------------------------------------
    events_topic: str = "events"
    recommendations_topic: str = "recommendations"
    dlq_topic: str = "events.dlq"
    model_topic: str = "model-updates"
    events_partitions: int = 6
    recommendations_partitions: int = 6
    events_retention_ms: int = 7 * 24 * 3600 * 1000
    recommendations_retention_ms: int = 7 * 24 * 3600 * 1000
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    model_retention_ms: int = 90 * 24 * 3600 * 1000
    # --- worker -----------------------------------------------------------------------------------
    group: str = "streamrec-worker"
    guarantee: str = "at-least-once"
    poll_ms: int = 15
    max_batch: int = 2000
    commit_interval_ms: int = 200
    top_n: int = 20
    model_path: str = ""
    worker_id: str = ""                  # stable per worker slot; default <hostname>-<pid>
    static_membership: bool = False      # join as group.instance.id=<worker_id> (KIP-345)
    stats_interval_s: float = 10.0
    max_users: int = 1_000_000           # users kept in memory per worker (LRU beyond)
    user_ttl_s: float = 30 * 24 * 3600.0 # users idle longer are evicted
    restore_timeout_s: float = 120.0
    max_id_bytes: int = 256              # longest event/user/item/session id (UTF-8 bytes); longer: DLQ
    metrics_port: int = 0                # 0: no HTTP endpoint
    # --- online learning (docs/online-learning.md, models/online.py, consumers/online.py) ----------
    reranker: bool = True                # a river model learned from feedback replaces the blend (see docs)
    reranker_model: str = "logreg"       # logreg | fm
    drift_detector: str = "adwin"        # none | adwin | page_hinkley: windowed online quality, retrain requests
    drift_cooldown_s: float = 3600.0     # event time between two retrain requests of one worker
    explore_slots: int = 0               # items per list from new arrivals (source "explore")
    mf: str = "none"                     # none | rating | ranking: river BiasedMF as candidate source "mf"
    online_checkpoint_s: float = 60.0    # online learners to <group>.online this often; 0: never
    # --- logging ----------------------------------------------------------------------------------
    log_level: str = "info"
    log_format: str = "auto"             # auto | json | console

    @property
    def embedded(self) -> bool:
        return not self.bootstrap_servers

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"{self.broker_host}:{self.broker_port}"

    @property
    def broker_path(self) -> Path:
        return Path(self.broker_dir) if self.broker_dir else Path(self.home) / f"broker-{self.broker_port}"

    def state_topic(self, group: str | None = None) -> str:
        return f"{group or self.group}.state"

    def replace(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced; ``None`` values (unset CLI flags) are ignored."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown settings: {sorted(unknown)}")
        return dataclasses.replace(self, **given)._validated()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX):].lower()
            if name not in known:
                raise ConfigError(f"{key} is not a streamrec setting; known: "
                                  + ", ".join(PREFIX + n.upper() for n in sorted(known)))
            values[name] = _parse(key, raw, known[name].type)
        return cls(**values).replace(**overrides)

    def _validated(self) -> Settings:
        if self.guarantee not in GUARANTEES:
            raise ConfigError(f"guarantee must be one of {GUARANTEES}, got {self.guarantee!r}")
        for name in ("events_partitions", "recommendations_partitions", "max_batch", "top_n", "poll_ms"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1")
        if not 16 <= self.max_id_bytes <= 65536:
            raise ConfigError(f"{PREFIX}MAX_ID_BYTES={self.max_id_bytes} must be from 16 to 65536 (bytes)")
        return self

    @staticmethod
    def env_names() -> list[str]:
        return [PREFIX + f.name.upper() for f in fields(Settings)]


def _parse(key: str, raw: str, typ: Any) -> Any:
    typ = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if typ == "int":
            return int(raw)
        if typ == "float":
            return float(raw)
        if typ == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
    except ValueError as exc:
        raise ConfigError(f"{key}={raw!r} is not a valid {typ}") from exc
    return raw


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"10m"``, ``"2h"``, ``"7d"`` or a bare number of seconds.

    >>> parse_duration("10m"), parse_duration("7d"), parse_duration("1.5")
    (600.0, 604800.0, 1.5)
    """
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    raw = text.strip().lower()
    for suffix in ("ms", "s", "m", "h", "d", "w"):
        if raw.endswith(suffix):
            number = raw[: -len(suffix)]
            break
    else:
        number, suffix = raw, "s"
    try:
        value = float(number) * units[suffix]
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a duration; use e.g. 30s, 10m, 2h or 7d") from exc
    if value <= 0:
        raise ConfigError(f"duration {text!r} must be positive")
    return value
