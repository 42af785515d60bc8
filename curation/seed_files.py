"""Reading a seed file (CSV, JSONL, JSON array, Parquet) into task dicts.

A seed file is parsed completely before anything is written, so a bad file leaves the workspace
untouched; every problem is an `ImportFormatError` naming the file, the line and the field.
Adding the tasks to a workspace is curation/importing.py.
"""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from curation.errors import ImportFormatError

MAX_LINE_BYTES = 1024 * 1024
MAX_FILE_BYTES = 200 * 1024 * 1024
IMPORT_EXTENSIONS = (".csv", ".jsonl", ".ndjson", ".json", ".parquet")

# Task field -> accepted column names, first one preferred. Names are matched case-insensitively.
FIELD_ALIASES = {
    "instruction": ("instruction", "prompt", "question"),
    "input": ("input",),
    "system_prompt": ("system_prompt", "system"),
    "skill": ("skill",),
    "domain": ("domain",),
}


class _FieldError(Exception):
    """A bad value in one record; the reader that knows the line turns it into ImportFormatError."""

    def __init__(self, reason, field):
        super().__init__(reason)
        self.reason, self.field = reason, field


def read_tasks(path: str | os.PathLike) -> list[dict]:
    """Parse a seed file into task dicts (instruction, input, system_prompt, skill, domain, source).

    Raises ImportFormatError for anything malformed; never returns an empty list.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMPORT_EXTENSIONS:
        raise ImportFormatError(path, f"unsupported file type {ext or '(none)'!r}; "
                                      f"use one of {', '.join(IMPORT_EXTENSIONS)}")
    _check_file_size(path)
    reader = {".csv": _read_csv, ".jsonl": _read_jsonl, ".ndjson": _read_jsonl,
              ".json": _read_json_array, ".parquet": _read_parquet}[ext]
    tasks = reader(path)
    if not tasks:
        raise ImportFormatError(path, "the file is empty: it has no task rows (only blank lines or a header)")
    return tasks


def _check_file_size(path: Path):
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImportFormatError(path, "no such file") from None
    if not path.is_file():
        raise ImportFormatError(path, "not a regular file")
    if size > MAX_FILE_BYTES:
        raise ImportFormatError(path, f"file is {size / 1024**2:.0f} MiB, over the "
                                      f"{MAX_FILE_BYTES // 1024**2} MiB limit; split it into smaller files")


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line) pairs, refusing over-long lines before decoding them.

    readline's size cap means a 50 MB single-line file costs one 1 MiB read, not 50 MB of parsing.
    """
    with open(path, "rb") as f:
        lineno = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 2)
            if not raw:
                return
            lineno += 1
            if len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
                raise ImportFormatError(path, f"line is too long (over the {MAX_LINE_BYTES // 1024**2} MiB "
                                              "per-line limit)", line=lineno)
            yield lineno, _decode(raw, path, lineno, first=lineno == 1)


def _decode(raw: bytes, path: Path, lineno: int, first: bool) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ImportFormatError(path, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                      "save the file as UTF-8", line=lineno) from None
    # Spreadsheet tools often prepend a byte-order mark; it is not part of the first column's name.
    return text.removeprefix("\ufeff") if first else text


def _read_jsonl(path: Path) -> list[dict]:
    tasks = []
    for lineno, text in _text_lines(path):
        if not text.strip():
            continue
        try:
            # Without the line break, an error at the end of the line reports this line's column.
            record = json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as e:
            raise ImportFormatError(path, f"invalid JSON: {e.msg} at column {e.pos + 1}", line=lineno) from None
        tasks.append(_task_at(record, path, lineno))
    return tasks


def _read_csv(path: Path) -> list[dict]:
    lines = _text_lines(path)
    reader = csv.reader(text for _, text in lines)
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            return []
        header_line = reader.line_num
        columns = [_norm_key(c) for c in header]
        _refuse_duplicate_columns(header, columns, path, header_line)
        _require_instruction_column(columns, path, header_line)
        return _csv_rows(reader, columns, path)
    except csv.Error as e:
        raise ImportFormatError(path, f"malformed CSV: {e}", line=reader.line_num) from None


def _refuse_duplicate_columns(header: list[str], columns: list[str], path: Path, line: int) -> None:
    """Two header cells naming one column: the row dict would keep only the last, silently dropping the first."""
    seen: dict[str, str] = {}
    for raw, name in zip(header, columns):
        if not name:
            continue
        if name in seen:
            raise ImportFormatError(path, f"the header names column {name!r} twice ({seen[name]!r} and {raw!r}): "
                                          "rename or remove one", line=line)
        seen[name] = raw


