"""tools — tasks that need the user's tools, answered with tool calls (survey 4.3: Toolformer, Gorilla, ToolAlpaca).

Reads: a tool set (Store.add_toolset; curation/toolsets.py), the newest one unless the config names one.
Stages, each planned after the one before it ran:
1. tasks (skipped with requests_per_tool 0): for each tool, the teacher writes N user requests that need it
   (tools_requests.j2; a JSON list under structured output). Writes: one task per request (source 'tools',
   skill = the tool it was written for, toolset_id).
2. answer: the teacher answers each task of the tool set with tool calls. Through the OpenAI tools API
   (`tools`, tool_choice "auto"; the calls come back as message.tool_calls), or — for an endpoint whose chat
   template takes no tools, such as the embedded SmolLM2 (llama.cpp then drops `tools` from the prompt and
   no call ever comes back) — structured: the tools in a teacher-only system prompt (tools_answer_system.j2)
   and the answer held by a JSON schema to {"tool_calls": [{"name", "arguments"}]}, each name one of the
   tools and its arguments shaped by that tool's schema. Writes: one generation per task whose response is
   the answer as readable <tool_call> text and whose `tool_calls` are the calls, each validated against its
   schema (valid, and the error when not). A call-less text answer is stored as it is.
Parsers: `parse_requests`, `answer_calls` — None / no calls for what they cannot read; the raw text is kept.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from curation.errors import ConfigError, StudioError
from curation.methods.base import Call, Method, Stage, Writes, content_words, is_refusal, json_schema_params, render
from curation.methods.documents import parse_questions
from curation.methods.label import Sampling, check_sampling
from curation.toolsets import calls_text, parse_calls, validate_call

CALL_MODES = ("auto", "api", "structured")
_JSON_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')  # one complete JSON string (an unclosed one does not match)
MAX_CALLS = 5


@dataclass
class ToolsConfig(Sampling):
    """Tool-use settings.

    toolset: the tool set's id or name; empty means the newest one imported (Seeds tab → Tools, or
        python -m curation tools FILE | --bundled).
    requests_per_tool: user requests the teacher writes for each tool (0..10); 0 answers the tool set's
        tasks already stored without writing new ones.
    call_mode: how the teacher is asked for calls — api: the OpenAI tools API (tool_choice "auto");
        structured: the tools in the prompt and the answer held to a JSON schema of calls (for endpoints
        whose template takes no tools, like the embedded SmolLM2); auto: structured on the embedded teacher,
        the tools API elsewhere.
    max_calls: calls a structured answer may hold (1..5); a teacher through the tools API decides for itself.
        1 suits the small embedded teacher, which otherwise adds unrelated calls.
    structured: ask for the requests as JSON valid against a schema; turn off for an endpoint without
        `response_format`.
    temperature, max_tokens: sampling of each request list and answer.
    """

    toolset: str = ""
    requests_per_tool: int = 3
    call_mode: str = "auto"
    max_calls: int = 1
    structured: bool = True
    temperature: float = 0.7
    max_tokens: int = 256

    def __post_init__(self):
        check_sampling(self)
        if not 0 <= int(self.requests_per_tool) <= 10:
            raise ConfigError(f"requests_per_tool must be between 0 and 10 (got {self.requests_per_tool})")
        if self.call_mode not in CALL_MODES:
            raise ConfigError(f"call_mode must be one of {', '.join(CALL_MODES)} (got {self.call_mode!r})")
        if not 1 <= int(self.max_calls) <= MAX_CALLS:
            raise ConfigError(f"max_calls must be between 1 and {MAX_CALLS} (got {self.max_calls})")
        self.requests_per_tool, self.max_calls = int(self.requests_per_tool), int(self.max_calls)
        self.structured = bool(self.structured)
        self.toolset = str(self.toolset or "").strip()


def requests_schema(n: int) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["requests"],
            "properties": {"requests": {"type": "array", "minItems": 1, "maxItems": n,
                                        "items": {"type": "string", "minLength": 8, "maxLength": 300}}}}


def calls_schema(tools: list[dict], max_calls: int = 1) -> dict:
    """An answer that is 1..max_calls calls, each naming one of the tools with arguments of its schema."""
    one = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
            "properties": {"name": {"const": t["function"]["name"]}, "arguments": t["function"]["parameters"]}}
           for t in tools]
    return {"type": "object", "additionalProperties": False, "required": ["tool_calls"],
            "properties": {"tool_calls": {"type": "array", "minItems": 1, "maxItems": max_calls,
                                          "items": {"anyOf": one}}}}


def parse_requests(text: str | None) -> list[str] | None:
    """Requests from {"requests": [...]}, a JSON array or a numbered list; None when none can be read. A JSON
    list cut short (max_tokens) gives its complete strings."""
    if text and text.strip().startswith("{"):
        try:
            found = json.loads(text[text.find("{"):text.rfind("}") + 1]).get("requests")
        except (ValueError, AttributeError):
            found = _complete_strings(text[text.find("[") + 1:]) if '"requests"' in text else None
        if isinstance(found, list):
            return [r.strip() for r in found if isinstance(r, str)] or None
    return parse_questions(text)


def _complete_strings(text: str) -> list[str]:
    found = []
    for raw in _JSON_STRING.findall(text):
        try:
            found.append(json.loads(f'"{raw}"'))
        except ValueError:
            continue
    return found


def answer_calls(result: dict) -> tuple[str, list[dict], str]:
    """(the answer's words, its calls [{"name", "arguments"}], where they came from: 'api', 'text',
    'structured' or 'none') from a call's result: the API's tool_calls, else <tool_call> blocks in the text,
    else a {"tool_calls": [...]} JSON answer."""
    text = result.get("response") or ""
    if result.get("tool_calls"):
        return text, [{"name": c["name"], "arguments": c["arguments"]} for c in result["tool_calls"]], "api"
    content, calls = parse_calls(text)
    if calls:
        return content, calls, "text"
    start, end = text.find("{"), text.rfind("}")
    try:
        data = json.loads(text[start:end + 1]) if 0 <= start < end else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        calls = [{"name": c.get("name"), "arguments": c.get("arguments", {})} if isinstance(c, dict)
                 else {"name": None, "arguments": c} for c in data["tool_calls"]]
        return "", calls, "structured"
    if '"tool_calls"' in text:  # a structured answer that does not parse (cut at max_tokens): one unreadable call
        return "", [{"name": None, "arguments": text}], "structured"
    return text, [], "none"


def _toolset(ctx) -> dict:
    found = ctx.store.toolset(ctx.config.toolset or None)
    if found is None:
        what = f"no tool set {ctx.config.toolset!r}" if ctx.config.toolset else "no tool set"
        raise StudioError(f"{what}: import one first (Seeds tab → Tools, or python -m curation tools FILE | "
                          "--bundled)")
    return found


def _mode(ctx) -> str:
    if ctx.config.call_mode != "auto":
        return ctx.config.call_mode
    return "structured" if ctx.teacher.embedded else "api"


def _arguments(parameters: dict) -> list[dict]:
    required = set(parameters.get("required") or [])
    return [{"name": name, "type": spec.get("type", "any"), "required": name in required,
             "description": spec.get("description", ""), "enum": spec.get("enum")}
            for name, spec in (parameters.get("properties") or {}).items()]


def _plan_tasks(ctx) -> list[Call]:
    config, toolset, calls = ctx.config, _toolset(ctx), []
    if config.requests_per_tool == 0:
        return []
    for tool in toolset["tools"]:
        function = tool["function"]
        content = render("tools_requests.j2", name=function["name"], description=function["description"],
                         arguments=_arguments(function["parameters"]), n=config.requests_per_tool,
                         structured=config.structured)
        params = config.params()
        if config.structured:
            params = json_schema_params(params, "requests", requests_schema(config.requests_per_tool))
        calls.append(Call.make("tools", "tasks", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                               [{"role": "user", "content": content}], params, 0,
                               context={"toolset_id": toolset["id"], "tool": function["name"]}))
    return calls


def write_tasks(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    raw = result.get("response") or ""
    requests = parse_requests(raw)
    if requests is None:
        return Writes(raw_output=raw, outcome={"new": 0, "discarded": {"unparsable": 1}})
    kept, discarded = [], {}
    for request in requests:
        request = re.sub(r"^\s*\d+\s*[.)]\s*", "", request).strip().strip('"').strip()
        reason = ("empty" if not content_words(request) else "refusal" if is_refusal(request)
                  else "duplicate" if request.lower() in {k.lower() for k in kept} else None)
        if reason:
            discarded[reason] = discarded.get(reason, 0) + 1
        else:
            kept.append(request)
    tasks = [{"instruction": r, "source": "tools", "skill": call.context["tool"],
              "toolset_id": call.context["toolset_id"]} for r in kept]
    return Writes(new_tasks=tasks, raw_output=raw, outcome={"new": len(tasks), "discarded": discarded})


def _plan_answers(ctx) -> list[Call]:
    config, toolset, mode, calls = ctx.config, _toolset(ctx), _mode(ctx), []
    tools = toolset["tools"]
    for task in ctx.store.tasks(split=None):
        if task.get("toolset_id") != toolset["id"]:
            continue
        messages = [{"role": "user", "content": task["instruction"]}]
        if mode == "structured":
            system = render("tools_answer_system.j2", tools=[json.dumps(t, ensure_ascii=False) for t in tools])
            messages.insert(0, {"role": "system", "content": system})
            params = json_schema_params(config.params(), "tool_calls", calls_schema(tools, config.max_calls))
        else:
            params = {**config.params(), "tools": tools, "tool_choice": "auto"}
        calls.append(Call.make("tools", "answer", ctx.teacher.endpoint_id, ctx.teacher.model_name, messages,
                               params, 0, task_id=task["id"],
                               context={"toolset_id": toolset["id"], "mode": mode,
                                        "teacher_only_system": mode == "structured"}))
    return calls


def write_answer(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes(generation=call.generation_row(result, ctx.run_id))
    tools = ctx.store.toolset(int(call.context["toolset_id"]))["tools"]
    content, calls, via = answer_calls(result)
    checked = [{**validate_call(tools, c["name"], c["arguments"]), "via": via} for c in calls]
    if result.get("finish_reason") == "length":
        for c in checked:  # say why a call is broken when the answer was cut
            c["error"] = c["error"] and c["error"] + " (the answer was cut at max_tokens: raise it)"
    response = calls_text(content, checked) if checked else content
    generation = {**call.generation_row({**result, "response": response}, ctx.run_id), "tool_calls": checked}
    outcome = {"calls": len(checked), "valid_calls": sum(c["valid"] for c in checked), "via": via}
    return Writes(generation=generation, raw_output=result.get("response") or "", outcome=outcome)


def _stages(config: ToolsConfig) -> list[Stage]:
    return [Stage("tasks", _plan_tasks, write_tasks), Stage("answer", _plan_answers, write_answer)]


METHOD = Method("tools", ToolsConfig, "tool use: the teacher writes requests that need your tools and answers them "
                "with tool calls, each validated against its JSON schema (invalid calls are marked)",
                _stages, writers={"tasks": write_tasks, "answer": write_answer})
