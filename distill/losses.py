"""Knowledge-distillation losses as pure functions on tensors. Shapes: N positions, V vocabulary, K top-k.

Every function returns one value per position; the trainer chooses which positions count and averages.

Convention (TRL's GKD `generalized_jsd_loss`, kept so numbers match it): for teacher T, student S,
    beta = 0  → KL(T || S)   forward KL, mean-seeking ("cover everything the teacher says")
    beta = 1  → KL(S || T)   reverse KL, mode-seeking (MiniLLM)
    0 < beta < 1 → beta * KL(T || M) + (1 - beta) * KL(S || M),  M = beta * T + (1 - beta) * S
The interior is not continuous with the end points (it tends to 0 as beta → 0 or 1); TRL special-cases
0 and 1 the same way. Temperature divides both sets of logits before the softmax; no T² factor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Stands in for log(0) in bucket vectors: exp() of it is exactly 0 in float32, and unlike -inf it
# keeps differences and logsumexp finite, so no NaN reaches the gradients.
NEG = -1e4
TAIL_FLOOR = 1e-8  # smallest teacher tail mass: keeps KL(S || T) finite when the top-k hold ~all the mass


def kl_from_logprobs(p_logp: torch.Tensor, q_logp: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) over the last dim from log-probabilities. [..., C], [..., C] → [...].

    Outcomes with P = 0 contribute 0, whatever Q says (they are masked before any arithmetic, so a
    log(0) there never turns into NaN in the backward pass).
    """
    p = p_logp.exp()
    live = p > 0
    zero = torch.zeros((), dtype=p_logp.dtype, device=p_logp.device)
    diff = torch.where(live, p_logp, zero) - torch.where(live, q_logp, zero)
    return (p * diff).sum(-1)


def generalized_jsd_from_logprobs(student_logp: torch.Tensor, teacher_logp: torch.Tensor,
                                  beta: float) -> torch.Tensor:
    """The generalised JSD (module docstring) of two distributions given as log-probs. [..., C] x2 → [...]."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1] (got {beta})")
    if beta == 0.0:
        return kl_from_logprobs(teacher_logp, student_logp)
    if beta == 1.0:
        return kl_from_logprobs(student_logp, teacher_logp)
    b = torch.tensor(beta, dtype=student_logp.dtype, device=student_logp.device)
    mixture = torch.logsumexp(torch.stack([teacher_logp + torch.log(b), student_logp + torch.log1p(-b)]), dim=0)
    return b * kl_from_logprobs(teacher_logp, mixture) + (1 - b) * kl_from_logprobs(student_logp, mixture)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float,
                    temperature: float = 1.0) -> torch.Tensor:
    """White-box KD loss per position. student_logits, teacher_logits: [N, V] (same V) → [N].

    beta 0 = forward KL, 1 = reverse KL, in between the generalised JSD (module docstring).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape")
    student_logp = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_logp = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return generalized_jsd_from_logprobs(student_logp, teacher_logp, beta)


def topk_buckets(student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_logprobs: torch.Tensor,
                 valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both distributions coarse-grained to K + 1 outcomes: the teacher's K listed tokens and "the rest".

    student_logits [N, V]; teacher_ids [N, K] (long, student token ids); teacher_logprobs [N, K] (the
    teacher's log-probs of those tokens, from its full distribution); valid [N, K] (bool: the entry
    exists and maps to a student token; ids must be distinct among the valid entries of a row).
    Returns (student_logp, teacher_logp), each [N, K + 1]; column K is the tail bucket. Invalid
    entries get NEG (probability 0) on both sides, so their mass lands in the tail.
    The teacher's tail is 1 - sum(listed probabilities), floored at TAIL_FLOOR and renormalised, since
    APIs round their logprobs and the listed mass can exceed 1 by a hair.
    """
    logits = student_logits.float()
    ids = teacher_ids.long().clamp_min(0)
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # [N, 1]
    student_top = torch.where(valid, logits.gather(-1, ids) - lse, torch.full_like(lse, NEG).expand_as(ids))
    listed = torch.zeros_like(logits).scatter_add(-1, ids, valid.to(logits.dtype)) > 0  # [N, V]
    # A finite fill, not -inf: with every token listed (K = V) a logsumexp over -inf only has a NaN gradient.
    student_tail = torch.logsumexp(logits.masked_fill(listed, -1e9), dim=-1, keepdim=True) - lse
    student_logp = torch.cat([student_top, student_tail.clamp_min(NEG)], dim=-1)

    teacher_top = torch.where(valid, teacher_logprobs.float(), torch.full_like(teacher_logprobs.float(), NEG))
    tail_mass = (1 - teacher_top.exp().sum(-1, keepdim=True)).clamp_min(TAIL_FLOOR)
    teacher_logp = torch.log_softmax(torch.cat([teacher_top, tail_mass.log()], dim=-1), dim=-1)
    return student_logp, teacher_logp


def sparse_topk_divergence(student_logits: torch.Tensor, teacher_ids: torch.Tensor,
                           teacher_logprobs: torch.Tensor, valid: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """KD from an API's top-k logprobs, per position: [N, V], [N, K], [N, K], [N, K] → [N].

    The generalised JSD (beta 0: forward KL) between teacher and student coarse-grained to the
    teacher's top-k tokens plus one tail bucket (`topk_buckets`). Choice of the tail bucket over
    renormalising the top-k: the student is also pushed to keep the right total mass off the listed
    tokens, the value is a lower bound of the full divergence, and it equals the full divergence when
    the listed tokens hold all of the teacher's mass (or K = V).
    """
    student_logp, teacher_logp = topk_buckets(student_logits, teacher_ids, teacher_logprobs, valid)
    return generalized_jsd_from_logprobs(student_logp, teacher_logp, beta)


def token_cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log p_student(label) per position: [N, V], [N] → [N]."""
    return F.cross_entropy(student_logits.float(), labels.long(), reduction="none")


def sparse_kd_or_cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor, teacher_ids: torch.Tensor,
                               teacher_logprobs: torch.Tensor, valid: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """Per position: the top-k divergence where the teacher's logprobs cover it, else cross-entropy on
    the answer's token (a one-sample estimate of the teacher's distribution). [N, V], [N], [N, K] x3 → [N].

    The fallback covers what an API does not report (the end-of-turn token, so the student still
    learns to stop) and tokens whose text does not map to a student token.
    """
    covered = valid.any(-1)
    kd = sparse_topk_divergence(student_logits, teacher_ids, teacher_logprobs, valid, beta)
    ce = token_cross_entropy(student_logits, labels)
    return torch.where(covered, kd, ce)
