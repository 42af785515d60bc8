"""The KD losses on hand-built tensors, checked against dense float64 computations and TRL's GKD loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.losses import (generalized_jsd, generalized_jsd_from_logprobs, kl_from_logprobs,
                            sparse_kd_or_cross_entropy, sparse_topk_divergence, topk_buckets)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Dense KL(p || q) per row in float64, 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(-1)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def jsd(s: np.ndarray, t: np.ndarray, beta: float) -> np.ndarray:
    """The generalised JSD of the module docstring, densely: beta*KL(T||M) + (1-beta)*KL(S||M)."""
    m = beta * t + (1 - beta) * s
    return beta * kl(t, m) + (1 - beta) * kl(s, m)


@pytest.fixture
def logits():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(6, 17, generator=gen, dtype=torch.float64), torch.randn(6, 17, generator=gen,
                                                                              dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 1.0])
def test_identical_distributions_have_zero_divergence(logits, beta):
    s, _ = logits
    assert torch.allclose(generalized_jsd(s, s.clone(), beta), torch.zeros(6, dtype=torch.float32), atol=1e-6)


def test_beta_0_is_forward_kl_and_beta_1_reverse_kl(logits):
    s, t = logits
    ps, pt = softmax(s.numpy()), softmax(t.numpy())
    np.testing.assert_allclose(generalized_jsd(s, t, 0.0).numpy(), kl(pt, ps), rtol=1e-5)  # KL(teacher||student)
    np.testing.assert_allclose(generalized_jsd(s, t, 1.0).numpy(), kl(ps, pt), rtol=1e-5)  # KL(student||teacher)
    assert not np.allclose(kl(pt, ps), kl(ps, pt))  # the test tells the two directions apart


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_interior_beta_is_the_generalised_jsd_and_swaps_with_one_minus_beta(logits, beta):
    s, t = logits
    ps, pt = softmax(s.numpy()), softmax(t.numpy())
    np.testing.assert_allclose(generalized_jsd(s, t, beta).numpy(), jsd(ps, pt, beta), rtol=1e-5)
    np.testing.assert_allclose(generalized_jsd(s, t, beta).numpy(), generalized_jsd(t, s, 1 - beta).numpy(), rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.7, 1.0])
def test_values_match_trl_generalized_jsd_loss_including_temperature(logits, beta):
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDTrainer

    s, t = (x.float() for x in logits)
    labels = torch.tensor([[0, 1, -100, 3, 4, -100]])
    trl = GKDTrainer.generalized_jsd_loss(s[None], t[None], labels=labels, beta=beta, temperature=2.0)
    ours = generalized_jsd(s, t, beta, temperature=2.0)[labels[0] != -100].mean()
    assert torch.allclose(ours, trl, rtol=1e-5)


def test_temperature_softens_both_sides(logits):
    s, t = logits
    hot = generalized_jsd(s, t, 0.0, temperature=4.0)
    np.testing.assert_allclose(hot.numpy(), kl(softmax(t.numpy() / 4), softmax(s.numpy() / 4)), rtol=1e-5)
    assert (hot < generalized_jsd(s, t, 0.0)).all()


def test_kl_ignores_outcomes_the_first_distribution_never_takes():
    p = torch.log(torch.tensor([[0.5, 0.5, 0.0]]))
    q = torch.log(torch.tensor([[0.25, 0.25, 0.5]]))
    assert torch.allclose(kl_from_logprobs(p, q), torch.tensor([np.log(2.0)], dtype=torch.float32))


# ---- sparse top-k ----------------------------------------------------------------------------------
def topk_inputs(student: torch.Tensor, teacher_probs: np.ndarray, k: int):
    ids = np.argsort(-teacher_probs, axis=-1)[:, :k]
    logprobs = np.log(np.take_along_axis(teacher_probs, ids, -1))
    return torch.tensor(ids), torch.tensor(logprobs, dtype=torch.float32), torch.ones(ids.shape, dtype=torch.bool)


def coarse(p: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """p [N, V] coarse-grained onto [the ids..., everything else] (dense, float64)."""
    listed = np.take_along_axis(p, ids, -1)
    return np.concatenate([listed, 1 - listed.sum(-1, keepdims=True)], -1)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_sparse_topk_equals_the_dense_divergence_of_the_coarse_grained_distributions(logits, beta):
    s, t = logits
    ps, pt = softmax(s.numpy()), softmax(t.numpy())
    ids, logprobs, valid = topk_inputs(s, pt, k=4)
    expected = jsd(coarse(ps, ids.numpy()), coarse(pt, ids.numpy()), beta) if 0 < beta < 1 else (
        kl(coarse(pt, ids.numpy()), coarse(ps, ids.numpy())) if beta == 0 else
        kl(coarse(ps, ids.numpy()), coarse(pt, ids.numpy())))
    np.testing.assert_allclose(sparse_topk_divergence(s.float(), ids, logprobs, valid, beta).numpy(), expected,
                               rtol=1e-4, atol=1e-6)


def test_sparse_equals_dense_forward_kl_when_the_top_k_hold_all_the_teacher_mass(logits):
    s, t = logits
    t = t.clone()
    t[:, 5:] = -float("inf")  # the teacher only ever says one of the first 5 tokens
    pt, ps = softmax(t.numpy()), softmax(s.numpy())
    ids, logprobs, valid = topk_inputs(s, pt, k=5)
    sparse = sparse_topk_divergence(s.float(), ids, logprobs, valid, 0.0)
    np.testing.assert_allclose(sparse.numpy(), kl(pt, ps), rtol=1e-4)  # the full-vocabulary forward KL
    assert sparse.min() > 0


def test_invalid_entries_fall_into_the_tail_bucket(logits):
    s, t = logits
    ps, pt = softmax(s.numpy()), softmax(t.numpy())
    ids, logprobs, valid = topk_inputs(s, pt, k=4)
    valid[:, 3] = False  # the 4th alternative did not map to a student token
    expected = kl(coarse(pt, ids.numpy()[:, :3]), coarse(ps, ids.numpy()[:, :3]))
    np.testing.assert_allclose(sparse_topk_divergence(s.float(), ids, logprobs, valid).numpy(), expected, rtol=1e-4)
    student_logp, teacher_logp = topk_buckets(s.float(), ids, logprobs, valid)
    assert student_logp.shape == teacher_logp.shape == (6, 5)
    assert torch.allclose(teacher_logp.exp().sum(-1), torch.ones(6), atol=1e-5)
    assert (teacher_logp[:, 3].exp() == 0).all()


def test_gradients_stay_finite_with_every_token_listed_and_with_rows_listing_none():
    student = torch.randn(3, 6, requires_grad=True)
    teacher = torch.log_softmax(torch.randn(3, 6), -1)
    ids = torch.arange(6).expand(3, 6).clone()
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[2] = False  # nothing known at this position
    for beta in (0.0, 0.5, 1.0):
        student.grad = None
        sparse_topk_divergence(student, ids, teacher, valid, beta).sum().backward()
        assert torch.isfinite(student.grad).all()


def test_uncovered_positions_fall_back_to_cross_entropy_on_the_answer_token(logits):
    s, t = logits
    s = s.float()
    ids, logprobs, valid = topk_inputs(s, softmax(t.numpy()), k=3)
    valid[1:3] = False
    labels = torch.tensor([4, 2, 7, 1, 0, 5])
    mixed = sparse_kd_or_cross_entropy(s, labels, ids, logprobs, valid)
    ce = -torch.log_softmax(s, -1)[torch.arange(6), labels]
    kd = sparse_topk_divergence(s, ids, logprobs, valid)
    assert torch.allclose(mixed[1:3], ce[1:3]) and torch.allclose(mixed[[0, 3, 4, 5]], kd[[0, 3, 4, 5]])


def test_from_logprobs_refuses_a_beta_out_of_range():
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd_from_logprobs(torch.zeros(1, 2), torch.zeros(1, 2), 1.5)


# ---- against TRL's own distillation losses ---------------------------------------------------------
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_dense_divergence_equals_trls_chunked_distillation_loss(beta):
    """TRL's stable DistillationTrainer (our kd at on_policy 1) computes the same divergence from hidden states."""
    from trl.trainer.distillation_trainer import _chunked_divergence_loss

    gen = torch.Generator().manual_seed(1)
    hidden_s, hidden_t = torch.randn(1, 6, 8, generator=gen), torch.randn(1, 6, 8, generator=gen)
    head_s, head_t = torch.randn(17, 8, generator=gen), torch.randn(17, 8, generator=gen)
    trl, _, _ = _chunked_divergence_loss(hidden_s, hidden_t, head_s, head_t, torch.ones(1, 6), beta, temperature=2.0)
    ours = generalized_jsd(hidden_s[0] @ head_s.T, hidden_t[0] @ head_t.T, beta, temperature=2.0).mean()
    assert torch.allclose(ours, trl, rtol=1e-5)


