"""Base-model artifacts: a directory with a manifest plus payload files, validated on load.

Layout of an artifact directory::

    manifest.json         version, created_at, dims, item count, metrics, sha256 of every payload file,
                          and ``index``: the build parameters of the shipped item index ({} without one)
    item_ids.json         JSON list of item ids (strings), row i of the embeddings belongs to item_ids[i]
    item_embeddings.npy   float32 array (item_count, dim), L2-normalised rows; absent when the index is shipped
    item_index.faiss      optional: the serving index, prebuilt (``models.base.index.serialize_index``)
    user_encoder.npz      optional: the learned user encoder (see models/encoder.py)
    item_categories.json  optional: JSON list, a category string (or null) per item, for diversity

Why ship the index: building HNSW for 100k x 64 items takes a worker 5 s on a quiet core and 20+ s when
two workers build at once, and the build competes with the worker's hot path; deserializing it takes
~0.3 s with the GIL released. The trainer builds it once instead (``write_artifact(..., with_index=...)``).

Why the embeddings are then left out: the index's flat storage holds the very same float32 rows, so
:func:`decode_artifact` copies them out (bit for bit) instead of shipping them twice. For 100k x 64 that
is 55 MB instead of 80 MB through Kafka (the transfer to two workers took 0.67 s instead of 0.90 s,
medians of six runs on the 2-core reference machine). Such an artifact says format
``streamrec-artifact/2``, so a reader that predates shipped indexes refuses it by name instead of
missing a file; an artifact without an index (or with both files) stays ``streamrec-artifact/1``.

``load_artifact`` checks the format tag, every sha256, the dtype, the shape against the manifest, and
that the values are finite (vectors read from a shipped index must also be L2-normalised rows, and the
index must be what the manifest says); anything else raises :class:`ArtifactError` naming the problem.
``Artifact.embeddings`` is a float32 (item_count, dim) array either way, and ``Artifact.index`` the
deserialized index (or ``None``). The same files travel through Kafka as chunks (``stream``/``consumers``
do that); this module only reads and writes directories and byte maps.

>>> import numpy as np, tempfile
>>> d = tempfile.mkdtemp()
>>> m = write_artifact(d, ["a", "b", "c"], np.eye(3, dtype=np.float32), version="v1")
>>> art = load_artifact(d)
>>> art.manifest.version, art.manifest.item_count, art.embeddings.shape, art.index
('v1', 3, (3, 3), None)
>>> m = write_artifact(d, ["a", "b", "c"], np.eye(3, dtype=np.float32), version="v2", with_index=IndexConfig())
>>> art = load_artifact(d)
>>> sorted(m.files), m.index, art.index.version, art.embeddings.shape
(['item_ids.json', 'item_index.faiss'], {'kind': 'flat'}, 'v2+flat', (3, 3))
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from streamrec.models.base.encoder import UserEncoder
from streamrec.models.base.index import IndexConfig, ItemIndex, build_index, index_vectors, load_index, serialize_index
from streamrec.models.errors import ArtifactError

FORMAT = "streamrec-artifact/1"
FORMAT_INDEX_ONLY = "streamrec-artifact/2"   # embeddings only inside the shipped index
FORMATS = (FORMAT, FORMAT_INDEX_ONLY)
MANIFEST = "manifest.json"
ITEM_IDS = "item_ids.json"
EMBEDDINGS = "item_embeddings.npy"
INDEX = "item_index.faiss"
ENCODER = "user_encoder.npz"
CATEGORIES = "item_categories.json"
PAYLOAD_FILES = (ITEM_IDS, EMBEDDINGS, INDEX, ENCODER, CATEGORIES)
NORM_TOLERANCE = 1e-3   # |row norm - 1| allowed for vectors read from a shipped index


@dataclass(frozen=True)
class Manifest:
    version: str
    created_at: str
    dim: int
    item_count: int
    files: dict[str, str]                     # payload file name -> sha256 hex
    metrics: dict[str, Any] = field(default_factory=dict)
    data_range: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)   # build parameters of item_index.faiss, {} without
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ArtifactError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("format") not in FORMATS:
            raise ArtifactError(f"manifest format is {raw.get('format') if isinstance(raw, dict) else raw!r}, "
                                f"expected one of {', '.join(FORMATS)}: upgrade streamrec on this host")
        try:
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except TypeError as exc:
            raise ArtifactError(f"manifest is missing fields: {exc}") from exc


@dataclass(frozen=True)
class Artifact:
    manifest: Manifest
    item_ids: list[str]
    embeddings: np.ndarray
    encoder: UserEncoder | None = None
    categories: list[str | None] | None = None
    index: ItemIndex | None = None          # the shipped index, deserialized (searched with IndexConfig())

    @property
    def version(self) -> str:
        return self.manifest.version


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_version() -> str:
    """A sortable version string: UTC time to the millisecond."""
    t = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f"{int(t * 1000) % 1000:03d}Z"


def encode_payload(item_ids: list[str], embeddings: np.ndarray, encoder: UserEncoder | None = None,
                   categories: list[str | None] | None = None, index: ItemIndex | None = None) -> dict[str, bytes]:
    """The payload files of an artifact as bytes, keyed by file name.

    With ``index`` (built from ``embeddings``) the index is shipped and the embeddings travel inside it
    only; it must hold exactly these rows, L2-normalised, or a worker would refuse the artifact.
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(item_ids):
        raise ArtifactError(f"embeddings have shape {emb.shape}, expected ({len(item_ids)}, dim)")
    if len(set(item_ids)) != len(item_ids):
        raise ArtifactError("item ids are not unique")
    files: dict[str, bytes] = {ITEM_IDS: json.dumps([str(i) for i in item_ids]).encode()}
    if index is None:
        buf = io.BytesIO()
        np.save(buf, emb, allow_pickle=False)
        files[EMBEDDINGS] = buf.getvalue()
    else:
        _check_index_holds(index, emb)
        files[INDEX] = serialize_index(index)
    if encoder is not None:
        buf = io.BytesIO()
        np.savez(buf, **encoder.to_arrays())  # type: ignore[arg-type]
        files[ENCODER] = buf.getvalue()
    if categories is not None:
        files[CATEGORIES] = json.dumps(categories).encode()
    return files


