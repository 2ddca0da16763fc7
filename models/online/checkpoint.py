"""The checkpoint codec of the online learners: named parts of plain data, never pickle.

Each online learner serialises itself (``to_state()``) and rebuilds from its state (``load_state(state)``,
which checks every field and changes nothing when one is wrong); this module only turns states into
``(name, encoding, bytes)`` parts and back. It knows nothing of the learners' insides and imports none of
them: it takes a mapping of part name to anything with the :class:`Learner` shape.

========== ========= ================================================================================
part       encoding  content
========== ========= ================================================================================
items      npz       item table: ids, first-seen times, category codes and names
                     (:meth:`~models.online.itemtable.ItemTable.to_state`)
reranker   json      scaler counts, means and variances; classifier intercept, weights (and FM latents),
                     optimiser step counts; pairs learned; online AUC and log loss counts; the window of
                     recent pairs that decides whether the reranker serves
                     (:meth:`~models.online.reranker.OnlineReranker.to_state`)
drift      json      quality windows, counters, cool-down clock and the detector's whole state (ADWIN's
                     buckets, or Page-Hinkley's sums) (:meth:`~models.online.drift.DriftMonitor.to_state`)
mf         npz       river MF factors, biases, optimiser steps and random generator states
                     (:meth:`~models.online.river_mf.RiverMF.to_state`)
========== ========= ================================================================================

JSON is parsed strictly (no ``NaN``, an object at the top) and ``.npz`` arrays are read with
``allow_pickle=False`` after their headers were checked (:mod:`models.online.plainstate`). A part with any
other encoding, such as the ``river`` / ``pickle`` part that checkpoints of earlier streamrec versions
carried, is refused with the reason, never decoded, and its learners start fresh; every other part is
still restored. The Avro envelope that carries the parts to Kafka is ``stream/schemas/online_state.avsc``.

>>> from streamrec.models.online.drift import DriftConfig, DriftMonitor
>>> mon = DriftMonitor(DriftConfig())
>>> for k in range(500):
...     _ = mon.observe(k % 7 - 1, ts_ms=k)
>>> parts = dump_parts({"drift": mon})
>>> [(name, encoding) for name, encoding, _ in parts]
[('drift', 'json')]
>>> fresh = DriftMonitor(DriftConfig())
>>> outcome = load_parts({"drift": fresh}, parts + [("river", "pickle", b"\\x80\\x04K\\x01.")])
>>> outcome["drift"], outcome["river"][:45]
('restored', "refused: encoding 'pickle' is never decoded (")
>>> fresh.stats() == mon.stats() and fresh.detector.estimation == mon.detector.estimation
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from streamrec.models.errors import ArtifactError
from streamrec.models.online.plainstate import dumps_json, loads_json

#: version of the part layout, written in the envelope (1: with a pickled ``river`` part; 2: plain data only)
FORMAT = 2
ENCODINGS = ("json", "npz")
Part = tuple[str, str, bytes]


class Learner(Protocol):
    """What the codec needs of a learner: its encoding, its state, and a checked way back."""

    STATE_ENCODING: str     # "json": to_state() is a JSON-able dict; "npz": to_state() is .npz bytes

    def to_state(self) -> Any: ...

    def load_state(self, state: Any) -> str | None:
        """Install ``state`` or raise (``ArtifactError`` with the reason) without changing anything;
        may return a note on what could not be carried over."""
        ...


def dump_parts(learners: Mapping[str, Learner]) -> list[Part]:
    """One part per learner, in the mapping's order (see the module docstring)."""
    parts: list[Part] = []
    for name, learner in learners.items():
        encoding, state = learner.STATE_ENCODING, learner.to_state()
        if encoding == "json":
            data = dumps_json(state)
        elif encoding == "npz" and isinstance(state, bytes):
            data = state
        else:
            raise TypeError(f"learner {name!r} gave a {type(state).__name__} state for encoding {encoding!r}")
        parts.append((name, encoding, data))
    return parts


def load_parts(learners: Mapping[str, Learner], parts: Sequence[Part]) -> dict[str, str]:
    """Hand each part's state to its learner; returns ``{part: "restored" | "refused: why" | "skipped: why"}``.
    A refused part leaves its learner as it was (fresh, at start); the other parts are still restored."""
    outcome: dict[str, str] = {}
    twice = {name for name, n in Counter(name for name, _, _ in parts).items() if n > 1}
    for name, encoding, data in parts:
        outcome[name] = _load_one(learners, name, encoding, data, twice)
    return outcome


def _load_one(learners: Mapping[str, Learner], name: str, encoding: str, data: bytes, twice: set[str]) -> str:
    if encoding not in ENCODINGS:
        return (f"refused: encoding {encoding[:40]!r} is never decoded (parts are plain json or npz data); "
                "that learner starts fresh")
    if name in twice:
        return "refused: the checkpoint holds this part more than once; that learner starts fresh"
    learner = learners.get(name)
    if learner is None:
        return "skipped: this engine does not run that learner"
    if encoding != learner.STATE_ENCODING:
        return f"refused: a {encoding} part, but this learner's state is {learner.STATE_ENCODING}"
    try:
        note = learner.load_state(loads_json(data) if encoding == "json" else bytes(data))
    except (ArtifactError, ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        return f"refused: {str(exc)[:300]}"
    return "restored" if not note else f"restored; {note}"
