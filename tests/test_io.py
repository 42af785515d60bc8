"""Seed import, seed packs and export, against a real DuckDB workspace in tmp_path."""
import json
import os
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from curation import exporting, importing, seed_files
from curation.errors import ImportFormatError, StudioError
from curation.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "ws")
    yield s
    s.close()


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def assert_rejected(store, path, line=None, field=None, says=()):
    """Import fails with a message naming file, line and field, and the workspace stays empty."""
    with pytest.raises(ImportFormatError) as info:
        importing.import_file(store, path)
    message = str(info.value)
    assert path.name in message
    if line is not None:
        assert info.value.line == line and f"line {line}" in message
    if field is not None:
        assert info.value.field == field and f"'{field}'" in message
    for text in says:
        assert text in message, message
    assert store.count_tasks() == 0
    return message


# ---- each format -------------------------------------------------------------------------------
def test_import_csv_with_multiline_field_and_alias(store, tmp_path):
    path = write(tmp_path / "seeds.csv",
                 'Prompt,input,system,skill\n"  Say hi  ",,Be brief,\n"Summarise","line one\nline two",,nlu\n')
    ids = importing.import_file(store, path, skill="instruction-following", domain="general")
    tasks = store.tasks(ids)
    assert [t["instruction"] for t in tasks] == ["Say hi", "Summarise"]
    assert tasks[0]["input"] is None and tasks[0]["system_prompt"] == "Be brief"
    assert tasks[1]["input"] == "line one\nline two"
    assert [t["skill"] for t in tasks] == ["instruction-following", "nlu"]  # given skill fills only blanks
    assert {t["domain"] for t in tasks} == {"general"} and {t["source"] for t in tasks} == {"import"}


def test_import_jsonl_with_question_alias_and_blank_lines(store, tmp_path):
    path = write(tmp_path / "seeds.ndjson", jsonl([{"question": "What is 2+2?", "domain": "math"}]) + "\n  \n"
                 + jsonl([{"instruction": "Name a colour", "input": "", "skill": "nlu"}]))
    tasks = store.tasks(importing.import_file(store, path))
    assert [(t["instruction"], t["input"], t["skill"], t["domain"]) for t in tasks] == [
        ("What is 2+2?", None, None, "math"), ("Name a colour", None, "nlu", None)]


def test_import_json_array(store, tmp_path):
    path = write(tmp_path / "seeds.json", json.dumps([{"instruction": "A"}, {"prompt": "B", "system_prompt": "S"}],
                                                     indent=2))
    tasks = store.tasks(importing.import_file(store, path))
    assert [(t["instruction"], t["system_prompt"]) for t in tasks] == [("A", None), ("B", "S")]


def test_import_parquet(store, tmp_path):
    path = tmp_path / "seeds.parquet"
    pd.DataFrame({"prompt": ["one", "two"], "input": [None, "ctx"], "domain": ["d", None]}).to_parquet(path)
    tasks = store.tasks(importing.import_file(store, path, domain="fallback"))
    assert [(t["instruction"], t["input"], t["domain"]) for t in tasks] == [("one", None, "d"), ("two", "ctx", "fallback")]


# ---- malformed files: nothing written, message names file / line / field ---------------------
def test_bad_json_on_line_7_of_jsonl(store, tmp_path):
    lines = jsonl([{"instruction": f"task {i}"} for i in range(6)]) + '{"instruction": "oops",\n'
    assert_rejected(store, write(tmp_path / "bad.jsonl", lines), line=7, says=("invalid JSON", "column 24"))


def test_jsonl_line_that_is_not_an_object(store, tmp_path):
    path = write(tmp_path / "list.jsonl", jsonl([{"instruction": "ok"}, ["not", "an", "object"]]))
    assert_rejected(store, path, line=2, says=("JSON object", "an array"))


def test_instruction_that_is_not_a_string(store, tmp_path):
    path = write(tmp_path / "num.jsonl", jsonl([{"instruction": "ok"}, {"instruction": 42}]))
    assert_rejected(store, path, line=2, field="instruction", says=("must be text",))


def test_missing_instruction_key_in_jsonl_lists_keys_found(store, tmp_path):
    path = write(tmp_path / "keys.jsonl", jsonl([{"instruction": "ok"}, {"text": "hi", "label": "x"}]))
    assert_rejected(store, path, line=2, field="instruction", says=("'text'", "'label'"))


def test_missing_instruction_column_in_csv_lists_columns_found(store, tmp_path):
    path = write(tmp_path / "cols.csv", "text,label\nhello,greeting\n")
    assert_rejected(store, path, line=1, field="instruction", says=("'text'", "'label'"))


def test_missing_instruction_column_in_parquet(store, tmp_path):
    path = tmp_path / "cols.parquet"
    pd.DataFrame({"text": ["a"]}).to_parquet(path)
    assert_rejected(store, path, field="instruction", says=("'text'",))


