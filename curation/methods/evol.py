"""evol — Evol-Instruct (WizardLM): evolve each task for R rounds, in depth or in breadth.

Reads: the tasks given (else every train-split task) and, for round r > 1, what rounds 1..r-1 stored.
Renders: evol_depth.j2 (add constraints, deepen, concretise, increase reasoning) or evol_breadth.j2;
the operation of each (task, round) is drawn by a seeded generator, so a re-run plans the same calls.
Writes: the evolved task (source 'evol', parent_id = the task it was evolved from, tags inherited).
Failed evolutions — empty, a refusal, a copy of the parent, or leaked template words — are
eliminated and counted; the next round evolves the last surviving ancestor again.
Parser: `parse_evolved`, None for an answer with nothing in it.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from curation.errors import ConfigError
from curation.methods.base import Call, Method, Stage, Writes, content_words, is_refusal, render
from curation.methods.label import Sampling, check_sampling, select_tasks
from curation.methods.novelty import rouge_l, tokens

DEPTH_OPERATIONS = ("add_constraints", "deepen", "concretize", "increase_reasoning")
OPERATIONS = DEPTH_OPERATIONS + ("breadth",)
# An evolution this close to its parent (ROUGE-L F1) added nothing: WizardLM's "no information gain".
COPY_THRESHOLD = 0.95
_LEAKED = re.compile(r"#?\s*(given|rewritten|created)\s+prompt\s*#?", re.IGNORECASE)
_LABEL = re.compile(r"^\s*#?\s*(rewritten|created|new)\s+prompt\s*#?\s*:?\s*", re.IGNORECASE)


@dataclass
class EvolConfig(Sampling):
    """Evolution settings.

    task_ids: tasks to evolve; empty means every train-split task.
    rounds: R, evolution rounds per task (1..5); round r evolves round r-1's result.
    operations: which evolutions to draw from: add_constraints, deepen, concretize, increase_reasoning
        (in depth) and breadth (a new task in the same domain). Default: all five.
    temperature, max_tokens: sampling of each call. seed: which operation each (task, round) gets.
    """

    task_ids: list[int] = field(default_factory=list)
    rounds: int = 1
    operations: list[str] = field(default_factory=lambda: list(OPERATIONS))
    temperature: float = 0.7
    max_tokens: int = 512
    seed: int = 0

    def __post_init__(self):
        check_sampling(self)
        if not 1 <= int(self.rounds) <= 5:
            raise ConfigError(f"rounds must be between 1 and 5 (got {self.rounds})")
        unknown = sorted(set(self.operations) - set(OPERATIONS))
        if unknown or not self.operations:
            raise ConfigError(f"operations must be a non-empty subset of {', '.join(OPERATIONS)} (got {unknown or 'none'})")
        self.rounds, self.seed = int(self.rounds), int(self.seed)
        self.operations = [op for op in OPERATIONS if op in self.operations]
        self.task_ids = [int(i) for i in self.task_ids]


def parse_evolved(text: str | None) -> str | None:
    """The evolved instruction: the answer without a leading '#Rewritten Prompt#:'-style label; None if empty."""
    if not text:
        return None
    cleaned = _LABEL.sub("", text.strip(), count=1).strip().strip('"').strip()
    return cleaned or None


def elimination_reason(evolved: str | None, parent: str) -> str | None:
    """Why an evolution failed (WizardLM's elimination), or None when it is kept."""
    if evolved is None or not content_words(evolved):
        return "empty"
    if is_refusal(evolved):
        return "refusal"
    if _LEAKED.search(evolved):
        return "leaked_template"
    if rouge_l(tokens(evolved), tokens(parent)) >= COPY_THRESHOLD:
        return "copy"
    return None


def _prompt_of(task: dict) -> str:
    return render("label_user.j2", instruction=task["instruction"], input=task.get("input") or "")


def _call(ctx, root: dict, current: dict, round_: int) -> Call:
    config = ctx.config
    operation = random.Random(f"{config.seed}:{root['id']}:{round_}").choice(config.operations)
    template = "evol_breadth.j2" if operation == "breadth" else "evol_depth.j2"
    content = render(template, operation=operation, prompt=_prompt_of(current))
    context = {"root_id": root["id"], "round": round_, "operation": operation, "parent_id": current["id"],
               "parent_text": _prompt_of(current), "skill": current.get("skill"), "domain": current.get("domain")}
    # sample_index = round: the same parent evolved again (after a failed round) is a new call.
    return Call.make("evol", "evolve", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                     [{"role": "user", "content": content}], config.params(), round_, task_id=current["id"],
                     context=context)


def _plan_round(round_: int):
    def plan(ctx) -> list[Call]:
        calls = []
        for root in select_tasks(ctx.store, ctx.config.task_ids):
            current = root
            for earlier in range(1, round_):
                row = ctx.ledger_row(_call(ctx, root, current, earlier).request_key)
                if row is None or row["state"] != "ok":
                    current = None  # this lineage waits until its earlier round has an answer
                    break
                new_ids = (row["result"] or {}).get("task_ids") or []
                if new_ids:
                    current = ctx.store.tasks(new_ids)[0]
            if current is not None:
                calls.append(_call(ctx, root, current, round_))
        return calls
    return plan


def _write(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    raw = result.get("response") or ""
    evolved = parse_evolved(raw)
    reason = elimination_reason(evolved, call.context["parent_text"])
    outcome = {"operation": call.context["operation"], "round": call.context["round"]}
    if reason:
        return Writes(raw_output=raw, outcome={**outcome, "new": 0, "discarded": {reason: 1}})
    task = {"instruction": evolved, "source": "evol", "parent_id": call.context["parent_id"],
            "skill": call.context.get("skill"), "domain": call.context.get("domain")}
    return Writes(new_tasks=[task], raw_output=raw, outcome={**outcome, "new": 1, "discarded": {}})


METHOD = Method("evol", EvolConfig, "Evol-Instruct: tasks evolved in depth or breadth for R rounds, failed "
                "evolutions eliminated", lambda config: [Stage("evolve", _plan_round(r), _write)
                                                         for r in range(1, config.rounds + 1)],
                writers={"evolve": _write})
