"""``streamrec bench train``: training throughput (interactions/s per epoch) and holdout quality."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from streamrec.bench.common import machine
from streamrec.models.errors import InputError

DEFAULT_MOVIELENS = Path("../shared/data/movielens-100k/u.data")


def run(events_path: str | None, fmt: str, device: str, threads: int, epochs: int | None, dim: int,
        seed: int = 0) -> dict[str, Any]:
    import torch

    from streamrec.models.base.training import TrainConfig, train
    from streamrec.producers.readers import read_events

    if events_path is None:
        if not DEFAULT_MOVIELENS.exists():
            raise InputError(f"no --events given and {DEFAULT_MOVIELENS} does not exist; pass --events PATH")
        events_path, fmt = str(DEFAULT_MOVIELENS), "movielens"
    events = list(read_events(events_path, fmt).events)
    cfg = TrainConfig(device=device, threads=threads, dim=dim, seed=seed)
    if epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=epochs)
    result = train(events, cfg)
    st = result.stats
    gpu = torch.cuda.get_device_name(0) if st["device"].startswith("cuda") else None
    return {
        "benchmark": "train", "dataset": events_path, "events": len(events), "device": st["device"], "gpu": gpu,
        "threads": threads, "dim": dim, "epochs": st["epochs"],
        "interactions_per_s": round(st["interactions_per_s"], 1),
        "seconds": round(st["seconds"], 2), "train_examples": st["train_examples"],
        "holdout": {k: round(v, 4) if isinstance(v, float) else v for k, v in result.metrics.items()},
        "torch": torch.__version__, "machine": machine(),
    }