def trl_topk_forward_kl(student_logits, ids, teacher_logprobs, valid):
    """TRL's ServerDistillation formulation (top-k + a tail bucket of 1 - sum), per position."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.server_distillation.server_distillation_trainer import _add_tail_bucket, _jsd_divergence

    none = torch.tensor(float("-inf"))
    student = torch.where(valid, torch.log_softmax(student_logits, -1).gather(-1, ids), none)
    teacher = torch.where(valid, teacher_logprobs, none)
    student, support = _add_tail_bucket(student, valid)
    teacher, _ = _add_tail_bucket(teacher, valid)
    return _jsd_divergence(student, teacher, 0.0, support).sum(-1)


def test_sparse_equals_trls_topk_plus_tail_on_ordinary_distributions(logits):
    s, t = (x.float() for x in logits)
    ids, logprobs, valid = topk_inputs(s, softmax(t.numpy().astype(np.float64)), k=4)
    assert torch.allclose(sparse_topk_divergence(s, ids, logprobs, valid), trl_topk_forward_kl(s, ids, logprobs, valid),
                          rtol=1e-5)


def test_a_confident_student_keeps_its_tail_where_one_minus_the_listed_sum_loses_it(logits):
    """Why we keep our own sparse loss: TRL's tail is 1 - sum(listed), which float32 cannot tell from 0 once the
    student puts all but 1e-8 of its mass on the listed tokens (clamped to 1e-7). Ours takes the logsumexp of the
    unlisted logits, so loss and gradient stay those of the exact coarse-grained KL."""
    s, t = logits
    ids, logprobs, valid = topk_inputs(s, softmax(t.numpy()), k=4)
    confident = s.clone().scatter_(-1, ids, 30.0)  # the student is sure it is one of the teacher's 4 tokens
    pt, ps = softmax(t.numpy()), softmax(confident.numpy())
    exact = kl(coarse(pt, ids.numpy()), coarse(ps, ids.numpy()))  # float64, dense
    ours = sparse_topk_divergence(confident.float(), ids, logprobs, valid).numpy()
    trl = trl_topk_forward_kl(confident.float(), ids, logprobs, valid).numpy()
    np.testing.assert_allclose(ours, exact, rtol=1e-4)
    assert (np.abs(trl - exact) / exact > 0.2).all()  # TRL's value is off by more than a fifth on every row