def test_blank_instruction_names_line_and_field(store, tmp_path):
    path = write(tmp_path / "blank.csv", "instruction,input\nfine,\n   ,some input\n")
    assert_rejected(store, path, line=3, field="instruction", says=("blank",))
    # A quoted field spanning lines 2-3 must not shift the line reported for the row after it.
    path = write(tmp_path / "multiline.csv", 'prompt,input\nfine,"two\nlines"\n"",some input\n')
    assert_rejected(store, path, line=4, field="prompt", says=("blank",))


def test_non_string_instruction_in_parquet_names_row(store, tmp_path):
    path = tmp_path / "ints.parquet"
    pd.DataFrame({"instruction": [1, 2]}).to_parquet(path)
    assert_rejected(store, path, field="instruction", says=("row 1", "must be text"))


def test_csv_row_with_too_many_fields(store, tmp_path):
    path = write(tmp_path / "wide.csv", "instruction,skill\na,nlu\nb,nlu,extra\n")
    assert_rejected(store, path, line=3, says=("3 fields",))


def test_csv_header_naming_a_column_twice_is_refused_not_half_read(store, tmp_path):
    path = write(tmp_path / "twice.csv", "\n instruction,skill,Instruction\nfirst,nlu,second\n")
    assert_rejected(store, path, line=2, says=("'instruction' twice", "'Instruction'"))


@pytest.mark.parametrize("name,text", [
    ("zero.jsonl", ""), ("spaces.jsonl", "  \n\n \t\n"), ("header.csv", "instruction,input\n"),
    ("zero.csv", ""), ("empty.json", "[]"), ("blank.json", " \n"),
])
def test_empty_files(store, tmp_path, name, text):
    assert_rejected(store, write(tmp_path / name, text), says=("empty",))


def test_empty_parquet(store, tmp_path):
    path = tmp_path / "none.parquet"
    pd.DataFrame({"instruction": pd.Series([], dtype="string")}).to_parquet(path)
    assert_rejected(store, path, says=("empty",))


@pytest.mark.parametrize("name,before,after,line", [
    ("latin1.jsonl", b'{"instruction": "a"}\n', b"", 2),
    ("latin1.csv", b"instruction\na\n", b"", 3),
    ("latin1.json", b'[\n{"instruction": "a"},\n', b"]", 3),
])
def test_non_utf8_bytes_name_the_line(store, tmp_path, name, before, after, line):
    path = tmp_path / name
    path.write_bytes(before + '{"instruction": "caf\xe9"}\n'.encode("latin-1") + after)
    assert_rejected(store, path, line=line, says=("UTF-8",))


