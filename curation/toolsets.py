"""Tool use (survey 4.3, agent skills: Toolformer, Gorilla, ToolAlpaca): tool sets and the calls made with them.

A tool set is an OpenAI `tools` list, `[{"type": "function", "function": {"name", "description", "parameters"}}]`,
where `parameters` is a JSON Schema. `read_toolset` checks one (each schema passes the 2020-12 metaschema,
names are unique) and refuses it with the file, line and field of what is wrong; `import_toolset` stores it.

A call is {"name", "arguments"}; `validate_call` checks it against its tool (the function exists, the
arguments are a JSON object, they satisfy the schema) and says why not. In a stored answer the calls are
text in the Hermes / Qwen convention, one `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` block
each (`calls_text`, `parse_calls`): readable, editable in Review like any answer, and the very text a student
whose chat template has no tool-call format learns to write (distill/tool_format.py).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from jsonschema import Draft202012Validator, exceptions

from curation.errors import ImportFormatError

MAX_TOOLSET_BYTES = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the OpenAI API accepts as a function name
_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
EMPTY_PARAMETERS = {"type": "object", "properties": {}}
# The Hermes / Qwen 2.5 tool prompt: the tools as JSON lines inside <tools>, and how to write a call.
TOOLS_PROMPT = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n"
                "</tools>\n\nFor each function call, return a json object with function name and arguments within "
                "<tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": "
                "<args-json-object>}}\n</tool_call>")


def bundled_toolset() -> Path:
    """Three simple tools shipped with the studio (get_weather, convert_currency, add_calendar_event)."""
    return Path(__file__).resolve().parents[1] / "data" / "tools" / "simple.json"


def read_toolset(source: str | os.PathLike, text: str | None = None) -> list[dict]:
    """The checked tools of a file (or of `text`, pasted, named `source` in messages), each in the full
    {"type": "function", "function": {...}} form; ImportFormatError saying where and what is wrong."""
    if text is None:
        path = Path(source)
        if not path.is_file():
            raise ImportFormatError(path, "no such file")
        if path.stat().st_size > MAX_TOOLSET_BYTES:
            raise ImportFormatError(path, f"{path.stat().st_size:,} bytes is more than the {MAX_TOOLSET_BYTES:,} "
                                          "a tool set may have")
        text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ImportFormatError(source, "no tools: paste or choose an OpenAI `tools` JSON list")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(source, f"not valid JSON ({exc.msg})", exc.lineno) from None
    items = data.get("tools") if isinstance(data, dict) and "tools" in data else data
    if not isinstance(items, list) or not items:
        raise ImportFormatError(source, 'a tool set is a JSON list of tools (or {"tools": [...]}) with at least one')
    lines = _item_lines(text, len(items))
    tools, seen = [], {}
    for i, item in enumerate(items):
        tool = _checked_tool(item, source, lines[i], f"tools[{i}]")
        name = tool["function"]["name"]
        if name in seen:
            raise ImportFormatError(source, f"the name {name!r} is used twice (also by tools[{seen[name]}]); "
                                            "tool names must be unique", lines[i], f"tools[{i}].function.name")
        seen[name] = i
        tools.append(tool)
    return tools


def _checked_tool(item, source, line, where: str) -> dict:
    if not isinstance(item, dict):
        raise ImportFormatError(source, 'a tool is an object {"type": "function", "function": {...}}', line, where)
    if item.get("type", "function") != "function":
        raise ImportFormatError(source, f"only function tools are supported (got type {item.get('type')!r})",
                                line, f"{where}.type")
    if "function" in item:
        function, where = item["function"], where + ".function"
    else:
        function = item  # a bare function object, as some exports write it
    if not isinstance(function, dict):
        raise ImportFormatError(source, "a function is an object with name, description and parameters", line, where)
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ImportFormatError(source, f"a function name is 1-64 letters, digits, _ or - (got {name!r})", line,
                                f"{where}.name")
    description = function.get("description", "")
    if not isinstance(description, str):
        raise ImportFormatError(source, "the description is text", line, f"{where}.description")
    parameters = function.get("parameters", EMPTY_PARAMETERS)
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise ImportFormatError(source, 'parameters is a JSON Schema of an object ({"type": "object", ...})', line,
                                f"{where}.parameters")
    try:
        Draft202012Validator.check_schema(parameters)
    except exceptions.SchemaError as exc:
        field = ".".join([f"{where}.parameters", *map(str, exc.path)])
        raise ImportFormatError(source, f"not a valid JSON Schema: {exc.message}", line, field) from None
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def _item_lines(text: str, n: int) -> list[int | None]:
    """The line each item of the tools list starts on (None where it cannot be found)."""
    decoder, lines = json.JSONDecoder(), []
    tools_key = re.search(r'"tools"\s*:\s*\[', text)
    pos = tools_key.end() if tools_key else text.find("[") + 1
    for _ in range(n):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            _, end = decoder.raw_decode(text, pos)
        except ValueError:
            return lines + [None] * (n - len(lines))
        lines.append(text.count("\n", 0, pos) + 1)
        pos = end
    return lines


def import_toolset(store, source: str | os.PathLike, text: str | None = None, name: str | None = None) -> dict:
    """Check and store a tool set from a file, or pasted `text`; {"toolset_id", "name", "tools", "added"}.
    The same tools imported again (under any name) add nothing."""
    tools = read_toolset(source, text)
    name = (name or (Path(source).stem if text is None else "") or "pasted").strip()
    toolset_id, added = store.add_toolset(name, tools)
    return {"toolset_id": toolset_id, "name": store.toolset(toolset_id)["name"], "tools": len(tools), "added": added}


# ---- calls ---------------------------------------------------------------------------------------------

def validate_call(tools: list[dict], name, arguments) -> dict:
    """{"name", "arguments", "valid", "error"} of one call: the function is in `tools`, the arguments (a JSON
    text or an already parsed value) are an object, and they satisfy the function's parameter schema."""
    if not isinstance(name, str):
        return {"name": name, "arguments": arguments, "valid": False,
                "error": 'not a call: no {"name": ..., "arguments": {...}} object could be read'}
    parsed = arguments
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            return {"name": name, "arguments": arguments, "valid": False, "error": f"arguments are not JSON ({exc})"}
    functions = {t["function"]["name"]: t["function"] for t in tools}
    if name not in functions:
        return {"name": name, "arguments": parsed, "valid": False,
                "error": f"no tool named {name!r} (tools: {', '.join(functions)})"}
    if not isinstance(parsed, dict):
        return {"name": name, "arguments": parsed, "valid": False, "error": "arguments are not a JSON object"}
    validator = Draft202012Validator(functions[name].get("parameters") or EMPTY_PARAMETERS,
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = exceptions.best_match(validator.iter_errors(parsed))
    if error is not None:
        where = ".".join(["arguments", *map(str, error.absolute_path)])
        return {"name": name, "arguments": parsed, "valid": False, "error": f"{where}: {error.message}"}
    return {"name": name, "arguments": parsed, "valid": True, "error": None}


def calls_text(content: str | None, calls: list[dict]) -> str:
    """An answer as text: its words (if any), then one <tool_call> block per call (arguments that did not
    parse are kept as the string they were, so the text shows what the teacher wrote)."""
    blocks = [f"<tool_call>\n{json.dumps({'name': c['name'], 'arguments': c['arguments']}, ensure_ascii=False)}"
              "\n</tool_call>" for c in calls]
    return "\n".join([p for p in [(content or "").strip()] if p] + blocks)


def parse_calls(text: str | None) -> tuple[str, list[dict]]:
    """(the words outside the calls, [{"name", "arguments"}]) of an answer in the <tool_call> convention.
    A block that is not a {"name", "arguments"} object is a call with name None and its raw text as
    arguments, so it is counted and shown as invalid, not dropped; an unclosed last block (a cut answer)
    is read to the end."""
    text = text or ""
    calls = []
    for block in _CALL_BLOCK.findall(text):
        try:
            data = json.loads(block)
        except ValueError:
            data = None
        if isinstance(data, dict) and "name" in data:
            calls.append({"name": data["name"], "arguments": data.get("arguments", {})})
        else:
            calls.append({"name": None, "arguments": block})
    content = _CALL_BLOCK.sub("", text).strip()
    return content, calls


def check_text(tools: list[dict], text: str | None) -> list[dict]:
    """Every call in an answer's text, validated (see validate_call); [] for an answer without calls."""
    return [validate_call(tools, call["name"], call["arguments"]) for call in parse_calls(text)[1]]


def tools_prompt(tools: list[dict]) -> str:
    """The tools and the <tool_call> format as a system prompt (Hermes / Qwen 2.5)."""
    return TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))


def openai_chat_row(row: dict, tools: list[dict] | None) -> dict:
    """A chat-JSONL row ({"messages": [...]}) in OpenAI's fine-tuning format for tool use: `tools` beside the
    messages and each assistant turn's <tool_call> text as `tool_calls` (arguments a JSON text). Rows without
    tools, and calls that are not a name with an object of arguments, are left as they are."""
    if not tools:
        return row
    messages = []
    for m in row["messages"]:
        content, calls = parse_calls(m["content"]) if m["role"] == "assistant" else ("", [])
        if calls and all(isinstance(c["name"], str) and isinstance(c["arguments"], dict) for c in calls):
            m = {"role": "assistant", "content": content or None, "tool_calls": [
                {"id": f"call_{i}", "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                for i, c in enumerate(calls)]}
        messages.append(m)
    return {**row, "messages": messages, "tools": tools}


def with_tools_prompt(messages: list[dict], tools: list[dict]) -> list[dict]:
    """The chat with `tools_prompt` in its system message (appended to one it has), turns unchanged: how a
    student whose chat template has no tool-call format sees its tools, in training and in evaluation."""
    prompt = tools_prompt(tools)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{prompt}"}, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]
