"""The torch two-tower model: the user tower is exactly the numpy UserEncoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrec.models.base.encoder import TYPE_NAMES, UserEncoder
from streamrec.models.base.two_tower import TwoTower, inverse_softplus, sampled_softmax_loss

N_ITEMS, DIM, HIST = 40, 8, 6


def _perturbed_model(seed: int = 3) -> TwoTower:
    """A model whose learned parameters are far from their identity initialisation."""
    m = TwoTower(N_ITEMS, DIM, max_history=HIST, half_life_s=3600.0, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.pos_raw.copy_(torch.randn(HIST, generator=g))
        m.W.add_(0.5 * torch.randn(DIM, DIM, generator=g))
        m.b.copy_(0.3 * torch.randn(DIM, generator=g))
    return m


def _histories(seed: int = 0, rows: int = 12) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, HIST + 1, rows)
    lengths[0], lengths[1] = 0, HIST                      # an empty and a full history
    mask = np.arange(HIST)[None, :] < lengths[:, None]
    items = np.where(mask, rng.integers(0, N_ITEMS, (rows, HIST)), 0)
    types = np.where(mask, rng.integers(0, len(TYPE_NAMES), (rows, HIST)), 0)
    ages = np.where(mask, np.sort(rng.exponential(7200.0, (rows, HIST)), axis=1), 0.0)
    strengths = np.where(mask, rng.choice([0.5, 1.0, 2.0, 3.0, 4.0], (rows, HIST)), 0.0).astype(np.float32)
    return tuple(torch.from_numpy(a) for a in (items, types, ages, strengths, mask))


@pytest.mark.parametrize("with_strengths", [False, True])
def test_numpy_encoder_matches_torch_user_tower(with_strengths: bool) -> None:
    m = _perturbed_model()
    items, types, ages, strengths, mask = _histories()
    s = strengths if with_strengths else None
    with torch.no_grad():
        torch_u = m.user_vectors(items, types, ages, s, mask).numpy()
    enc, emb = m.to_encoder(), m.item_embeddings()
    for r in range(len(items)):
        n = int(mask[r].sum())
        np_u = enc.encode(emb[items[r, :n].numpy()], types[r, :n].numpy(), ages[r, :n].numpy(),
                          strengths[r, :n].numpy() if with_strengths else None)
        np.testing.assert_allclose(torch_u[r], np_u, rtol=1e-5, atol=1e-6)
        if n == 0:
            assert not np_u.any() and not torch_u[r].any()
        else:
            assert abs(float(np.linalg.norm(torch_u[r])) - 1.0) < 1e-5


def test_large_catalogue_path_gives_the_same_vectors() -> None:
    """Normalising only the distinct rows (big tables) equals normalising the whole table (small ones)."""
    small = _perturbed_model()
    big = TwoTower(5000, DIM, max_history=HIST, half_life_s=3600.0)
    with torch.no_grad():
        big.item_embedding.weight[:N_ITEMS] = small.item_embedding.weight
        big.load_encoder(small.to_encoder())
        big.pos_raw.copy_(small.pos_raw)
    batch = _histories(1)
    with torch.no_grad():
        np.testing.assert_allclose(big.user_vectors(*batch).numpy(), small.user_vectors(*batch).numpy(),
                                   rtol=1e-6, atol=1e-7)


def test_exports_are_float32_copies() -> None:
    m = _perturbed_model()
    emb, enc = m.item_embeddings(), m.to_encoder()
    assert emb.dtype == np.float32 and emb.shape == (N_ITEMS, DIM)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)
    assert all(a.dtype == np.float32 for a in (enc.pos_weight, enc.W, enc.b, enc.type_weight))
    assert (enc.pos_weight > 0).all() and enc.max_items == HIST and enc.half_life_s == 3600.0
    before = emb.copy(), enc.W.copy()
    with torch.no_grad():
        m.item_embedding.weight.mul_(-1.0)
        m.W.zero_()
    np.testing.assert_array_equal(emb, before[0])
    np.testing.assert_array_equal(enc.W, before[1])


def test_from_arrays_reproduces_the_encoder() -> None:
    m = _perturbed_model()
    enc = m.to_encoder()
    again = TwoTower.from_arrays(m.item_embeddings(), enc)
    np.testing.assert_allclose(again.item_embeddings(), m.item_embeddings(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(again.to_encoder().pos_weight, enc.pos_weight, rtol=1e-5)
    np.testing.assert_array_equal(again.to_encoder().W, enc.W)
    identity = TwoTower.from_arrays(m.item_embeddings()).to_encoder()
    np.testing.assert_allclose(identity.pos_weight, UserEncoder.identity(DIM).pos_weight, rtol=1e-6)


def test_inverse_softplus() -> None:
    x = np.array([1e-3, 0.5, 1.0, 7.0, 30.0])
    back = torch.nn.functional.softplus(torch.from_numpy(inverse_softplus(x))).numpy()
    np.testing.assert_allclose(back, x, rtol=1e-6)


def test_loss_masks_accidental_hits_and_applies_log_q() -> None:
    m = TwoTower(N_ITEMS, DIM, seed=0)
    users = torch.nn.functional.normalize(torch.randn(2, DIM), dim=-1)
    pos, weight = torch.tensor([5, 5]), torch.ones(2)
    # both rows want item 5: the other row's copy and the random 5 are masked, one candidate is left
    loss = sampled_softmax_loss(m, users, pos, torch.tensor([5]), weight, None, 0.1)
    assert float(loss.detach()) == 0.0
    # against one negative: softmax of the two corrected logits, by hand
    pos, neg = torch.tensor([3]), torch.tensor([7])
    log_q = torch.linspace(-1.0, 1.0, N_ITEMS)
    v = m.item_vectors(torch.tensor([3, 7])).detach()
    logits = (users[:1] @ v.T)[0] / 0.1 - log_q[[3, 7]]
    want = -torch.log_softmax(logits, dim=0)[0]
    got = sampled_softmax_loss(m, users[:1], pos, neg, torch.ones(1), log_q, 0.1)
    assert torch.allclose(got, want, atol=1e-6)


def test_gradients_reach_every_learned_parameter() -> None:
    m = _perturbed_model()
    items, types, ages, strengths, mask = _histories(2)
    users = m.user_vectors(items, types, ages, strengths, mask)[2:]
    pos = torch.arange(len(users)) % N_ITEMS
    sampled_softmax_loss(m, users, pos, torch.tensor([0, 1, 2]), torch.ones(len(users)), None, 0.1).backward()
    for p in (m.item_embedding.weight, m.pos_raw, m.W, m.b):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert not m.type_weight.requires_grad and not m.half_life_s.requires_grad


def test_histories_longer_than_the_encoder_reuse_its_last_position() -> None:
    m = _perturbed_model()
    rng = np.random.default_rng(5)
    n = HIST + 4
    items, types = rng.integers(0, N_ITEMS, (1, n)), rng.integers(0, len(TYPE_NAMES), (1, n))
    ages = np.sort(rng.exponential(3600.0, (1, n)), axis=1)
    with torch.no_grad():
        u = m.user_vectors(torch.from_numpy(items), torch.from_numpy(types), torch.from_numpy(ages), None,
                           torch.ones(1, n, dtype=torch.bool)).numpy()[0]
    want = m.to_encoder().encode(m.item_embeddings()[items[0]], types[0], ages[0])
    np.testing.assert_allclose(u, want, rtol=1e-5, atol=1e-6)
