"""Markdown for ``streamrec report``: the headline table and ``reports/README.md`` from the step results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS = ("hr@10", "ndcg@10", "mrr@10", "recall@20", "coverage", "novelty")
CONFIG_ORDER = ("popularity", "recent", "sknn", "river_mf", "static_base", "online_vectors", "full", "full_blend",
                "full_content")
#: (step, label) of the e-commerce evaluations in the headline
ECOMMERCE = (("evaluate-otto-sample", "OTTO sample"), ("evaluate-sessions", "generated session log"),
             ("evaluate-sessions-all", "generated session log, every event a target"))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and v == 0:
        return "0"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) >= 1 else f"{v:.3f}"
    return str(v)


def _ok(summary: dict[str, Any], name: str) -> dict[str, Any] | None:
    st = summary["steps"].get(name)
    return st["result"] if st and st["ok"] else None


def _get(d: dict[str, Any] | None, *path: Any) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _slash(values: Sequence[Any], unit: str = "") -> str:
    return " / ".join(_cell(v) for v in values) + (f" {unit}" if unit else "")


def headline(summary: dict[str, Any]) -> str:
    ev, e2e, kill = _ok(summary, "evaluate-movielens-100k"), _ok(summary, "e2e"), _ok(summary, "e2e-kill")
    alo, eos = _ok(summary, "worker-at-least-once"), _ok(summary, "worker-exactly-once")
    train, replay, sync = _ok(summary, "train"), _ok(summary, "replay"), _ok(summary, "sync")
    rows: list[list[Any]] = []
    if ev:
        rows.append(["MovieLens-100K HR@10: full system / river MF / popularity (prequential)",
                     _slash([_get(ev, "configs", c, "hr@10") for c in ("full", "river_mf", "popularity")])])
    for step, label in ECOMMERCE:
        res = _ok(summary, step)
        ratio = _get(res, "full_vs_best_baseline")
        if res and ratio:
            hr, nd = ratio.get(f"hr@{res['k']}", {}), ratio.get(f"ndcg@{res['k']}", {})
            rows.append([f"{label}: full's HR@10 / NDCG@10 over the best baseline ({hr.get('best')} / "
                         f"{nd.get('best')})", _slash([hr.get("ratio"), nd.get("ratio")], "x")])
    scale = _ok(summary, "evaluate-scale-out")
    if scale:
        from streamrec.evaluate_shards import headline_cells

        rows += headline_cells(scale)
    if alo or eos:
        ratios = [_get(alo, "ratio_to_ceiling"), _get(eos, "ratio_to_ceiling")]
        rows.append(["One worker, events/s from a backlog: at-least-once / exactly-once"
                     + (" (x the bare kafka-python loop of the same run)" if any(ratios) else ""),
                     _slash([_get(alo, "events_per_s"), _get(eos, "events_per_s")])
                     + (f" ({_slash(ratios, 'x')})" if any(ratios) else "")])
        rate = _get(alo, "offered_rate") or _get(eos, "offered_rate")
        p99s = [_get(alo, "p99_ratio_to_reference"), _get(eos, "p99_ratio_to_reference")]
        rows.append([f"Event-to-recommendation latency at {_cell(rate)} events/s, p50 / p99: at-least-once; "
                     "exactly-once" + (" (p99 x the bare loop's)" if any(p99s) else ""),
                     _slash([_get(alo, "latency_ms", "p50"), _get(alo, "latency_ms", "p99")], "ms")
                     + "; " + _slash([_get(eos, "latency_ms", "p50"), _get(eos, "latency_ms", "p99")], "ms")
                     + (f" ({_slash(p99s, 'x')})" if any(p99s) else "")])
    if e2e:
        runs = e2e["runs"]
        counts = " / ".join(str(r["workers"]) for r in runs)
        rows.append([f"End to end, events/s with {counts} worker processes ({_get(e2e, 'machine', 'cpus')} CPUs)",
                     _slash([r["throughput"]["events_per_s"] for r in runs])])
        rows.append([f"End to end, p99 latency at {_cell(e2e['rate'])} events/s with {counts} workers",
                     _slash([r["latency_ms"]["p99"] for r in runs], "ms")])
        rows.append(["Lost / duplicated lists (all worker counts)",
                     _slash([sum(r["lists"]["lost"] for r in runs), sum(r["lists"]["duplicated"] for r in runs)])])
    if kill:
        k = [r for r in kill["runs"] if r.get("kill")]
        if k:
            r = k[0]
            rows.append([f"SIGKILL of 1 of {r['workers']} workers ({kill['guarantee']}): recovery, lost, duplicated",
                         f"{_cell(r['kill']['recovery_s'])} s, {r['lists']['lost']} lost, "
                         f"{r['lists']['duplicated']} duplicated"])
    if sync:
        rows.append([f"Model sync, publish to serving in {sync.get('workers')} workers ({_cell(sync.get('items'))} "
                     "items)", f"{_cell(sync.get('sync_s'))} s (longest batch gap "
                                f"{_cell(sync.get('max_batch_gap_ms'))} ms)"])
    cat = _ok(summary, "catalog")
    if cat:
        rows.append([f"Catalog: `set --hidden` acknowledged to the last list holding the item, p50 / max "
                     f"({len(cat['trials'])} trials; median batch interval {_cell(cat['median_batch_interval_ms'])} "
                     "ms)", _slash([_get(cat, "delay_ms", "p50"), _get(cat, "delay_ms", "max")], "ms") + "; "
                     + _slash([_get(cat, "delay_batches", "p50"), _get(cat, "delay_batches", "max")])
                     + " batches after it"])
    if train:
        rows.append([f"Base-model training on MovieLens-100K ({train['device']}, {train['threads']} thread)",
                     f"{_cell(train['interactions_per_s'])} interactions/s, {_cell(train['seconds'])} s"])
    if replay:
        ratio = replay.get("ratio_to_ceiling")
        rows.append(["Replay into Kafka / read back (decoded)",
                     _slash([replay["produce_events_per_s"], replay["read_events_per_s"]], "events/s")
                     + (f" ({_cell(ratio)}x the plain producer, the median of its rounds' ratios)" if ratio else "")])
    return table(["measure", "figure"], rows)


def ratio_rows(ev: dict[str, Any]) -> list[list[Any]]:
    """One row per ranking metric: full, the best baseline (name and value), and their ratio."""
    ratio = ev.get("full_vs_best_baseline") or {}
    return [[metric, r.get("value"), r.get("best"), r.get("best_value"),
             None if r.get("ratio") is None else f"{r['ratio']:.2f}x"] for metric, r in ratio.items()]


def _evaluation(ev: dict[str, Any], png: str) -> list[str]:
    names = [c for c in CONFIG_ORDER if c in ev["configs"]] + sorted(set(ev["configs"]) - set(CONFIG_ORDER))
    rows = [[c, *(ev["configs"][c].get(m) for m in METRICS),
             round(ev["timings"][c].get("sync_s", 0.0), 1), ev["timings"][c].get("models_trained")] for c in names]
    tc = ev.get("train_config", {})
    every = ev.get("sync_every")
    cadence = (f"every {_cell(every)} events" if every else "") + (
        f"{' or ' if every else 'every '}{ev['sync_every_ms'] / 3_600_000:g} h of event time"
        if ev.get("sync_every_ms") else "")
    parts = [
        table(["configuration", *METRICS, "training s", "models trained"], rows), "",
        f"{ev['events']:,} events, the first {ev['warmup']:,} learned only, {ev['evaluated']:,} targets scored "
        f"(windows of {ev['settings']['window']:,}). {ev['policy']['text']}. Base model: TrainConfig(epochs="
        f"{tc.get('epochs')}, dim={tc.get('dim')}, threads=1), retrained for `full` {cadence or 'never'}; "
        f"learned reranker: {'on' if ev.get('reranker') else 'not available'}.",
        "",
    ]
    cold = ev.get("cold") or {}
    if cold.get("configs"):
        parts += [f"Item cold start: the {cold['targets']:,} scored targets whose item had fewer than "
                  f"{cold['item_events_below']} earlier events"
                  + (f" (catalog: {ev['catalog']['items']:,} items fed to the engine before the replay)"
                     if ev.get("catalog") else "") + ":", "",
                  table(["configuration", "hr@10", "ndcg@10", "recall@20", "hr@10 overall"],
                        [[c, cold["configs"][c].get("hr@10"), cold["configs"][c].get("ndcg@10"),
                          cold["configs"][c].get("recall@20"), ev["configs"][c].get("hr@10")]
                         for c in names if c in cold["configs"]]), ""]
    kinds, hr = ev.get("kinds") or {}, f"hr@{ev.get('k', 10)}"
    counts, per = kinds.get("targets") or {}, kinds.get(hr) or {}
    if sum(counts.values()) and per:
        total = sum(counts.values())
        parts += [f"Targets by kind: {100 * counts.get('repeat', 0) / total:.1f} % repeat one of the user's own "
                  f"earlier items, {100 * counts.get('known', 0) / total:.1f} % are items only other users touched "
                  f"before, {100 * counts.get('new', 0) / total:.1f} % are new to the log (a list learnt from the "
                  "log alone cannot hold those, so the first two shares add up to its ceiling; `recent` reaches "
                  "the repeats, and others' items only through its trending padding). "
                  f"{hr.upper()} per kind:", "",
                  table(["configuration", "repeat", "known", "new", f"{hr} overall"],
                        [[c, per[c].get("repeat"), per[c].get("known"), per[c].get("new"),
                          ev["configs"][c].get(hr)] for c in names if c in per]), ""]
    if ratio_rows(ev):
        parts += ["`full` against the best of the baselines (popularity, recent, sknn, river_mf) per metric:", "",
                  table(["metric", "full", "best baseline", "its value", "full / best"], ratio_rows(ev)), ""]
    if "static_base" in ev["configs"]:
        parts += [
            f"`static_base` is trained once on the warm-up part and never updated: "
            f"{100 * ev.get('targets_of_users_unseen_in_warmup', 0):.1f} % of the scored targets belong to users "
            "who had no event in the warm-up, and it has no list for them; `online_vectors` uses the same model "
            "and encodes every user from their recent items at each request.", ""]
    return [*parts, f"![HR@10 per window]({png})"]


def _e2e(res: dict[str, Any], png: str) -> list[str]:
    rows = []
    for r in res["runs"]:
        start, end = r.get("offered_phase_at_s", 0.0), r.get("backlog_resumed_at_s", float("inf"))
        lags = [x["committed_lag"] for x in r["lag_over_time"]
                if x["committed_lag"] is not None and start <= x["t"] < end]
        procs = r["processes"]
        rows.append([r["workers"], r["throughput"]["events_per_s"], r["latency_ms"]["p50"], r["latency_ms"]["p90"],
                     r["latency_ms"]["p99"], max(lags, default=None), r["lists"]["lost"], r["lists"]["duplicated"],
                     " / ".join(_cell(p["cpu_s"]) for p in procs), " / ".join(_cell(p["peak_rss_mb"]) for p in procs),
                     r["startup_s"], _get(r, "kill", "recovery_s")])
    m = res["machine"]
    return [
        table(["workers", "backlog events/s", "p50 ms", "p90 ms", "p99 ms", "max lag at rate", "lost", "duplicated",
               "CPU s per worker", "peak RSS MB per worker", "startup s", "recovery s"], rows), "",
        f"{res['guarantee']}, {res['partitions']} partitions, {res['users']:,} users, random base model of "
        f"{res['items']:,} items; latency at {_cell(res['rate'])} events/s offered for {_cell(res['seconds'])} s; "
        f"throughput from a backlog of {res['backlog_events']:,} events released at once. The broker, the "
        f"producer, the subscriber and every worker share {m['cpus']} CPUs ({m['cpu']}), so throughput stops "
        "growing once the worker processes outnumber the free cores.", "", f"![end to end]({png})",
    ]


def _catalog(res: dict[str, Any]) -> list[str]:
    rows = [[t["trial"], t["item"], t["presence_before"], t["set_ms"], t["delay_ms"], t["delay_batches"],
             t["first_without_ms"], t["batches_while_hidden"], "yes" if t["came_back"] else "no", t["return_ms"]]
            for t in res["trials"]]

    def p(key: str) -> str:
        return _slash([_get(res, key, "p50"), _get(res, key, "max")])

    return [
        table(["delay ms p50 / max", "delay batches p50 / max", "first batch without it ms", "set ms",
               "median batch interval ms", "came back", "target met"],
              [[p("delay_ms"), p("delay_batches"), p("first_without_ms"), p("set_ms"),
                res.get("median_batch_interval_ms"), f"{res.get('came_back')} / {len(res['trials'])}",
                "yes" if res.get("target_met") else "no"]]), "",
        table(["trial", "item", "share of batches holding it before", "set ms", "delay ms", "delay batches",
               "first without ms", "batches while hidden", "came back", "return ms"], rows), "",
        f"One worker on a generated session log ({res['users']:,} users, {res['items']:,} items, their catalog "
        f"loaded first) offered {_cell(res['offered_rate'])} events/s. Each trial hides the item held by the most "
        "batches of the last 2 s with `catalog set`'s own function (set ms: reading the item's newest record "
        "and writing it whole, to the broker's acknowledgement), then shows it again. Delay: the `emitted_at` of "
        "the last list holding the item minus the acknowledgement (negative: it came before); delay batches: "
        "batches emitted after the acknowledgement that still held it (target: at most 1, the batch already "
        "running); a batch is one `emitted_at` (the worker stamps a batch's lists alike: "
        f"{res.get('batches_on_topic')} on the topic, {res.get('worker_batches')} in the worker's stats).",
    ]


def _worker(res: dict[str, Any]) -> list[str]:
    """One worker bench: the worker, the bare kafka-python loop of the same run and their ratios, then where a
    batch's time went and the bytes per event on each output topic."""
    lat = ("p50", "p90", "p99")

    def offered(d: dict[str, Any] | None) -> str:
        rate = _get(d, "offered_rate") or res.get("offered_rate")
        return f"{_cell(rate)} ({_cell(_get(d, 'achieved_offered_rate'))})"

    rows: list[list[Any]] = [["worker", res.get("events_per_s"), *(_get(res, "latency_ms", p) for p in lat),
                              offered(res), res.get("rss_mb"), res.get("users_in_state")]]
    ref = res.get("reference")
    if ref:
        rows.append(["bare kafka-python passthrough (yardstick)", ref.get("events_per_s"),
                     *(_get(ref, "latency_ms", p) for p in lat), offered(ref), "", ""])
        rows.append(["ratio", f"{_cell(res.get('ratio_to_ceiling'))}x (target 0.5x)", "", "",
                     f"{_cell(res.get('p99_ratio_to_reference'))}x (target 2x)", "", "", ""])
    lines = [table(["", "events/s from a backlog", "latency p50 ms", "p90 ms", "p99 ms", "offered rate (achieved)",
                    "peak RSS MB", "users in state"], rows)]
    stages = res.get("stage_ms_per_batch") or {}
    if stages:
        per = ", ".join(f"{k} {_cell(v)}" for k, v in sorted(stages.items()))
        lines += ["", f"Per batch ({_cell(res.get('avg_batch'))} events on average, {_cell(res.get('batches'))} "
                      f"batches), ms: {per}."]
    stored, sent = res.get("bytes_per_event") or {}, res.get("payload_bytes_per_event") or {}
    if stored:
        per = ", ".join(f"{k} {_cell(v)} / {_cell(sent.get(k))}" for k, v in sorted(stored.items()))
        lines[-1] += (f" Bytes per processed event, stored (compressed) / sent: {per}"
                      + (f" ({_cell(res.get('changelog_records'))} changelog records)."
                         if res.get("changelog_records") else "."))
    return lines


