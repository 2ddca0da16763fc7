"""Online matrix factorisation: learning, vectorised scoring, bounded memory, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models.errors import ArtifactError, ConfigError
from streamrec.models.events import Event, EventType
from streamrec.models.online.river_mf import RiverMF, RiverMFConfig, top_k


def planted_ratings(seed: int, n: int, users: int = 60, items: int = 40, groups: int = 3):
    """Users and items fall into groups; a user rates in-group items 5 and the rest 1 (plus noise)."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, size=n)
    i = rng.integers(0, items, size=n)
    y = np.where(u % groups == i % groups, 5.0, 1.0) + rng.normal(0, 0.3, size=n)
    return [(f"u{a}", f"i{b}", float(c)) for a, b, c in zip(u, i, y, strict=True)]


def test_learns_planted_structure_better_than_global_mean() -> None:
    train, test = planted_ratings(0, 20_000), planted_ratings(1, 2_000)
    mf = RiverMF(RiverMFConfig(n_factors=8, lr_latent=0.05, lr_bias=0.01, seed=3))
    for user, item, y in train:
        mf.learn_one(user, item, y)
    mean = float(np.mean([y for _, _, y in train]))
    ys = np.array([y for _, _, y in test])
    predicted = np.array([mf.predict_one(user, item) for user, item, _ in test])
    rmse_mf = float(np.sqrt(np.mean((predicted - ys) ** 2)))
    rmse_mean = float(np.sqrt(np.mean((mean - ys) ** 2)))
    assert rmse_mf < 0.5 * rmse_mean, (rmse_mf, rmse_mean)
    # and it ranks in-group items first: u0 is in group 0, so i0, i3, i6, ... should lead
    top = mf.rank("u0", k=10)
    assert sum(int(item[1:]) % 3 == 0 for item in top) >= 9


def test_vectorised_scores_equal_predict_one() -> None:
    mf = RiverMF(RiverMFConfig(n_factors=6, seed=5))
    data = planted_ratings(2, 3_000)
    for user, item, y in data:
        mf.learn_one(user, item, y)
    rng = np.random.default_rng(9)
    for user in rng.choice(sorted({u for u, _, _ in data}), size=10, replace=False):
        scores = mf.score_all(str(user))
        for row in rng.choice(mf.n_items, size=15, replace=False):
            item = mf.item_ids[row]
            expected = mf.model.predict_one(str(user), item)   # river's own prediction
            assert scores[row] == pytest.approx(expected, abs=1e-9)
            assert mf.predict_one(str(user), item) == pytest.approx(expected, abs=1e-9)
        sample = list(mf.item_ids[:5]) + ["never-seen"]
        np.testing.assert_allclose(mf.score(str(user), sample)[:5], scores[:5], atol=1e-12)


def test_scoring_unknown_users_and_items_has_no_side_effects() -> None:
    mf = RiverMF(RiverMFConfig(n_factors=4))
    mf.learn_one("a", "x", 4.0)
    before = (dict(mf.model.u_latents), dict(mf.model.i_latents))
    mf.rank("stranger", 5)
    mf.predict_one("stranger", "unknown-item")
    mf.score("a", ["unknown-item"])
    assert (dict(mf.model.u_latents), dict(mf.model.i_latents)) == before


def test_rank_respects_exclusion_and_does_not_mutate_it() -> None:
    mf = RiverMF(RiverMFConfig(n_factors=4))
    for item, y in [("a", 5.0), ("b", 4.0), ("c", 1.0)]:
        mf.learn_one("u", item, y)
    exclude = {"a", "zz"}
    ranked = mf.rank("u", 10, exclude)
    assert "a" not in ranked and set(ranked) == {"b", "c"}
    assert exclude == {"a", "zz"}
    assert mf.rank("u", 0) == [] and RiverMF().rank("u", 3) == []


def test_top_k_is_deterministic_and_skips_banned() -> None:
    scores = np.array([0.3, 0.9, 0.9, 0.1, 0.5])
    assert top_k(scores, 3) == [1, 2, 4]
    assert top_k(scores, 10, banned=[1, 2]) == [4, 0, 3]
    assert scores[1] == 0.9  # not modified


def test_user_memory_is_bounded_by_lru_cap() -> None:
    mf = RiverMF(RiverMFConfig(n_factors=4, max_users=50))
    for n in range(500):
        mf.learn_one(f"u{n}", f"i{n % 7}", 3.0, ts_ms=n)
        mf.learn_one("regular", f"i{n % 7}", 4.0, ts_ms=n)  # seen all the time: never evicted
    assert mf.n_users <= 50
    assert len(mf.model.u_latents) <= 50 and len(mf.model.u_biases) <= 50
    assert mf.evicted_users == 501 - 50
    assert "regular" in mf.model.u_latents and "u499" in mf.model.u_latents and "u0" not in mf.model.u_latents


