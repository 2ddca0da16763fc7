"""``streamrec bench catalog``: from ``catalog set ITEM --hidden`` to the last list that still holds the item.

On the embedded broker (fresh topics, an items topic of its own), a generated session log with its catalog
(``streamrec generate --catalog``: the same generator and vocabulary) is loaded, one worker process starts
and a paced stream of the log's events keeps lists flowing. Then, ``trials`` times:

1. the item held by most of the batches of the last two seconds is picked (its share of those batches is
   ``presence_before``: near 1, its absence afterwards is the change and not chance);
2. it is hidden through :func:`streamrec.cmd_catalog.set_item` (what ``streamrec catalog set ITEM --hidden``
   runs: the item's newest record read, changed and written whole); ``set_ms`` is that call, which returns
   once the broker has acknowledged the write (``ack``);
3. lists keep coming while it is hidden (at least ``min_hidden_batches`` batches and ``hidden_s``);
4. it is made visible again the same way (``--no-hidden``) and must come back in a later list.

Batches are read off the recommendations topic: the worker stamps every list of one batch with the same
``emitted_at`` (consumers/loop.py), so each distinct ``emitted_at`` is one batch that emitted lists
(``batches_on_topic`` beside the worker's own ``worker_batches`` count checks that). Per trial:

* ``delay_ms``: the last list holding the item (its ``emitted_at``) minus the acknowledgement; negative when
  the last one came before the ``set`` returned (the worker may read the record before the producer hears
  the acknowledgement);
* ``delay_batches``: batches emitted after the acknowledgement that still held the item. The target, no
  list after the worker's next batch, is ``delay_batches <= 1`` (the batch already running when the record
  arrives may still list the item; every later one must not);
* ``first_without_ms``: the first batch after the last one holding the item, from the acknowledgement
  (the worker applied the record between those two batches);
* ``return_ms`` / ``return_batches``: from the acknowledgement of ``--no-hidden`` to the first list holding
  the item again.

The yardstick of the same run is ``median_batch_interval_ms`` (between consecutive batches during the
trials), so the delay reads as a number of batches.
"""

from __future__ import annotations

import bisect
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.e2e import wait_until
from streamrec.models.errors import InputError
from streamrec.stream.settings import Settings

__all__ = ["MAX_TRIALS", "ListSeen", "run", "run_with_progress", "summarise", "trial_figures"]

#: the bench stays short: at most this many hide / show trials
MAX_TRIALS = 50
#: ``progress(description, done, total)``
Progress = Callable[[str, float | None, float | None], None]


@dataclass(frozen=True, slots=True)
class ListSeen:
    """One list from the recommendations topic: when its batch emitted it, and its items."""

    emitted_at: int
    items: frozenset[str]


def _lists(sub: Any) -> list[ListSeen]:
    return [ListSeen(int(a.value["emitted_at"]), frozenset(i["item_id"] for i in a.value["items"]))
            for a in sub.snapshot()]


def _batches(lists: Sequence[ListSeen]) -> list[int]:
    """The batches that emitted lists: their distinct ``emitted_at``, in order."""
    return sorted({x.emitted_at for x in lists})


def pick_item(lists: Sequence[ListSeen], since_ms: int, exclude: frozenset[str] = frozenset()
              ) -> tuple[str, float, int] | None:
    """The item held by the most batches emitted at or after ``since_ms``: (item, share of those batches,
    batches); ``None`` when no list was emitted."""
    per_batch: dict[int, set[str]] = {}
    for x in lists:
        if x.emitted_at >= since_ms:
            per_batch.setdefault(x.emitted_at, set()).update(x.items)
    if not per_batch:
        return None
    counts = Counter(i for items in per_batch.values() for i in items if i not in exclude)
    if not counts:
        return None
    item, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return item, n / len(per_batch), len(per_batch)


