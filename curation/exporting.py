"""Exporting the approved dataset: chat, alpaca or sharegpt JSONL, or Parquet, into the workspace's exports/.

Exports are written to a temp file and renamed into place, so a crash never leaves half a dataset.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from curation.errors import StudioError
from curation.toolsets import openai_chat_row

EXPORT_FORMATS = ("chat-jsonl", "alpaca-jsonl", "sharegpt-jsonl", "parquet")


def export_examples(examples: list[dict], path: str | os.PathLike, fmt: str = "chat-jsonl") -> int:
    """Write chat examples ({"generation_id", "messages", ...}) to `path` atomically; returns rows written.

    Formats: chat-jsonl, alpaca-jsonl, sharegpt-jsonl, parquet (generation_id, task_id, messages as JSON).
    """
    if fmt not in EXPORT_FORMATS:
        raise StudioError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    target = Path(path)
    if not target.parent.is_dir():
        raise StudioError(f"cannot export to {target}: directory {target.parent} does not exist")
    for example in examples:
        _check_messages(example)
    if fmt == "parquet":
        _write_atomically(target, lambda f: _write_parquet(examples, f))
    else:
        row_of = {"chat-jsonl": _chat_row, "alpaca-jsonl": _alpaca_row, "sharegpt-jsonl": _sharegpt_row}[fmt]
        rows = [row_of(e["messages"]) for e in examples]
        if fmt == "chat-jsonl":  # a tool-use row in OpenAI's format: its tools, and its calls as tool_calls
            rows = [openai_chat_row(row, e.get("tools")) for row, e in zip(rows, examples)]
        _write_atomically(target, lambda f: _write_jsonl(rows, f))
    return len(examples)


def _check_messages(example: dict):
    messages, gen_id = example.get("messages"), example.get("generation_id")
    if not isinstance(messages, list) or not messages:
        raise StudioError(f"example {gen_id}: no messages to export")
    for m in messages:
        if m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            raise StudioError(f"example {gen_id}: each message needs a role (system, user, assistant) "
                              f"and text content, got {m!r:.200}")
    turns = [m["role"] for m in messages if m["role"] != "system"]
    if len(turns) < 2 or turns[-1] != "assistant" or turns[-2] != "user":
        raise StudioError(f"example {gen_id}: must end with a user message followed by the assistant's answer")


def _chat_row(messages: list[dict]) -> dict:
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}


def _alpaca_row(messages: list[dict]) -> dict:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m["content"] for m in messages if m["role"] != "system"]
    row = {"instruction": turns[-2], "input": "", "output": turns[-1], "system": system}
    # Earlier turns of a multi-turn example go in LLaMA-Factory's alpaca 'history' field.
    history = [[turns[i], turns[i + 1]] for i in range(0, len(turns) - 2, 2)]
    if history:
        row["history"] = history
    return row


def _sharegpt_row(messages: list[dict]) -> dict:
    speaker = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": speaker[m["role"]], "value": m["content"]} for m in messages]}


def _write_jsonl(rows: list[dict], f: BinaryIO):
    for row in rows:
        f.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")


def _write_parquet(examples: list[dict], f: BinaryIO):
    schema = pa.schema([("generation_id", pa.int64()), ("task_id", pa.int64()), ("messages", pa.string())])
    table = pa.table({
        "generation_id": [e.get("generation_id") for e in examples],
        "task_id": [e.get("task_id") for e in examples],
        "messages": [json.dumps(_chat_row(e["messages"])["messages"], ensure_ascii=False) for e in examples],
    }, schema=schema)
    pq.write_table(table, f)


def _write_atomically(target: Path, write: Callable[[BinaryIO], None]):
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp creates the file 0600; an exported dataset is meant to be read by other tools.
            os.fchmod(f.fileno(), target.stat().st_mode & 0o777 if target.exists() else 0o644)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StudioError(f"no space left on the device while writing {target}; nothing was written "
                              "(free some space and export again)") from exc
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path):
    # The rename is only durable once the directory entry itself reaches the disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_path(workspace: str | os.PathLike, name: str) -> Path:
    """Where an export typed by name in the UI goes: a plain file name inside <workspace>/exports.

    Names with a path separator, '..', a leading dot or shell punctuation are refused, so a typed
    name can never write outside the workspace or be mistaken for anything but a file name.
    """
    name = (name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}", name) or ".." in name:
        raise StudioError(f"export name {name!r} must be a plain file name (letters, digits, '.', '_', '-'), "
                          "e.g. train-v1.jsonl; exports always go to the workspace's exports/ folder")
    folder = Path(workspace) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
