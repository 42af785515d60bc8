"""judge — the teacher (or a separate judge endpoint) scores each response 1-10 against a rubric
(survey 3.1, Feedback).

Reads: successful generations (the ids given, else those of the tasks given, else all). Renders:
judge.j2 with the rubric (default: judge_rubric.j2; the user edits it). Writes: a judgments row
(kind 'score') with score, rationale and the raw output. Parser: `parse_score`; a score it cannot
read is stored as None with the raw output kept. A changed rubric is a new call, never a cached one.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from curation.errors import StudioError
from curation.methods.base import Call, Method, Stage, Writes, json_schema_params, render
from curation.methods.label import Sampling, check_sampling

_SCORE = re.compile(r"(?:score|rating|grade)\s*(?:\*\*)?\s*[:=]?\s*(?:\*\*)?\s*\[*\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?",
                    re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"\b(\d+(?:\.\d+)?)\s*/\s*10\b")
_RATIONALE = re.compile(r"(?:rationale|reason|explanation)\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*(.+)", re.IGNORECASE | re.DOTALL)
# What a structured judge may answer: the score first (so a long rationale cannot push it out), then a short reason
# (160 characters: the embedded 135M judge otherwise repeats itself up to any cap, 2.5x the tokens at 300).
SCORE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["score", "rationale"],
                "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                               "rationale": {"type": "string", "maxLength": 160}}}


def default_rubric() -> str:
    return render("judge_rubric.j2")


@dataclass
class JudgeConfig(Sampling):
    """Scoring settings.

    generation_ids: responses to judge; empty means those of `task_ids`, or every successful generation.
    task_ids: judge the responses of these tasks (when no generation ids are given).
    rubric: what a good response is; empty means the default rubric (templates/judge_rubric.j2).
    temperature: 0 makes the judge as repeatable as the endpoint allows. max_tokens: room for the rationale.
    structured: ask the endpoint for JSON valid against SCORE_SCHEMA (OpenAI structured output), so every
        verdict parses; turn off for an endpoint that does not support `response_format` json_schema.
    """

    generation_ids: list[int] = field(default_factory=list)
    task_ids: list[int] = field(default_factory=list)
    rubric: str = ""
    temperature: float = 0.0
    max_tokens: int = 256
    structured: bool = True

    def __post_init__(self):
        check_sampling(self)
        self.structured = bool(self.structured)
        self.rubric = (self.rubric or "").strip() or default_rubric()
        self.generation_ids = [int(i) for i in self.generation_ids]
        self.task_ids = [int(i) for i in self.task_ids]


def parse_score(text: str | None) -> tuple[float, str | None] | None:
    """(score 1..10, rationale or None) from a judge's answer — JSON or 'Score: 7' / '7/10' text; None if unreadable."""
    if not text or not text.strip():
        return None
    score, rationale = None, None
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            data = json.loads(text[start:end + 1])
            score, rationale = float(data.get("score")), data.get("rationale") or data.get("reason")
        except (ValueError, TypeError, AttributeError):
            score = None
    if score is None:
        match = _SCORE.search(text) or _OUT_OF_TEN.search(text)
        if match is None:
            return None
        score = float(match.group(1))
        found = _RATIONALE.search(text)
        rationale = found.group(1).strip() if found else None
    if not 1 <= score <= 10:
        return None
    return score, (rationale.strip() if isinstance(rationale, str) and rationale.strip() else None)


def select_generations(store, generation_ids: list[int], task_ids: list[int], methods=None) -> list[dict]:
    rows = store.ok_generations(generation_ids or None, None if generation_ids else (task_ids or None), methods)
    if generation_ids and len(rows) != len(set(generation_ids)):
        missing = sorted(set(generation_ids) - {r["id"] for r in rows})
        raise StudioError(f"no successful generation with id {missing[:5]} to judge")
    return rows


def judge_call(ctx, gen: dict, rubric: str, params: dict, method: str = "judge", structured: bool = True) -> Call:
    content = render("judge.j2", rubric=rubric, instruction=gen["instruction"], input=gen.get("input") or "",
                     response=gen["response"], structured=structured)
    if structured:
        params = json_schema_params(params, "score", SCORE_SCHEMA)
    return Call.make(method, "judge", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                     [{"role": "user", "content": content}], params, task_id=gen["task_id"], generation_id=gen["id"])


def _plan(ctx) -> list[Call]:
    config = ctx.config
    gens = select_generations(ctx.store, config.generation_ids, config.task_ids)
    return [judge_call(ctx, g, config.rubric, config.params(), structured=config.structured) for g in gens]


def write_judgment(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    raw = result.get("response") or ""
    parsed = parse_score(raw)
    score, rationale = parsed if parsed else (None, None)
    judgment = {"generation_id": call.generation_id, "judge_model": call.model, "score": score,
                "rationale": rationale, "raw_output": raw, "kind": "score"}
    return Writes(judgment=judgment, raw_output=raw,
                  outcome={"score": score, **({} if parsed else {"discarded": {"unparsable": 1}})})


METHOD = Method("judge", JudgeConfig, "the teacher scores each response 1-10 with a rationale against an "
                "editable rubric", lambda config: [Stage("judge", _plan, write_judgment)],
                writers={"judge": write_judgment})
