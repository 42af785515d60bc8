"""Tool use (issue 16.3): tool sets checked and refused with where, the tools method on a scripted OpenAI server
(calls through the tools API and structured, an invalid call marked), the training rows in the student's
format or the <tool_call> fallback, and the real embedded teacher with the bundled tools."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curation.errors import ImportFormatError
from curation.generate import run_method
from curation.methods import ToolsConfig
from curation.teacher import TeacherConfig
from curation.toolsets import (bundled_toolset, calls_text, check_text, import_toolset, parse_calls, read_toolset,
                               validate_call)
from tests.conftest import curation_cli
from tests.fault_server import FaultServer

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city"]}}}
TOOLS = read_toolset(bundled_toolset())


# ---- tool sets ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, line, field, reason", [
    ('[\n  {"type": "function",\n  "function": {"name": "a"\n]', 4, None, "not valid JSON"),
    ('{"type": "function"}', None, None, "a JSON list of tools"),
    ('[\n' + json.dumps(WEATHER) + ',\n' + json.dumps(WEATHER) + '\n]', 3, "tools[1].function.name", "used twice"),
    ('[{"type": "function", "function": {"name": "get weather!"}}]', 1, "tools[0].function.name", "1-64 letters"),
    ('[\n{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": '
     '{"unit": {"type": "strin"}}}}}]', 2, "tools[0].function.parameters.properties.unit.type",
     "not a valid JSON Schema"),
    ('[{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]', 1,
     "tools[0].function.parameters", "JSON Schema of an object"),
    ('[\n  3\n]', 2, "tools[0]", "is an object"),
    ('[{"type": "retrieval"}]', 1, "tools[0].type", "only function tools"),
    ('[{"type": "code", "function": {"name": "f"}}]', 1, "tools[0].type", "only function tools"),
])
def test_a_bad_tool_set_is_refused_with_its_line_and_field(store, tmp_path, text, line, field, reason):
    path = tmp_path / "my tools.json"
    path.write_text(text)
    with pytest.raises(ImportFormatError) as caught:
        import_toolset(store, path)
    assert (caught.value.line, caught.value.field) == (line, field) and reason in caught.value.reason
    assert str(caught.value).startswith(str(path)) and "nothing was imported" in str(caught.value)
    with pytest.raises(ImportFormatError, match="pasted"):  # pasted text is refused the same way
        import_toolset(store, "pasted", text=text)
    assert store.toolset() is None


def test_the_bundled_tools_import_once_and_each_call_is_checked_against_its_schema(store):
    first = import_toolset(store, bundled_toolset())
    assert first == {"toolset_id": 1, "name": "simple", "tools": 3, "added": True}
    assert import_toolset(store, "pasted", text=bundled_toolset().read_text(), name="again")["added"] is False
    assert [t["function"]["name"] for t in store.toolset("simple")["tools"]] == [
        "get_weather", "convert_currency", "add_calendar_event"]
    bare = import_toolset(store, "pasted", text=json.dumps({"tools": [WEATHER["function"]]}))  # a bare function
    assert store.toolset(bare["toolset_id"])["tools"] == [{**WEATHER, "function": {**WEATHER["function"]}}]

    def error(name, arguments):
        checked = validate_call(TOOLS, name, arguments)
        return None if checked["valid"] else checked["error"]

    assert error("get_weather", '{"city": "Paris", "unit": "celsius"}') is None
    assert error("convert_currency", {"amount": 12.5, "from": "USD", "to": "EUR"}) is None
    assert error("add_calendar_event", {"title": "Dentist", "date": "2025-03-04", "time": "09:30"}) is None
    assert error("get_weather", {"city": "Paris", "unit": "kelvin"}) == \
        "arguments.unit: 'kelvin' is not one of ['celsius', 'fahrenheit']"
    assert error("add_calendar_event", {"title": "x", "date": "2025-13-40"}) == \
        "arguments.date: '2025-13-40' is not a 'date'"
    assert error("convert_currency", {"amount": 5, "from": "usd", "to": "EUR"}).startswith("arguments.from:")
    assert error("get_weather", {"town": "Paris"}).startswith("arguments:")  # city missing / town not allowed
    assert error("book_flight", {}).startswith("no tool named 'book_flight'")
    assert error("get_weather", '{"city": "Par').startswith("arguments are not JSON")
    assert error("get_weather", "[1, 2]") == "arguments are not a JSON object"


def test_calls_as_text_read_back_and_an_unreadable_block_is_an_invalid_call():
    text = calls_text("Let me check.", [{"name": "get_weather", "arguments": {"city": "Oslo"}},
                                        {"name": "get_weather", "arguments": '{"city": '}])
    assert parse_calls(text) == ("Let me check.", [{"name": "get_weather", "arguments": {"city": "Oslo"}},
                                                   {"name": "get_weather", "arguments": '{"city": '}])
    checked = check_text(TOOLS, text + "\n<tool_call>\nnot json")  # a cut last block is read to the end
    assert [c["valid"] for c in checked] == [True, False, False]
    assert checked[2]["error"].startswith("not a call")
    assert check_text(TOOLS, "It is sunny.") == []


def test_requests_are_read_from_json_a_list_cut_short_or_numbered_lines():
    from curation.methods.tools import parse_requests
    assert parse_requests('{"requests": ["Weather in Oslo?", " Convert 5 USD to EUR. "]}') == [
        "Weather in Oslo?", "Convert 5 USD to EUR."]
    assert parse_requests('{\n "requests": [\n  "Weather in Oslo?",\n  "date: 2022-12-23 09:30:00:00:0') == [
        "Weather in Oslo?"]  # cut at max_tokens: the complete requests are kept
    assert parse_requests("1. Weather in Oslo?\n2. Book lunch on Friday.") == ["Weather in Oslo?", "Book lunch on Friday."]
    assert parse_requests('{"requests": ["unclosed') is None and parse_requests("") is None


def test_the_tools_command_imports_lists_and_refuses_headless(tmp_path):
    ws, bad = tmp_path / "ws", tmp_path / "bad.json"
    out = curation_cli("--workspace", ws, "tools", "--bundled")
    assert "tool set 1 (simple): 3 tools" in out.stdout and "get_weather, convert_currency" in out.stdout
    bad.write_text('[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", '
                   '"required": "city"}}}]')
    refused = curation_cli("--workspace", ws, "tools", bad, check=False)
    assert refused.returncode != 0
    assert "line 1, field 'tools[0].function.parameters.required': not a valid JSON Schema" in refused.stderr
    listed = json.loads(curation_cli("--workspace", ws, "tools", "--json").stdout)
    assert [t["name"] for t in listed["toolsets"]] == ["simple"]


# ---- the tools method on a scripted server -----------------------------------------------------------------
REQUESTS = {"get_weather": ["What's the weather in Oslo?", "Is it cold in Lima, in fahrenheit?"],
            "convert_currency": ["Change 20 dollars into euros."],
            "add_calendar_event": ["Put lunch with Ana on 2025-06-01 at noon in my calendar."]}
# What the scripted teacher calls for each request: a valid call, an invalid one (unit), a call whose arguments
# are not JSON, and a text answer without a call.
ANSWERS = {"What's the weather in Oslo?": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
           "Is it cold in Lima, in fahrenheit?": [{"name": "get_weather",
                                                   "arguments": {"city": "Lima", "unit": "kelvin"}}],
           "Change 20 dollars into euros.": [{"name": "convert_currency", "arguments": '{"amount": 20, "from": '}],
           "Put lunch with Ana on 2025-06-01 at noon in my calendar.": []}


def _script(body):
    content = body["messages"][-1]["content"]
    if "Reply with a JSON object whose one key, \"requests\"" in content:
        tool = next(name for name in REQUESTS if f"calling {name}." in content)
        return {"text": json.dumps({"requests": REQUESTS[tool]})}
    calls = ANSWERS[content]
    if "tools" in body:  # the tools API: calls come back as message.tool_calls
        return {"text": "" if calls else "Done, lunch is booked.", "tool_calls": calls}
    return {"text": json.dumps({"tool_calls": calls}) if calls else "Done, lunch is booked."}


def _teacher(server):
    return TeacherConfig(base_url=server.base_url, model="scripted", concurrency=1, max_retries=0)


def _calls_by_request(store) -> dict:
    rows = store._fetchdicts("SELECT t.instruction, g.tool_calls, g.response, g.teacher_only_system FROM generations g "
                             "JOIN tasks t ON t.id = g.task_id ORDER BY g.id")
    return {r["instruction"]: (json.loads(r["tool_calls"]) if r["tool_calls"] else [], r) for r in rows}


def test_tools_method_writes_requests_and_answers_them_through_the_tools_api(store):
    import_toolset(store, bundled_toolset())
    with FaultServer([_script]) as server:
        summary = run_method(store, _teacher(server), ToolsConfig(requests_per_tool=2), server.base_url)
        answers = [r["body"] for r in server.requests if "tools" in r["body"]]
    assert summary["failed"] == 0 and summary["new_tasks"] == 4
    tasks = store.tasks(split=None)
    assert {(t["skill"], t["source"], t["toolset_id"]) for t in tasks} == {
        ("get_weather", "tools", 1), ("convert_currency", "tools", 1), ("add_calendar_event", "tools", 1)}
    assert len(answers) == 4 and all(a["tool_choice"] == "auto" and a["tools"] == TOOLS for a in answers)
    calls = _calls_by_request(store)
    ok, _ = calls["What's the weather in Oslo?"]
    assert ok == [{"name": "get_weather", "arguments": {"city": "Oslo"}, "valid": True, "error": None, "via": "api"}]
    (wrong,), row = calls["Is it cold in Lima, in fahrenheit?"]
    assert not wrong["valid"] and "'kelvin' is not one of" in wrong["error"]
    assert parse_calls(row["response"])[1] == [{"name": "get_weather", "arguments": {"city": "Lima", "unit": "kelvin"}}]
    (broken,), _ = calls["Change 20 dollars into euros."]
    assert not broken["valid"] and broken["error"].startswith("arguments are not JSON")
    none, row = calls["Put lunch with Ana on 2025-06-01 at noon in my calendar."]
    assert none == [] and row["response"] == "Done, lunch is booked."  # a call-less answer is kept as text
    frame = store.toolsets_frame()
    assert frame[["tasks", "answers", "calls", "valid_calls"]].values.tolist() == [[4, 4, 3, 1]]


def test_the_invalid_calls_filter_rejects_broken_calls_and_a_fixed_call_stays(store):
    from curation.filters import apply_filter, preview_filter
    from curation.tool_filters import InvalidCallsFilter
    import_toolset(store, bundled_toolset())
    with FaultServer([_script]) as server:
        run_method(store, _teacher(server), ToolsConfig(requests_per_tool=2), server.base_url)
    store.add_tasks([{"instruction": "plain"}])  # a row without tools is never removed
    store._fetchone("INSERT INTO generations (task_id, request_key, endpoint, model, messages, params, sample_index, "
                    "response, status) VALUES (5, 'plain', 'e', 'm', '[]', '{}', 0, 'no calls here', 'ok') "
                    "RETURNING id")
    by_request = {r["instruction"]: r["id"] for r in store._fetchdicts(
        "SELECT g.id, t.instruction FROM generations g JOIN tasks t ON t.id = g.task_id")}
    lima = by_request["Is it cold in Lima, in fahrenheit?"]
    preview = preview_filter(store, InvalidCallsFilter())
    assert sorted(r["id"] for r in preview.sample) == sorted([lima, by_request["Change 20 dollars into euros."]])
    assert preview.notes == {"tool_use_rows": 4} and preview.total == 5
    assert preview_filter(store, InvalidCallsFilter(text_answers=True)).removed_count == 3
    store.edit_response(lima, calls_text("", [{"name": "get_weather", "arguments": {"city": "Lima",
                                                                                  "unit": "fahrenheit"}}]))
    batch = apply_filter(store, InvalidCallsFilter())
    assert store.label_batch_count(batch) == 1 and store.generation(lima)["review_status"] == "approved"
    store.close()
    out = json.loads(curation_cli("--workspace", store.workspace, "filter", "invalid_calls", "--text-answers",
                                  "--dry-run", "--json").stdout)
    assert out["removed"] == 1  # the call-less answer; the broken one is rejected already


def test_structured_calls_for_a_teacher_whose_template_takes_no_tools(store):
    import_toolset(store, bundled_toolset())
    with FaultServer([_script]) as server:
        run_method(store, _teacher(server), ToolsConfig(requests_per_tool=2, call_mode="structured"),
                   server.base_url)
        answers = [r["body"] for r in server.requests if r["body"]["messages"][0]["role"] == "system"]
    assert len(answers) == 4 and not any("tools" in a for a in answers)
    schema = answers[0]["response_format"]["json_schema"]["schema"]["properties"]["tool_calls"]
    assert schema["maxItems"] == 1 and [o["properties"]["name"]["const"] for o in schema["items"]["anyOf"]] == [
        "get_weather", "convert_currency", "add_calendar_event"]
    assert '"name": "convert_currency"' in answers[0]["messages"][0]["content"]  # the tools, in the prompt
    calls = _calls_by_request(store)
    (ok,), row = calls["What's the weather in Oslo?"]
    assert ok["valid"] and ok["via"] == "structured" and row["teacher_only_system"]
    (wrong,), _ = calls["Is it cold in Lima, in fahrenheit?"]
    assert not wrong["valid"]
    gen = store._fetchdicts("SELECT g.id FROM generations g JOIN tasks t ON t.id = g.task_id "
                            "WHERE t.instruction = 'What''s the weather in Oslo?'")[0]["id"]
    store.set_label([gen], "approved")
    (example,) = store.approved_examples()
    # the teacher's tool prompt is left out; training renders the tools in the student's format
    assert [m["role"] for m in example["messages"]] == ["user", "assistant"] and example["tools"] == TOOLS


def test_a_structured_answer_cut_short_is_an_invalid_call_that_says_why(store):
    import_toolset(store, bundled_toolset())
    store.add_tasks([{"instruction": "Weather in Rome?", "source": "tools", "toolset_id": 1}])
    with FaultServer([{"text": '{"tool_calls": [{"name": "get_weather", "arguments": {"ci'}]) as server:
        run_method(store, _teacher(server), ToolsConfig(requests_per_tool=0, call_mode="structured"),
                   server.base_url)
    (call,), _ = _calls_by_request(store)["Weather in Rome?"]
    assert call["name"] is None and not call["valid"] and call["error"].startswith("not a call")


def test_a_tool_row_exports_in_openais_tool_format(store, tmp_path):
    from curation import exporting
    import_toolset(store, bundled_toolset())
    with FaultServer([_script]) as server:
        run_method(store, _teacher(server), ToolsConfig(requests_per_tool=2), server.base_url)
    from curation.store import ReviewFilter
    store.label_filter(ReviewFilter(), "approved")
    out = tmp_path / "tools.jsonl"
    assert exporting.export_examples(store.approved_examples(), out) == 4
    rows = {json.loads(line)["messages"][0]["content"]: json.loads(line) for line in out.read_text().splitlines()}
    oslo = rows["What's the weather in Oslo?"]
    assert oslo["tools"] == TOOLS and oslo["messages"][-1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
    broken = rows["Change 20 dollars into euros."]["messages"][-1]  # arguments that never parsed stay text
    assert "tool_calls" not in broken and broken["content"].startswith("<tool_call>")


def test_without_a_tool_set_the_method_says_what_to_do(store):
    from curation.errors import StudioError
    with FaultServer([_script]) as server, pytest.raises(StudioError, match="import one first"):
        run_method(store, _teacher(server), ToolsConfig(), server.base_url)


# ---- training rows ----------------------------------------------------------------------------------------
CALL_TEXT = calls_text("", [{"name": "get_weather", "arguments": {"city": "Oslo"}}])
CHAT = [{"role": "user", "content": "Weather in Oslo?"}, {"role": "assistant", "content": CALL_TEXT}]


def _learned(tok, example) -> str:
    from distill.data import IGNORE
    return tok.decode([i for i, label in zip(example["input_ids"], example["labels"]) if label != IGNORE])


def test_a_tool_row_trains_in_the_fallback_format_with_labels_on_the_call(tiny_student):
    from transformers import AutoTokenizer

    from distill.data import tokenize_example
    from distill.tool_format import renders_tool_calls
    tok = AutoTokenizer.from_pretrained(str(tiny_student))
    assert not renders_tool_calls(tok)  # SmolLM2's template shows neither tools nor calls
    example = tokenize_example(tok, CHAT, 1024, TOOLS)
    assert _learned(tok, example) == CALL_TEXT + "<|im_end|>\n"  # the call is learned, and only the call
    prompt = tok.decode(example["input_ids"][:example["prompt_length"]])
    assert prompt.startswith("<|im_start|>system\n# Tools\n") and '"name": "add_calendar_event"' in prompt
    assert prompt.endswith("<|im_start|>user\nWeather in Oslo?<|im_end|>\n<|im_start|>assistant\n")
    with_system = tokenize_example(tok, [{"role": "system", "content": "Be brief."}, *CHAT], 1024, TOOLS)
    assert tok.decode(with_system["input_ids"]).startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    plain = tokenize_example(tok, CHAT, 1024)  # the same chat without its tool set: no tools in the prompt
    assert "<tools>" not in tok.decode(plain["input_ids"])


# A template that renders tools and calls its own way (as Qwen's or Llama 3.1's do, more simply).
NATIVE_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS:{% for t in tools %} {{ t.function.name }}{% endfor %}<|im_end|>\n"
    "{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.tool_calls %}{% for c in m.tool_calls %}"
    "CALL {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}{% else %}{{ m.content }}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_tool_row_trains_in_the_students_own_format_when_its_template_has_one(tiny_student):
    from transformers import AutoTokenizer

    from distill.data import tokenize_example
    from distill.tool_format import renders_tool_calls
    tok = AutoTokenizer.from_pretrained(str(tiny_student))
    tok.chat_template = NATIVE_TEMPLATE
    assert renders_tool_calls(tok)
    example = tokenize_example(tok, CHAT, 1024, TOOLS)
    assert _learned(tok, example) == 'CALL get_weather {"city": "Oslo"}<|im_end|>\n'
    assert tok.decode(example["input_ids"]).startswith(
        "<|im_start|>system\nTOOLS: get_weather convert_currency add_calendar_event<|im_end|>\n")


# ---- evaluation --------------------------------------------------------------------------------------------
def test_a_students_answer_is_scored_for_validity_and_against_the_teachers_call():
    from evaluation.tool_calls import answer_text, score_answer, summarise
    reference = calls_text("", [{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}])
    same_reordered = ('<tool_call>\n{"arguments": {"unit": "celsius", "city": "Oslo"}, "name": "get_weather"}\n'
                      '</tool_call>')
    other_city = calls_text("", [{"name": "get_weather", "arguments": {"city": "Bergen"}}])
    wrong_unit = calls_text("", [{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "kelvin"}}])
    scores = [score_answer(TOOLS, reference, answer) for answer in
              (same_reordered, other_city, wrong_unit, "It is sunny in Oslo.")]
    assert scores == [{"calls": 1, "valid": True, "name_match": True, "exact_match": True},
                      {"calls": 1, "valid": True, "name_match": True, "exact_match": False},
                      {"calls": 1, "valid": False, "name_match": True, "exact_match": False},
                      {"calls": 0, "valid": False, "name_match": False, "exact_match": False}]
    assert summarise(scores) == {"tasks": 4, "with_calls": 3, "valid_rate": 0.5, "name_match_rate": 0.75,
                                 "exact_match_rate": 0.25}
    # the calls a server parsed from a native template, and a bare JSON call, read as <tool_call> text
    parsed = {"response": "", "tool_calls": [{"name": "get_weather",
                                              "arguments": '{"city": "Oslo", "unit": "celsius"}'}]}
    assert score_answer(TOOLS, reference, answer_text(parsed))["exact_match"]
    bare = {"response": '{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "celsius"}}'}
    assert score_answer(TOOLS, reference, answer_text(bare))["exact_match"]
    assert answer_text({"response": "no call"}) == "no call"


# ---- the real embedded teacher ------------------------------------------------------------------------------
@pytest.mark.integration
def test_the_bundled_tools_on_the_embedded_teacher_to_a_trained_student(tmp_path, teacher_url, tiny_student):
    """Headless from import to a trained student. The 135M teacher's requests and calls are not asserted right,
    only stored with their validity; its template takes no tools, so the calls are structured (the mode `auto`
    picks when no --base-url is given; here the shared server is passed by URL). Two requests per tool: the 135M
    teacher sometimes repeats itself past --max-tokens and its JSON is cut (unparsable); with one request per tool
    a CI run once kept a single task, too few to hold one out (2 of 18 runs here kept fewer than 3; with two per
    tool 10 of 10 runs kept 4-6)."""
    from distill.runlog import SNAPSHOT_NAME
    from tests.test_train import run_cli
    ws = tmp_path / "ws"
    curation_cli("--workspace", ws, "tools", "--bundled")
    out = curation_cli("--workspace", ws, "generate", "--method", "tools", "--requests-per-tool", "2",
                       "--call-mode", "structured", "--max-tokens", "128", "--base-url", teacher_url, "--model",
                       "smollm2-135m-instruct", "--concurrency", "3")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 0 and summary["new_tasks"] >= 2
    from curation.store import Store
    with Store(ws) as store:
        rows = store._fetchdicts("SELECT response, tool_calls FROM generations WHERE status = 'ok'")
        frame = store.toolsets_frame()
        held_out = store.tasks()[0]["id"]
        store.set_split([held_out], "eval")  # answered with the others: the teacher's reference for the eval
    assert rows and all(r["tool_calls"] for r in rows)  # structured: every answer holds at least one call
    calls = [c for r in rows for c in json.loads(r["tool_calls"])]
    assert all(isinstance(c["valid"], bool) and (c["valid"] or c["error"]) for c in calls)
    assert int(frame["calls"][0]) == len(calls) and int(frame["valid_calls"][0]) == sum(c["valid"] for c in calls)
    curation_cli("--workspace", ws, "review", "--approve-all")
    result = run_cli("train", "--workspace", str(ws), "--student", str(tiny_student), "--max-steps", "2",
                     "--batch-size", "2", "--lr", "1e-3")
    assert result.returncode == 0, result.stderr + result.stdout
    with Store(ws) as store:
        run = store.runs(kind="sft")[0]
    assert run["status"] == "completed"
    trained = [json.loads(line) for line in (Path(run["run_dir"]) / SNAPSHOT_NAME).read_text().splitlines()]
    assert trained and all(row["tools"] == TOOLS for row in trained) and held_out not in [r["task_id"] for r in trained]

    from evaluation.tool_calls import template_takes_tools
    assert not template_takes_tools(teacher_url)  # SmolLM2's template: the students get the fallback prompt
    evaluated = subprocess.run([sys.executable, "-m", "evaluation", "--workspace", str(ws), "--run", str(run["id"]),
                                "--tools", "--max-tokens", "48"], capture_output=True, text=True, timeout=900,
                               cwd=Path(__file__).resolve().parents[1])
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert report["tasks"] == 1 and report["format"] == "fallback" and report["rows"][0]["task_id"] == held_out
    assert "<tool_call>" in report["rows"][0]["reference"]
    for student in ("base", "distilled"):  # a 2-step tiny student writes no sensible call: the figures, not their value
        assert report[student]["tasks"] == 1 and 0 <= report[student]["valid_rate"] <= 1
