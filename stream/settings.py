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
import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from streamrec.models.errors import ConfigError

PREFIX = "STREAMREC_"
GUARANTEES = ("at-least-once", "exactly-once")
COMPRESSIONS = ("none", "gzip", "lz4", "zstd", "snappy")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "json", "console")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# the engine's choices (models/online/reranker.py MODELS, drift.py DETECTORS, layer.py MF_PRESETS; a unit
# test keeps them equal), checked here so that `streamrec config` refuses what the worker would refuse
RERANKER_MODELS = ("logreg", "fm")
DRIFT_DETECTORS = ("none", "adwin", "page_hinkley")
MF_PRESETS = ("none", "rating", "ranking")
FILTER_SEEN = ("auto", "purchased", "all", "none")   # the engine's seen/purchased policy (EngineConfig.filter_seen)
SECRETS = frozenset({"sasl_password", "ssl_key_password", "broker_sasl_users", "model_signing_key"})
MASK = "********"
_USER_NAME = re.compile(r"[A-Za-z0-9._@-]{1,128}")


def _default_home() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "streamrec")


@dataclass(frozen=True)
class Settings:
    # --- Kafka connection -------------------------------------------------------------------------
    bootstrap_servers: str = ""          # empty: use the embedded broker below
    client_id: str = "streamrec"
    compression: str = "lz4"             # none | gzip | lz4 | zstd | snappy
    # --- security (README "Secured clusters"; every producer, consumer and admin client) ------------
    security_protocol: str = "PLAINTEXT" # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str = ""             # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (the SASL_* protocols)
    sasl_username: str = ""
    sasl_password: str = ""              # secret (masked); or read from sasl_password_file
    sasl_password_file: str = ""         # a file holding the password (a mounted secret); trailing newline dropped
    ssl_cafile: str = ""                 # PEM bundle of the CA(s) that signed the brokers' certificates
    ssl_certfile: str = ""               # client certificate (PEM), for clusters that require one
    ssl_keyfile: str = ""                # its private key (PEM)
    ssl_key_password: str = ""           # secret (masked): the password of an encrypted ssl_keyfile
    # --- the embedded broker ------------------------------------------------------------------------
    home: str = dataclasses.field(default_factory=_default_home)   # jar cache and broker data
    kafka_version: str = "4.3.1"
    kafka_home: str = ""                 # an existing Kafka distribution (uses its libs/)
    broker_host: str = "127.0.0.1"
    broker_port: int = 9092
    controller_port: int = 9093
    broker_dir: str = ""                 # data + logs; default <home>/broker-<port>
    broker_heap: str = "512m"
    #: the embedded broker's JVM options: G1 with short pauses, and only the C1 compiler. On a small machine
    #: C2's compiler threads take the CPU the workers need for the broker's first minutes (``make demo`` on
    #: the 2-core VM: p50 50-103 ms with C1 only, 118-265 ms with both, alternated); a long-lived embedded
    #: broker on a larger machine may want "-XX:+UseG1GC -XX:MaxGCPauseMillis=20" (C2 too)
    broker_jvm_opts: str = "-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1"
    broker_start_timeout_s: float = 60.0
    broker_sasl_users: str = ""          # secret (masked): "name:password,..." for a SASL listener, set at format time
    broker_ssl_keystore: str = ""        # PEM file: the broker's private key + certificate chain (SSL listeners)
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
    items_topic: str = "items"           # the catalog (compacted, keyed by item id; README "Catalog")
    items_partitions: int = 1
    # --- the item plane (docs/item-plane.md; consumers/itemplane.py, `streamrec items`) ---------------
    item_plane: bool = False             # covisit / trending learnt from every worker through Kafka (see docs)
    item_owner: bool = True              # with the plane on, each worker also owns item partitions (a member of
                                         # <group>.items); off: run `streamrec items` processes
    item_owner_process: bool = True      # that owner runs in a child process of the worker (its own GIL); off: a
                                         # thread of the worker process
    item_deltas_topic: str = ""          # workers' increments, keyed and partitioned by item; "": <group>.item-deltas
    item_results_topic: str = ""         # owners' results (compacted): top neighbours, trending score; "":
                                         # <group>.item-results (so two worker groups never mix their items)
    item_partitions: int = 6             # partitions of item-deltas (and of the owners' changelog, item-results)
    item_interval_ms: int = 200          # an item owner applies, publishes and commits this often
    item_neighbours: int = 20            # neighbours per item an owner publishes (and keeps: 1.5x before pruning)
    item_max_items: int = 100_000        # items an owner keeps per item-deltas partition (least recent evicted)
    item_exact_redo: int = 5_000         # at-least-once: the loop commits before a partition's uncommitted range
                                         # spans this many offsets, and where a worker starts a partition its item
                                         # deltas go per source offset for this many plus one batch (a redo is then
                                         # counted exactly; docs/item-plane.md); 0: aggregated from the start
    # --- the catalog in the worker (consumers/catalog.py, models/catalog/) ---------------------------
    catalog: bool = True                 # follow the items topic: hidden / unavailable items are never listed
    rule_max_per_category: int = 0       # at most this many items of one category per list; 0: no cap
    rule_category_depth: int = 0         # the category a cap counts: its first N levels; 0: the whole path
    rule_max_per_brand: int = 0          # at most this many items of one brand per list; 0: no cap
    rule_exclude_categories: str = ""    # comma-separated; an item with any of them at any level is never listed
    rule_min_price: float = 0.0          # items priced below are never listed (no price: allowed)
    rule_max_price: float = 0.0          # items priced above are never listed; 0: no maximum
    # --- worker -----------------------------------------------------------------------------------
    group: str = "streamrec-worker"
    guarantee: str = "at-least-once"
    poll_ms: int = 15
    max_batch: int = 2000
    commit_interval_ms: int = 200
    batch_target_ms: float = 1000.0      # a batch's processing-time target: the next poll takes about this
                                         # long's worth of events at the measured cost (0: max_batch only)
    top_n: int = 20
    model_path: str = ""
    model_signing_key: str = ""          # secret (masked): HMAC key; publish signs manifests, workers refuse unsigned
    model_max_bytes: int = 1 << 30       # bytes one model upload may buffer in a worker (larger: refused)
    worker_id: str = ""                  # stable per worker slot; default <hostname>-<pid>
    static_membership: bool = False      # join as group.instance.id=<worker_id> (KIP-345)
    stats_interval_s: float = 10.0
    max_users: int = 1_000_000           # users kept in memory per worker (LRU beyond)
    user_ttl_s: float = 30 * 24 * 3600.0 # users idle longer are evicted
    restore_timeout_s: float = 120.0
    max_id_bytes: int = 256              # longest event/user/item/session id (UTF-8 bytes); longer: DLQ
    metrics_port: int = 0                # 0: no HTTP endpoint
    metrics_host: str = "127.0.0.1"      # address the endpoint binds; the Docker images set 0.0.0.0
    # --- streamrec serve (consumers/serve/: HTTP read API, ingest, dashboard) --------------------
    serve_port: int = 8080               # 0: a free port (printed at start)
    serve_host: str = "127.0.0.1"        # address `streamrec serve` binds; 0.0.0.0 for every interface
    # --- online learning (docs/online-learning.md, models/online.py, consumers/online.py) ----------
    reranker: bool = True                # a river model learned from feedback replaces the blend (see docs)
    reranker_model: str = "logreg"       # logreg | fm
    drift_detector: str = "adwin"        # none | adwin | page_hinkley: windowed online quality, retrain requests
    drift_cooldown_s: float = 3600.0     # event time between two retrain requests of one worker
    explore_slots: int = 0               # items per list from new arrivals (source "explore")
    mf: str = "none"                     # none | rating | ranking: river BiasedMF as candidate source "mf"
    session_knn_max_sessions: int = 50_000  # sessions the session_knn source keeps (~2.4 KB each when full)
    filter_seen: str = "auto"            # auto (purchased items come back where the stream shows re-buying) |
    #                                      purchased (never again) | all (nothing the user touched) | none
    sources: str = ""                    # candidate sources, comma-separated (empty: the engine's defaults)
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

    def item_group(self, group: str | None = None) -> str:
        """The item owners' consumer group (of item-deltas)."""
        return f"{group or self.group}.items"

    def item_state_topic(self, group: str | None = None) -> str:
        """The item owners' changelog, co-partitioned with item-deltas."""
        return f"{self.item_group(group)}.state"

    def item_deltas_name(self, group: str | None = None) -> str:
        """The item-deltas topic: ``item_deltas_topic`` when set, else ``<group>.item-deltas``."""
        return self.item_deltas_topic or f"{group or self.group}.item-deltas"

    def item_results_name(self, group: str | None = None) -> str:
        """The item-results topic: ``item_results_topic`` when set, else ``<group>.item-results``."""
        return self.item_results_topic or f"{group or self.group}.item-results"

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

    def __repr__(self) -> str:
        """Every field, secrets masked: a Settings object may be logged or printed safely."""
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.redacted().items()) + ")"

    def redacted(self) -> dict[str, Any]:
        """{field: value} with every secret that is set replaced by a mask (``streamrec config``)."""
        return {f.name: MASK if f.name in SECRETS and getattr(self, f.name) else getattr(self, f.name)
                for f in fields(self)}

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def sasl_secret(self) -> str:
        """The SASL password: ``sasl_password``, or the content of ``sasl_password_file`` (read now)."""
        if not self.sasl_password_file:
            return self.sasl_password
        try:
            return Path(self.sasl_password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{PREFIX}SASL_PASSWORD_FILE={self.sasl_password_file}: cannot read it "
                              f"({exc.strerror or exc})") from exc

    def broker_users(self) -> list[tuple[str, str]]:
        """``broker_sasl_users`` as (name, password) pairs."""
        users: list[tuple[str, str]] = []
        for entry in filter(None, (e.strip() for e in self.broker_sasl_users.split(","))):
            name, sep, password = entry.partition(":")
            if not sep or not _USER_NAME.fullmatch(name) or not password or any(c in password for c in '"]\\'):
                raise ConfigError(f"{PREFIX}BROKER_SASL_USERS: each entry is name:password (name of letters, "
                                  "digits, ._@-; a password without , \" ] or \\); entry "
                                  f"{name if _USER_NAME.fullmatch(name) else '#' + str(len(users) + 1)} is not")
            users.append((name, password))
        return users

    def _validated(self) -> Settings:
        def one_of(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{PREFIX}{name.upper()}={value!r} is not one of {', '.join(allowed)}")

        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{PREFIX}{f.name.upper()}={value!r}: a finite number is needed")
        one_of("guarantee", GUARANTEES)
        one_of("compression", COMPRESSIONS)
        try:
            shlex.split(self.broker_jvm_opts)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}BROKER_JVM_OPTS={self.broker_jvm_opts!r} cannot be split into options "
                              f"({exc}); quote each option that holds a space") from None
        one_of("log_format", LOG_FORMATS)
        one_of("reranker_model", RERANKER_MODELS)
        one_of("drift_detector", DRIFT_DETECTORS)
        one_of("mf", MF_PRESETS)
        one_of("filter_seen", FILTER_SEEN)
        if self.sources:
            # imported here: the engine's registry pulls in the serving stack, which settings alone do not need
            from streamrec.models.engine.recommender import SOURCE_FACTORIES

            names = [s.strip() for s in self.sources.split(",")]
            bad = [s for s in names if s not in SOURCE_FACTORIES]
            if bad or len(set(names)) != len(names):
                raise ConfigError(f"{PREFIX}SOURCES={self.sources!r}: name each source once, from "
                                  f"{', '.join(SOURCE_FACTORIES)}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"{PREFIX}LOG_LEVEL={self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.rule_max_price and self.rule_max_price < self.rule_min_price:
            raise ConfigError(f"{PREFIX}RULE_MAX_PRICE={self.rule_max_price} is below {PREFIX}RULE_MIN_PRICE="
                              f"{self.rule_min_price}")
        for name in ("events_partitions", "recommendations_partitions", "items_partitions", "max_batch", "top_n",
                     "poll_ms", "item_partitions", "item_interval_ms", "item_neighbours", "item_max_items",
                     "max_users", "model_max_bytes", "session_knn_max_sessions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()}={getattr(self, name)} must be at least 1")
        for name in ("commit_interval_ms", "batch_target_ms", "explore_slots", "user_ttl_s", "drift_cooldown_s",
                     "item_exact_redo",
                     "online_checkpoint_s", "rule_max_per_category", "rule_category_depth", "rule_max_per_brand",
                     "rule_min_price", "rule_max_price"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{PREFIX}{name.upper()}={getattr(self, name)} must not be negative")
        for name in ("stats_interval_s", "restore_timeout_s", "broker_start_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{PREFIX}{name.upper()}={getattr(self, name)} must be positive")
        for name in ("events_retention_ms", "recommendations_retention_ms", "dlq_retention_ms",
                     "model_retention_ms"):
            if getattr(self, name) < 1 and getattr(self, name) != -1:
                raise ConfigError(f"{PREFIX}{name.upper()}={getattr(self, name)}: milliseconds, or -1 for ever")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"{PREFIX}METRICS_PORT={self.metrics_port} is not a port (1-65535, or 0 for none)")
        for name in ("broker_port", "controller_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{PREFIX}{name.upper()}={getattr(self, name)} is not a port (1-65535)")
        if self.broker_port == self.controller_port:
            raise ConfigError(f"{PREFIX}BROKER_PORT and {PREFIX}CONTROLLER_PORT are both {self.broker_port}; "
                              "the broker needs two different ports")
        if not 16 <= self.max_id_bytes <= 65536:
            raise ConfigError(f"{PREFIX}MAX_ID_BYTES={self.max_id_bytes} must be from 16 to 65536 (bytes)")
        if not 0 <= self.serve_port <= 65535:
            raise ConfigError(f"{PREFIX}SERVE_PORT={self.serve_port} is not a port (1-65535, or 0 for a free one)")
        if not self.serve_host:
            raise ConfigError(f"{PREFIX}SERVE_HOST is empty; use e.g. 127.0.0.1, or 0.0.0.0 for every interface")
        if not self.metrics_host:
            raise ConfigError(f"{PREFIX}METRICS_HOST is empty; use e.g. 127.0.0.1, or 0.0.0.0 for every interface")
        self._check_security()
        return self

    def _check_security(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"{PREFIX}SECURITY_PROTOCOL={self.security_protocol!r} is not one of "
                              + ", ".join(SECURITY_PROTOCOLS))
        protocol = f"{PREFIX}SECURITY_PROTOCOL={self.security_protocol}"
        sasl_set = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file",
                                "broker_sasl_users") if getattr(self, n)]
        if sasl_set and not self.sasl:
            raise ConfigError(f"{PREFIX}{sasl_set[0].upper()} is set but {protocol} sends no credentials; "
                              "use SASL_SSL (or SASL_PLAINTEXT)")
        if self.sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(f"{protocol} needs {PREFIX}SASL_MECHANISM, one of {', '.join(SASL_MECHANISMS)}"
                                  + (f" (got {self.sasl_mechanism!r})" if self.sasl_mechanism else ""))
            if not self.sasl_username:
                raise ConfigError(f"{protocol} needs {PREFIX}SASL_USERNAME")
            if self.sasl_password and self.sasl_password_file:
                raise ConfigError(f"set one of {PREFIX}SASL_PASSWORD and {PREFIX}SASL_PASSWORD_FILE, not both")
            if not (self.sasl_password or self.sasl_password_file):
                raise ConfigError(f"{protocol} needs {PREFIX}SASL_PASSWORD or {PREFIX}SASL_PASSWORD_FILE")
            self.broker_users()
        ssl_set = [n for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password",
                               "broker_ssl_keystore") if getattr(self, n)]
        if ssl_set and not self.tls:
            raise ConfigError(f"{PREFIX}{ssl_set[0].upper()} is set but {protocol} does not use TLS; "
                              "use SSL or SASL_SSL")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError(f"{PREFIX}SSL_KEYFILE is set without {PREFIX}SSL_CERTFILE")
        if self.ssl_key_password and not (self.ssl_keyfile or self.ssl_certfile):
            raise ConfigError(f"{PREFIX}SSL_KEY_PASSWORD is set without {PREFIX}SSL_KEYFILE")
        for name in ("sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "broker_ssl_keystore"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"{PREFIX}{name.upper()}={path}: no such file")

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
