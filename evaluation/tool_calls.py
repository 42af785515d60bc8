"""Tool calls of the base and the distilled student on held-out tool tasks (issue 16.3), against the teacher's.

For each eval-split task answered with a tool set (Store.tool_references), both students answer through the
student's inference server, in the format training gave them: the tools through the API when the student's
chat template renders tools (llama.cpp then parses its calls into message.tool_calls), else the tools in the
system message and calls written as <tool_call> text (curation.toolsets.with_tools_prompt, as
distill/tool_format.py trains). Each answer is scored (`score_answer`): its calls valid against their schemas,
the same functions as the teacher's calls, the same calls (names and arguments) exactly.

A report, not stored: `run_tool_eval` returns it (python -m evaluation ... --tools prints it). The full
comparison (run_eval: judge, win rates, NLL) is unchanged.
"""
from __future__ import annotations

import asyncio
import json
import random
import urllib.request

from curation.errors import StudioError
from curation.teacher import call_chat
from curation.toolsets import calls_text, check_text, parse_calls, with_tools_prompt
from evaluation.plan import resolve_adapter
from models.students import StudentServers

STUDENTS = ("base", "distilled")


def answer_text(result: dict) -> str:
    """A student's answer as <tool_call> text: the calls its server read from its template's format
    (message.tool_calls), else its text, where a bare {"name", "arguments" | "parameters"} object is a call."""
    text = result.get("response") or ""
    if result.get("tool_calls"):
        return calls_text(text, [{"name": c["name"], "arguments": _json_or_text(c["arguments"])}
                                 for c in result["tool_calls"]])
    if parse_calls(text)[1]:
        return text
    data = _json_or_text(text.strip())
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        return calls_text("", [{"name": data["name"], "arguments": data.get("arguments", data.get("parameters", {}))}])
    return text


def _json_or_text(text):
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def _call_key(name, arguments) -> str:
    return json.dumps([name, arguments], sort_keys=True, ensure_ascii=False)


def score_answer(tools: list[dict], reference: str, answer: str) -> dict:
    """{"calls", "valid", "name_match", "exact_match"} of a student's answer against the teacher's (both as
    <tool_call> text). valid: at least one call and every call valid against its schema; name_match: the same
    functions called (as a multiset; two call-less answers match); exact_match: the same calls, names and
    arguments, in any order."""
    expected = parse_calls(reference)[1]
    got = check_text(tools, answer)
    return {"calls": len(got), "valid": bool(got) and all(c["valid"] for c in got),
            "name_match": sorted(map(str, (c["name"] for c in got))) == sorted(map(str, (c["name"] for c in expected))),
            "exact_match": sorted(_call_key(c["name"], c["arguments"]) for c in got)
            == sorted(_call_key(c["name"], c["arguments"]) for c in expected)}


def summarise(scores: list[dict]) -> dict:
    """Rates over the tasks: answers with a call, valid answers, function match, exact match."""
    n = len(scores)

    def rate(key):
        return round(sum(bool(s[key]) for s in scores) / n, 3) if n else None

    return {"tasks": n, "with_calls": sum(s["calls"] > 0 for s in scores), "valid_rate": rate("valid"),
            "name_match_rate": rate("name_match"), "exact_match_rate": rate("exact_match")}


def template_takes_tools(base_url: str) -> bool:
    """Whether the llama.cpp server at `base_url` (".../v1") has a chat template that renders tool calls."""
    root = base_url[:-3] if base_url.endswith("/v1") else base_url
    try:
        with urllib.request.urlopen(f"{root}/props", timeout=10) as response:
            caps = json.loads(response.read()).get("chat_template_caps") or {}
    except (OSError, ValueError):
        return False
    # llama.cpp sends the capabilities as a dict, or (some builds) as the text of one
    return bool(caps.get("supports_tool_calls")) if isinstance(caps, dict) else "'supports_tool_calls': True" in caps


def _messages_and_params(task: dict, native: bool, params: dict) -> tuple[list[dict], dict]:
    messages = [{"role": "user", "content": task["instruction"]}]
    if native:
        return messages, {**params, "tools": task["tools"], "tool_choice": "auto"}
    return with_tools_prompt(messages, task["tools"]), params


async def _answers(endpoint, distilled: bool, tasks: list[dict], native: bool, config) -> list[dict]:
    client = config.teacher.client(endpoint.base_url)
    semaphore = asyncio.Semaphore(endpoint.server.spec.parallel)

    async def one(task):
        messages, params = _messages_and_params(task, native, config.params())
        async with semaphore:
            return await call_chat(client, endpoint.model, messages, {**params, **endpoint.params(distilled)}, 1)
    try:
        return await asyncio.gather(*(one(t) for t in tasks))
    finally:
        await client.close()


def run_tool_eval(store, config, students: StudentServers | None = None) -> dict:
    """The report of both students on the held-out tool tasks (at most `config.limit`, drawn by its seed)."""
    tasks = store.tool_references()
    if not tasks:
        raise StudioError("no held-out tool task with a teacher answer: move some tool tasks to the eval split "
                          "(python -m curation split, or the Seeds tab) and answer them (Generate → tools answers "
                          "every split)")
    if config.limit and config.limit < len(tasks):
        tasks = sorted(random.Random(config.seed).sample(tasks, config.limit), key=lambda t: t["id"])
    student, adapter = resolve_adapter(store, config)
    own = students is None
    students = students or StudentServers(store.workspace / "logs", store.workspace / "models")
    try:
        endpoint = students.endpoint(student, adapter)
        native = template_takes_tools(endpoint.base_url)
        results = {name: asyncio.run(_answers(endpoint, name == "distilled", tasks, native, config))
                   for name in STUDENTS}
    finally:
        if own:
            students.stop()
    rows = []
    for i, task in enumerate(tasks):
        row = {"task_id": task["id"], "tool": task["skill"], "reference": task["reference"]}
        for name in STUDENTS:
            result = results[name][i]
            answer = answer_text(result) if result["status"] == "ok" else ""
            score = score_answer(task["tools"], task["reference"], answer)
            row.update({f"{name}_answer": answer, f"{name}_error": result.get("error"),
                        **{f"{name}_{k}": v for k, v in score.items()}})
        rows.append(row)
    summary = {name: summarise([{k[len(name) + 1:]: v for k, v in r.items() if k.startswith(name + "_")}
                                for r in rows]) for name in STUDENTS}
    return {"tasks": len(rows), "format": "native" if native else "fallback", "student": student,
            "adapter": str(adapter), **summary, "rows": rows}


__all__ = ["run_tool_eval", "score_answer", "answer_text", "summarise", "template_takes_tools"]
