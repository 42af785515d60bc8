"""Conversations as the unit of data (survey 4.1, multi-turn dialogue: Vicuna, Baize, UltraChat).

A conversation is an OpenAI `messages` list: an optional system message, then user and assistant turns
alternating, ending with the assistant. In the workspace it is one task (its first user turn) and one
generation whose `messages` are every turn before the last answer and whose `response` is that answer, so
Review, dedupe, filters, training (the loss on every assistant turn, distill/data.py) and export treat it
like any other row.

Files: JSONL with one conversation per line, or a JSON array of them; each conversation is ShareGPT
(`{"conversations": [{"from": "human" | "gpt" | "system", "value": ...}]}`) or chat (`{"messages":
[{"role": ..., "content": ...}]}`). A bad one is refused with the file, line and field, and nothing is added.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from curation.errors import ImportFormatError

# ShareGPT speaker names as the datasets spell them (Vicuna's "human"/"gpt", some exports' "user"/"assistant").
SPEAKERS = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
            "bing": "assistant", "bard": "assistant", "model": "assistant", "system": "system"}
MAX_CONVERSATION_BYTES = 50 * 1024 * 1024


def read_conversations(path: str | os.PathLike) -> list[dict]:
    """[{"messages": [...], "line": n}] from a .jsonl or .json file; ImportFormatError naming the first bad one."""
    path = Path(path)
    if not path.is_file():
        raise ImportFormatError(path, "no such file")
    if path.stat().st_size > MAX_CONVERSATION_BYTES:
        raise ImportFormatError(path, f"{path.stat().st_size:,} bytes is more than the "
                                      f"{MAX_CONVERSATION_BYTES:,} a conversation file may have; split it")
    text = path.read_text(encoding="utf-8-sig")
    items = _json_array(text, path) if path.suffix.lower() == ".json" else _json_lines(text, path)
    if not items:
        raise ImportFormatError(path, "no conversations in the file")
    return [{"messages": conversation_messages(record, path, line), "line": line} for line, record in items]


def _json_lines(text: str, path: Path) -> list[tuple[int, object]]:
    items = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            items.append((line, json.loads(raw)))
        except ValueError as exc:
            raise ImportFormatError(path, f"not valid JSON ({exc})", line) from None
    return items


def _json_array(text: str, path: Path) -> list[tuple[int, object]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(path, f"not valid JSON ({exc.msg})", exc.lineno) from None
    if not isinstance(data, list):
        raise ImportFormatError(path, "a .json conversation file holds an array of conversations")
    # Items of one array have no line of their own; the item number is what a user can find.
    return [(i, item) for i, item in enumerate(data, start=1)]


def conversation_messages(record, path: Path | str = "conversation", line: int | None = None) -> list[dict]:
    """The record's turns as checked chat messages; ImportFormatError saying where and what is wrong."""
    if not isinstance(record, dict):
        raise ImportFormatError(path, "a conversation is an object with 'messages' or 'conversations'", line)
    if isinstance(record.get("messages"), list):
        messages = [_turn(turn, path, line, f"messages[{i}]", "role", "content")
                    for i, turn in enumerate(record["messages"])]
    elif isinstance(record.get("conversations"), list):
        messages = [_turn(turn, path, line, f"conversations[{i}]", "from", "value")
                    for i, turn in enumerate(record["conversations"])]
    else:
        raise ImportFormatError(path, "no 'messages' (chat) or 'conversations' (ShareGPT) list", line)
    check_turns(messages, path, line)
    return messages


def _turn(turn, path, line, field: str, speaker: str, text: str) -> dict:
    if not isinstance(turn, dict) or not isinstance(turn.get(text), str):
        raise ImportFormatError(path, f"each turn needs '{speaker}' and a text '{text}'", line, field)
    role = SPEAKERS.get(str(turn.get(speaker, "")).lower())
    if role is None:
        raise ImportFormatError(path, f"{turn.get(speaker)!r} is not a speaker the studio knows (system, user, "
                                      "assistant; ShareGPT's human, gpt)", line, f"{field}.{speaker}")
    return {"role": role, "content": turn[text]}


def check_turns(messages: list[dict], path="conversation", line: int | None = None) -> None:
    """A system message only first; then user, assistant, user, ... ending with a non-empty assistant turn."""
    offset = 1 if messages and messages[0]["role"] == "system" else 0
    turns = messages[offset:]
    if not turns:
        raise ImportFormatError(path, "the conversation has no turns", line)
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise ImportFormatError(path, f"expected a {expected} turn, found {message['role']} (turns alternate "
                                          "user, assistant, ...; a system message only comes first)",
                                    line, f"turn {i + offset}")
    if turns[-1]["role"] != "assistant":
        raise ImportFormatError(path, "the conversation ends with a user turn; it must end with the assistant's "
                                      "answer", line)
    empty = [i for i, m in enumerate(messages) if not m["content"].strip()]
    if empty:
        raise ImportFormatError(path, f"the {messages[empty[0]]['role']} turn is empty", line, f"turn {empty[0]}")


def conversation_text(messages: list[dict]) -> str:
    """One text for a whole conversation (dedupe, filters, search): each turn on its own line, roles named."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages if m["role"] != "system")


def turn_pairs(messages: list[dict]) -> list[tuple[str, str]]:
    """[(user, assistant), ...]: the conversation as a chat view shows it (system message left out)."""
    turns = [m["content"] for m in messages if m["role"] != "system"]
    return [(turns[i], turns[i + 1] if i + 1 < len(turns) else "") for i in range(0, len(turns), 2)]


def import_conversations(store, path: str | os.PathLike, name: str | None = None) -> dict:
    """Read, check and store a conversation file (nothing is stored when one conversation is bad).
    {"added": new generation ids, "skipped": conversations already in the workspace, "file": name}."""
    name = name or Path(path).name
    try:
        conversations = read_conversations(path)
    except ImportFormatError as exc:  # the name the user knows, not a temporary upload path
        raise ImportFormatError(name, exc.reason, exc.line, exc.field) from None
    added, skipped = store.add_conversations([c["messages"] for c in conversations], f"import:{name}")
    return {"file": name, "added": added, "skipped": skipped}
