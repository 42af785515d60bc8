"""Snapshot rows → token ids with response-only labels, and the content hash that identifies a row.

`tokenize_example` is what every token-level method (sft, kd, kd_logprobs) trains on, so they agree on
what the prompt is, where the answer starts and how a long example is cut.
"""
from __future__ import annotations

import hashlib
import json

from distill.tool_format import student_chat

IGNORE = -100  # label of a token that is not trained on (prompt, padding)


def content_hash(row: dict, keys: tuple[str, ...]) -> str:
    """sha256 of the row's training content (the given keys, canonical JSON): equal text, equal hash."""
    payload = json.dumps({k: row.get(k) for k in keys}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def example_row(example: dict, **extra) -> dict:
    """A chat example (generation_id, task_id, messages; `tools` for a tool-use row) as a snapshot row: its id
    is the generation id, `extra` fields ride along, and the hash covers the messages (and tools) only."""
    row = {"row_id": str(example.get("generation_id")), "generation_id": example.get("generation_id"),
           "task_id": example.get("task_id"), **extra, "messages": example["messages"]}
    if example.get("tools"):
        row["tools"] = example["tools"]
    row["hash"] = content_hash(row, ("messages", "tools") if row.get("tools") else ("messages",))
    return row


def snapshot_digest(rows: list[dict]) -> str:
    """One hash for a whole snapshot: its rows' ids and hashes in order."""
    h = hashlib.sha256()
    for row in rows:
        h.update(f"{row['row_id']}:{row['hash']}\n".encode())
    return h.hexdigest()


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prompt_and_full_ids(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> tuple[list[int], list[int]]:
    """Token ids of the prompt (with the assistant header) and of the whole chat, by the chat template
    (given `tools` when the template renders them: distill/tool_format.py)."""
    prompt_ids = tokenizer.apply_chat_template(messages[:-1], tools=tools, add_generation_prompt=True,
                                               tokenize=True, return_dict=True)["input_ids"]
    full_ids = tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True)["input_ids"]
    return list(prompt_ids), list(full_ids)


def tokenize_example(tokenizer, messages: list[dict], max_length: int, tools: list[dict] | None = None) -> dict | None:
    """{input_ids, labels, prompt_length} of a chat ending with the assistant's answer; None if nothing to learn.

    labels are the ids of every assistant turn (and the end-of-turn tokens after each), IGNORE elsewhere:
    a conversation teaches each of its answers, as TRL's `assistant_only_loss` does; a single-turn chat
    teaches its one answer. A turn starts where the tokenized prompt before it (with the assistant header)
    and the tokenized chat diverge (TRL's rule: some templates render a prompt alone differently) and ends
    where the chat through that turn stops being a prefix of the whole. prompt_length is where the last
    answer starts (the prompt an on-policy method answers). The first `max_length` tokens are kept; an
    example whose answers fall entirely beyond them teaches nothing and is dropped (None).
    tools: a tool-use row's tool set; its calls are rendered in the student's tool-call format, or the
    fallback (distill/tool_format.py), and learned like any answer.
    """
    messages, tools = student_chat(tokenizer, messages, tools)
    prompt_ids, full_ids = prompt_and_full_ids(tokenizer, messages, tools)
    start = common_prefix_length(prompt_ids, full_ids)
    labels = [IGNORE] * start + full_ids[start:]
    for begin, end in _earlier_answer_spans(tokenizer, messages, full_ids, tools):
        labels[begin:end] = full_ids[begin:end]
    input_ids, labels = full_ids[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels):
        return None
    return {"input_ids": input_ids, "labels": labels, "prompt_length": min(start, len(input_ids))}


def _earlier_answer_spans(tokenizer, messages: list[dict], full_ids: list[int],
                          tools: list[dict] | None = None) -> list[tuple[int, int]]:
    """[begin, end) token spans of the assistant turns before the last one, inside `full_ids`."""
    spans = []
    for i, message in enumerate(messages[:-1]):
        if message["role"] != "assistant":
            continue
        before, through = prompt_and_full_ids(tokenizer, messages[:i + 1], tools)
        begin = common_prefix_length(before, full_ids)
        end = common_prefix_length(through, full_ids)
        if end > begin:
            spans.append((begin, end))
    return spans


def answer_token_spans(tokenizer, messages: list[dict], input_ids: list[int]) -> list[tuple[int, int] | None] | None:
    """For each token of `input_ids`, its (start, end) character span inside the answer text, or None
    for tokens outside the answer (prompt, end-of-turn). None when the spans cannot be trusted: the
    tokenizer is not a fast one, or tokenizing the rendered text does not give the template's ids.
    """
    if not getattr(tokenizer, "is_fast", False):
        return None
    answer = messages[-1]["content"]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_text = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    begin = text.find(answer, len(prompt_text)) if text.startswith(prompt_text) else -1
    if begin < 0:
        return None
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"][:len(input_ids)]) != list(input_ids):
        return None
    end = begin + len(answer)
    spans = []
    for s, e in enc["offset_mapping"][:len(input_ids)]:
        spans.append((s - begin, e - begin) if begin <= s and e <= end and e > s else None)
    return spans
