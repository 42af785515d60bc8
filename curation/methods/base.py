"""What every elicitation method is made of, and the helpers they share.

A method is a list of stages. A stage has four hooks (style rule 3): `plan` reads the workspace and
renders each call's messages from a template file; the engine sends them; `write` turns one finished
call into what is stored (a generation, a judgment, new tasks) using a parser that returns None for
what it cannot read — the raw output is stored either way. `write` reads only the call (its
`context` carries what the method needs), so a failed call can be retried long after its job ended.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jinja2

from curation.teacher import TeacherConfig, request_key

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
# trim_blocks/lstrip_blocks: a line holding only a {% tag %} leaves nothing behind in the prompt.
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), undefined=jinja2.StrictUndefined,
                          autoescape=False, keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **values) -> str:
    """Render curation/templates/<template>; a missing value is an error, not an empty string."""
    return _ENV.get_template(template).render(**values)


def json_schema_params(params: dict, name: str, schema: dict) -> dict:
    """`params` plus OpenAI's structured output: the endpoint may only answer JSON valid against `schema`
    (llama.cpp's server and vLLM turn it into a grammar, so even a 135M judge writes a parsable verdict)."""
    return {**params, "response_format": {"type": "json_schema",
                                          "json_schema": {"name": name, "strict": True, "schema": schema}}}


@dataclass
class Call:
    """One call to plan, send and store. `generation_id` is the generation the call is about (judge)
    or, once stored, the one it produced (label)."""

    request_key: str
    method: str
    stage: str
    endpoint: str
    model: str
    messages: list[dict]
    params: dict
    sample_index: int = 0
    task_id: int | None = None
    generation_id: int | None = None
    other_generation_id: int | None = None
    context: dict = field(default_factory=dict)

    @classmethod
    def make(cls, method: str, stage: str, endpoint: str, model: str, messages: list[dict], params: dict,
             sample_index: int = 0, **fields) -> "Call":
        key = request_key(endpoint, model, messages, params, sample_index)
        return cls(key, method, stage, endpoint, model, messages, params, sample_index, **fields)

    @classmethod
    def from_ledger(cls, row: dict) -> "Call":
        return cls(row["request_key"], row["method"], row["stage"] or "", row["endpoint"], row["model"],
                   row["messages"], row["params"], row["sample_index"], row["task_id"], row["generation_id"],
                   row["other_generation_id"], row["context"] or {})

    def ledger_row(self) -> dict:
        return {"request_key": self.request_key, "method": self.method, "stage": self.stage,
                "task_id": self.task_id, "generation_id": self.generation_id,
                "other_generation_id": self.other_generation_id, "endpoint": self.endpoint, "model": self.model,
                "messages": self.messages, "params": self.params, "sample_index": self.sample_index,
                "context": self.context}

    def generation_row(self, result: dict, run_id: int | None, method: str | None = None) -> dict:
        """The generations row for a call whose answer is a training response."""
        return {**{k: result.get(k) for k in ("response", "finish_reason", "prompt_tokens", "completion_tokens",
                                                "latency_s", "status", "error", "attempts")},
                "task_id": self.task_id, "run_id": run_id, "request_key": self.request_key,
                "endpoint": self.endpoint, "model": self.model, "messages": self.messages, "params": self.params,
                "sample_index": self.sample_index, "method": method or self.method,
                "teacher_only_system": bool(self.context.get("teacher_only_system"))}


@dataclass
class Writes:
    """What one finished call stores, besides its ledger row (see Store.commit_call).

    outcome: small JSON facts for the ledger's result column and the run summary (e.g. discard counts).
    fatal: a message that stops the whole job after this row is stored (e.g. an endpoint without logprobs).
    """

    generation: dict | None = None
    judgment: dict | None = None
    new_tasks: list[dict] = field(default_factory=list)
    raw_output: str | None = None
    outcome: dict = field(default_factory=dict)
    result: dict | None = None
    fatal: str | None = None


@dataclass
class Stage:
    """plan(ctx) -> calls; write(ctx, call, result) -> Writes; sender: 'teacher' or 'student'."""

    name: str
    plan: Callable
    write: Callable
    sender: str = "teacher"


@dataclass(frozen=True)
class Method:
    """An elicitation method: a name (as the CLI spells it), its config class and its stages.

    stages(config) -> list[Stage]; later stages are planned after earlier ones ran (evolution rounds,
    judging the student's answers). writers: stage name -> its write hook, for retrying a stored call
    without its job's config. finish(ctx) runs once at the end (e.g. the self loop's filter).
    """

    name: str
    config_cls: type
    description: str
    stages: Callable
    writers: dict
    finish: Callable | None = None

    def preview(self, store, teacher: TeacherConfig, config, limit: int = 3) -> list[dict]:
        """The exact messages and params of the first calls of the first stage, before anything is sent."""
        from curation.methods.context import RunContext  # context imports the store; base stays a leaf
        ctx = RunContext(store, teacher, config)
        calls = self.stages(config)[0].plan(ctx)
        return [{"request_key": c.request_key, "task_id": c.task_id, "generation_id": c.generation_id,
                 "endpoint": c.endpoint, "model": c.model, "messages": c.messages, "params": c.params}
                for c in calls[:limit]]


# ---- parsers shared by the task-producing methods ---------------------------------------------------

_LIST_ITEM = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•]|(?:new\s+)?(?:task|instruction)\s*\d*\s*[:.])\s*(.+?)\s*$",
                        re.IGNORECASE)


def parse_task_list(text: str | None) -> list[str] | None:
    """New task instructions from a teacher's answer: a JSON array (of strings or of objects with an
    "instruction"), else a numbered or bulleted list. None when neither can be read.

    >>> parse_task_list('["Write a poem.", "  "]')
    ['Write a poem.', '']
    """
    if not text or not text.strip():
        return None
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        try:
            items = json.loads(text[start:end + 1])
        except ValueError:
            items = None
        if isinstance(items, list):
            out = [i.get("instruction") if isinstance(i, dict) else i for i in items]
            out = [_clean(i) for i in out if isinstance(i, str)]
            if out:
                return out  # empty items are kept: the writer counts them as discarded
    found = [_clean(m.group(1)) for m in map(_LIST_ITEM.match, text.splitlines()) if m]
    found = [f for f in found if f]
    return found or None


def _clean(item: str) -> str:
    # Markdown emphasis and quotes around an item are decoration, not part of the task.
    return item.strip().strip("*_").strip().strip('"').strip()


REFUSAL = re.compile(r"\b(i'?m sorry|i am sorry|i apologi[sz]e|i can(?:'|no)t (?:help|assist|comply|do that)|"
                     r"as an ai\b|i am unable to|i'm unable to)", re.IGNORECASE)


def is_refusal(text: str) -> bool:
    return bool(REFUSAL.search(text or ""))


def content_words(text: str) -> bool:
    """Whether the text has anything besides punctuation and whitespace."""
    return bool(re.search(r"\w", text or ""))


def add_counts(target: Counter, outcome: dict) -> None:
    for reason, n in (outcome.get("discarded") or {}).items():
        target[reason] += n
