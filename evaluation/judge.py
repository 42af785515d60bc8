"""The judging part of an eval: the judge compares the distilled student's answer with the base
student's and with the teacher's, in both orders (compare.j2), and scores all three answers 1-10
(judge.j2); the stored verdicts and scores are read back as per-task data.

The calls are the compare and judge methods' own, so they are cached by request key, ledgered and
retried like theirs. The eval pipeline that calls `judge_answers` is evaluation.evaluate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from curation.generate import execute_stages
from curation.methods.context import RunContext
from curation.methods import get_method
from curation.methods.base import Call, Stage
from curation.methods.compare import compare_call
from curation.methods.judge import judge_call
from evaluation import metrics as em


@dataclass
class _Judging:
    """The judge's calls for one eval, and how to read their answers back.

    orientation: compare call's request key -> (task id, opponent, whether the distilled answer was A).
    score_keys: (task id, system) -> the request key of that answer's 1-10 score call.
    identical: (task id, opponent) pairs whose answers are the same text: a tie, nothing asked.
    """

    compare_calls: list[Call] = field(default_factory=list)
    score_calls: list[Call] = field(default_factory=list)
    orientation: dict = field(default_factory=dict)
    score_keys: dict = field(default_factory=dict)
    identical: set = field(default_factory=set)


def _plan_judging(store, config, tasks, answers) -> _Judging:
    judge, plan = config.judge_teacher, _Judging()
    ctx = RunContext(store, judge)
    for task in tasks:
        gens = {name: answers[name].get(task["id"]) for name in em.SYSTEMS}
        ok = {name: g for name, g in gens.items() if g and g["status"] == "ok"}
        for name, gen in (ok.items() if config.judge_scores else ()):
            call = judge_call(ctx, _judged(task, gen), config.rubric, config.judge_params(),
                              structured=config.structured_judge)
            plan.score_calls.append(call)
            plan.score_keys[(task["id"], name)] = call.request_key
        for other in [o for o, on in (("base", config.judge_vs_base), ("teacher", config.judge_vs_teacher)) if on]:
            if "distilled" not in ok or other not in ok:
                continue
            if em.normalise(ok["distilled"]["response"]) == em.normalise(ok[other]["response"]):
                plan.identical.add((task["id"], other))
                continue
            for a, b in (("distilled", other), (other, "distilled")):
                call = compare_call(judge, _judged(task, ok[a]), _judged(task, ok[b]), config.rubric,
                                    config.judge_params(), config.structured_judge)
                plan.compare_calls.append(call)
                plan.orientation[call.request_key] = (task["id"], other, a == "distilled")
    plan.compare_calls, plan.score_calls = _unique(plan.compare_calls), _unique(plan.score_calls)
    return plan


def judge_units(config) -> int:
    """The judge's calls per task: 2 verdicts (both orders) against each opponent judged, 3 scores."""
    return 2 * (config.judge_vs_base + config.judge_vs_teacher) + 3 * config.judge_scores


def judge_answers(store, config, tasks, answers, judge_url: Callable[[], str], tracker):
    """Pairwise verdicts (both orders) and 1-10 scores; (verdicts, scores, judge run id) or None if cancelled.

    verdicts: {(task id, 'base' | 'teacher'): {"verdicts": [...], "identical": bool}} from the distilled
    student's side; scores: {(task id, system): (score, rationale)}. Calls go through the engine as the
    compare and judge methods' own calls, so they are cached, ledgered and retried like theirs.
    judge_url: where the judge answers; asked only when a call must be made, so judging that is all
    stored needs no running judge.
    """
    judge, plan = config.judge_teacher, _plan_judging(store, config, tasks, answers)
    tracker.enter("judging", judge_units(config) * len(tasks))
    stages = [(Stage("compare", lambda ctx: plan.compare_calls, get_method("compare").writers["compare"]),
               plan.compare_calls),
              (Stage("judge", lambda ctx: plan.score_calls, get_method("judge").writers["judge"]), plan.score_calls)]
    keys = [c.request_key for c in plan.compare_calls + plan.score_calls]
    run = None
    if set(keys) - store.done_request_keys(keys):
        summary = execute_stages(store, judge, RunContext(store, judge), "eval-judge",
                                 {"method": "eval-judge", "teacher": judge.public(), "calls": len(keys)},
                                 stages, judge_url(), lambda p: tracker.at(p.done), tracker.cancel,
                                 None)
        run = summary["run_id"]
        if summary.get("stopped_reason"):
            return None
    tracker.finish_stage()
    return _read_verdicts(store, plan.orientation, plan.identical), _read_scores(store, plan.score_keys), run


def _judged(task: dict, gen: dict) -> dict:
    return {"id": gen["id"], "task_id": task["id"], "instruction": task["instruction"],
            "input": task.get("input") or "", "response": gen["response"]}


def _unique(calls: list[Call]) -> list[Call]:
    # Two identical prompts are one call: the ledger plans each request key once.
    seen, out = set(), []
    for call in calls:
        if call.request_key not in seen:
            seen.add(call.request_key)
            out.append(call)
    return out


def _read_verdicts(store, orientation: dict, identical: set) -> dict:
    """{(task, opponent): {"verdicts": [...], "identical", "failed": calls that got no answer at all}}: a failed
    call (timeout, server error) is not an unreadable verdict, and the judge's parse rate leaves it out."""
    stored = store.judgments_by_keys(list(orientation))
    failed = {r["request_key"] for r in store.ledger_rows(list(orientation)) if r["state"] == "failed"}
    out = {key: {"verdicts": [0.5, 0.5], "identical": True, "failed": 0} for key in identical}
    for request_key, (task_id, other, distilled_first) in orientation.items():
        entry = out.setdefault((task_id, other), {"verdicts": [], "identical": False, "failed": 0})
        entry["failed"] += request_key in failed
        j = stored.get(request_key)
        # Built from the call's own order, not the stored ids: a cached verdict may carry another
        # generation's id when two systems gave the same text.
        row = {"kind": "compare", "generation_id": 1 if distilled_first else 2,
               "other_generation_id": 2 if distilled_first else 1, "score": j["score"] if j else None}
        entry["verdicts"] += em.candidate_verdicts([row], 1, 2)
    return out


def _read_scores(store, score_keys: dict) -> dict:
    stored = store.judgments_by_keys(list(score_keys.values()))
    return {key: ((stored[k]["score"], stored[k]["rationale"]) if k in stored else (None, None))
            for key, k in score_keys.items()}


__all__ = ["judge_answers"]