def test_50_mb_single_line_is_refused_quickly(store, tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"instruction": "ok"}\n{"instruction": "')
        f.write(b"x" * (50 * 1024 * 1024))
        f.write(b'"}\n')
    started = time.perf_counter()
    assert_rejected(store, path, line=2, says=("too long", "1 MiB"))
    assert time.perf_counter() - started < 1.0


def test_line_at_exactly_the_limit_is_accepted(tmp_path):
    prefix, suffix = b'{"instruction": "', b'"}'
    body = b"y" * (seed_files.MAX_LINE_BYTES - len(prefix) - len(suffix))
    path = tmp_path / "limit.jsonl"
    path.write_bytes(prefix + body + suffix + b"\r\n")
    assert len(seed_files.read_tasks(path)[0]["instruction"]) == len(body)


def test_whole_file_size_cap(store, tmp_path, monkeypatch):
    monkeypatch.setattr(seed_files, "MAX_FILE_BYTES", 100)
    path = write(tmp_path / "big.jsonl", jsonl([{"instruction": "x" * 50}] * 3))
    assert_rejected(store, path, says=("limit",))


def test_json_array_bad_element_and_syntax_lines(store, tmp_path):
    not_object = write(tmp_path / "elem.json", '[\n  {"instruction": "a"},\n  "just a string"\n]')
    assert_rejected(store, not_object, line=3, says=("JSON object",))
    bad_field = write(tmp_path / "field.json", '[\n{"instruction": "a"},\n\n{"instruction": null,\n "x": 1}]')
    assert_rejected(store, bad_field, line=4, field="instruction")
    syntax = write(tmp_path / "syntax.json", '[\n{"instruction": "a"},\n{"instruction": "b",}\n]')
    assert_rejected(store, syntax, line=3, says=("invalid JSON",))
    not_array = write(tmp_path / "obj.json", '{"instruction": "a"}')
    assert_rejected(store, not_array, line=1, says=("array", ".jsonl"))


def test_unknown_extension_lists_supported(store, tmp_path):
    assert_rejected(store, write(tmp_path / "seeds.txt", "hello"), says=(".csv", ".jsonl", ".parquet"))


def test_corrupt_parquet(store, tmp_path):
    assert_rejected(store, write(tmp_path / "fake.parquet", "not parquet at all"), says=("Parquet",))


# ---- seed packs --------------------------------------------------------------------------------
def test_seed_packs_load_with_one_call(store):
    packs = importing.seed_packs()
    assert {"general", "finance", "medicine"} <= set(packs)
    for name, minimum in (("general", 15), ("finance", 12), ("medicine", 8)):
        tasks = store.tasks(importing.load_seed_pack(store, name))
        assert len(tasks) >= minimum
        assert {t["domain"] for t in tasks} == {name}
        assert {t["source"] for t in tasks} == {"seed"}
        skills = {t["skill"] for t in tasks}
        assert None not in skills and skills <= {"instruction-following", "reasoning", "code", "nlu",
                                                 "multi-turn", "rag", "tool-use"}
    assert len({t["skill"] for t in store.tasks()}) >= 5


def test_unknown_seed_pack_lists_available(store):
    with pytest.raises(StudioError, match="general"):
        importing.load_seed_pack(store, "../../etc/passwd")
    assert store.count_tasks() == 0


# ---- export ------------------------------------------------------------------------------------
EXAMPLES = [
    {"generation_id": 7, "task_id": 1, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}]},
    {"generation_id": 9, "task_id": 2, "messages": [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6 — é"}]},
]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_chat_jsonl(tmp_path):
    path = tmp_path / "out.jsonl"
    assert exporting.export_examples(EXAMPLES, path) == 2
    assert read_jsonl(path) == [{"messages": e["messages"]} for e in EXAMPLES]
    assert os.stat(path).st_mode & 0o044  # readable by other tools, unlike mkstemp's 0600


def test_export_alpaca_jsonl(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    exporting.export_examples(EXAMPLES, path, fmt="alpaca-jsonl")
    assert read_jsonl(path) == [
        {"instruction": "Hi", "input": "", "output": "Hello!", "system": "Be brief."},
        {"instruction": "and 3+3?", "input": "", "output": "6 — é", "system": "", "history": [["2+2?", "4"]]},
    ]


def test_export_sharegpt_jsonl(tmp_path):
    path = tmp_path / "sharegpt.jsonl"
    exporting.export_examples(EXAMPLES, path, fmt="sharegpt-jsonl")
    rows = read_jsonl(path)
    assert rows[0] == {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                                         {"from": "gpt", "value": "Hello!"}]}
    assert [c["from"] for c in rows[1]["conversations"]] == ["human", "gpt", "human", "gpt"]


def test_export_parquet_round_trips(tmp_path):
    path = tmp_path / "snap.parquet"
    assert exporting.export_examples(EXAMPLES, path, fmt="parquet") == 2
    table = pq.read_table(path).to_pylist()
    assert [r["generation_id"] for r in table] == [7, 9]
    assert [json.loads(r["messages"]) for r in table] == [e["messages"] for e in EXAMPLES]


def test_export_of_store_approved_examples(store, tmp_path):
    assert exporting.export_examples(store.approved_examples(), tmp_path / "none.parquet", fmt="parquet") == 0
    assert pq.read_table(tmp_path / "none.parquet").num_rows == 0


def test_export_into_missing_directory_leaves_nothing(tmp_path):
    target = tmp_path / "missing" / "out.jsonl"
    with pytest.raises(StudioError, match="does not exist"):
        exporting.export_examples(EXAMPLES, target)
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = write(tmp_path / "out.jsonl", "previous export\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(exporting.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        exporting.export_examples(EXAMPLES, target, fmt="sharegpt-jsonl")
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert target.read_text() == "previous export\n"


def test_failure_while_writing_leaves_no_temp(tmp_path, monkeypatch):
    def broken_write(examples, f):
        f.write(b"half a file")
        raise RuntimeError("crashed mid-write")

    monkeypatch.setattr(exporting, "_write_parquet", broken_write)
    with pytest.raises(RuntimeError):
        exporting.export_examples(EXAMPLES, tmp_path / "snap.parquet", fmt="parquet")
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_bad_format_and_malformed_examples(tmp_path):
    with pytest.raises(StudioError, match="chat-jsonl"):
        exporting.export_examples(EXAMPLES, tmp_path / "x.jsonl", fmt="csv")
    no_answer = [{"generation_id": 3, "messages": [{"role": "user", "content": "hi"}]}]
    with pytest.raises(StudioError, match="example 3"):
        exporting.export_examples(no_answer, tmp_path / "x.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_duplicate_tasks_are_skipped_and_counted_unless_kept(store, tmp_path):
    """A pack loaded twice, a file repeating a task, a typed task equal to one already there: skipped, and said."""
    first = importing.load_seed_pack(store, "general")
    assert len(first) > 0 and first.skipped == 0
    again = importing.load_seed_pack(store, "general")
    assert list(again) == [] and again.skipped == len(first)
    assert again.message("loaded").startswith(f"loaded 0 tasks; skipped {len(first)} already in the workspace")
    path = tmp_path / "dups.jsonl"
    path.write_text('{"instruction": "Name a colour."}\n{"instruction": "  name a COLOUR. "}\n'
                    '{"instruction": "Name a colour.", "input": "One word."}\n')
    added = importing.import_file(store, path)
    assert len(added) == 2 and added.skipped == 1  # the same instruction, case and spaces aside
    kept = importing.import_file(store, path, keep_duplicates=True)
    assert len(kept) == 3 and kept.skipped == 0
    typed = importing.add_new_tasks(store, [{"instruction": "name a colour."}])
    assert list(typed) == [] and typed.skipped == 1