def trial_figures(lists: Sequence[ListSeen], item: str, ack_ms: float, show_ms: float,
                  show_ack_ms: float) -> dict[str, Any]:
    """The figures of one trial from the lists seen: ``item`` hidden with the write acknowledged at
    ``ack_ms``, made visible again from ``show_ms`` (acknowledged at ``show_ack_ms``); epoch milliseconds."""
    batches = _batches(lists)
    hidden_lists = [x for x in lists if ack_ms < x.emitted_at < show_ms]
    with_item = [x.emitted_at for x in lists if item in x.items and x.emitted_at < show_ms]
    last_with = max(with_item, default=None)
    after_ack = [b for b in batches if ack_ms < b < show_ms]
    delay_batches = sum(1 for b in after_ack if last_with is not None and b <= last_with)
    first_without = next((b for b in after_ack if last_with is None or b > last_with), None)
    late = [x for x in hidden_lists if item in x.items and len(after_ack) > 1 and x.emitted_at > after_ack[0]]
    back = min((x.emitted_at for x in lists if item in x.items and x.emitted_at > show_ack_ms), default=None)
    return_batches = (None if back is None else
                      bisect.bisect_right(batches, back) - bisect.bisect_right(batches, int(show_ack_ms)))
    return {
        "item": item,
        "last_with_at_ms": last_with,
        "delay_ms": None if last_with is None else round(last_with - ack_ms, 1),
        "delay_batches": delay_batches,
        "first_without_ms": None if first_without is None else round(first_without - ack_ms, 1),
        "batches_while_hidden": len(after_ack), "lists_while_hidden": len(hidden_lists),
        "lists_with_item_after_next_batch": len(late),
        "came_back": back is not None,
        "return_ms": None if back is None else round(back - show_ack_ms, 1),
        "return_batches": return_batches,
    }


def _p50_max(values: Sequence[float | int | None]) -> dict[str, float | None]:
    got = [float(v) for v in values if v is not None]
    if not got:
        return {"p50": None, "max": None}
    return {"p50": round(float(np.median(got)), 1), "max": round(max(got), 1)}


def summarise(trials: Sequence[dict[str, Any]], batch_times: Sequence[int]) -> dict[str, Any]:
    """The run's figures from its trials and the ``emitted_at`` of the batches during them."""
    gaps = np.diff(np.asarray(sorted(batch_times), dtype=float))
    interval = round(float(np.median(gaps)), 1) if len(gaps) else None
    delays_b = [t["delay_batches"] for t in trials]
    return {
        "delay_ms": _p50_max([t["delay_ms"] for t in trials]),
        "delay_batches": _p50_max(delays_b),
        "first_without_ms": _p50_max([t["first_without_ms"] for t in trials]),
        "set_ms": _p50_max([t["set_ms"] for t in trials]),
        "return_ms": _p50_max([t["return_ms"] for t in trials]),
        "return_batches": _p50_max([t["return_batches"] for t in trials]),
        "median_batch_interval_ms": interval,
        "delay_in_batch_intervals": ({k: (None if v is None or not interval else round(v / interval, 2))
                                      for k, v in _p50_max([t["delay_ms"] for t in trials]).items()}),
        "target": "no list holding the item after the worker's next batch (delay_batches <= 1)",
        "target_met": bool(trials) and all(b <= 1 for b in delays_b),
        "came_back": sum(1 for t in trials if t["came_back"]),
        "lists_with_item_after_next_batch": sum(t["lists_with_item_after_next_batch"] for t in trials),
    }


def _settle(sub: Any, quiet_s: float = 0.5, timeout_s: float = 5.0) -> None:
    """Let the subscriber read the last batches' lists: until nothing new arrives for ``quiet_s``."""
    deadline, seen = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline and len(sub.snapshot()) != seen:
        seen = len(sub.snapshot())
        time.sleep(quiet_s)


