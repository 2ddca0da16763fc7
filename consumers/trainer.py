"""The trainer process: read recent events from Kafka, train the base model (warm-started from the model
in service), gate it against the model in service, publish it through ``model-updates``.

``Trainer.run`` keeps a schedule (``--every``) and also trains at once when a ``RETRAIN_REQUEST`` arrives
on the model topic (the workers' drift detectors send them).

The trainer also builds the serving item index and ships it in the artifact (``write_result``): workers
then only deserialize it. Building here is the right place to pay for it: the trainer runs apart from the
workers (often on a GPU node with cores to spare), builds once per model instead of once per worker, and
nothing waits on it, whereas a worker shares two cores with its own hot path, so its build took 5 s on a
quiet core and 20+ s with two workers building at once (100k x 64 items, HNSW M=32, efConstruction 80),
and stretched the gap between two processed batches to 150-250 ms. The build seconds are in the manifest's
metrics (``index_build_s``).
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from kafka import TopicPartition

from streamrec.models.base.artifact import Artifact, decode_artifact, read_files
from streamrec.models.base.gate import GateDecision, decide
from streamrec.models.base.training import TrainConfig, evaluate, train, write_result
from streamrec.models.errors import ArtifactError, InputError
from streamrec.models.events import Event
from streamrec.stream import clients
from streamrec.stream.errors import DecodeError
from streamrec.stream.modelbus import follow, in_service, parse_record, publish, read_to_end
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

log = structlog.get_logger("streamrec.trainer")


def read_topic_events(settings: Settings, since_ms: int | None = None, timeout_s: float = 60.0) -> list[Event]:
    """Every decodable event on the events topic (from ``since_ms`` by record time) up to its current end."""
    codec = codec_for("event")
    consumer = clients.consumer(settings, group=None, max_poll_records=10000)
    try:
        parts = consumer.partitions_for_topic(settings.events_topic) or set()
        tps = [TopicPartition(settings.events_topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        end = consumer.end_offsets(tps)
        if since_ms is None:
            consumer.seek_to_beginning(*tps)
        else:
            found = consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                consumer.seek(tp, found[tp].offset if found.get(tp) else end[tp])
        events: list[Event] = []
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in tps if consumer.position(tp) < end[tp]}
        while remaining and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                for rec in recs:
                    try:
                        events.append(Event.from_record(codec.decode(rec.value)))
                    except (DecodeError, KeyError, ValueError, TypeError):
                        continue  # the worker dead-letters these; training skips them
            remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
        return events
    finally:
        consumer.close()


def serving_artifact(settings: Settings, timeout_s: float = 30.0) -> Artifact | None:
    """The model in service: the newest manifest on the model topic, or the target of the newest rollback."""
    assembler, target, _ = in_service(read_to_end(settings, timeout_s))
    if target is None or target not in assembler.complete:
        return None
    try:
        return decode_artifact(assembler.manifests[target], assembler.complete[target])
    except ArtifactError as exc:
        log.warning("model in service cannot be read; training from scratch", error=str(exc))
        return None


@dataclass(frozen=True)
class TrainOutcome:
    version: str
    decision: GateDecision
    published: bool
    metrics: dict[str, Any]
    stats: dict[str, Any]
    out_dir: str


def train_and_publish(settings: Settings, events: list[Event], config: TrainConfig, out_dir: str | None = None,
                      tolerance: float = 0.02, dry_run: bool = False, progress: Any = None) -> TrainOutcome:
    """Train on ``events``, gate against the model in service, publish when the gate passes."""
    serving = serving_artifact(settings)
    result = train(events, config, warm_start=serving if serving and serving.manifest.dim == config.dim else None,
                   progress=progress)
    serving_metrics = None
    if serving is not None:
        fresh = evaluate(serving, events, config)
        # A model trained on part of this holdout would look better than it is: compare with the holdout
        # figures it was published with instead.
        serving_metrics = serving.manifest.metrics if fresh.get("holdout_overlap") else fresh
    decision = decide(result.metrics, serving_metrics, tolerance)
    out = out_dir or tempfile.mkdtemp(prefix="streamrec-model-")
    manifest = write_result(result, out, decision)
    published = False
    if decision.passed and not dry_run:
        _, files = read_files(out)
        publish(settings, manifest, files)
        published = True
    log.info("training finished", version=manifest.version, published=published, gate=decision.reason,
             index=manifest.index.get("kind"), index_build_s=manifest.metrics.get("index_build_s"),
             **{k: v for k, v in result.metrics.items() if isinstance(v, int | float)})
    return TrainOutcome(manifest.version, decision, published, result.metrics, result.stats, out)


class Trainer:
    """Train every ``every_s`` seconds over the last ``window_s`` of events, and at once on request."""

    def __init__(self, settings: Settings, config: TrainConfig, every_s: float, window_s: float | None,
                 out_root: str, tolerance: float = 0.02) -> None:
        self.settings, self.config, self.every_s, self.window_s = settings, config, every_s, window_s
        self.out_root, self.tolerance = Path(out_root), tolerance
        self.requested = threading.Event()
        self.stop_event = threading.Event()

    def _watch_requests(self) -> None:
        consumer = follow(self.settings, from_beginning=False)
        try:
            while not self.stop_event.is_set():
                for recs in consumer.poll(timeout_ms=500).values():
                    for rec in recs:
                        try:
                            value = parse_record(rec.value)   # every field checked; None values too
                        except DecodeError:
                            continue
                        if value["kind"] == "RETRAIN_REQUEST":
                            log.info("retrain requested", reason=value["data"].decode(errors="replace"))
                            self.requested.set()
        finally:
            consumer.close()

    def run(self, max_runs: int | None = None) -> list[TrainOutcome]:
        threading.Thread(target=self._watch_requests, name="retrain-requests", daemon=True).start()
        outcomes: list[TrainOutcome] = []
        while not self.stop_event.is_set() and (max_runs is None or len(outcomes) < max_runs):
            since = None if self.window_s is None else int((time.time() - self.window_s) * 1000)
            events = read_topic_events(self.settings, since)
            self.requested.clear()
            try:
                outcomes.append(train_and_publish(self.settings, events, self.config,
                                                  str(self.out_root / time.strftime("%Y%m%dT%H%M%S")),
                                                  self.tolerance))
            except InputError as exc:
                log.warning("not enough data to train yet", events=len(events), reason=str(exc))
            if max_runs is not None and len(outcomes) >= max_runs:
                break
            self.requested.wait(self.every_s)
        self.stop_event.set()
        return outcomes
