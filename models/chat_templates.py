"""Chat templates the studio gives a student that has none: base models, which never learned to chat.

A base model has never seen a chat's end-of-turn token at the end of an answer: Gemma 3 270M base gives
`<end_of_turn>` a probability of ~6e-13 right after a complete answer, against ~6e-3 for `<eos>`, the token
that ends its pre-training documents. A LoRA adapter (which does not train the embedding rows) cannot lift
a token that far in a few hundred steps, so a student trained to end with `<end_of_turn>` never stops.
These templates therefore end every assistant turn with the tokenizer's `eos_token`: the student learns
to stop with a token it already knows, and every server stops there (llama.cpp counts `<eos>` as an end
of generation). The prompt side keeps the family's own turn markers where it has them (Gemma's
`<start_of_turn>`), so the student's prompts look like its instruct sibling's.
"""
from __future__ import annotations

import json
from pathlib import Path

# Gemma's turn format (system text folded into the first user turn, as Gemma's own template does),
# with the model's turn ended by eos_token instead of <end_of_turn>.
GEMMA_BASE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] + '\n\n' %}"
    "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + message['content'] }}"
    "{% if role == 'model' %}{{ eos_token }}{% else %}{{ '<end_of_turn>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Any other base model: plain-text roles, the assistant's turn ended by eos_token.
PLAIN_BASE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ 'Assistant:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:\n' }}{% endif %}"
)


def for_base_model(architecture: str | None) -> str:
    """The template for a base model of this architecture (config.json's model_type, or GGUF's)."""
    return GEMMA_BASE if (architecture or "").lower().startswith("gemma") else PLAIN_BASE


def read_model_json(folder, name: str) -> dict:
    """A model folder's JSON file as a dict ({} when missing or unreadable)."""
    try:
        data = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ensure_template(tokenizer, model_folder) -> bool:
    """Give a tokenizer without a chat template (a base model's) the base template of its model's
    architecture; True when it was given one."""
    if tokenizer.chat_template:
        return False
    tokenizer.chat_template = for_base_model(read_model_json(model_folder, "config.json").get("model_type"))
    return True
