"""Base-model artifacts: a directory with a manifest plus payload files, validated on load.

Layout of an artifact directory::

    manifest.json         version, created_at, dims, item count, metrics, sha256 of every payload file
    item_ids.json         JSON list of item ids (strings), row i of the embeddings belongs to item_ids[i]
    item_embeddings.npy   float32 array (item_count, dim), L2-normalised rows
    user_encoder.npz      optional: the learned user encoder (see models/encoder.py)
    item_categories.json  optional: JSON list, a category string (or null) per item, for diversity

``load_artifact`` checks the format tag, every sha256, the dtype, the shape against the manifest, and
that the values are finite; anything else raises :class:`ArtifactError` naming the problem. The same
files travel through Kafka as chunks (``stream``/``consumers`` do that); this module only reads and
writes directories and byte maps.

>>> import numpy as np, tempfile
>>> d = tempfile.mkdtemp()
>>> m = write_artifact(d, ["a", "b", "c"], np.eye(3, dtype=np.float32), version="v1")
>>> art = load_artifact(d)
>>> art.manifest.version, art.manifest.item_count, art.embeddings.shape
('v1', 3, (3, 3))
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

import numpy as np

from models.encoder import UserEncoder
from models.errors import ArtifactError

FORMAT = "streamrec-artifact/1"
MANIFEST = "manifest.json"
ITEM_IDS = "item_ids.json"
EMBEDDINGS = "item_embeddings.npy"
ENCODER = "user_encoder.npz"
CATEGORIES = "item_categories.json"
PAYLOAD_FILES = (ITEM_IDS, EMBEDDINGS, ENCODER, CATEGORIES)


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
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ArtifactError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ArtifactError(f"manifest format is {raw.get('format') if isinstance(raw, dict) else raw!r}, "
                                f"expected {FORMAT!r}")
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
                   categories: list[str | None] | None = None) -> dict[str, bytes]:
    """The payload files of an artifact as bytes, keyed by file name."""
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(item_ids):
        raise ArtifactError(f"embeddings have shape {emb.shape}, expected ({len(item_ids)}, dim)")
    if len(set(item_ids)) != len(item_ids):
        raise ArtifactError("item ids are not unique")
    files: dict[str, bytes] = {ITEM_IDS: json.dumps([str(i) for i in item_ids]).encode()}
    buf = io.BytesIO()
    np.save(buf, emb, allow_pickle=False)
    files[EMBEDDINGS] = buf.getvalue()
    if encoder is not None:
        buf = io.BytesIO()
        np.savez(buf, **encoder.to_arrays())  # type: ignore[arg-type]
        files[ENCODER] = buf.getvalue()
    if categories is not None:
        files[CATEGORIES] = json.dumps(categories).encode()
    return files


def build_manifest(files: Mapping[str, bytes], dim: int, item_count: int, version: str | None = None,
                   metrics: dict[str, Any] | None = None, data_range: dict[str, Any] | None = None,
                   gate: dict[str, Any] | None = None, libraries: dict[str, str] | None = None) -> Manifest:
    return Manifest(
        version=version or new_version(),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        dim=dim, item_count=item_count,
        files={name: sha256(data) for name, data in files.items()},
        metrics=metrics or {}, data_range=data_range or {}, gate=gate or {},
        libraries=libraries or {"numpy": np.__version__},
    )


def write_artifact(directory: str | os.PathLike[str], item_ids: list[str], embeddings: np.ndarray,
                   encoder: UserEncoder | None = None, categories: list[str | None] | None = None,
                   **manifest_fields: Any) -> Manifest:
    """Write an artifact directory (payload first, manifest last) and return its manifest."""
    files = encode_payload(item_ids, embeddings, encoder, categories)
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
    """Verify checksums, dtype, shape and values, and decode the payload."""
    for name in (ITEM_IDS, EMBEDDINGS):
        if name not in manifest.files:
            raise ArtifactError(f"artifact {manifest.version} has no {name}")
    for name, digest in manifest.files.items():
        if name not in files:
            raise ArtifactError(f"artifact {manifest.version}: payload {name} is missing")
        if sha256(files[name]) != digest:
            raise ArtifactError(f"artifact {manifest.version}: checksum of {name} does not match its manifest")
    try:
        item_ids = json.loads(files[ITEM_IDS])
        emb = np.load(io.BytesIO(files[EMBEDDINGS]), allow_pickle=False)
    except ValueError as exc:
        raise ArtifactError(f"artifact {manifest.version}: payload cannot be decoded: {exc}") from exc
    if emb.dtype != np.float32:
        raise ArtifactError(f"artifact {manifest.version}: embeddings are {emb.dtype}, expected float32")
    if emb.shape != (manifest.item_count, manifest.dim) or len(item_ids) != manifest.item_count:
        raise ArtifactError(
            f"artifact {manifest.version}: embeddings {emb.shape} and {len(item_ids)} ids do not match "
            f"the manifest ({manifest.item_count}, {manifest.dim})")
    if not np.isfinite(emb).all():
        raise ArtifactError(f"artifact {manifest.version}: embeddings contain NaN or infinity")
    encoder = None
    if ENCODER in files:
        with np.load(io.BytesIO(files[ENCODER]), allow_pickle=False) as z:
            encoder = UserEncoder.from_arrays({k: z[k] for k in z.files})
        if encoder.dim != manifest.dim:
            raise ArtifactError(f"artifact {manifest.version}: user encoder has dim {encoder.dim}, "
                                f"embeddings have {manifest.dim}")
    categories = json.loads(files[CATEGORIES]) if CATEGORIES in files else None
    return Artifact(manifest, [str(i) for i in item_ids], emb, encoder, categories)


def load_artifact(directory: str | os.PathLike[str]) -> Artifact:
    """Read and verify an artifact directory; raises :class:`ArtifactError` on any problem."""
    manifest, files = read_files(directory)
    return decode_artifact(manifest, files)


def random_artifact(directory: str | os.PathLike[str], n_items: int, dim: int, seed: int = 0,
                    clusters: int = 0, version: str | None = None) -> Manifest:
    """A synthetic artifact for tests and benchmarks: item ``i{k}``; with ``clusters`` the items of one
    cluster (``k % clusters``) lie near a common centre, so similar items share a cluster."""
    rng = np.random.default_rng(seed)
    if clusters:
        centres = rng.normal(size=(clusters, dim)).astype(np.float32)
        emb = centres[np.arange(n_items) % clusters] + 0.3 * rng.normal(size=(n_items, dim)).astype(np.float32)
    else:
        emb = rng.normal(size=(n_items, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cats: list[str | None] | None = [f"c{k % clusters}" for k in range(n_items)] if clusters else None
    return write_artifact(directory, [f"i{k}" for k in range(n_items)], emb, categories=cats, version=version)
