"""The student's negative log-likelihood of a given answer: where the answer starts, and its summed loss.

Pure functions of a tokenizer and a model (torch imported only when one runs), shared by the three places
that measure an answer's NLL: the training run's held-out eval loss (distill.callback), the scoring child
(models.scoring) and the tests. Tested on hand-built logits (tests/test_eval_metrics.py).
"""
from __future__ import annotations

IGNORE_INDEX = -100  # label of a token that is not scored (the prompt)


def token_nll(logits, labels) -> tuple[float, int]:
    """Summed NLL (nats) of the scored tokens and their count, for a causal LM.

    logits: float[T, V] (or [1, T, V]) — position t predicts token t+1.
    labels: int[T] (or [1, T]) — the input ids, with IGNORE_INDEX (-100) at tokens not scored.
    The first token is never scored (nothing predicts it).
    """
    import torch

    logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    shift_logits, shift_labels = logits[:-1].float(), labels[1:]
    mask = shift_labels != IGNORE_INDEX
    if not bool(mask.any()):
        return 0.0, 0
    nll = torch.nn.functional.cross_entropy(shift_logits[mask], shift_labels[mask], reduction="sum")
    return float(nll), int(mask.sum())


def response_token_ids(tokenizer, messages: list[dict], answer: str) -> tuple[list[int], int]:
    """(ids of the whole chat with `answer` as the assistant turn, index of the first response token).

    Both parts come from the tokenizer's chat template: the prompt is the template with the generation
    prompt, the response everything after it (the answer and the template's end-of-turn tokens) — the
    tokens the SFT loss covers. If the template does not render the prompt as a prefix of the whole
    chat, the response starts where the two first differ.
    """
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=True,
                                         return_dict=True)
    prompt_ids, full_ids = list(prompt["input_ids"]), list(full["input_ids"])
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    return full_ids, start


def answer_nll(model, tokenizer, messages: list[dict], answer: str, max_length: int = 2048) -> tuple[float, int]:
    """(summed NLL in nats, number of response tokens) of `model` generating `answer` after `messages`.

    Per-token NLL is the sum over the count; sum both over tasks for a token-weighted mean. A chat longer
    than `max_length` tokens is cut at the end (the response's tail is not scored).
    """
    ids, start = response_token_ids(tokenizer, messages, answer)
    return ids_nll(model, ids, start, max_length)


def ids_nll(model, ids: list[int], start: int, max_length: int = 2048) -> tuple[float, int]:
    """`answer_nll` of a chat already tokenized by `response_token_ids`: (ids, first response index)."""
    import torch

    ids = ids[:max_length]
    if start >= len(ids):
        return 0.0, 0
    input_ids = torch.tensor([ids], device=model.device)
    labels = input_ids.clone()
    labels[0, :start] = IGNORE_INDEX
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
    return token_nll(logits[0], labels[0])