def splice(previous: str, fresh: str, titles: Sequence[str], note: str) -> str:
    """``previous`` (a README made before) with the sections titled ``titles`` and the headline table taken
    from ``fresh``, and its first "Generated" line followed by ``note``: every other section, and any note
    written into it by hand, stays as it was. A section missing from ``previous`` is added at the end."""
    def sections(text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for chunk in ("\n" + text).split("\n## ")[1:]:
            title = chunk.split("\n", 1)[0].strip()
            out.append((title, "## " + chunk.rstrip() + "\n"))
        return out

    head_old = previous.split("\n## ", 1)[0].rstrip()
    new = dict(sections(fresh))
    lines = head_old.splitlines()
    gen = next((k for k, line in enumerate(lines) if line.startswith("Generated ")), None)
    if gen is not None:
        lines[gen] = lines[gen].rstrip() + " " + note
    parts, seen = ["\n".join(lines).rstrip() + "\n"], set()
    for title, body in sections(previous):
        if title == "Headline" or title in titles:
            parts.append(new.get(title, body))
            seen.add(title)
        else:
            parts.append(body)
    parts += [new[t] for t in titles if t not in seen and t in new]
    return "\n".join(parts).rstrip() + "\n"


def render(summary: dict[str, Any], out: Path) -> tuple[str, str]:
    """(README.md text, headline table)."""
    m = summary["machine"]
    head = headline(summary)
    parts = [
        "# streamrec: benchmarks and evaluation", "",
        f"Generated {summary['date']} by `{summary['command']}` in {summary['seconds']:.0f} s"
        + (" (quick sizes: a smoke run, not representative)" if summary["quick"] else "") + ".", "",
        table(["machine", ""], [["CPUs", m["cpus"]], ["CPU", m["cpu"]], ["memory GB", m["memory_gb"]],
                                ["Python", m["python"]], ["platform", m["platform"]]]), "",
        "Every figure comes from one run on the machine above; the benchmark processes, the Kafka broker and "
        "the workers share its cores, so read figures as orders of magnitude and compare them within one "
        "report. Each section gives the command that reproduces it.", "",
        "## Headline", "", head, "",
    ]
    for name, st in summary["steps"].items():
        took = "kept from the previous report" if st.get("kept") else f"{st['seconds']:.0f} s"
        parts += [f"## {st['title']}", "", f"`{st['command']}` ({took})", ""]
        if not st["ok"]:
            parts += [f"**Failed:** {st['error']}", "", "```", st["trace"].rstrip(), "```", ""]
            continue
        res = st["result"]
        if name == "evaluate-scale-out":
            from streamrec.evaluate_shards import scale_out_markdown

            parts += scale_out_markdown(res, f"{name}.png", table)
        elif name.startswith("evaluate"):
            parts += _evaluation(res, f"{name}.png")
        elif name.startswith("e2e"):
            parts += _e2e(res, f"{name}.png")
        elif name.startswith("worker"):
            parts += _worker(res)
        elif name == "sync":
            loops, mem = res.get("loop_intervals_outside_sync_per_worker") or [], res.get("memory_per_worker") or []
            parts.append(table(["publish to serving s", "per worker s", "prepare s per worker",
                                "longest batch gap ms (target 50)", "its phase",
                                "in it, loop CPU / waiting for a core ms", "gap / median interval (target 2x)",
                                "artifact MB", "raw read + index load s", "ratio to it (target 2x)",
                                "loop interval outside sync, median / p99 ms", "RSS MB empty / after (users)"],
                               [[res.get("sync_s"), _slash(res.get("sync_s_per_worker") or []),
                                 _slash(res.get("prepare_s_per_worker") or []),
                                 _slash(res.get("swap_gap_ms_per_worker") or [res.get("max_batch_gap_ms")]),
                                 " / ".join(str(ph) for ph in res.get("swap_gap_phase_per_worker") or []),
                                 "; ".join(_slash([c, q]) for c, q in zip(
                                     res.get("swap_gap_loop_cpu_ms_per_worker") or [],
                                     res.get("swap_gap_loop_runqueue_ms_per_worker") or [], strict=False)),
                                 _get(res, "ratio", "max_gap_to_median_interval"),
                                 res.get("artifact_mb"), _get(res, "yardstick", "total_s"),
                                 _get(res, "ratio", "sync_to_yardstick"),
                                 "; ".join(_slash([lp.get("median_interval_ms"), lp.get("p99_interval_ms")])
                                           for lp in loops),
                                 "; ".join(f"{_cell(m.get('empty_rss_mb'))} / {_cell(m.get('rss_mb'))} "
                                           f"({_cell(m.get('users'))})" for m in mem)]]))
        elif name == "catalog":
            parts += _catalog(res)
        elif name == "train":
            h = res.get("holdout", {})
            parts.append(table(["interactions/s", "seconds", "epochs", "device", "holdout HR@10", "popularity HR@10"],
                               [[res["interactions_per_s"], res["seconds"], res["epochs"], res["device"],
                                 h.get("hr@10"), h.get("popularity_hr@10")]]))
        elif name == "replay":
            parts.append(table(["events", "produced events/s", "plain producer of the same pre-encoded records "
                                "(yardstick)", "ratio (target 0.8x)", "read back events/s", "compression",
                                "partitions"],
                               [[res["events"], res["produce_events_per_s"], _get(res, "reference", "events_per_s"),
                                 res.get("ratio_to_ceiling"), res["read_events_per_s"], res["compression"],
                                 res["partitions"]]]))
        parts += ["", f"Raw figures: [{name}.json]({name}.json)", ""]
    return "\n".join(parts).rstrip() + "\n", head
