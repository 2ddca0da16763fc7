"""The learned reranker: a classifier behind a standard scaler, trained online on labelled pairs.

The model is river's ``preprocessing.StandardScaler() | linear_model.LogisticRegression`` (``"logreg"``, the
default) or ``... | facto.FMClassifier`` (``"fm"``: pairwise feature interactions, ~15x slower to learn), chosen
by :attr:`RerankerConfig.model`. The default model runs without river: :class:`LinearState` holds the
scaler's running counts, means and variances and the classifier's weights, intercept and step count as
numpy vectors and learns with river's own arithmetic (plain SGD, river's log-loss gradient and clipping),
row by row in the same order (tested equal to river's ``learn_one``), so a worker with the default settings
never imports river (it pulls in scipy: ~60 MB of resident memory). :attr:`OnlineReranker.pipeline` builds
the equal river pipeline on demand (imported then), for inspection and tests. The ``"fm"`` model is river's
own pipeline, learned through ``learn_one`` (with a sample weight). Scoring never calls ``predict_one`` per
candidate: :meth:`OnlineReranker.score` scores the whole candidate matrix with numpy, which gives river's
own probabilities (tested against ``predict_proba_one``).

:meth:`OnlineReranker.learn` is test, then train: it scores the pairs with the current weights, updates
the online ``ROCAUC`` and ``LogLoss`` with those predictions, and only then learns them.

>>> import numpy as np
>>> rr = OnlineReranker(RerankerConfig(seed=1), names=("a", "b"))
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 2)).astype(np.float32)
>>> y = X[:, 0] > 0                                   # only feature "a" matters
>>> rr.learn(X, y)
>>> p = rr.score(np.array([[2.0, 0.0], [-2.0, 0.0]], dtype=np.float32))
>>> bool(p[0] > 0.8 > 0.2 > p[1]), rr.stats()["reranker_pairs"]
(True, 400)
>>> x = {"a": 0.3, "b": -1.2}
>>> round(float(rr.score(np.array([[0.3, -1.2]]))[0]), 6) == round(rr.pipeline.predict_proba_one(x)[True], 6)
True
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.models.errors import ConfigError
from streamrec.models.online.plainstate import Fields, StateError, check_int

if TYPE_CHECKING:
    from river import compose, linear_model

MODELS = ("logreg", "fm")


@dataclass(frozen=True)
class RerankerConfig:
    """The classifier and how it learns. ``lr``: SGD step of the weights (and FM latents); ``l2``: weight
    decay; ``fm_factors``: latent size of the ``"fm"`` model."""

    model: str = "logreg"
    lr: float = 0.05
    l2: float = 1e-4
    intercept_lr: float = 0.01
    fm_factors: int = 4
    clip_gradient: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"reranker model is {self.model!r}; use one of {', '.join(MODELS)}")
        if self.lr <= 0 or self.l2 < 0 or self.intercept_lr < 0 or self.fm_factors < 1:
            raise ConfigError("reranker lr must be positive, l2 and intercept_lr not negative, fm_factors >= 1")


def make_pipeline(config: RerankerConfig) -> compose.Pipeline:
    """The river pipeline for ``config`` (scaler, then the classifier); imports river."""
    from river import facto, linear_model, optim, preprocessing

    if config.model == "fm":
        clf: Any = facto.FMClassifier(
            n_factors=config.fm_factors, weight_optimizer=optim.SGD(config.lr),
            latent_optimizer=optim.SGD(config.lr), l2_weight=config.l2, l2_latent=config.l2,
            intercept_lr=config.intercept_lr, clip_gradient=config.clip_gradient, seed=config.seed)
    else:
        clf = linear_model.LogisticRegression(
            optimizer=optim.SGD(config.lr), l2=config.l2, intercept_lr=config.intercept_lr,
            clip_gradient=config.clip_gradient)
    return preprocessing.StandardScaler() | clf


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))


class LinearState:
    """``StandardScaler | LogisticRegression`` (plain SGD, constant rates, no L1) as numpy vectors over the
    feature names: per-feature count, mean and variance of the scaler, weights, intercept and step count of
    the classifier. :meth:`learn` is river's ``learn_one`` of that pipeline, row by row in the same order
    (the same running means and variances, weights and intercept to float rounding;
    ``tests/unit/test_reranker.py``); a ``learn`` of 100 pairs x 40 features takes a few ms where river's
    dict loop took 21 ms."""

    def __init__(self, config: RerankerConfig, n: int) -> None:
        self.lr, self.ilr = float(config.lr), float(config.intercept_lr)
        self.l2, self.clip = float(config.l2), float(config.clip_gradient)
        self.count = np.zeros(n, dtype=np.float64)
        self.mean = np.zeros(n, dtype=np.float64)
        self.var = np.zeros(n, dtype=np.float64)
        self.w = np.zeros(n, dtype=np.float64)
        self.b = 0.0
        self.steps = 0
        self.version = 0          # bumped by every learn: what a cached fold of the scaler is keyed on

    def learn(self, X: np.ndarray, labels: list[bool], weights: list[float]) -> None:
        """river's ``learn_one`` for each row of ``X`` (float64) in order: the same operations on the same
        values as :meth:`learn_rowwise`, so the same bits, in two passes. The scaler's running moments do
        not depend on the weights, so the first pass runs them row by row into one matrix each (in-place
        numpy calls, no temporaries) and standardises every row at once; the second pass is the SGD of
        the weights, the only part where each row needs the one before."""
        n = len(X)
        if n == 0:
            return
        self.version += 1
        f = X.shape[1]
        count, mean, var = self.count, self.mean, self.var
        C = count + np.arange(1.0, n + 1.0)[:, None]          # the counts after each row (integers: exact)
        M, V = np.empty((n, f)), np.empty((n, f))
        d, t = np.empty(f), np.empty(f)
        sub, div, add, mul = np.subtract, np.divide, np.add, np.multiply
        m_prev, v_prev = mean, var
        for k in range(n):
            x, c, m_k, v_k = X[k], C[k], M[k], V[k]
            sub(x, m_prev, out=d)                  # delta = x - mean
            div(d, c, out=t)
            add(m_prev, t, out=m_k)                # mean += delta / count
            sub(x, m_k, out=t)
            mul(d, t, out=t)
            sub(t, v_prev, out=t)
            div(t, c, out=t)
            add(v_prev, t, out=v_k)                # var += (delta * (x - mean) - var) / count
            m_prev, v_prev = m_k, v_k
        count[:], mean[:], var[:] = C[-1], M[-1], V[-1]
        nz = V != 0.0
        Z = np.where(nz, (X - M) / np.sqrt(np.where(nz, V, 1.0)), 0.0)
        w, b, lr, ilr, l2, clip = self.w, self.b, self.lr, self.ilr, self.l2, self.clip
        exp = math.exp
        g1, g2 = np.empty(f), np.empty(f)
        for z, yi, wi in zip(Z, labels, weights, strict=True):
            t_ = 1.0 if yi else -1.0
            m = (float(w @ z) + b) * t_                # river's Log loss gradient, then weight and clip
            g = (exp(-m) * -t_ if m > 18.0 else -t_ if m < -18.0 else -t_ / (exp(m) + 1.0)) * wi
            g = min(max(g, -clip), clip)
            mul(z, g, out=g1)
            if l2:
                add(g1, mul(w, l2, out=g2), out=g1)    # grad = z * g + l2 * w
            b -= ilr * g
            sub(w, mul(g1, lr, out=g1), out=w)         # w -= lr * grad
        self.b = b
        self.steps += n

    def learn_rowwise(self, X: np.ndarray, labels: list[bool], weights: list[float]) -> None:
        """The reference of :meth:`learn`: river's ``learn_one`` arithmetic, one row at a time."""
        self.version += 1
        count, mean, var, w = self.count, self.mean, self.var, self.w
        b, lr, ilr, l2, clip = self.b, self.lr, self.ilr, self.l2, self.clip
        exp, where, sqrt = math.exp, np.where, np.sqrt
        for x, yi, wi in zip(X, labels, weights, strict=True):
            count += 1.0
            delta = x - mean
            mean += delta / count
            var += (delta * (x - mean) - var) / count
            nz = var != 0.0
            z = where(nz, (x - mean) / sqrt(where(nz, var, 1.0)), 0.0)
            t = 1.0 if yi else -1.0
            m = (float(w @ z) + b) * t                  # river's Log loss gradient, then weight and clip
            g = (exp(-m) * -t if m > 18.0 else -t if m < -18.0 else -t / (exp(m) + 1.0)) * wi
            g = min(max(g, -clip), clip)
            grad = z * g + l2 * w if l2 else z * g
            b -= ilr * g
            w -= lr * grad
        self.b = b
        self.steps += len(X)

    def to_river(self, config: RerankerConfig, names: Sequence[str]) -> compose.Pipeline:
        """The equal river pipeline (imports river): what river would hold after the same ``learn_one`` calls."""
        pipeline = make_pipeline(config)
        sc = pipeline.steps["StandardScaler"]
        clf = list(pipeline.steps.values())[-1]
        for k, name in enumerate(names):
            if self.count[k] > 0:
                sc.counts[name] = int(self.count[k])
                sc.means[name] = float(self.mean[k])
                sc.vars[name] = float(self.var[k])
        if self.steps:
            _set_glm_weights(clf, dict(zip(names, self.w.tolist(), strict=True)))
        clf.intercept = self.b
        clf.optimizer.n_iterations = self.steps
        return pipeline


