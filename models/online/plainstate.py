"""Plain-data state of the online learners: strict JSON and ``.npz`` readers that validate every field.

A learner's checkpoint state is either a JSON object (numbers, strings, lists, objects) or ``.npz`` bytes
(numeric and unicode arrays). Nothing here unpickles, imports or calls anything named by the data: JSON
is parsed without ``NaN`` / ``Infinity``, ``.npz`` members are read with ``allow_pickle=False`` after their
headers were checked (dtype, shape, size), and every field is read through :class:`Fields`, which raises
:class:`StateError` naming the field and what is wrong with it.

>>> f = Fields(loads_json(b'{"n": 3, "mean": 0.5, "names": ["a", "b"]}'), "example")
>>> f.integer("n"), f.number("mean"), f.strings("names")
(3, 0.5, ['a', 'b'])
>>> f.integer("mean")
Traceback (most recent call last):
...
streamrec.models.online.plainstate.StateError: example.mean must be an integer, not float
>>> loads_json(b'{"x": NaN}')
Traceback (most recent call last):
...
streamrec.models.online.plainstate.StateError: not plain JSON: NaN is not a number a checkpoint may hold
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from streamrec.models.errors import ArtifactError

MAX_NPZ_BYTES = 1 << 30          # uncompressed members of one .npz part, all together
MAX_INT = (1 << 63) - 1


class StateError(ArtifactError):
    """A checkpointed state cannot be used; the message names the field and what is wrong with it."""


def _no_constant(name: str) -> Any:
    raise StateError(f"not plain JSON: {name} is not a number a checkpoint may hold")


def dumps_json(state: Mapping[str, Any]) -> bytes:
    """Compact JSON of a plain-data state (raises ``ValueError`` on NaN or infinity)."""
    return json.dumps(state, allow_nan=False, separators=(",", ":")).encode()


def loads_json(data: bytes) -> dict[str, Any]:
    """A JSON object from ``data``: UTF-8, no ``NaN`` / ``Infinity``, an object at the top."""
    try:
        value = json.loads(bytes(data).decode("utf-8"), parse_constant=_no_constant)
    except StateError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StateError(f"not plain JSON: {str(exc)[:120]}") from exc
    if not isinstance(value, dict):
        raise StateError(f"not a JSON object but {type(value).__name__}")
    return value


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Fields:
    """Typed, checked reads of one JSON object (``where`` names it in errors)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise StateError(f"{where} must be an object, not {_type(data)}")
        self.data, self.where = data, where

    def _get(self, name: str) -> Any:
        if name not in self.data:
            raise StateError(f"{self.where}.{name} is missing")
        return self.data[name]

    def _err(self, name: str, what: str) -> StateError:
        return StateError(f"{self.where}.{name} {what}")

    def only(self, names: Iterable[str]) -> Fields:
        """Refuse fields other than ``names``."""
        extra = sorted(set(self.data) - set(names))
        if extra:
            raise StateError(f"{self.where} has unknown fields {extra[:5]}")
        return self

    def has(self, name: str) -> bool:
        return name in self.data

    def integer(self, name: str, lo: int = 0, hi: int = MAX_INT) -> int:
        return check_int(self._get(name), f"{self.where}.{name}", lo, hi)

    def number(self, name: str, lo: float = -math.inf, hi: float = math.inf) -> float:
        return check_float(self._get(name), f"{self.where}.{name}", lo, hi)

    def flag(self, name: str) -> bool:
        v = self._get(name)
        if not isinstance(v, bool):
            raise self._err(name, f"must be true or false, not {_type(v)}")
        return v

    def text(self, name: str, choices: Iterable[str] | None = None, max_len: int = 256) -> str:
        v = self._get(name)
        if not isinstance(v, str) or len(v) > max_len:
            raise self._err(name, f"must be a string of at most {max_len} characters, not {_type(v)}")
        if choices is not None and v not in set(choices):
            raise self._err(name, f"is {v!r}; expected one of {sorted(choices)}")
        return v

    def array(self, name: str, max_len: int, length: int | None = None) -> list[Any]:
        v = self._get(name)
        if not isinstance(v, list):
            raise self._err(name, f"must be a list, not {_type(v)}")
        if len(v) > max_len or (length is not None and len(v) != length):
            want = f"exactly {length}" if length is not None else f"at most {max_len}"
            raise self._err(name, f"has {len(v)} entries; expected {want}")
        return v

    def ints(self, name: str, max_len: int, length: int | None = None, lo: int = 0, hi: int = MAX_INT) -> list[int]:
        where = f"{self.where}.{name}"
        return [check_int(v, f"{where}[{k}]", lo, hi) for k, v in enumerate(self.array(name, max_len, length))]

    def floats(self, name: str, max_len: int, length: int | None = None, lo: float = -math.inf,
               hi: float = math.inf) -> list[float]:
        where = f"{self.where}.{name}"
        return [check_float(v, f"{where}[{k}]", lo, hi) for k, v in enumerate(self.array(name, max_len, length))]

    def strings(self, name: str, max_len: int = 10_000, item_len: int = 256) -> list[str]:
        out = self.array(name, max_len)
        for k, v in enumerate(out):
            if not isinstance(v, str) or len(v) > item_len:
                raise self._err(f"{name}[{k}]", f"must be a string of at most {item_len} characters")
        return out

    def obj(self, name: str) -> Fields:
        return Fields(self._get(name), f"{self.where}.{name}")

    def float_map(self, name: str, keys: Iterable[str], bound: float = math.inf,
                  hi: float | None = None) -> dict[str, float]:
        """An object of finite numbers whose keys are among ``keys``: each in ``[-bound, bound]``, or in
        ``[bound, hi]`` when ``hi`` is given."""
        f = self.obj(name)
        f.only(keys)
        lo, up = (-bound, bound) if hi is None else (bound, hi)
        return {k: f.number(k, lo, up) for k in f.data}


