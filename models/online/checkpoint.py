"""Checkpoint parts of the online learners: what survives a worker restart, and how it is encoded.

An :class:`~models.online.layer.OnlineLayer` is saved as named parts, each ``(name, encoding, bytes)``:

========== ========= ================================================================================
part       encoding  content
========== ========= ================================================================================
reranker   json      river's own state of the pipeline: the scaler's counts, means and variances
                     (``StandardScaler._from_state`` form), the classifier's weights and intercept (and FM
                     latents), optimiser step counts, pairs learned
drift      json      quality windows, counters and the cool-down clock of the drift monitor
river      pickle    river objects with no state API: the drift detector, online ROCAUC and LogLoss (and
                     the recent pairs that decide whether the reranker or the blend serves)
items      npz       item table (first-seen times, categories)
mf         npz       river MF factors (:meth:`models.online.river_mf.RiverMF.to_bytes`, no pickle)
========== ========= ================================================================================

Only the ``river`` part is a pickle, and :func:`load_parts` refuses it unless the writer's river version
equals this process's (river objects are not pickle-compatible across versions); the learners it holds
then start fresh while everything else is restored. JSON and npz parts are independent of river's
internals. The Avro envelope that carries the parts to Kafka is ``stream/schemas/online_state.avsc``.

>>> import river
>>> from streamrec.models.engine.recommender import EngineConfig, Recommender
>>> layer = Recommender(EngineConfig(drift_detector="adwin")).online
>>> parts = dump_parts(layer)
>>> [(name, encoding) for name, encoding, _ in parts]
[('drift', 'json'), ('river', 'pickle')]
>>> load_parts(layer, parts, written_by=river.__version__)
{'drift': 'restored', 'river': 'restored'}
>>> load_parts(layer, parts, written_by="0.1.0")["river"][:40]
'refused: pickled by river 0.1.0, this pr'
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import river
from river import facto

from streamrec.models.errors import ArtifactError
from streamrec.models.online.itemtable import ItemTable
from streamrec.models.online.river_mf import RiverMF

if TYPE_CHECKING:
    from streamrec.models.online.layer import OnlineLayer
    from streamrec.models.online.reranker import OnlineReranker

FORMAT = 1
Part = tuple[str, str, bytes]


def _floats(d: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in d.items()}


def reranker_state(rr: OnlineReranker) -> dict[str, Any]:
    sc, clf = rr.scaler, rr.classifier
    state: dict[str, Any] = {
        "format": FORMAT, "model": rr.config.model, "names": list(rr.names), "pairs": rr.pairs,
        "positives": rr.positives,
        "scaler": {"counts": {str(k): int(v) for k, v in sc.counts.items()}, "means": _floats(sc.means),
                   "vars": _floats(sc.vars)},
        "intercept": float(clf.intercept),
    }
    if isinstance(clf, facto.FMClassifier):
        latents = {str(k): np.asarray(v).tolist() for k, v in clf.latents.items()}
        state.update(weights=_floats(clf.weights), latents=latents,
                     steps=[clf.weight_optimizer.n_iterations, clf.latent_optimizer.n_iterations])
    else:
        state.update(weights=_floats(clf._weights), steps=[clf.optimizer.n_iterations])
    return state


def load_reranker_state(rr: OnlineReranker, state: dict[str, Any]) -> None:
    if state.get("format") != FORMAT or state.get("model") != rr.config.model:
        raise ArtifactError(f"the reranker checkpoint is a {state.get('model')!r} model (format "
                            f"{state.get('format')}); this engine runs {rr.config.model!r}")
    sc, clf = rr.scaler, rr.classifier
    for table in (sc.counts, sc.means, sc.vars):
        table.clear()
    sc.counts.update(state["scaler"]["counts"])
    sc.means.update(state["scaler"]["means"])
    sc.vars.update(state["scaler"]["vars"])
    clf.intercept = float(state["intercept"])
    if isinstance(clf, facto.FMClassifier):
        clf.weights.clear()
        clf.weights.update(state["weights"])
        clf.latents.clear()
        clf.latents.update({k: np.array(v, dtype=np.float64) for k, v in state["latents"].items()})
        clf.weight_optimizer.n_iterations, clf.latent_optimizer.n_iterations = state["steps"]
    else:
        for name in list(clf._weights.to_dict()):
            del clf._weights[name]
        for name, value in state["weights"].items():
            clf._weights[name] = value
        clf.optimizer.n_iterations = state["steps"][0]
    rr.pairs, rr.positives = int(state["pairs"]), int(state["positives"])


def dump_parts(layer: OnlineLayer) -> list[Part]:
    """The checkpoint parts of ``layer`` (see the module docstring)."""
    parts: list[Part] = []
    objects: dict[str, Any] = {}
    if layer.reranker is not None:
        parts.append(("items", "npz", layer.items.to_bytes()))
        parts.append(("reranker", "json", json.dumps(reranker_state(layer.reranker)).encode()))
        objects.update(auc=layer.reranker.auc, logloss=layer.reranker.logloss, recent=layer.reranker.recent)
    if layer.drift is not None:
        d = layer.drift
        parts.append(("drift", "json", json.dumps({
            "format": FORMAT, "detector": d.config.detector, "evaluated": d.evaluated, "detections": d.detections,
            "signals": d.signals, "suppressed": d.suppressed, "last_signal": d._last_signal, "window": d._win,
            "windows": list(d.windows), "mean": d._mean}).encode()))
        objects["detector"] = d.detector
    if objects:
        parts.append(("river", "pickle", pickle.dumps(objects, protocol=pickle.HIGHEST_PROTOCOL)))
    if layer.mf is not None:
        parts.append(("mf", "npz", layer.mf.to_bytes()))
    return parts


def load_parts(layer: OnlineLayer, parts: Sequence[Part], written_by: str) -> dict[str, str]:
    """Install ``parts`` into ``layer``; returns ``{name: "restored" | why it was refused}``."""
    outcome: dict[str, str] = {}
    for name, encoding, data in parts:
        try:
            outcome[name] = _load_one(layer, name, encoding, data, written_by)
        except (ArtifactError, ValueError, KeyError, TypeError, OSError, pickle.UnpicklingError,
                AttributeError, EOFError) as exc:
            outcome[name] = f"refused: {exc}"
    layer._serve = layer._reranker_wins()
    if layer.reranker is not None:
        layer._next_gate = max(layer.config.warmup_pairs, layer.reranker.pairs + 1_000)
    return outcome


def _load_one(layer: OnlineLayer, name: str, encoding: str, data: bytes, written_by: str) -> str:
    if name == "items":
        layer.items = ItemTable.from_bytes(data, layer.config.item_table)
    elif name == "reranker" and layer.reranker is not None:
        load_reranker_state(layer.reranker, json.loads(data))
    elif name == "drift" and layer.drift is not None:
        st, d = json.loads(data), layer.drift
        if st.get("detector") != d.config.detector:
            return f"refused: written by a {st.get('detector')!r} monitor, this engine runs {d.config.detector!r}"
        d.evaluated, d.detections, d.signals, d.suppressed = (st["evaluated"], st["detections"], st["signals"],
                                                              st["suppressed"])
        d._last_signal = tuple(st["last_signal"]) if st["last_signal"] else None  # type: ignore[assignment]
        d._win, d._mean = list(st["window"]), float(st["mean"])
        d.windows.clear()
        d.windows.extend(st["windows"])
    elif name == "river":
        if encoding != "pickle" or written_by != river.__version__:
            return (f"refused: pickled by river {written_by}, this process runs river {river.__version__}; "
                    "the drift detector and online metrics start fresh")
        objects = pickle.loads(data)  # noqa: S301 - same river version, our own topic (see the docstring)
        if layer.reranker is not None and "auc" in objects:
            layer.reranker.auc, layer.reranker.logloss = objects["auc"], objects["logloss"]
            layer.reranker.recent = objects.get("recent", layer.reranker.recent)
        if layer.drift is not None and "detector" in objects:
            if type(objects["detector"]) is not type(layer.drift.detector):
                return "refused: the pickled drift detector is of another kind"
            layer.drift.detector = objects["detector"]
    elif name == "mf" and layer.mf is not None:
        mf = RiverMF.from_bytes(data)
        if mf.config.n_factors != layer.mf.config.n_factors:
            return f"refused: river MF with {mf.config.n_factors} factors, this engine uses {layer.mf.config.n_factors}"
        layer.mf = mf
    else:
        return "skipped: this engine does not run that learner"
    return "restored"