def test_users_expire_after_ttl_and_items_are_capped() -> None:
    mf = RiverMF(RiverMFConfig(n_factors=4, user_ttl_ms=100, max_items=5))
    mf.learn_one("old", "i0", 3.0, ts_ms=0)
    for t in range(1, 300, 10):
        mf.learn_one("active", f"i{t}", 3.0, ts_ms=t)
    assert "old" not in mf.model.u_latents and mf.evicted_users == 1
    assert mf.n_items == 5 and len(mf.model.i_latents) == 5 and mf.evicted_items == 30 - 5 + 1
    # the mirror still matches river after swap-removals
    for row, item in enumerate(mf.item_ids):
        assert mf.score_all("active")[row] == pytest.approx(mf.model.predict_one("active", item), abs=1e-9)


def test_implicit_events_map_to_strength_targets() -> None:
    mf = RiverMF(RiverMFConfig(n_factors=4))
    ev = lambda t, v=None: Event("e", "u", "i", t, 0, value=v)  # noqa: E731
    assert mf.target_of(ev(EventType.CLICK)) == 1.0
    assert mf.target_of(ev(EventType.PURCHASE)) == 4.0
    assert mf.target_of(ev(EventType.RATING, 2.0)) == 2.0
    strength = RiverMF(RiverMFConfig(n_factors=4, target="strength"))
    assert strength.target_of(ev(EventType.RATING, 5.0)) == 3.0


@pytest.mark.parametrize("negatives", [0, 3])
def test_negative_sampling_separates_frequent_from_rare_items(negatives: int) -> None:
    """Implicit feedback: every target is 1.0, so without negatives nothing separates the items."""
    rng = np.random.default_rng(0)
    mf = RiverMF(RiverMFConfig(n_factors=4, negatives=negatives, seed=1))
    for n in range(3000):  # half the positives go to 5 "i" items, half to 30 "j" items
        item = f"i{rng.integers(5)}" if rng.random() < 0.5 else f"j{rng.integers(30)}"
        mf.learn_one(f"u{rng.integers(20)}", item, 1.0, ts_ms=n)
    found = sum(item.startswith("i") for u in range(20) for item in mf.rank(f"u{u}", 5))
    if negatives:
        assert found >= 95  # of 100 slots
    else:
        assert found < 50


def test_checkpoint_round_trip_continues_identically() -> None:
    cfg = RiverMFConfig(n_factors=5, negatives=2, seed=11, max_users=30)
    a = RiverMF(cfg)
    data = planted_ratings(4, 1_500)
    for n, (user, item, y) in enumerate(data[:1000]):
        a.learn_one(user, item, y, ts_ms=n)
    blob = a.to_bytes()
    b = RiverMF.from_bytes(blob)
    assert b.written_by_river == a.written_by_river and b.config == cfg
    assert b.item_ids == a.item_ids and b.evicted_users == a.evicted_users
    for n, (user, item, y) in enumerate(data[1000:], start=1000):
        a.learn_one(user, item, y, ts_ms=n)
        b.learn_one(user, item, y, ts_ms=n)
    for user in ("u1", "u7", "u33"):
        np.testing.assert_array_equal(a.score_all(user), b.score_all(user))
    assert list(a._users.items()) == list(b._users.items()) and a.evicted_users == b.evicted_users
    np.testing.assert_array_equal(a.score_all("never-seen"), b.score_all("never-seen"))


def test_bad_state_and_bad_config_are_rejected() -> None:
    with pytest.raises(ArtifactError):
        RiverMF.from_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError):
        RiverMFConfig(n_factors=1)
    with pytest.raises(ConfigError):
        RiverMFConfig(max_users=0)


@pytest.mark.parametrize("config", [RiverMFConfig(n_factors=4, seed=2, l2_bias=0.1, clip_gradient=0.3),
                                    RiverMFConfig.for_ranking(n_factors=8, seed=5, max_users=7, max_items=30)])
def test_the_inlined_sgd_step_leaves_rivers_own_bits(config: RiverMFConfig) -> None:
    """``RiverMF`` steps with river's arithmetic inlined; river's ``learn_one`` (``inline = False``) leaves
    the same parameters, optimiser counts and random state, bit for bit."""
    fast, ref = RiverMF(config), RiverMF(config)
    assert fast.inline                                   # the river this copies (see INLINE_RIVER)
    ref.inline = False
    for user, item, stars in planted_ratings(4, 600):
        fast.learn_one(user, item, stars * 3.0, ts_ms=1)     # large targets: the clamp is reached
        ref.learn_one(user, item, stars * 3.0, ts_ms=1)
    assert fast.to_bytes() == ref.to_bytes() and fast.n_users > 5
    for name in ("u_bias_optimizer", "i_bias_optimizer", "u_latent_optimizer", "i_latent_optimizer"):
        assert getattr(fast.model, name).n_iterations == getattr(ref.model, name).n_iterations >= 600
    assert fast.model.global_mean.get() == ref.model.global_mean.get()
    assert type(fast.model.u_biases[next(iter(fast._users))]) is type(ref.model.u_biases[next(iter(ref._users))])


def test_another_river_release_takes_rivers_own_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import river

    monkeypatch.setattr(river, "__version__", "0.27.0")
    assert not RiverMF(RiverMFConfig(n_factors=4)).inline
