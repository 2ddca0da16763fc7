"""Online matrix factorisation over an event stream: river's ``reco.BiasedMF`` with vectorised ranking.

``BiasedMF`` predicts ``mean + b_u + b_i + <v_u, v_i>`` and takes one SGD step per ``learn_one(user, item,
y)``. :class:`RiverMF` wraps it for streamrec:

* **Targets.** A rating event trains on its star value; any other event (or every event when
  ``target="strength"``) on :func:`models.base.encoder.event_strength`, so purchase > cart > click > view.
  Implicit streams only ever show positives, so ``negatives`` draws that many random known items per
  event (seeded, uniform over known items) and trains them towards ``negative_target``.
  :meth:`RiverMFConfig.for_ranking` is the preset for top-k lists (strength targets, 4 negatives).
* **Vectorised scoring.** Every item's latent vector and bias is mirrored, after each update, into a
  contiguous numpy matrix, so scoring the whole catalogue for a user is one matrix-vector product instead
  of one ``predict_one`` per item. Unknown users score with a zero vector and zero bias (item bias only),
  and nothing is inserted into river's ``defaultdict`` state when scoring.
* **Bounded memory.** Users are kept in least-recently-seen order; beyond ``max_users``, or when not seen
  for ``user_ttl_ms`` of event time, a user's factors are dropped (``evicted_users`` counts them). Items
  can be capped the same way with ``max_items``.
* **Checkpoints.** :meth:`RiverMF.to_bytes` / :meth:`RiverMF.from_bytes` save every parameter, the
  optimiser step counts, the random states and the recency order (numpy ``.npz``, no pickle), with the
  river version that wrote it, so a restored model continues exactly where the original was.

>>> mf = RiverMF(RiverMFConfig(n_factors=4, seed=1))
>>> for user, item, stars in [("ann", "alien", 5), ("ann", "heat", 1), ("bob", "alien", 5),
...                           ("bob", "heat", 1), ("cy", "heat", 1)] * 20:
...     mf.learn_one(user, item, stars)
>>> mf.rank("cy", k=2)
['alien', 'heat']
>>> mf.rank("cy", k=2, exclude={"alien"})
['heat']
>>> clone = RiverMF.from_bytes(mf.to_bytes())
>>> round(clone.predict_one("ann", "alien"), 6) == round(mf.predict_one("ann", "alien"), 6)
True
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from streamrec.models.base.encoder import event_strength
from streamrec.models.errors import ConfigError
from streamrec.models.events import Event, EventType
from streamrec.models.online.plainstate import (
    MAX_INT,
    Fields,
    StateError,
    check_float,
    check_int,
    load_npz,
    loads_json,
    unique,
)

if TYPE_CHECKING:
    from river import reco

STATE_FORMAT = "streamrec-river-mf/1"


def top_k(scores: np.ndarray, k: int, banned: Sequence[int] = ()) -> list[int]:
    """Rows of the ``k`` highest ``scores``, best first, skipping ``banned`` rows; ``scores`` is not modified.

    Deterministic: the same scores always give the same rows, and equal scores are listed by row.

    >>> top_k(np.array([0.1, 0.9, 0.5, 0.9]), 3, banned=[1])
    [3, 2, 0]
    """
    n = len(scores)
    if n == 0 or k <= 0:
        return []
    s = np.array(scores, dtype=np.float64)  # a copy: the caller's array stays as it was
    if len(banned):
        s[np.asarray(banned, dtype=np.int64)] = -np.inf
    k_eff = min(k, n)
    top = np.argpartition(-s, k_eff - 1)[:k_eff] if k_eff < n else np.arange(n)
    top = top[np.lexsort((top, -s[top]))]
    return [int(r) for r in top if s[r] != -np.inf]


@dataclass(frozen=True)
class RiverMFConfig:
    """Settings of :class:`RiverMF` (all of river's ``BiasedMF`` knobs that matter, plus memory bounds)."""

    n_factors: int = 16
    lr_bias: float = 0.01
    lr_latent: float = 0.05
    l2_bias: float = 0.0
    l2_latent: float = 0.01
    init_sigma: float = 0.1
    clip_gradient: float = 5.0
    seed: int = 0
    target: Literal["auto", "strength"] = "auto"
    negatives: int = 0
    negative_target: float = 0.0
    max_users: int | None = 1_000_000
    user_ttl_ms: int | None = None
    max_items: int | None = None

    def __post_init__(self) -> None:
        if self.n_factors < 2:
            raise ConfigError("river_mf n_factors must be at least 2")
        if self.target not in ("auto", "strength"):
            raise ConfigError(f"river_mf target must be 'auto' or 'strength', not {self.target!r}")
        if self.negatives < 0:
            raise ConfigError("river_mf negatives must be >= 0")
        for name in ("max_users", "user_ttl_ms", "max_items"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"river_mf {name} must be positive (or None for no bound)")

    @classmethod
    def for_ranking(cls, negatives: int = 4, **overrides: Any) -> RiverMFConfig:
        """Top-k ranking preset: every event trains on its strength, plus ``negatives`` sampled zeros.

        Regressing star values (the default) learns how much a user would like a movie *if* they rated
        it, not which movie they rate next; on MovieLens-100K (prequential, ratings >= 4 as targets)
        this preset reaches HR@10 0.154 against 0.077 for star regression and 0.096 for trending.

        >>> RiverMFConfig.for_ranking().negatives, RiverMFConfig.for_ranking().target
        (4, 'strength')
        """
        return cls(**{"target": "strength", "negatives": negatives, **overrides})


#: the river release whose ``BiasedMF.learn_one`` :meth:`RiverMF._learn_pair` reproduces bit for bit
INLINE_RIVER = "0.26."


class RiverMF:
    """Online biased matrix factorisation (river ``reco.BiasedMF``) with numpy ranking and bounded memory."""

    def __init__(self, config: RiverMFConfig | None = None) -> None:
        import river  # here, not at the module's top: river pulls in scipy (~60 MB), and only this source needs it
        from river import optim, reco

        self.config = config or RiverMFConfig()
        c = self.config
        self._init = optim.initializers.Normal(mu=0.0, sigma=c.init_sigma, seed=c.seed)
        self.model: reco.BiasedMF = reco.BiasedMF(
            n_factors=c.n_factors,
            bias_optimizer=optim.SGD(c.lr_bias),
            latent_optimizer=optim.SGD(c.lr_latent),
            l2_bias=c.l2_bias,
            l2_latent=c.l2_latent,
            weight_initializer=optim.initializers.Zeros(),
            latent_initializer=self._init,
            clip_gradient=c.clip_gradient,
            seed=c.seed,
        )
        self._neg_rng = np.random.default_rng(c.seed + 7919)
        # the inlined step copies river 0.26's arithmetic; any other river takes its own learn_one
        self.inline = type(self).inline and river.__version__.startswith(INLINE_RIVER)
        self._users: OrderedDict[str, int] = OrderedDict()   # user -> last event time (ms), oldest first
        self._item_seen: OrderedDict[str, int] = OrderedDict()
        self._row: dict[str, int] = {}
        self._item_ids: list[str] = []
        self._V = np.zeros((64, c.n_factors), dtype=np.float64)
        self._bi = np.zeros(64, dtype=np.float64)
        self.evicted_users = 0
        self.evicted_items = 0
        #: river version that wrote the state this model was restored from (this process's, if new)
        self.written_by_river: str = river.__version__

    # ------------------------------------------------------------------ sizes

    @property
    def n_users(self) -> int:
        return len(self._users)

    @property
    def n_items(self) -> int:
        return len(self._item_ids)

    @property
    def item_ids(self) -> tuple[str, ...]:
        """Known items, in the row order of :meth:`score_all`."""
        return tuple(self._item_ids)

    # ------------------------------------------------------------------ learning

    def target_of(self, event: Event) -> float:
        """The regression target of one event (see the module docstring)."""
        if self.config.target == "auto" and event.event_type == EventType.RATING and event.value is not None:
            return float(event.value)
        return event_strength(event.event_type.value, event.value)

    def learn_event(self, event: Event) -> None:
        """Learn one event at its event time (and its sampled negatives, if configured)."""
        self.learn_one(event.user_id, event.item_id, self.target_of(event), ts_ms=event.timestamp_ms)

    def learn_one(self, user: str, item: str, y: float, ts_ms: int | None = None) -> None:
        """One SGD step on ``(user, item, y)``, then ``negatives`` steps on random other items."""
        ts = 0 if ts_ms is None else int(ts_ms)
        self._touch_user(user, ts)
        self._step(user, item, float(y), ts)
        n_neg = self.config.negatives
        if n_neg and self.n_items > 1:
            rows = self._neg_rng.integers(0, self.n_items, size=n_neg)
            positive_row = self._row[item]
            for r in rows:
                if int(r) != positive_row:
                    self._step(user, self._item_ids[int(r)], self.config.negative_target, ts)
        self._evict(ts if ts_ms is not None else None)

    #: take :meth:`_learn_pair` (river's arithmetic inlined) where river is the version it copies
    #: (:data:`INLINE_RIVER`); ``False``: river's own ``learn_one`` (the reference)
    inline = True

    def _learn_pair(self, user: str, item: str, y: float) -> None:
        """river's ``BiasedMF.learn_one(user, item, y)`` (0.26: running mean, squared-loss gradient, clamp,
        plain SGD of the four parameter groups, each optimiser's step count) inlined: the same operations on
        the same values in the same order, and the parameters created (and the initialiser's random draws
        made) in river's order, so the same bits without river's per-call dicts and optimiser dispatch
        (``tests/unit/test_river_mf.py`` compares every parameter with river's own)."""
        m = self.model
        gm = m.global_mean                # a stats.Mean: update(y) with weight 1
        gm.n += 1.0
        gm._mean += (1.0 / gm.n) * (y - gm._mean)
        ub, ib, ul, il = m.u_biases, m.i_biases, m.u_latents, m.i_latents
        y_pred = gm._mean
        y_pred += ub[user]
        y_pred += ib[item]
        u, v = ul[user], il[item]
        y_pred += np.dot(u, v)
        g = 2 * (y_pred.item() - y)
        g = max(min(g, m.clip_gradient), -m.clip_gradient)
        g_ub, g_ib = g + m.l2_bias * ub[user], g + m.l2_bias * ib[item]
        g_ul, g_il = g * v + m.l2_latent * u, g * u + m.l2_latent * v
        for opt, params, key, grad in ((m.u_bias_optimizer, ub, user, g_ub), (m.i_bias_optimizer, ib, item, g_ib)):
            params[key] -= opt.learning_rate * grad
            opt.n_iterations += 1
        opt = m.u_latent_optimizer
        u -= opt.learning_rate * g_ul
        opt.n_iterations += 1
        opt = m.i_latent_optimizer
        v -= opt.learning_rate * g_il
        opt.n_iterations += 1

    def _step(self, user: str, item: str, y: float, ts: int) -> None:
        if self.inline:
            self._learn_pair(user, item, y)
        else:
            self.model.learn_one(user, item, y)
        row = self._row.get(item)
        if row is None:
            row = self._add_item(item)
        self._V[row] = self.model.i_latents[item]
        self._bi[row] = self.model.i_biases[item]
        self._item_seen[item] = ts
        self._item_seen.move_to_end(item)

    def _touch_user(self, user: str, ts: int) -> None:
        self._users[user] = ts
        self._users.move_to_end(user)

    def _add_item(self, item: str) -> int:
        row = len(self._item_ids)
        if row == len(self._bi):
            self._V = np.concatenate([self._V, np.zeros_like(self._V)])
            self._bi = np.concatenate([self._bi, np.zeros_like(self._bi)])
        self._row[item] = row
        self._item_ids.append(item)
        return row

    # ------------------------------------------------------------------ memory bounds

    def _evict(self, now_ms: int | None) -> None:
        c = self.config
        keep = next(reversed(self._users))  # never drop the user we just learned
        while c.max_users is not None and len(self._users) > c.max_users:
            self._drop_user(next(iter(self._users)))
        if c.user_ttl_ms is not None and now_ms is not None:
            while self._users:
                oldest, last = next(iter(self._users.items()))
                if oldest == keep or now_ms - last <= c.user_ttl_ms:
                    break
                self._drop_user(oldest)
        while c.max_items is not None and len(self._item_seen) > c.max_items:
            self._drop_item(next(iter(self._item_seen)))

    def _drop_user(self, user: str) -> None:
        del self._users[user]
        self.model.u_latents.pop(user, None)
        self.model.u_biases.pop(user, None)
        self.evicted_users += 1

    def _drop_item(self, item: str) -> None:
        del self._item_seen[item]
        row = self._row.pop(item)
        last = len(self._item_ids) - 1
        if row != last:  # move the last row into the hole
            moved = self._item_ids[last]
            self._item_ids[row] = moved
            self._row[moved] = row
            self._V[row] = self._V[last]
            self._bi[row] = self._bi[last]
        self._item_ids.pop()
        self.model.i_latents.pop(item, None)
        self.model.i_biases.pop(item, None)
        self.evicted_items += 1

    # ------------------------------------------------------------------ scoring

    def _user_params(self, user: str) -> tuple[float, np.ndarray | None]:
        vec = self.model.u_latents.get(user)
        return float(self.model.u_biases.get(user, 0.0)), vec

    def predict_one(self, user: str, item: str) -> float:
        """Predicted target for one pair; unknown users and items count as zero vectors and biases."""
        ub, vec = self._user_params(user)
        row = self._row.get(item)
        y = self.model.global_mean.get() + ub
        if row is not None:
            y += self._bi[row]
            if vec is not None:
                y += float(np.dot(vec, self._V[row]))
        return float(y)

    def score_all(self, user: str) -> np.ndarray:
        """Predicted target of every known item for ``user`` (aligned with :attr:`item_ids`), vectorised."""
        n = self.n_items
        ub, vec = self._user_params(user)
        scores = (self.model.global_mean.get() + ub) + self._bi[:n]
        if vec is not None:
            scores = scores + self._V[:n] @ vec
        return scores

    def score(self, user: str, items: Sequence[str]) -> np.ndarray:
        """Predicted target of ``items`` for ``user`` (unknown items get the user's baseline)."""
        ub, vec = self._user_params(user)
        base = self.model.global_mean.get() + ub
        rows = np.array([self._row.get(i, -1) for i in items], dtype=np.int64)
        known = rows >= 0
        out = np.full(len(items), base, dtype=np.float64)
        if known.any():
            r = rows[known]
            out[known] = base + self._bi[r] + (self._V[r] @ vec if vec is not None else 0.0)
        return out

    def rank(self, user: str, k: int, exclude: Collection[str] = ()) -> list[str]:
        """The ``k`` known items with the highest predicted target for ``user``, leaving out ``exclude``."""
        if self.n_items == 0 or k <= 0:
            return []
        banned = [r for i in exclude if (r := self._row.get(i)) is not None] if exclude else []
        return [self._item_ids[r] for r in top_k(self.score_all(user), k, banned)]

    # ------------------------------------------------------------------ checkpoints

    def to_bytes(self) -> bytes:
        """The whole state as ``.npz`` bytes (no pickle), tagged with the river version that wrote it."""
        import river

        m = self.model
        users = list(self._users)
        items_lru = list(self._item_seen)
        f = self.config.n_factors
        latents = [m.u_latents[u] for u in users if u in m.u_latents]
        algo, keys, pos, has_gauss, cached = self._init._rng.get_state()
        meta = {
            "format": STATE_FORMAT,
            "river_version": river.__version__,
            "numpy_version": np.__version__,
            "config": asdict(self.config),
            "global_mean": [m.global_mean.n, m.global_mean._mean],
            "optimizer_steps": [o.n_iterations for o in (m.u_bias_optimizer, m.i_bias_optimizer,
                                                         m.u_latent_optimizer, m.i_latent_optimizer)],
            "init_rng": [algo, int(pos), int(has_gauss), float(cached)],
            "neg_rng": self._neg_rng.bit_generator.state,
            "evicted_users": self.evicted_users,
            "evicted_items": self.evicted_items,
        }
        arrays: dict[str, np.ndarray] = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "init_rng_keys": np.asarray(keys, dtype=np.uint32),
            "user_ids": np.array(users, dtype=str),
            "user_ts": np.array([self._users[u] for u in users], dtype=np.int64),
            "user_bias": np.array([m.u_biases.get(u, 0.0) for u in users], dtype=np.float64),
            "user_latents": np.stack(latents) if latents else np.zeros((0, f)),
            "user_has_latent": np.array([u in m.u_latents for u in users], dtype=bool),
            "item_ids": np.array(self._item_ids, dtype=str),
            "item_bias": self._bi[: self.n_items].copy(),
            "item_latents": self._V[: self.n_items].copy(),
            "item_lru": np.array(items_lru, dtype=str),
            "item_ts": np.array([self._item_seen[i] for i in items_lru], dtype=np.int64),
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> RiverMF:
        """Restore a model written by :meth:`to_bytes`. The arrays are read with ``allow_pickle=False``
        after their headers were checked, and every field is validated (dtypes, shapes, finite numbers,
        unique ids, sizes within the configured bounds, random generator states): raises
        :class:`ArtifactError` (a :class:`~models.online.plainstate.StateError`) when it cannot be used."""
        a = load_npz(data, _SPEC, "mf")
        if a["meta"].ndim != 1:
            raise StateError("mf.meta must be a byte string")
        f = Fields(loads_json(a["meta"].tobytes()), "mf.meta")
        fmt = f.text("format")
        if fmt != STATE_FORMAT:
            raise StateError(f"river_mf state has format {fmt!r}, expected {STATE_FORMAT!r}")
        f.only(["format", "river_version", "numpy_version", "config", "global_mean", "optimizer_steps",
                "init_rng", "neg_rng", "evicted_users", "evicted_items"])
        config = _config(f.obj("config"))
        mf = cls(config)
        mf.written_by_river = f.text("river_version", max_len=64)
        f.text("numpy_version", max_len=64)
        n_seen, mean = f.floats("global_mean", 2, 2)
        if n_seen < 0:
            raise StateError("mf.meta.global_mean: the count must not be negative")
        steps = f.ints("optimizer_steps", 4, 4)
        algo, pos, has_gauss, cached = f.array("init_rng", 4, 4)
        keys = a["init_rng_keys"]
        if algo != "MT19937" or keys.shape != (624,) or keys.dtype != np.uint32:
            raise StateError("mf.init_rng must be an MT19937 state of 624 uint32 keys")
        init_state = ("MT19937", keys, check_int(pos, "mf.init_rng[1]", 0, 624),
                      check_int(has_gauss, "mf.init_rng[2]", 0, 1), check_float(cached, "mf.init_rng[3]"))
        neg = f.obj("neg_rng").only(["bit_generator", "state", "has_uint32", "uinteger"])
        neg.text("bit_generator", ("PCG64",))
        inner = neg.obj("state").only(["state", "inc"])
        neg_state = {"bit_generator": "PCG64",
                     "state": {k: inner.integer(k, 0, (1 << 128) - 1) for k in ("state", "inc")},
                     "has_uint32": neg.integer("has_uint32", 0, 1),
                     "uinteger": neg.integer("uinteger", 0, (1 << 32) - 1)}
        evicted = f.integer("evicted_users"), f.integer("evicted_items")
        users = unique(a["user_ids"].tolist(), "mf.user_ids")
        items = unique(a["item_ids"].tolist(), "mf.item_ids")
        lru = a["item_lru"].tolist()
        nf, nu, ni = config.n_factors, len(users), len(items)
        has = a["user_has_latent"]
        shapes = {"user_ts": (nu,), "user_bias": (nu,), "user_has_latent": (nu,),
                  "user_latents": (int(has.sum()) if has.shape == (nu,) else -1, nf), "item_bias": (ni,),
                  "item_latents": (ni, nf), "item_lru": (ni,), "item_ts": (ni,)}
        for name, shape in shapes.items():
            if a[name].shape != shape:
                raise StateError(f"mf.{name} has shape {a[name].shape}; expected {shape}")
        if set(lru) != set(items) or len(set(lru)) != ni:
            raise StateError("mf.item_lru must list every item exactly once")
        if config.max_users is not None and nu > config.max_users:
            raise StateError(f"mf holds {nu} users, more than its max_users {config.max_users}")
        if config.max_items is not None and ni > config.max_items:
            raise StateError(f"mf holds {ni} items, more than its max_items {config.max_items}")
        m = mf.model
        try:
            mf._init._rng.set_state(init_state)
            mf._neg_rng.bit_generator.state = neg_state
        except (ValueError, TypeError) as exc:
            raise StateError(f"mf random generator state refused: {exc}") from exc
        m.global_mean.n, m.global_mean._mean = n_seen, mean
        for opt, n in zip((m.u_bias_optimizer, m.i_bias_optimizer, m.u_latent_optimizer,
                           m.i_latent_optimizer), steps, strict=True):
            opt.n_iterations = n
        latents = iter(a["user_latents"].astype(np.float64))
        for u, ts, b, h in zip(users, a["user_ts"].tolist(), a["user_bias"].tolist(), has.tolist(), strict=True):
            mf._users[u] = ts
            m.u_biases[u] = b
            if h:
                m.u_latents[u] = np.array(next(latents), dtype=np.float64)
        for item, b, vec in zip(items, a["item_bias"].tolist(), a["item_latents"].astype(np.float64), strict=True):
            row = mf._add_item(item)
            m.i_biases[item] = b
            m.i_latents[item] = np.array(vec, dtype=np.float64)
            mf._V[row] = vec
            mf._bi[row] = b
        for item, ts in zip(lru, a["item_ts"].tolist(), strict=True):
            mf._item_seen[item] = ts
        mf.evicted_users, mf.evicted_items = evicted
        return mf

    STATE_ENCODING = "npz"

    def to_state(self) -> bytes:
        """The whole model as plain ``.npz`` bytes (:meth:`to_bytes`)."""
        return self.to_bytes()

    def load_state(self, data: bytes) -> None:
        """Become the checked model of a :meth:`to_bytes` state (its settings included); refused (nothing
        changes) when it cannot be used or has another number of factors than this model."""
        mf = RiverMF.from_bytes(data)
        if mf.config.n_factors != self.config.n_factors:
            raise StateError(f"river MF with {mf.config.n_factors} factors, this engine uses {self.config.n_factors}")
        self.__dict__.update(mf.__dict__)


_SPEC = {"meta": ("u", 1), "init_rng_keys": ("u", 1), "user_ids": ("U", 1), "user_ts": ("i", 1),
         "user_bias": ("f", 1), "user_latents": ("f", 2), "user_has_latent": ("b", 1), "item_ids": ("U", 1),
         "item_bias": ("f", 1), "item_latents": ("f", 2), "item_lru": ("U", 1), "item_ts": ("i", 1)}


def _config(f: Fields) -> RiverMFConfig:
    """A :class:`RiverMFConfig` from checkpointed settings, every field type-checked."""
    fields = RiverMFConfig.__dataclass_fields__
    f.only(fields)
    missing = sorted(set(fields) - set(f.data))
    if missing:
        raise StateError(f"{f.where} lacks {missing}")
    kw: dict[str, Any] = {}
    for name in fields:
        if name == "target":
            kw[name] = f.text(name, ("auto", "strength"))
        elif name in ("n_factors", "seed", "negatives"):
            kw[name] = f.integer(name, 0, 1 << 20 if name != "seed" else MAX_INT)
        elif name in ("max_users", "user_ttl_ms", "max_items"):
            kw[name] = None if f.data[name] is None else f.integer(name, 1)
        else:
            kw[name] = f.number(name)
    try:
        return RiverMFConfig(**kw)
    except ConfigError as exc:
        raise StateError(f"{f.where}: {exc}") from exc