def _check_index_holds(index: ItemIndex, emb: np.ndarray) -> None:
    """Refuse (at write time, where it can be fixed) an index that is not exactly ``emb``, normalised."""
    if (index.size, index.dim) != emb.shape or not np.array_equal(index_vectors(index), emb):
        raise ArtifactError(f"the index to ship holds {index.size} x {index.dim} vectors that are not the "
                            f"artifact's {emb.shape} embeddings; build it from these embeddings")
    _check_normalised(emb, "embeddings to ship inside the index")


def _check_normalised(emb: np.ndarray, what: str) -> None:
    norms = np.linalg.norm(emb, axis=1)
    if len(norms) and not (np.abs(norms - 1.0) <= NORM_TOLERANCE).all():
        worst = float(norms[np.argmax(np.abs(norms - 1.0))])
        raise ArtifactError(f"{what} are not L2-normalised rows (a row has norm {worst:.4g}); "
                            "normalise every row before building the index")


def build_manifest(files: Mapping[str, bytes], dim: int, item_count: int, version: str | None = None,
                   metrics: dict[str, Any] | None = None, data_range: dict[str, Any] | None = None,
                   gate: dict[str, Any] | None = None, libraries: dict[str, str] | None = None,
                   index: dict[str, Any] | None = None) -> Manifest:
    """The manifest of ``files``; ``index`` is the shipped index's :attr:`ItemIndex.params` (required
    with an ``item_index.faiss`` payload, and the faiss version is recorded next to the libraries)."""
    if (INDEX in files) != bool(index):
        raise ArtifactError(f"give the index parameters exactly when {INDEX} is in the payload")
    libs = dict(libraries or {"numpy": np.__version__})
    if INDEX in files:
        libs.setdefault("faiss", faiss.__version__)
    return Manifest(
        version=version or new_version(),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        dim=dim, item_count=item_count,
        files={name: sha256(data) for name, data in files.items()},
        metrics=metrics or {}, data_range=data_range or {}, gate=gate or {},
        libraries=libs, index=dict(index or {}),
        format=FORMAT if EMBEDDINGS in files else FORMAT_INDEX_ONLY,
    )


