"""A model prepared in one process and opened, memory-mapped, in another.

The model-sync thread of a worker must not hold the interpreter lock for long while the loop serves, so
the heavy part of :func:`~models.serving.candidates.prepare_model` (checksums, decoding, the value checks,
category codes, an index build when the shipped one does not fit) runs in a child process:
:func:`prepare_files` reads an artifact directory, verifies it exactly as
:func:`~models.base.artifact.decode_artifact` does, and writes what serving needs as plain numpy and faiss
files (no pickle anywhere). :func:`open_prepared` then opens them in the worker: the index and the
embeddings memory-mapped (milliseconds, and the pages are shared by the workers of one host), the ids
read from JSON. Only :func:`open_prepared` runs in the worker, and its Python work is the id tuple and
the ``index_of`` dict (bytecode, which yields the lock every switch interval).

>>> import numpy as np, tempfile
>>> from streamrec.models.base.artifact import write_artifact
>>> from streamrec.models.base.index import IndexConfig
>>> src, out = tempfile.mkdtemp(), tempfile.mkdtemp()
>>> _ = write_artifact(src, ["a", "b", "c"], np.eye(3, dtype=np.float32), version="v1", with_index=IndexConfig())
>>> prepare_files(src, out, IndexConfig())["index_source"]
'shipped'
>>> m = open_prepared(out, IndexConfig())
>>> m.version, m.item_ids, m.index_of["c"], m.embeddings.shape, m.index.version
('v1', ('a', 'b', 'c'), 2, (3, 3), 'v1+flat')
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.models.base.artifact import INDEX as ARTIFACT_INDEX
from streamrec.models.base.artifact import load_artifact
from streamrec.models.base.encoder import UserEncoder
from streamrec.models.base.index import IndexConfig, read_index_file, write_index_file
from streamrec.models.errors import ArtifactError
from streamrec.models.serving.candidates import PreparedModel, prepare_model

SUMMARY = "prepared.json"
IDS, EMBEDDINGS, INDEX, CATEGORIES, COLD, ENCODER = ("item_ids.json", "embeddings.npy", "index.faiss",
                                                      "categories.npy", "cold_start.npy", "encoder.npz")

__all__ = ["open_prepared", "prepare_files"]


def prepare_files(src: str | os.PathLike[str], out: str | os.PathLike[str], index_config: IndexConfig,
                  n_cold_start: int = 50, seed: int = 0) -> dict[str, Any]:
    """Verify and prepare the artifact directory ``src`` (raises :class:`ArtifactError` for anything a
    worker must refuse) and write the serving files to ``out``; returns the summary it writes there."""
    started = time.perf_counter()
    model = prepare_model(load_artifact(src), index_config, n_cold_start, seed)
    verified_s = time.perf_counter() - started
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    (path / IDS).write_text(json.dumps(list(model.item_ids)))
    np.save(path / EMBEDDINGS, np.ascontiguousarray(model.embeddings, dtype=np.float32), allow_pickle=False)
    np.save(path / COLD, model.cold_start.astype(np.int64), allow_pickle=False)
    if model.categories is not None:
        np.save(path / CATEGORIES, model.categories.astype(np.int64), allow_pickle=False)
    np.savez(path / ENCODER, **model.encoder.to_arrays())  # type: ignore[arg-type]
    shipped = Path(src) / ARTIFACT_INDEX
    if model.index_source == "shipped" and shipped.is_file():
        shutil.copyfile(shipped, path / INDEX)   # the verified shipped bytes: no second serialisation
    else:
        write_index_file(model.index, str(path / INDEX))
    summary = {"version": model.version, "items": len(model.item_ids), "dim": int(model.embeddings.shape[1]),
               "index_source": model.index_source, "index_version": model.index.version,
               "categories": model.categories is not None, "verify_s": round(verified_s, 3),
               "seconds": round(time.perf_counter() - started, 3)}
    (path / SUMMARY).write_text(json.dumps(summary))   # last: its presence says the rest is written
    return summary


def open_prepared(out: str | os.PathLike[str], index_config: IndexConfig, mmap: bool = True) -> PreparedModel:
    """The :class:`PreparedModel` that :func:`prepare_files` wrote to ``out`` (index and embeddings mapped
    from the files with ``mmap``; the files may be deleted afterwards). Shapes are checked again."""
    path = Path(out)
    try:
        summary = json.loads((path / SUMMARY).read_text())
        version, n, dim = str(summary["version"]), int(summary["items"]), int(summary["dim"])
        ids = json.loads((path / IDS).read_text())
        emb = np.asarray(np.load(path / EMBEDDINGS, mmap_mode="r" if mmap else None, allow_pickle=False))
        cold = np.load(path / COLD, allow_pickle=False)
        cats = np.load(path / CATEGORIES, allow_pickle=False) if summary.get("categories") else None
        with np.load(path / ENCODER, allow_pickle=False) as z:
            encoder = UserEncoder.from_arrays({k: z[k] for k in z.files})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"prepared model in {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    index = read_index_file(str(path / INDEX), "", index_config, mmap=mmap)
    index.version = str(summary.get("index_version") or f"{version}+{index.kind}")
    if not isinstance(ids, list) or len(ids) != n or emb.shape != (n, dim) or emb.dtype != np.float32 \
            or (index.size, index.dim) != (n, dim) or (cats is not None and cats.shape != (n,)) \
            or encoder.dim != dim or not ((cold >= 0) & (cold < n)).all():
        raise ArtifactError(f"prepared model in {path} does not match its summary ({n} x {dim})")
    item_ids = tuple([sys.intern(str(i)) for i in ids])
    index_of: dict[str, int] = {}
    for k, item in enumerate(item_ids):   # bytecode: the serving thread gets the lock every switch interval
        index_of[item] = k
    return PreparedModel(version, item_ids, index_of, emb, encoder, index, cats, cold,
                         str(summary.get("index_source", "built")))


def main(argv: list[str] | None = None) -> int:
    """``python -m streamrec.models.serving.prepfiles SRC OUT CONFIG_JSON``: :func:`prepare_files` in a
    child process; prints the summary as JSON, or one line on stderr and exit status 2 on refusal."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m streamrec.models.serving.prepfiles SRC OUT CONFIG_JSON", file=sys.stderr)
        return 64
    try:
        with_nice = json.loads(args[2])
        nice = int(with_nice.pop("nice", 0))
        n_cold, seed = int(with_nice.pop("n_cold_start", 50)), int(with_nice.pop("seed", 0))
        config = IndexConfig(**with_nice)
    except (ValueError, TypeError) as exc:
        print(f"bad prepare config: {exc}", file=sys.stderr)
        return 64
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)   # below the worker's loop: the preparation must not take its core
    try:
        summary = prepare_files(args[0], args[1], config, n_cold, seed)
    except ArtifactError as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - anything else that fails to prepare is refused, with its type
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