def check_int(v: Any, where: str, lo: int = 0, hi: int = MAX_INT) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise StateError(f"{where} must be an integer, not {_type(v)}")
    if not lo <= v <= hi:
        raise StateError(f"{where} is {v}; expected {lo} .. {hi}")
    return v


def check_float(v: Any, where: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise StateError(f"{where} must be a number, not {_type(v)}")
    x = float(v)
    if not math.isfinite(x) or not lo <= x <= hi:
        raise StateError(f"{where} is {x}; expected a finite number in [{lo}, {hi}]")
    return x


# --- .npz ------------------------------------------------------------------------------------------
#: dtype kinds a state array may have: f float, i signed, u unsigned, b bool, U unicode (never O or V)
KINDS = frozenset("fiubU")


def load_npz(data: bytes, spec: Mapping[str, tuple[str, int]], where: str,
             max_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """The arrays of ``.npz`` bytes, exactly the names of ``spec`` (``name: (dtype kinds, ndim)``),
    each header checked before its data is read; float arrays must be finite. Never unpickles."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise StateError(f"{where} is not an .npz archive: {exc}") from exc
    with zf:
        members = {info.filename: info for info in zf.infolist()}
        names = {n.removesuffix(".npy") for n in members}
        if names != set(spec) or any(not n.endswith(".npy") for n in members):
            raise StateError(f"{where} holds arrays {sorted(names)[:12]}; expected {sorted(spec)}")
        if sum(info.file_size for info in members.values()) > max_bytes:
            raise StateError(f"{where} unpacks to more than {max_bytes} bytes")
        out: dict[str, np.ndarray] = {}
        for name, (kinds, ndim) in spec.items():
            info = members[name + ".npy"]
            try:
                with zf.open(info) as fp:
                    version = np.lib.format.read_magic(fp)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
                    else:
                        raise StateError(f"{where}.{name}: .npy format {version} is not accepted")
                    if dtype.kind not in kinds or dtype.kind not in KINDS or dtype.fields is not None:
                        raise StateError(f"{where}.{name} has dtype {dtype}; expected kind {kinds}")
                    if len(shape) != ndim:
                        raise StateError(f"{where}.{name} has {len(shape)} dimensions; expected {ndim}")
                    if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
                        raise StateError(f"{where}.{name}: the header claims more data than the member holds")
                with zf.open(info) as fp:
                    array = np.lib.format.read_array(fp, allow_pickle=False)
            except StateError:
                raise
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError, TypeError) as exc:
                raise StateError(f"{where}.{name} cannot be read: {str(exc)[:160]}") from exc
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise StateError(f"{where}.{name} holds NaN or infinite values")
            out[name] = array
    return out


def save_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``.npz`` bytes of ``arrays`` (uncompressed; no object arrays: numpy refuses to pickle them here)."""
    for name, a in arrays.items():
        if np.asarray(a).dtype.kind not in KINDS:
            raise TypeError(f"array {name} has dtype {np.asarray(a).dtype}; state arrays are plain numbers or text")
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return buf.getvalue()


def unique(values: list[str], where: str) -> list[str]:
    if len(set(values)) != len(values):
        raise StateError(f"{where} lists an id more than once")
    return values
