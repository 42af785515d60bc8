"""A tool-use row in the student's own tool-call format, or a documented fallback when its template has none.

A row answered with a tool set carries `tools` (the OpenAI list) and an answer whose calls are
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` text (curation/toolsets.py). For training:

- native: the student's chat template renders tools and an assistant's `tool_calls` (Qwen 2.5, Llama 3.1,
  Hermes, ...): the answer becomes an assistant turn with `tool_calls` and the tools go to
  `apply_chat_template(..., tools=...)`, so the student learns the format its template (and any server that
  parses its output) expects.
- fallback: the template ignores tools or calls (the bundled SmolLM2's and the Gemma base template do): the
  tools are written into the system message in the Hermes / Qwen 2.5 convention (`with_tools_prompt`: the
  signatures inside <tools></tools>, and how to write a call) and the answer stays the <tool_call> text. A
  student trained so writes calls that `parse_calls` reads back (evaluation does).
"""
from __future__ import annotations

import jinja2

from curation.toolsets import parse_calls, with_tools_prompt

_PROBE_NAME, _PROBE_VALUE = "probe_tool_f7q", "probe_value_z9k"
_PROBE_TOOLS = [{"type": "function", "function": {
    "name": _PROBE_NAME, "description": "probe",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
_PROBE_CALL = {"type": "function", "function": {"name": _PROBE_NAME, "arguments": {"q": _PROBE_VALUE}}}


def renders_tool_calls(tokenizer) -> bool:
    """Whether the tokenizer's chat template shows the tools in the prompt and an assistant's tool_calls in
    the chat (tried on a probe chat; a template that fails on it renders neither)."""
    user = {"role": "user", "content": "probe"}
    chat = [user, {"role": "assistant", "content": "", "tool_calls": [_PROBE_CALL]}]
    try:
        prompt = tokenizer.apply_chat_template([user], tools=_PROBE_TOOLS, tokenize=False, add_generation_prompt=True)
        text = tokenizer.apply_chat_template(chat, tools=_PROBE_TOOLS, tokenize=False)
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError):
        return False
    return _PROBE_NAME in prompt and _PROBE_VALUE in text  # the value is only in the call


def native_message(message: dict) -> dict:
    """An assistant turn whose <tool_call> text is turned into `tool_calls`; any other turn as it is (and an
    answer with a call that is not a name plus an object of arguments stays text: no template renders it)."""
    if message["role"] != "assistant":
        return message
    content, calls = parse_calls(message["content"])
    if not calls or not all(isinstance(c["name"], str) and isinstance(c["arguments"], dict) for c in calls):
        return message
    return {"role": "assistant", "content": content,
            "tool_calls": [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                           for c in calls]}


def student_chat(tokenizer, messages: list[dict], tools: list[dict] | None) -> tuple[list[dict], list[dict] | None]:
    """(messages, the tools to pass to apply_chat_template) of a row: unchanged without tools; native
    `tool_calls` when the student's template renders them; else the fallback (tools None)."""
    if not tools:
        return messages, None
    if renders_tool_calls(tokenizer):
        return [native_message(m) for m in messages], tools
    return with_tools_prompt(messages, tools), None