def write_artifact(directory: str | os.PathLike[str], item_ids: list[str], embeddings: np.ndarray,
                   encoder: UserEncoder | None = None, categories: list[str | None] | None = None,
                   with_index: IndexConfig | None = None, **manifest_fields: Any) -> Manifest:
    """Write an artifact directory (payload first, manifest last) and return its manifest.

    ``with_index``: build the item index with this config here and ship it (``kind="auto"`` resolves for
    the item count, as a worker would); the build seconds go to ``metrics["index_build_s"]``.
    """
    index = None
    if with_index is not None:
        started = time.perf_counter()
        index = build_index(embeddings, with_index)
        metrics = {**(manifest_fields.pop("metrics", None) or {}),
                   "index_build_s": round(time.perf_counter() - started, 3)}
        manifest_fields = {**manifest_fields, "metrics": metrics, "index": index.params}
    files = encode_payload(item_ids, embeddings, encoder, categories, index)
    manifest = build_manifest(files, dim=int(embeddings.shape[1]), item_count=len(item_ids), **manifest_fields)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    (path / MANIFEST).write_text(manifest.to_json())
    return manifest


def read_files(directory: str | os.PathLike[str]) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest and raw payload bytes of an artifact directory (not yet verified)."""
    path = Path(directory)
    if not (path / MANIFEST).is_file():
        raise ArtifactError(f"{path} has no {MANIFEST}: not a streamrec artifact directory")
    manifest = Manifest.from_json((path / MANIFEST).read_text())
    files = {}
    for name in manifest.files:
        if not (path / name).is_file():
            raise ArtifactError(f"{path} is missing {name}, which its manifest lists")
        files[name] = (path / name).read_bytes()
    return manifest, files


def decode_artifact(manifest: Manifest, files: Mapping[str, bytes]) -> Artifact:
    """Verify checksums, dtype, shape and values, and decode the payload (the shipped index included)."""
    _check_listed(manifest)
    for name, digest in manifest.files.items():
        if name not in files:
            raise ArtifactError(f"artifact {manifest.version}: payload {name} is missing")
        if sha256(files[name]) != digest:
            raise ArtifactError(f"artifact {manifest.version}: checksum of {name} does not match its manifest")
    try:
        item_ids = json.loads(files[ITEM_IDS])
        emb = np.load(io.BytesIO(files[EMBEDDINGS]), allow_pickle=False) if EMBEDDINGS in files else None
    except ValueError as exc:
        raise ArtifactError(f"artifact {manifest.version}: payload cannot be decoded: {exc}") from exc
    index = _decode_index(manifest, files[INDEX]) if INDEX in manifest.files else None
    if emb is None:
        if index is None:  # _check_listed lets one of the two through
            raise ArtifactError(f"artifact {manifest.version}: neither embeddings nor an index")
        emb = index_vectors(index)
    _check_embeddings(manifest, emb, len(item_ids))
    if index is not None:
        _check_index_agrees(manifest, index, emb, from_file=EMBEDDINGS in files)
    encoder = None
    if ENCODER in files:
        with np.load(io.BytesIO(files[ENCODER]), allow_pickle=False) as z:
            encoder = UserEncoder.from_arrays({k: z[k] for k in z.files})
        if encoder.dim != manifest.dim:
            raise ArtifactError(f"artifact {manifest.version}: user encoder has dim {encoder.dim}, "
                                f"embeddings have {manifest.dim}")
    categories = json.loads(files[CATEGORIES]) if CATEGORIES in files else None
    return Artifact(manifest, [str(i) for i in item_ids], emb, encoder, categories, index)


def _check_listed(manifest: Manifest) -> None:
    """The manifest lists the ids, and the embeddings or an index (with its parameters) that carries them."""
    v = manifest.version
    if ITEM_IDS not in manifest.files:
        raise ArtifactError(f"artifact {v} has no {ITEM_IDS}; republish the model")
    if EMBEDDINGS not in manifest.files and INDEX not in manifest.files:
        raise ArtifactError(f"artifact {v} has neither {EMBEDDINGS} nor {INDEX}; republish the model")
    if (INDEX in manifest.files) != bool(manifest.index):
        raise ArtifactError(f"artifact {v}: the manifest's index parameters ({manifest.index}) and its "
                            f"{INDEX} payload must come together; republish the model")


def _decode_index(manifest: Manifest, data: bytes) -> ItemIndex:
    index = load_index(data, manifest.version)
    if index.params != manifest.index:
        raise ArtifactError(f"artifact {manifest.version}: the manifest describes the index as {manifest.index} "
                            f"but {INDEX} holds {index.params}; republish the model")
    return index


def _check_embeddings(manifest: Manifest, emb: np.ndarray, n_ids: int) -> None:
    v = manifest.version
    if emb.dtype != np.float32:
        raise ArtifactError(f"artifact {v}: embeddings are {emb.dtype}, expected float32")
    if emb.shape != (manifest.item_count, manifest.dim) or n_ids != manifest.item_count:
        raise ArtifactError(
            f"artifact {v}: embeddings {emb.shape} and {n_ids} ids do not match "
            f"the manifest ({manifest.item_count}, {manifest.dim})")
    if not np.isfinite(emb).all():
        raise ArtifactError(f"artifact {v}: embeddings contain NaN or infinity")


def _check_index_agrees(manifest: Manifest, index: ItemIndex, emb: np.ndarray, from_file: bool) -> None:
    """Vectors read from the index must be normalised rows; with both files present they must agree."""
    if not from_file:
        _check_normalised(emb, f"artifact {manifest.version}: the vectors in {INDEX}")
    elif not np.array_equal(index_vectors(index), emb):
        raise ArtifactError(f"artifact {manifest.version}: {INDEX} does not hold the vectors of {EMBEDDINGS}; "
                            "republish the model")


def load_artifact(directory: str | os.PathLike[str]) -> Artifact:
    """Read and verify an artifact directory; raises :class:`ArtifactError` on any problem."""
    manifest, files = read_files(directory)
    return decode_artifact(manifest, files)


def random_artifact(directory: str | os.PathLike[str], n_items: int, dim: int, seed: int = 0,
                    clusters: int = 0, version: str | None = None,
                    with_index: IndexConfig | None = None) -> Manifest:
    """A synthetic artifact for tests and benchmarks: item ``i{k}``; with ``clusters`` the items of one
    cluster (``k % clusters``) lie near a common centre, so similar items share a cluster. ``with_index``
    ships a prebuilt index, as the trainer does (see :func:`write_artifact`)."""
    rng = np.random.default_rng(seed)
    if clusters:
        centres = rng.normal(size=(clusters, dim)).astype(np.float32)
        emb = centres[np.arange(n_items) % clusters] + 0.3 * rng.normal(size=(n_items, dim)).astype(np.float32)
    else:
        emb = rng.normal(size=(n_items, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cats: list[str | None] | None = [f"c{k % clusters}" for k in range(n_items)] if clusters else None
    return write_artifact(directory, [f"i{k}" for k in range(n_items)], emb, categories=cats, version=version,
                          with_index=with_index)
