"""IFD (instruction-following difficulty, Li et al. 2023) of (instruction, response) pairs under the student:
its losses need torch, so this runs in the scoring child process (models.scoring), never in the web
process. The ratio is `ifd_from_losses`; what the ranking makes of it is pure numpy in curation.rank."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def ifd_from_losses(conditioned: Sequence[float], plain: Sequence[float]) -> float:
    """IFD = mean(conditioned) / mean(plain): per-token losses of the same response tokens, predicted
    with and without the instruction in front. NaN when there are no tokens or the plain loss is 0."""
    conditioned, plain = np.asarray(conditioned, dtype=np.float64), np.asarray(plain, dtype=np.float64)
    if conditioned.size == 0 or plain.size == 0 or plain.mean() == 0:
        return float("nan")
    return float(conditioned.mean() / plain.mean())


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross entropy of each next token. logits (B, T, V), labels (B, T) with -100 = not scored.

    Returns losses (B, T-1) and mask (B, T-1): position t holds the loss of labels[:, t+1].
    """
    targets = labels[:, 1:]
    mask = targets != -100
    losses = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets.clamp(min=0), reduction="none")
    return losses * mask, mask


def ifd_scores(model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 4,
               max_length: int = 1024) -> np.ndarray:
    """(n,) IFD of each (instruction, response) pair under a causal LM; NaN for an empty response.

    The instruction is wrapped in the tokenizer's chat template when it has one. Both passes score the
    same response tokens: after a BOS token when the tokenizer has one, else from the second token on
    (nothing predicts the first token of a response that stands alone).
    """
    if batch_size < 1 or max_length < 4:
        raise ValueError(f"batch_size must be ≥ 1 and max_length ≥ 4 (got {batch_size}, {max_length})")
    sequences, scored = [], []  # per pair: with the instruction, then alone; tokens scored at the end
    for instruction, response in pairs:
        prompt, answer = _encode_pair(tokenizer, instruction, response, max_length)
        sequences += [prompt + answer, _plain_prefix(tokenizer) + answer]
        scored += [_scored_count(tokenizer, len(answer))] * 2
    means = _mean_losses(model, tokenizer, sequences, scored, batch_size)
    return np.array([ifd_from_losses([means[2 * i]], [means[2 * i + 1]]) if scored[2 * i] else np.nan
                     for i in range(len(pairs))], dtype=np.float64)


def _encode_pair(tokenizer, instruction: str, response: str, max_length: int) -> tuple[list[int], list[int]]:
    if getattr(tokenizer, "chat_template", None):
        prompt_text = tokenizer.apply_chat_template([{"role": "user", "content": instruction}],
                                                    tokenize=False, add_generation_prompt=True)
    else:
        prompt_text = instruction + "\n"
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    answer = tokenizer(response, add_special_tokens=False)["input_ids"][: max_length - 2]
    keep = max(max_length - len(answer), 1)
    return prompt[-keep:], answer  # a long prompt loses its start, never the scored response


def _plain_prefix(tokenizer) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def _scored_count(tokenizer, answer_len: int) -> int:
    return answer_len if tokenizer.bos_token_id is not None else max(answer_len - 1, 0)


@torch.no_grad()
def _mean_losses(model, tokenizer, sequences: list[list[int]], n_scored: list[int], batch_size: int) -> list[float]:
    """Mean loss over the last n_scored[i] tokens of each sequence; batched by similar length."""
    pad = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)
    device = next(model.parameters()).device
    model.eval()
    means = [float("nan")] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        batch = [i for i in order[start:start + batch_size] if n_scored[i] > 0]
        if not batch:
            continue
        width = max(len(sequences[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, i in enumerate(batch):
            seq = sequences[i]
            ids[row, :len(seq)] = torch.tensor(seq)
            attention[row, :len(seq)] = 1
            labels[row, len(seq) - n_scored[i]:len(seq)] = ids[row, len(seq) - n_scored[i]:len(seq)]
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
        losses, mask = token_losses(logits, labels.to(device))
        for row, i in enumerate(batch):
            means[i] = float(losses[row].sum() / mask[row].sum())
    return means
