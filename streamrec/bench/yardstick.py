"""Bare kafka-python references measured beside streamrec in the same run (the benchmarks' yardsticks).

Numbers on a shared machine move from run to run; the ratio of streamrec to the bare client on the same
broker, in the same run, is what the benchmarks compare.

* :func:`passthrough_phase` (``bench worker``): a passthrough loop in its own process, the same client
  settings as the worker (``stream/clients.py`` with the worker's consumer, producer and reconnect
  overrides, the commit protocol of the guarantee). Per polled batch it produces one record of about :data:`LIST_BYTES`
  per distinct user (the worker's list rate), then flushes and commits (at-least-once: ``flush`` then
  ``commit``; exactly-once: one transaction per batch with its offsets). It decodes only the last event of
  each user, for the lineage the subscriber's latency needs. Producer (paced replay), loop and subscriber
  are separate: the loop is a child process, as the worker is.
* :func:`bare_produce` (``bench replay``): a plain producer of the same pre-encoded records (the replay's
  producer settings and keyed partitioning, no checks, no pacing), timed to its last acknowledgement.

Run ``python -m streamrec.bench.yardstick --progress FILE`` to start the loop by hand (settings from
``STREAMREC_*``); it writes the events it has processed to FILE and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from streamrec.models.events import Event
from streamrec.stream.settings import Settings

_log = structlog.get_logger("streamrec.bench.yardstick")

__all__ = ["LIST_BYTES", "bare_produce", "passthrough_phase", "run_loop"]

#: the size of the reference's output record (about a worker's list of 20 items)
LIST_BYTES = 700


def _rebalancing() -> tuple[type[BaseException], ...]:
    from kafka import errors

    return (errors.CommitFailedError, errors.RebalanceInProgressError, errors.IllegalGenerationError,
            errors.UnknownMemberIdError)


#: the commit errors of a group that is rebalancing (the loop goes on; its next poll rejoins)
REBALANCING = _rebalancing()


def _filler_items(top_n: int = 20) -> list[dict[str, Any]]:
    """``top_n`` items whose encoded list is about :data:`LIST_BYTES` bytes with a short user and event id."""
    from streamrec.stream.serde import codec_for

    codec = codec_for("recommendation")
    width = 6
    while True:
        items = [{"item_id": f"i{k:0{width}d}", "score": 1.0 / (k + 1), "source": "ann"} for k in range(top_n)]
        size = len(codec.encode({"user_id": "u12345", "items": items, "trigger_event_id": "e-123456789",
                                 "trigger_timestamp": 0, "trigger_partition": 0, "trigger_offset": 0,
                                 "emitted_at": 0, "model_version": "bench", "index_version": "bench"}))
        if size >= LIST_BYTES - 20 or width > 64:
            return items
        width += 1


def _subscribe(consumer: Any, topic: str, timeout_s: float) -> None:
    """Subscribe once ``topic``'s partitions are in the consumer's metadata. A consumer subscribed from its
    constructor can join before it has them: the group leader then assigns nothing, and kafka-python may
    never rebalance (the loop sat idle for the whole run)."""
    deadline = time.monotonic() + timeout_s
    while not consumer.partitions_for_topic(topic):
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic!r} has no partitions after {timeout_s:.0f} s")
        time.sleep(0.1)
    consumer.subscribe([topic])


def run_loop(settings: Settings, progress: Path, stop: Callable[[], bool], join_timeout_s: float = 30.0) -> int:
    """The passthrough loop (see the module docstring) until ``stop()``; returns the events processed.
    Raises when it has had no partition to read for ``join_timeout_s`` (it would otherwise wait forever)."""
    from kafka.structs import OffsetAndMetadata

    from streamrec.consumers.delivery import WORKER_PRODUCER
    from streamrec.consumers.reconnect import RECONNECT
    from streamrec.stream import clients
    from streamrec.stream.serde import codec_for

    s = settings
    consumer = clients.consumer(s, group=s.group, max_poll_records=s.max_batch,
                                session_timeout_ms=10000, heartbeat_interval_ms=2000,
                                max_poll_interval_ms=300000, **RECONNECT)
    try:
        _subscribe(consumer, s.events_topic, join_timeout_s)
    except BaseException:
        consumer.close(autocommit=False)
        raise
    eo = s.guarantee == "exactly-once"
    producer = clients.producer(s, transactional_id=f"{s.group}-yardstick" if eo else None,
                                **({"transaction_timeout_ms": 15000} if eo else {}), **RECONNECT,
                                **WORKER_PRODUCER)
    if eo:
        producer.init_transactions()
    event_codec, rec_codec = codec_for("event"), codec_for("recommendation")
    items = _filler_items(s.top_n)
    processed, written, next_report = 0, 0, 0.0
    unassigned_since: float | None = time.monotonic()
    try:
        while not stop():
            polled = consumer.poll(timeout_ms=s.poll_ms, max_records=s.max_batch)
            if not polled:
                if written != processed:   # idle: the last batches' count is out, whenever they came
                    _write_progress(progress, processed)
                    written = processed
                if consumer.assignment():
                    unassigned_since = None
                elif unassigned_since is None:
                    unassigned_since = time.monotonic()
                elif time.monotonic() - unassigned_since > join_timeout_s:
                    raise RuntimeError(f"the reference loop has had no partition of {s.events_topic!r} for "
                                       f"{join_timeout_s:.0f} s (group {s.group!r} on {s.bootstrap})")
                continue
            unassigned_since = None
            last: dict[bytes, Any] = {}
            offsets: dict[Any, OffsetAndMetadata] = {}
            firsts: dict[Any, int] = {}
            n = 0
            for tp, recs in polled.items():
                for r in recs:
                    if r.key is not None and r.value is not None:
                        last[r.key] = r
                n += len(recs)
                firsts[tp] = recs[0].offset
                offsets[tp] = OffsetAndMetadata(recs[-1].offset + 1, "", -1)
            if eo:
                producer.begin_transaction()
            now = int(time.time() * 1000)
            for key, r in last.items():
                ev = event_codec.decode(r.value)
                producer.send(s.recommendations_topic, key=key, value=rec_codec.encode({
                    "user_id": ev["user_id"], "items": items, "trigger_event_id": ev["event_id"],
                    "trigger_timestamp": r.timestamp, "trigger_partition": r.partition, "trigger_offset": r.offset,
                    "emitted_at": now, "model_version": "yardstick", "index_version": "yardstick"}))
            try:
                if eo:
                    producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
                    producer.commit_transaction()
                else:
                    producer.flush()
                    consumer.commit(offsets)
            except REBALANCING as exc:   # a rebalance under way: as the worker, go on with the next poll
                _log.warning("reference loop commit failed during a rebalance", error=f"{type(exc).__name__}: {exc}")
                if eo:   # the batch's lists are discarded with the transaction: read it again
                    producer.abort_transaction()
                    for tp, first in firsts.items():
                        if tp in consumer.assignment():
                            consumer.seek(tp, first)
                    continue
            processed += n
            if time.monotonic() >= next_report:
                _write_progress(progress, processed)
                written, next_report = processed, time.monotonic() + 0.1
    finally:
        _write_progress(progress, processed)
        producer.close(timeout=10)
        consumer.close(autocommit=False)
    return processed


def _write_progress(progress: Path, n: int) -> None:
    """Replace the count whole (a reader never sees a half-written one)."""
    tmp = progress.with_name(progress.name + ".tmp")
    tmp.write_text(str(n))
    os.replace(tmp, progress)


def _processed(progress: Path) -> int:
    try:
        return int(progress.read_text() or 0)
    except (OSError, ValueError):
        return 0


def passthrough_phase(settings: Settings, load: list[Event], paced: list[Event], rate: float,
                      work: Path) -> dict[str, Any]:
    """The reference of ``bench worker``: ``load`` preloaded on topics of its own, the loop's events/s over
    it (first to last list at the subscriber), then its latency with ``paced`` offered at ``rate``."""
    import subprocess
    import sys

    from streamrec.bench.common import await_count
    from streamrec.e2e import Subscriber, settings_env, start_subscriber, stop_process
    from streamrec.producers.replay import Pacing, replay
    from streamrec.stream.topics import ensure_topics, topic_specs

    s = settings.replace(events_topic=settings.events_topic + "-ref",
                         recommendations_topic=settings.recommendations_topic + "-ref",
                         group=settings.group + "-ref")
    ensure_topics(s, topic_specs(s))
    replay(load, s, Pacing())
    sub = Subscriber(s, keep_values=False)
    start_subscriber(sub)
    progress = work / "yardstick.progress"
    log = open(work / "yardstick.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([sys.executable, "-m", "streamrec.bench.yardstick", "--progress", str(progress)],
                            env=settings_env(s), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        await_count("the reference loop", lambda: _processed(progress), len(load), proc, 600,
                    work / "yardstick.log")
        time.sleep(0.5)
        arrivals = sub.snapshot()
        first, last = min(a.arrival_ms for a in arrivals), max(a.arrival_ms for a in arrivals)
        throughput = len(load) / max((last - first) / 1000, 1e-9)
        sent_at: dict[str, float] = {}
        mark = len(sub.snapshot())
        offered = replay(paced, s, Pacing("rate", rate), sent_at=sent_at)
        await_count("the reference loop", lambda: _processed(progress), len(load) + len(paced), proc, 600,
                    work / "yardstick.log")
        time.sleep(0.5)
        lat = np.array([a.arrival_ms - sent_at[a.trigger_event_id] for a in sub.snapshot()[mark:]
                        if a.trigger_event_id in sent_at])
    finally:
        stop_process(proc)
        sub.stop()
        log.close()
    return {"events_per_s": round(throughput, 1), "lists_emitted": len(arrivals),
            "achieved_offered_rate": round(offered.rate, 1), "latency_samples": int(len(lat)),
            "latency_ms": percentiles(lat), "list_bytes": LIST_BYTES,
            "loop": "kafka-python passthrough, one process; a list per distinct user per batch; flush and "
                    "commit per batch"}


def percentiles(lat: np.ndarray) -> dict[str, float]:
    pct = np.percentile(lat, [50, 90, 99]) if len(lat) else [float("nan")] * 3
    return {"p50": round(float(pct[0]), 2), "p90": round(float(pct[1]), 2), "p99": round(float(pct[2]), 2)}


def bare_produce(settings: Settings, records: list[tuple[bytes, bytes]], topic: str) -> dict[str, Any]:
    """Events/s of a plain producer (the replay's settings) sending pre-encoded ``(key, value)`` records with
    the keyed partitioning of the replay, timed from the first send to the last acknowledgement."""
    from streamrec.producers.replay import KeyPartitioner, describe_topic
    from streamrec.stream import clients

    partition_of = KeyPartitioner(describe_topic(settings, topic).partitions)
    producer = clients.producer(settings)
    try:
        send = producer.send
        started = time.perf_counter()
        for key, value in records:
            send(topic, key=key, value=value, partition=partition_of(key))
        producer.flush()
        seconds = time.perf_counter() - started
    finally:
        producer.close(timeout=10)
    return {"events_per_s": round(len(records) / max(seconds, 1e-9), 1), "seconds": round(seconds, 3),
            "producer": "kafka-python KafkaProducer, stream/clients.py settings, pre-encoded records"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The passthrough reference loop of `streamrec bench worker`.")
    parser.add_argument("--progress", required=True, help="File the processed event count is written to.")
    args = parser.parse_args(argv)
    import faulthandler

    from streamrec.stream import logs

    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)    # kafka-python's warnings reach the log
    faulthandler.register(signal.SIGUSR1)                      # `kill -USR1 PID`: every thread's stack
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    run_loop(settings, Path(args.progress), stop=lambda: bool(stopping))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
