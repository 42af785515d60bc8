"""constitution — values by critique and revision (survey §4.2: Constitutional AI's SL stage; the pair feeds DPO).

Stages, the second planned from what the first stored:
1. critique: the teacher reads a stored answer against the user's principles (constitution_critique.j2) and
   lists where it breaks them, or answers NO_CHANGE. The critique is kept raw in the ledger.
2. revise: for each answer whose critique asks for a change, the teacher rewrites it following the critique
   (constitution_revise.j2). Writes: the revision as a new generation of the same task with the original's
   training messages (method 'constitution'), so SFT learns the revised answer for the same prompt; the
   ledger row links it to the original (context.original_id), so DPO takes (revised, original) as a pair
   (`Store.revision_links`, `distill.dpo.pairs_from_revisions`).
A revision that is empty, a refusal or a near-copy of the original (ROUGE-L >= 0.95) is discarded and counted;
an answer whose critique says NO_CHANGE is counted as kept and not revised.
Parsers: `needs_change`, `parse_revision`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from curation.errors import ConfigError, StudioError
from curation.methods.base import Call, Method, Stage, Writes, content_words, is_refusal, render
from curation.methods.label import Sampling, check_sampling
from curation.methods.novelty import rouge_l, tokens

COPY_THRESHOLD = 0.95
NO_CHANGE = "NO_CHANGE"
_LABEL = re.compile(r"^\s*(?:\*\*)?\s*(?:revised|rewritten|new)\s+answer\s*(?:\*\*)?\s*:\s*", re.IGNORECASE)


def default_principles() -> str:
    return render("constitution_principles.j2")


@dataclass
class ConstitutionConfig(Sampling):
    """Critique-and-revision settings.

    generation_ids: the answers to critique; empty means every successful, not rejected teacher answer of a
        train-split task (revisions themselves excluded).
    principles: what a good answer does, one principle a line; empty means the default four (helpful, honest,
        harmless, concise: templates/constitution_principles.j2).
    temperature, max_tokens: sampling of each critique and revision.
    """

    generation_ids: list[int] = field(default_factory=list)
    principles: str = ""
    temperature: float = 0.4
    max_tokens: int = 384

    def __post_init__(self):
        check_sampling(self)
        self.principles = (self.principles or "").strip() or default_principles()
        if len(self.principles) > 8000:
            raise ConfigError(f"principles must be at most 8000 characters (got {len(self.principles)})")
        self.generation_ids = [int(i) for i in self.generation_ids]


def needs_change(critique: str | None) -> bool:
    """Whether a critique asks for a revision: anything but an (almost) bare NO_CHANGE."""
    text = (critique or "").strip().strip(".*`\"'").strip()
    return bool(content_words(text)) and not (NO_CHANGE in text.upper().replace(" ", "_") and len(text) < 40)


def parse_revision(text: str | None) -> str | None:
    """The revised answer without a leading 'Revised answer:' label; None when nothing is left."""
    cleaned = _LABEL.sub("", (text or "").strip(), count=1).strip()
    return cleaned if content_words(cleaned) else None


def discard_reason(revised: str | None, original: str) -> str | None:
    if revised is None:
        return "empty"
    if is_refusal(revised) and not is_refusal(original):
        return "refusal"
    if rouge_l(tokens(revised), tokens(original)) >= COPY_THRESHOLD:
        return "copy"
    return None


def _originals(ctx) -> list[dict]:
    rows = ctx.store.revision_candidates(ctx.config.generation_ids or None)
    if ctx.config.generation_ids and len(rows) != len(set(ctx.config.generation_ids)):
        missing = sorted(set(ctx.config.generation_ids) - {r["id"] for r in rows})
        raise StudioError(f"generation {missing[:5]} is not a successful, unrejected answer of a train task")
    if not rows:
        raise StudioError("no answers to critique: generate answers first (Generate → label)")
    return rows


def _request(row: dict) -> str:
    return next((m["content"] for m in reversed(row["messages"]) if m["role"] == "user"), "")


def _critique_call(ctx, row: dict) -> Call:
    content = render("constitution_critique.j2", principles=ctx.config.principles, request=_request(row),
                     answer=row["response"])
    return Call.make("constitution", "critique", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                     [{"role": "user", "content": content}], ctx.config.params(), 0, task_id=row["task_id"],
                     context={"original_id": row["id"]})


def _plan_critiques(ctx) -> list[Call]:
    return [_critique_call(ctx, row) for row in _originals(ctx)]


def write_critique(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    critique = result.get("response") or ""
    change = needs_change(critique)
    return Writes(raw_output=critique, outcome={"needs_change": change,
                                                "discarded": {} if change else {"no_change_needed": 1}})


def _plan_revisions(ctx) -> list[Call]:
    calls = []
    for row in _originals(ctx):
        found = ctx.ledger_row(_critique_call(ctx, row).request_key)
        if found is None or found["state"] != "ok" or not needs_change(found["raw_output"]):
            continue
        content = render("constitution_revise.j2", principles=ctx.config.principles, request=_request(row),
                         answer=row["response"], critique=found["raw_output"])
        calls.append(Call.make("constitution", "revise", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                               [{"role": "user", "content": content}], ctx.config.params(), 0, task_id=row["task_id"],
                               context={"original_id": row["id"], "original": row["response"],
                                        "messages": row["messages"]}))
    return calls


def write_revision(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    raw = result.get("response") or ""
    revised = parse_revision(raw)
    reason = discard_reason(revised, call.context["original"])
    if reason:
        return Writes(raw_output=raw, outcome={"revised": 0, "discarded": {reason: 1}})
    generation = {**call.generation_row({**result, "response": revised}, ctx.run_id),
                  "messages": call.context["messages"], "teacher_only_system": False}
    return Writes(generation=generation, raw_output=raw,
                  outcome={"revised": 1, "original_id": call.context["original_id"], "discarded": {}})


METHOD = Method("constitution", ConstitutionConfig, "values by critique and revision (Constitutional AI): the "
                "teacher critiques answers against your principles and rewrites them; (revised, original) feeds "
                "SFT and DPO", lambda config: [Stage("critique", _plan_critiques, write_critique),
                                               Stage("revise", _plan_revisions, write_revision)],
                writers={"critique": write_critique, "revise": write_revision})