def _csv_rows(reader, columns: list[str], path: Path) -> list[dict]:
    tasks = []
    start = reader.line_num + 1
    for row in reader:
        if any(cell.strip() for cell in row):
            if len(row) > len(columns):
                raise ImportFormatError(path, f"row has {len(row)} fields but the header has {len(columns)}; "
                                              "quote values that contain commas", line=start)
            tasks.append(_task_at(dict(zip(columns, row)), path, start))
        # A quoted field may span several physical lines; the next record starts after them.
        start = reader.line_num + 1
    return tasks


def _read_json_array(path: Path) -> list[dict]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ImportFormatError(path, f"not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8",
                                line=line) from None
    if not text.strip():
        return []
    return [_task_at(record, path, line) for line, record in _json_array_items(text, path)]


_WS = re.compile(r"\s*")


def _json_array_items(text: str, path: Path) -> Iterator[tuple[int, object]]:
    """Yield (line, element) of a top-level JSON array, element by element.

    json.loads would lose where each element sits, and a bad element must be reported by its line.
    """
    decoder, lines = json.JSONDecoder(), _LineCounter(text)
    pos = _WS.match(text, 0).end()
    if text[pos] != "[":
        raise ImportFormatError(path, "a .json seed file must be an array of task objects "
                                      "(for one object per line use .jsonl)", line=lines.at(pos))
    pos = _WS.match(text, pos + 1).end()
    if text.startswith("]", pos):
        _expect_end(text, pos + 1, path, lines)
        return
    while True:
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise ImportFormatError(path, f"invalid JSON: {e.msg} at column {e.colno}", line=e.lineno) from None
        yield lines.at(pos), item
        pos = _WS.match(text, end).end()
        if text.startswith(",", pos):
            pos = _WS.match(text, pos + 1).end()
        elif text.startswith("]", pos):
            _expect_end(text, pos + 1, path, lines)
            return
        else:
            raise ImportFormatError(path, "invalid JSON: expected ',' or ']' after an element",
                                    line=lines.at(pos))


def _expect_end(text: str, pos: int, path: Path, lines: "_LineCounter"):
    pos = _WS.match(text, pos).end()
    if pos != len(text):
        raise ImportFormatError(path, "invalid JSON: extra data after the closing ']'", line=lines.at(pos))


class _LineCounter:
    """Line number of increasing offsets in O(total length), not O(offset) per call."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _read_parquet(path: Path) -> list[dict]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise ImportFormatError(path, f"not a readable Parquet file: {e}") from None
    columns = [_norm_key(c) for c in table.column_names]
    _require_instruction_column(columns, path, None)
    tasks = []
    for number, values in enumerate(table.to_pylist(), start=1):
        record = {_norm_key(k): v for k, v in values.items()}
        try:
            tasks.append(_task_from_record(record))
        except _FieldError as e:
            raise ImportFormatError(path, f"row {number}: {e.reason}", field=e.field) from None
    return tasks


def _require_instruction_column(columns: list[str], path: Path, line: int | None):
    if not any(alias in columns for alias in FIELD_ALIASES["instruction"]):
        found = ", ".join(repr(c) for c in columns if c) or "none"
        raise ImportFormatError(path, f"no instruction column (also accepted: prompt, question); "
                                      f"columns found: {found}", line=line, field="instruction")


def _task_at(record, path: Path, line: int) -> dict:
    if not isinstance(record, dict):
        raise ImportFormatError(path, f"expected a JSON object like {{\"instruction\": ...}}, "
                                      f"got {_type_name(record)}", line=line)
    try:
        return _task_from_record({_norm_key(k): v for k, v in record.items()})
    except _FieldError as e:
        raise ImportFormatError(path, e.reason, line=line, field=e.field) from None


def _task_from_record(record: dict) -> dict:
    """Map one record (keys already normalised) onto the task fields, validating each value."""
    task = {}
    for field, aliases in FIELD_ALIASES.items():
        key = next((a for a in aliases if a in record), None)
        if field == "instruction" and key is None:
            found = ", ".join(repr(k) for k in record) or "none"
            raise _FieldError(f"missing (also accepted: prompt, question); keys found: {found}", field)
        task[field] = _text_value(record.get(key) if key else None, key or field)
    if task["instruction"] is None:
        raise _FieldError("the instruction is blank", next(a for a in FIELD_ALIASES["instruction"] if a in record))
    task["source"] = "import"
    return task


def _text_value(value, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _FieldError(f"must be text, got {_type_name(value)}", field)
    return value.strip() or None


def _norm_key(key) -> str:
    return str(key).strip().lower()


def _type_name(value) -> str:
    names = {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number",
             str: "a string", type(None): "null", bytes: "binary data"}
    return names.get(type(value), type(value).__name__)
