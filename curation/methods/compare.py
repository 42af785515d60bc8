"""compare — pairwise preference between two responses of one task, asked in both orders to cancel
position bias (survey 3.1, Feedback; the pairs feed ranking and DPO).

Reads: tasks with at least two successful generations (the tasks given, else all). Renders: compare.j2
with the rubric. Writes: one judgments row per order (kind 'compare', generation_id = response shown
as A, other_generation_id = response shown as B, score = 1 if A won, 0 if B won, 0.5 for a tie, None
when unreadable; raw output kept). `preferences()` combines the two orders into one verdict per pair.
Parser: `parse_winner`.
"""
from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

from curation.errors import ConfigError
from curation.methods.base import Call, Method, Stage, Writes, json_schema_params, render
from curation.methods.judge import default_rubric
from curation.methods.label import Sampling, check_sampling

_WINNER = re.compile(r"(?:winner|better(?: response)?|verdict|answer)\s*(?:\*\*)?\s*(?:is)?\s*[:=]?\s*(?:\*\*)?\s*"
                     r"\[*\s*(?:response\s+)?(A|B|tie)\b", re.IGNORECASE)
_BRACKETED = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
_RATIONALE = re.compile(r"(?:rationale|reason|explanation)\s*:\s*(.+)", re.IGNORECASE | re.DOTALL)
SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5}
# What a structured judge may answer: the verdict first, then a short reason.
VERDICT_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["winner", "rationale"],
                  "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]},
                                 "rationale": {"type": "string", "maxLength": 160}}}


@dataclass
class CompareConfig(Sampling):
    """Pairwise settings.

    task_ids: tasks whose responses are compared; empty means every task with two or more responses.
    pairs_per_task: how many pairs of each task's responses to compare (1..45), oldest responses first.
    rubric: what makes a response better; empty means the default rubric.
    temperature, max_tokens: sampling of each verdict.
    structured: ask the endpoint for JSON valid against VERDICT_SCHEMA (OpenAI structured output), so every
        verdict parses; turn off for an endpoint that does not support `response_format` json_schema.
    """

    task_ids: list[int] = field(default_factory=list)
    pairs_per_task: int = 1
    rubric: str = ""
    temperature: float = 0.0
    max_tokens: int = 256
    structured: bool = True

    def __post_init__(self):
        check_sampling(self)
        self.structured = bool(self.structured)
        if not 1 <= int(self.pairs_per_task) <= 45:
            raise ConfigError(f"pairs_per_task must be between 1 and 45 (got {self.pairs_per_task})")
        self.pairs_per_task = int(self.pairs_per_task)
        self.rubric = (self.rubric or "").strip() or default_rubric()
        self.task_ids = [int(i) for i in self.task_ids]


def parse_winner(text: str | None) -> tuple[str, str | None] | None:
    """('A' | 'B' | 'tie', rationale or None) from a verdict — JSON, 'Winner: A' or '[[A]]'; None if unreadable."""
    if not text or not text.strip():
        return None
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            data = json.loads(text[start:end + 1])
            winner = str(data.get("winner", "")).strip()
            if winner.lower() in SCORES:
                return (winner.upper() if winner.lower() != "tie" else "tie"), data.get("rationale")
        except (ValueError, AttributeError):
            pass
    match = _WINNER.search(text) or _BRACKETED.search(text)
    if match is None:
        return None
    winner = match.group(1)
    found = _RATIONALE.search(text)
    return (winner.upper() if winner.lower() != "tie" else "tie"), (found.group(1).strip() if found else None)


def _plan(ctx) -> list[Call]:
    config = ctx.config
    by_task = defaultdict(list)
    for gen in ctx.store.ok_generations(task_ids=config.task_ids or None):
        by_task[gen["task_id"]].append(gen)
    calls = []
    for gens in by_task.values():
        for first, second in itertools.islice(itertools.combinations(gens, 2), config.pairs_per_task):
            for a, b in ((first, second), (second, first)):
                calls.append(compare_call(ctx.teacher, a, b, config.rubric, config.params(), config.structured))
    return calls


def compare_call(judge, a: dict, b: dict, rubric: str, params: dict, structured: bool = True) -> Call:
    """The verdict call on responses a (shown as A) and b; a and b carry instruction, input, response, ids."""
    content = render("compare.j2", rubric=rubric, instruction=a["instruction"], input=a.get("input") or "",
                     response_a=a["response"], response_b=b["response"], structured=structured)
    if structured:
        params = json_schema_params(params, "verdict", VERDICT_SCHEMA)
    return Call.make("compare", "compare", judge.endpoint_id, judge.model_name, [{"role": "user", "content": content}],
                     params, task_id=a["task_id"], generation_id=a["id"], other_generation_id=b["id"])


def _write(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    raw = result.get("response") or ""
    parsed = parse_winner(raw)
    winner, rationale = parsed if parsed else (None, None)
    judgment = {"generation_id": call.generation_id, "other_generation_id": call.other_generation_id,
                "judge_model": call.model, "score": SCORES[winner.lower()] if winner else None,
                "rationale": rationale, "raw_output": raw, "kind": "compare"}
    return Writes(judgment=judgment, raw_output=raw,
                  outcome={"winner": winner, **({} if parsed else {"discarded": {"unparsable": 1}})})


def preferences(judgments: list[dict]) -> list[dict]:
    """One verdict per pair from its 'compare' judgments in either order.

    Returns dicts {chosen, rejected, p_chosen, consistent, verdicts}: p_chosen is the mean share of
    wins of `chosen` over the readable verdicts (0.5 = tie, in which case chosen is the lower id and
    the pair is no DPO pair), consistent is whether both orders agreed. Unreadable verdicts are ignored.
    """
    shares = defaultdict(list)
    for j in judgments:
        if j.get("kind") != "compare" or j.get("score") is None:
            continue
        a, b = j["generation_id"], j["other_generation_id"]
        low, high = sorted((a, b))
        shares[(low, high)].append(j["score"] if a == low else 1 - j["score"])
    out = []
    for (low, high), wins in sorted(shares.items()):
        p_low = sum(wins) / len(wins)
        chosen, rejected, p = (low, high, p_low) if p_low >= 0.5 else (high, low, 1 - p_low)
        out.append({"chosen": chosen, "rejected": rejected, "p_chosen": p, "verdicts": len(wins),
                    "consistent": len(set(wins)) == 1})
    return out


METHOD = Method("compare", CompareConfig, "pairwise preference between two responses of a task, asked in "
                "both orders", lambda config: [Stage("compare", _plan, _write)],
                writers={"compare": _write})