class OnlineReranker:
    """The reranker's classifier scored with numpy over candidate matrices whose columns are ``names``."""

    def __init__(self, config: RerankerConfig | None = None, names: Sequence[str] = ()) -> None:
        self.config = config or RerankerConfig()
        self.names = tuple(names)
        self.linear: LinearState | None = None
        self._fm: compose.Pipeline | None = None
        self._fold: tuple[LinearState, int, np.ndarray, float] | None = None
        if self.config.model == "fm":
            self._fm = make_pipeline(self.config)
        else:
            self.linear = LinearState(self.config, len(self.names))
        self.auc = ThresholdAUC()
        self.recent = RecentAUC()
        self.logloss = LogLoss()
        self.pairs = 0
        self.positives = 0

    @property
    def pipeline(self) -> compose.Pipeline:
        """The model as a river pipeline: the FM model itself, or a river copy of the linear model."""
        if self.linear is not None:
            return self.linear.to_river(self.config, self.names)
        if self._fm is None:
            raise StateError("the reranker holds no model")
        return self._fm

    def _moments(self) -> tuple[np.ndarray, np.ndarray]:
        if self.linear is not None:
            return self.linear.mean, self.linear.var
        sc = self.pipeline.steps["StandardScaler"]
        return (np.array([sc.means.get(n, 0.0) for n in self.names], dtype=np.float64),
                np.array([sc.vars.get(n, 0.0) for n in self.names], dtype=np.float64))

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        mean, var = self._moments()
        std = np.sqrt(np.where(var > 0, var, 1.0))
        return np.where(var > 0, (np.asarray(X, dtype=np.float64) - mean) / std, 0.0)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds) of the rows of ``X`` (``X`` is not modified)."""
        z = self._standardise(X)
        if self.linear is not None:
            return np.asarray(self.linear.b + z @ self.linear.w)
        clf = list(self.pipeline.steps.values())[-1]
        w = np.array([clf.weights.get(n, 0.0) for n in self.names])
        zero = np.zeros(clf.n_factors)
        V = np.array([clf.latents.get(n, zero) for n in self.names]).reshape(len(self.names), clf.n_factors)
        zv = z @ V
        inter = 0.5 * (zv * zv - (z * z) @ (V * V)).sum(axis=1)
        return np.asarray(clf.intercept + z @ w + inter)

    def _linear(self, lin: LinearState) -> tuple[np.ndarray, float]:
        """Logistic regression folded with the scaler: ``logit = X @ a + b`` on raw features; kept until the
        model learns again (a batch's lists and the next batch's labelled pairs are scored with one fold)."""
        fold = self._fold
        if fold is not None and fold[0] is lin and fold[1] == lin.version:
            return fold[2], fold[3]
        var = lin.var
        a = np.where(var > 0, lin.w / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
        a32, b = a.astype(np.float32), float(lin.b - a @ lin.mean)
        a32.setflags(write=False)
        self._fold = (lin, lin.version, a32, b)
        return a32, b

    def score(self, X: np.ndarray) -> np.ndarray:
        """Click probabilities of the rows of ``X``, float32, vectorised (same values as river's)."""
        if self.linear is None:
            return _sigmoid(self.logits(X)).astype(np.float32)
        a, b = self._linear(self.linear)                 # one float32 matrix-vector product for the whole batch
        return _sigmoid(np.asarray(X, dtype=np.float32) @ a + np.float32(b)).astype(np.float32)

    def learn(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
              baseline: np.ndarray | None = None) -> None:
        """Test, then train on labelled rows: metrics from the current predictions (and the exact AUC of
        the model and of the ``baseline`` scores of the same rows over the last pairs), then river's
        ``learn_one`` arithmetic for each row in the given order (with sample weight ``w``)."""
        n = len(X)
        if n == 0:
            return
        scores = self.score(X)
        self.recent.update(np.asarray(y, dtype=bool), scores, scores if baseline is None else baseline)
        p = scores.tolist()
        labels = np.asarray(y, dtype=bool).tolist()
        weights = [1.0] * n if w is None else np.asarray(w, dtype=np.float64).tolist()
        self.auc.update_many(labels, p)
        for yi, pi in zip(labels, p, strict=True):
            self.logloss.update(yi, min(max(pi, 1e-7), 1 - 1e-7))
        if self.linear is not None:
            self.linear.learn(np.asarray(X, dtype=np.float64), labels, weights)
        else:
            names, learn = self.names, self.pipeline.learn_one
            for row, yi, wi in zip(np.asarray(X, dtype=np.float64).tolist(), labels, weights, strict=True):
                learn(dict(zip(names, row, strict=True)), yi, w=wi)
        self.pairs += n
        self.positives += sum(labels)

    def stats(self) -> dict[str, Any]:
        auc, ll = self.auc.get(), self.logloss.get()
        return {"reranker_model": self.config.model, "reranker_pairs": self.pairs,
                "reranker_positives": self.positives,
                "reranker_auc": round(auc, 4) if self.pairs else None,
                "reranker_recent_auc": _round(self.recent.get()[0]), "blend_recent_auc": _round(self.recent.get()[1]),
                "reranker_logloss": round(ll, 4) if self.pairs and math.isfinite(ll) else None}

    def weights(self) -> dict[str, float]:
        """The classifier's linear weight per feature (on standardised features), for inspection."""
        if self.linear is not None:
            return dict(zip(self.names, self.linear.w.tolist(), strict=True))
        src = list(self.pipeline.steps.values())[-1].weights
        return {n: float(src.get(n, 0.0)) if n in src else 0.0 for n in self.names}

    # --- checkpoints -----------------------------------------------------------------------------
    STATE_ENCODING = "json"

    def to_state(self) -> dict[str, Any]:
        """The whole learner as plain JSON data: the scaler's counts, means and variances, the classifier's
        intercept, weights (and FM latents) and optimiser step counts, the pair counters, the online AUC and
        log loss, and the window of recent pairs that decides whether the reranker serves. The linear model
        writes what its river pipeline would (features the scaler has seen; weights once it has learned)."""
        state: dict[str, Any] = {
            "format": STATE_FORMAT, "model": self.config.model, "names": list(self.names), "pairs": self.pairs,
            "positives": self.positives}
        lin = self.linear
        if lin is not None:
            seen = [k for k in range(len(self.names)) if lin.count[k] > 0]
            state.update(
                scaler={"counts": {self.names[k]: int(lin.count[k]) for k in seen},
                        "means": {self.names[k]: float(lin.mean[k]) for k in seen},
                        "vars": {self.names[k]: float(lin.var[k]) for k in seen}},
                intercept=float(lin.b),
                weights=dict(zip(self.names, lin.w.tolist(), strict=True)) if lin.steps else {},
                steps=[lin.steps])
        else:
            sc, clf = self.pipeline.steps["StandardScaler"], list(self.pipeline.steps.values())[-1]
            state.update(
                scaler={"counts": {str(k): int(v) for k, v in sc.counts.items()}, "means": _floats(sc.means),
                        "vars": _floats(sc.vars)},
                intercept=float(clf.intercept), weights=_floats(clf.weights),
                steps=[clf.weight_optimizer.n_iterations, clf.latent_optimizer.n_iterations])
        state.update(auc=self.auc.to_state(), logloss=self.logloss.to_state(), recent=self.recent.to_state())
        if lin is None:
            clf = list(self.pipeline.steps.values())[-1]
            state["latents"] = {str(k): [float(x) for x in np.asarray(v)] for k, v in clf.latents.items()}
        return state

    def load_state(self, state: dict[str, Any]) -> str | None:
        """Install a :meth:`to_state` state; every field is checked first, and nothing changes when one is
        wrong (raises :class:`StateError`). A state of format 1 (weights only) restores the model and starts
        the online metrics fresh."""
        f = Fields(state, "reranker")
        fmt = f.integer("format", 1, STATE_FORMAT)
        model = f.text("model")
        if model != self.config.model:
            raise StateError(f"the checkpoint holds a {model!r} model; this engine runs {self.config.model!r}")
        names = f.strings("names", 1_000)
        if tuple(names) != self.names:
            raise StateError(f"the checkpoint's features are {names[:6]}...; this reranker uses "
                             f"{list(self.names)[:6]}...")
        fm = model == "fm"
        f.only(["format", "model", "names", "pairs", "positives", "scaler", "intercept", "weights", "steps",
                *(["latents"] if fm else []), *(["auc", "logloss", "recent"] if fmt >= 2 else [])])
        pairs = f.integer("pairs")
        positives = f.integer("positives", 0, pairs)
        scf = f.obj("scaler").only(["counts", "means", "vars"])
        cf = scf.obj("counts").only(names)
        counts = {k: cf.integer(k) for k in cf.data}
        means, variances = scf.float_map("means", names, BOUND), scf.float_map("vars", names, 0.0, BOUND * BOUND)
        intercept, weights = f.number("intercept", -BOUND, BOUND), f.float_map("weights", names, BOUND)
        steps = f.ints("steps", 2, 2 if fm else 1)
        latents: dict[str, np.ndarray] = {}
        if fm:
            lf = f.obj("latents").only(names)
            latents = {k: np.array(lf.floats(k, self.config.fm_factors, self.config.fm_factors, -BOUND, BOUND),
                                   dtype=np.float64)
                       for k in lf.data}
        auc, logloss, recent = ThresholdAUC(), LogLoss(), RecentAUC(len(self.recent.y))
        note: str | None = "the online AUC, log loss and recent pairs start fresh (the checkpoint predates them)"
        if fmt >= 2:
            auc, logloss = ThresholdAUC.from_state(f.obj("auc")), LogLoss.from_state(f.obj("logloss"))
            recent, note = RecentAUC.from_state(f.obj("recent"), len(self.recent.y)), None
        if fm:
            pipeline = make_pipeline(self.config)           # a fresh pipeline, filled, then swapped in
            sc = pipeline.steps["StandardScaler"]
            sc.counts.update(counts)
            sc.means.update(means)
            sc.vars.update(variances)
            clf = list(pipeline.steps.values())[-1]
            clf.intercept = intercept
            clf.weights.update(weights)
            clf.latents.update(latents)
            clf.weight_optimizer.n_iterations, clf.latent_optimizer.n_iterations = steps
            self._fm = pipeline
        else:
            lin = LinearState(self.config, len(self.names))
            for k, name in enumerate(self.names):
                lin.count[k] = counts.get(name, 0)
                lin.mean[k] = means.get(name, 0.0)
                lin.var[k] = variances.get(name, 0.0)
                lin.w[k] = weights.get(name, 0.0)
            lin.b, lin.steps = intercept, steps[0]
            self.linear = lin
        self._fold = None                  # the restored model's weights, never a fold of the ones before
        self.auc, self.logloss, self.recent = auc, logloss, recent
        self.pairs, self.positives = pairs, positives
        return note


STATE_FORMAT = 2
BOUND = 1e12          # the largest magnitude a checkpointed weight, intercept, latent or feature mean may have


def _floats(d: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in d.items()}


def _set_glm_weights(clf: linear_model.LogisticRegression, weights: dict[str, float]) -> None:
    """Install weights into a fresh river ``LogisticRegression``. river exposes the weights read-only (its
    ``weights`` property is a copy), so this writes its weight vector, the one place streamrec writes a river
    internal; ``tests/unit/test_reranker.py`` checks the restored model's probabilities against river's own
    ``predict_proba_one``, so a river release that changes it fails there."""
    vector = clf._weights
    for name, value in weights.items():
        vector[name] = value


def _counts(name: str) -> property:
    """A :class:`ThresholdAUC` count list: its pending pairs are added in (``_flush``) before every read or write."""

    def get(self: ThresholdAUC) -> list[int]:
        self._flush()
        return getattr(self, name)  # type: ignore[no-any-return]

    def put(self: ThresholdAUC, value: list[int]) -> None:
        self._flush()
        setattr(self, name, value)

    return property(get, put)


class ThresholdAUC:
    """Online ROC AUC over ``n_thresholds`` probability thresholds: river's ``metrics.ROCAUC`` (same
    thresholds, same trapezoid; tested equal), with its counts as plain data.

    >>> auc = ThresholdAUC()
    >>> for y, p in zip([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]):
    ...     auc.update(bool(y), p)
    >>> auc.get()
    0.875
    """

    def __init__(self, n_thresholds: int = 10) -> None:
        self.n_thresholds = n_thresholds
        self.thresholds = [i / (n_thresholds - 1) for i in range(n_thresholds)]
        self.thresholds[0] -= 1e-7
        self.thresholds[-1] += 1e-7
        self._tp, self._fp = [0] * n_thresholds, [0] * n_thresholds
        self._fn, self._tn = [0] * n_thresholds, [0] * n_thresholds
        # pairs not yet in the counts, by how many thresholds their p exceeds (0 .. n), positives / negatives
        self._pos, self._neg = [0] * (n_thresholds + 1), [0] * (n_thresholds + 1)
        self._pending = 0

    def update(self, y: bool, p: float) -> None:
        """Count one pair: ``p > t`` for exactly the thresholds ``t`` below ``bisect_left(thresholds, p)``
        (a NaN exceeds none), so one bisection files the pair; the counts add it up when read."""
        (self._pos if y else self._neg)[bisect_left(self.thresholds, p)] += 1
        self._pending += 1

    def update_many(self, y: Sequence[bool], p: Sequence[float]) -> None:
        """:meth:`update` for each pair."""
        pos, neg, th = self._pos, self._neg, self.thresholds
        for yi, pi in zip(y, p, strict=True):
            (pos if yi else neg)[bisect_left(th, pi)] += 1
        self._pending += len(p)

    def _flush(self) -> None:
        if not self._pending:
            return
        n = self.n_thresholds
        for bins, above, below in ((self._pos, self._tp, self._fn), (self._neg, self._fp, self._tn)):
            for k, c in enumerate(bins):
                if c:
                    for i in range(k):           # p > t_i for i < k
                        above[i] += c
                    for i in range(k, n):
                        below[i] += c
                    bins[k] = 0
        self._pending = 0

    # the counts per threshold, brought up to date when read (or replaced, as a restore does)
    tp = _counts("_tp")
    fp = _counts("_fp")
    fn = _counts("_fn")
    tn = _counts("_tn")

    def get(self) -> float:
        tpr = np.array([tp / (tp + fn) if tp + fn else 0.0 for tp, fn in zip(self.tp, self.fn, strict=True)])
        fpr = np.array([fp / (fp + tn) if fp + tn else 0.0 for fp, tn in zip(self.fp, self.tn, strict=True)])
        return -float(np.add.reduce(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))   # scipy's trapezoid

    def to_state(self) -> dict[str, Any]:
        return {"n_thresholds": self.n_thresholds, "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}

    @classmethod
    def from_state(cls, f: Fields) -> ThresholdAUC:
        f.only(["n_thresholds", "tp", "fp", "fn", "tn"])
        out = cls(f.integer("n_thresholds", 2, 1_000))
        n = out.n_thresholds
        out.tp, out.fp, out.fn, out.tn = (f.ints(k, n, n) for k in ("tp", "fp", "fn", "tn"))
        if len({a + b for a, b in zip(out.tp, out.fn, strict=True)}) > 1 or len(
                {a + b for a, b in zip(out.fp, out.tn, strict=True)}) > 1:
            raise StateError(f"{f.where}: every threshold must count the same positives and negatives")
        return out


class LogLoss:
    """Mean binary log loss: river's ``metrics.LogLoss`` (same clamp, same running mean), as plain data."""

    def __init__(self) -> None:
        self.n = 0.0
        self.mean = 0.0

    def update(self, y: bool, p: float) -> None:
        p = min(max(p, 1e-15), 1 - 1e-15)
        self.n += 1.0
        self.mean += (1.0 / self.n) * ((-math.log(p) if y else -math.log(1 - p)) - self.mean)

    def get(self) -> float:
        return self.mean

    def to_state(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean}

    @classmethod
    def from_state(cls, f: Fields) -> LogLoss:
        f.only(["n", "mean"])
        out = cls()
        out.n, out.mean = f.number("n", 0.0), f.number("mean", 0.0)
        return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Exact ROC AUC (ties count one half), ``None`` without both classes.

    >>> roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.4, 0.4]))
    0.875
    """
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(s, kind="stable")
    sorted_s = np.asarray(s)[order]
    first = np.r_[True, sorted_s[1:] != sorted_s[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(s)]
    ranks = ((starts + ends + 1) / 2.0)[group]          # average 1-based rank of each tie group
    rank_sum = ranks[y[order]].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class RecentAUC:
    """Exact AUC of the model and of a baseline scorer on the same last ``size`` labelled pairs: what
    decides whether the learned model serves (it must rank the logged pairs better than the blend)."""

    def __init__(self, size: int = 5_000) -> None:
        self.y = np.zeros(size, dtype=bool)
        self.model = np.zeros(size, dtype=np.float32)
        self.base = np.zeros(size, dtype=np.float32)
        self.n = 0

    def update(self, y: np.ndarray, model: np.ndarray, base: np.ndarray) -> None:
        size = len(self.y)
        y, model, base = y[-size:], model[-size:], base[-size:]
        at = (self.n + np.arange(len(y))) % size
        self.y[at], self.model[at], self.base[at] = y, model, base
        self.n += len(y)

    def get(self) -> tuple[float | None, float | None]:
        k = min(self.n, len(self.y))
        return roc_auc(self.y[:k], self.model[:k]), roc_auc(self.y[:k], self.base[:k])

    def to_state(self) -> dict[str, Any]:
        k = min(self.n, len(self.y))
        return {"size": len(self.y), "n": self.n, "y": self.y[:k].astype(int).tolist(),
                "model": self.model[:k].tolist(), "base": self.base[:k].tolist()}

    @classmethod
    def from_state(cls, f: Fields, size: int) -> RecentAUC:
        f.only(["size", "n", "y", "model", "base"])
        if f.integer("size") != size:
            raise StateError(f"{f.where}.size is {f.data['size']}; this reranker keeps the last {size} pairs")
        out = cls(size)
        out.n = f.integer("n")
        k = min(out.n, size)
        ys = [check_int(v, f"{f.where}.y", 0, 1) for v in f.array("y", k, k)]
        lim = float(np.finfo(np.float32).max)
        out.y[:k] = np.array(ys, dtype=bool)
        out.model[:k] = np.array(f.floats("model", k, k, -lim, lim), dtype=np.float32)
        out.base[:k] = np.array(f.floats("base", k, k, -lim, lim), dtype=np.float32)
        return out
