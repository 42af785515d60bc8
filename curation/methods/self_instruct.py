"""self-instruct — k sampled demonstrations -> new tasks (survey 3.1, Expansion; Wang et al. 2023).

Reads: the demonstration pool (tasks given, else train-split seed/imported tasks). Renders:
self_instruct.j2 with k demonstrations drawn by a seeded generator, so a re-run plans the same calls.
Writes: new tasks (source 'self_instruct', parent_id = the first demonstration; all k ids are in the
ledger row's context), skipping empty ones, refusals and those too similar to any existing task
(ROUGE-L or embedding cosine at or above the threshold) — each discard counted by reason.
Parser: `parse_task_list` (JSON array or numbered list); None -> nothing new, raw output kept.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from curation.errors import ConfigError, StudioError
from curation.methods.base import (Call, Method, Stage, Writes, content_words, is_refusal, parse_task_list,
                                   render)
from curation.methods.label import Sampling, check_sampling, select_tasks

DEFAULT_THRESHOLDS = {"rouge": 0.7, "embedding": 0.9}


@dataclass
class SelfInstructConfig(Sampling):
    """Expansion settings.

    task_ids: the demonstration pool; empty means every train-split task whose source is seed or import.
    num_prompts: teacher calls to make (1..10000); each asks for `new_per_prompt` tasks.
    k: demonstrations shown per call (1..16).
    new_per_prompt: new tasks asked for per call (1..20).
    similarity: 'rouge' (ROUGE-L F1 over words) or 'embedding' (cosine of all-MiniLM-L6-v2 vectors).
    threshold: a new task whose similarity to any existing task is at or above this is discarded
        (0..1; empty: 0.7 for rouge as in Self-Instruct, 0.9 for embedding).
    temperature, max_tokens: sampling of each call. seed: which demonstrations each call shows.
    """

    task_ids: list[int] = field(default_factory=list)
    num_prompts: int = 4
    k: int = 3
    new_per_prompt: int = 4
    similarity: str = "rouge"
    threshold: float | None = None
    temperature: float = 1.0
    max_tokens: int = 512
    seed: int = 0

    def __post_init__(self):
        check_sampling(self)
        check_novelty(self)
        for name, low, high in (("num_prompts", 1, 10000), ("k", 1, 16), ("new_per_prompt", 1, 20)):
            if not low <= int(getattr(self, name)) <= high:
                raise ConfigError(f"{name} must be between {low} and {high} (got {getattr(self, name)})")
            setattr(self, name, int(getattr(self, name)))
        self.task_ids, self.seed = [int(i) for i in self.task_ids], int(self.seed)


def check_novelty(config) -> None:
    if config.similarity not in DEFAULT_THRESHOLDS:
        raise ConfigError(f"similarity must be 'rouge' or 'embedding' (got {config.similarity!r})")
    if config.threshold is None or config.threshold == "":
        config.threshold = DEFAULT_THRESHOLDS[config.similarity]
    if not 0 < float(config.threshold) <= 1:
        raise ConfigError(f"threshold must be above 0 and at most 1 (got {config.threshold})")
    config.threshold = float(config.threshold)


def demonstration_pool(store, task_ids: list[int]) -> list[dict]:
    if task_ids:
        return select_tasks(store, task_ids)
    pool = [t for t in store.tasks(split="train") if t["source"] in ("seed", "import")]
    if not pool:
        raise StudioError("self-instruct needs demonstrations: add seed tasks, or pass task ids to sample from")
    return pool


def _shared(tasks: list[dict], key: str):
    values = {t.get(key) for t in tasks}
    return values.pop() if len(values) == 1 else None


def _plan(ctx) -> list[Call]:
    config = ctx.config
    pool = demonstration_pool(ctx.store, config.task_ids)
    calls = []
    for i in range(config.num_prompts):
        demos = random.Random(f"{config.seed}:{i}").sample(pool, min(config.k, len(pool)))
        content = render("self_instruct.j2", n=config.new_per_prompt,
                         demos=[{"instruction": d["instruction"], "input": d.get("input") or ""} for d in demos])
        context = {"source": "self_instruct", "parent_id": demos[0]["id"], "demo_ids": [d["id"] for d in demos],
                   "skill": _shared(demos, "skill"), "domain": _shared(demos, "domain"),
                   "similarity": config.similarity, "threshold": config.threshold}
        calls.append(Call.make("self-instruct", "expand", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                               [{"role": "user", "content": content}], config.params(), i,
                               task_id=demos[0]["id"], context=context))
    return calls


def write_new_tasks(ctx, call: Call, result: dict) -> Writes:
    """New tasks from a task-list answer, each admitted only if novel; discards counted by reason."""
    if result["status"] != "ok":
        return Writes()
    raw = result.get("response") or ""
    items = parse_task_list(raw)
    if items is None:
        return Writes(raw_output=raw, outcome={"new": 0, "discarded": {"unparsable": 1}})
    novelty = ctx.novelty(call.context["similarity"], call.context["threshold"])
    discarded, new = Counter(), []
    for text in items:
        reason = ("empty" if not content_words(text) else "refusal" if is_refusal(text)
                  else None if novelty.admit(text) else "too_similar")
        if reason:
            discarded[reason] += 1
            continue
        new.append({"instruction": text, "source": call.context["source"], "parent_id": call.context.get("parent_id"),
                    "skill": call.context.get("skill"), "domain": call.context.get("domain")})
    return Writes(new_tasks=new, raw_output=raw, outcome={"new": len(new), "discarded": dict(discarded)})


METHOD = Method("self-instruct", SelfInstructConfig, "k sampled demonstrations -> new tasks, too-similar ones "
                "discarded (ROUGE-L or embedding cosine)", lambda config: [Stage("expand", _plan, write_new_tasks)],
                writers={"expand": write_new_tasks})