def run(settings: Settings, trials: int = 10, rate: float = 300.0, users: int = 300, items: int = 1000,
        hidden_s: float = 1.5, min_hidden_batches: int = 5, seed: int = 0,
        progress: Progress | None = None) -> dict[str, Any]:
    from streamrec.bench.common import broker_session, machine
    from streamrec.bench.worker import _final_stats
    from streamrec.cmd_catalog import load_catalog, set_item
    from streamrec.e2e import Subscriber, free_port, start_subscriber, start_worker, stop_process
    from streamrec.producers.replay import Pacing, replay
    from streamrec.producers.synthetic import SyntheticConfig, generate
    from streamrec.producers.synthetic_catalog import synthetic_catalog, write_catalog
    from streamrec.stream.topics import ensure_topics, topic_specs

    if not 1 <= trials <= MAX_TRIALS:
        raise InputError(f"--trials must be between 1 and {MAX_TRIALS}, not {trials}")
    if rate <= 0 or users < 1 or items < 10:
        raise InputError("--rate must be positive, --users at least 1 and --items at least 10")

    def say(text: str, done: float | None = None, total: float | None = None) -> None:
        if progress is not None:
            progress(text, done, total)

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="streamrec-bench-catalog-"))
    # enough events for the start-up and every trial at the offered rate (the producer stops at the end)
    n_events = int(rate * (40 + trials * (hidden_s + 6.0)))
    start_ms = int(time.time() * 1000) - 86_400_000
    say("generating the session log and its catalog")
    log = generate(users=users, items=items, events=n_events, seed=seed, start_ms=start_ms, days=1.0)
    write_catalog(synthetic_catalog(SyntheticConfig(users, items, n_events, seed, start_ms, 1.0)),
                  work / "catalog.jsonl")
    port = free_port()
    log_path = work / "worker.log"
    result_trials: list[dict[str, Any]] = []
    with broker_session(settings) as base:
        s = base.replace(items_topic=base.events_topic.replace("bench-events-", "bench-items-"))
        ensure_topics(s, topic_specs(s))
        sent, _read = load_catalog(s, str(work / "catalog.jsonl"), "jsonl")
        sub = Subscriber(s)
        start_subscriber(sub)
        say("starting the worker")
        proc = start_worker(s, "--worker-id", "bench-catalog", "--metrics-port", str(port), "--no-model-sync",
                            log_path=log_path)
        stop = threading.Event()
        offered: dict[str, Any] = {}
        producer = threading.Thread(target=lambda: offered.setdefault("stats", replay(
            log, s, Pacing("rate", rate), stop=stop)), daemon=True)
        producer.start()
        try:
            if not wait_until(lambda: len(_batches(_lists(sub))) >= 20, 120, 0.2):
                raise RuntimeError(f"the worker emitted no lists in 120 s; see {log_path}")
            time.sleep(2.0)                             # lists flowing at the offered rate
            trials_from = int(time.time() * 1000)
            for k in range(trials):
                say(f"trial {k + 1}/{trials}: hide, watch, show", k, trials)
                now_ms = int(time.time() * 1000)
                picked = pick_item(_lists(sub), now_ms - 2000)
                if picked is None:
                    raise RuntimeError(f"no list in the last 2 s before trial {k + 1}; see {log_path}")
                item, presence, n_before = picked
                t0 = time.time() * 1000
                set_item(s, item, hidden=True)
                ack = time.time() * 1000

                def hidden_long_enough(a: float = ack) -> bool:
                    return (sum(1 for b in _batches(_lists(sub)) if b > a) >= min_hidden_batches
                            and time.time() * 1000 - a >= hidden_s * 1000)

                wait_until(hidden_long_enough, 30)
                show = time.time() * 1000
                set_item(s, item, hidden=False)
                show_ack = time.time() * 1000

                def back(it: str = item, sa: float = show_ack) -> bool:
                    return any(it in x.items and x.emitted_at > sa for x in _lists(sub))

                wait_until(back, 20)
                time.sleep(0.3)                         # the slowest partition's lists of those batches
                fig = trial_figures(_lists(sub), item, ack, show, show_ack)
                result_trials.append({"trial": k + 1, "presence_before": round(presence, 3),
                                      "batches_before": n_before, "set_ms": round(ack - t0, 1),
                                      "show_set_ms": round(show_ack - show, 1), **fig})
            trials_to = int(time.time() * 1000)
            say("stopping the worker", trials, trials)
        finally:
            stop.set()
            producer.join(15)
            code = stop_process(proc)
            _settle(sub)
            sub.stop()
        lists = _lists(sub)
    stats = _final_stats(log_path)
    during = [b for b in _batches(lists) if trials_from <= b <= trials_to]
    replayed = offered.get("stats")
    return {
        "benchmark": "catalog", "trials_requested": trials, "trials": result_trials,
        **summarise(result_trials, during),
        "offered_rate": rate, "achieved_offered_rate": None if replayed is None else round(replayed.rate, 1),
        "users": users, "items": items, "catalog_items": sent.sent, "seed": seed,
        "hidden_s": hidden_s, "min_hidden_batches": min_hidden_batches,
        "lists_seen": len(lists), "batches_on_topic": len(_batches(lists)),
        "worker_batches": stats.get("batches"), "worker_exit_code": code,
        "seconds": round(time.monotonic() - started, 1), "machine": machine(),
    }


def run_with_progress(settings: Settings, **kwargs: Any) -> dict[str, Any]:
    """:func:`run` with a rich progress bar on stderr (one step per trial)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("bench catalog", total=None)

        def progress(text: str, done: float | None, total: float | None) -> None:
            bar.update(task, description=f"bench catalog: {text}", completed=done or 0, total=total)

        return run(settings, progress=progress, **kwargs)
