"""The eval pipeline: base student vs distilled student vs teacher on the eval split.

`run_eval` answers every eval task three times and measures the answers:
  1. the teacher answers through the label method (stored generations, cached by request key);
  2. the base student and the distilled student (base + PEFT adapter) answer through the student's
     inference server (models.students: llama.cpp's server, the adapter applied per request, batched;
     generations with method 'eval', endpoint 'local'), and each student's per-token NLL of the
     teacher's answer is computed in a child process (models.scoring);
  3. the judge compares distilled vs base and distilled vs teacher in both orders (compare.j2) and
     scores all three answers 1-10 (judge.j2) — stored judgments, cached by request key
     (evaluation.judge);
  4. metrics (evaluation.metrics): win rates with ties, mean judge scores, ROUGE-L against the
     teacher, NLL, pass rate of checkable expectations.
Its inputs are resolved and checked first (evaluation.plan). The eval is a run of kind 'eval' with the
metrics; run_dir/eval.jsonl has one detail row per task (evaluation.report). Every answer and verdict is
stored as it arrives, so a stopped or failed eval resumes where it was.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable

from curation.generate import plan_calls, preview, run_method
from curation.methods.base import Call
from curation.methods.label import GenerateConfig, build_messages
from curation.methods.self_knowledge import STUDENT_ENDPOINT
from curation.store import Store
from curation.teacher import call_chat
from evaluation import metrics as em
from evaluation.config import EvalConfig, EvalProgress
from evaluation.judge import judge_answers, judge_units
from evaluation.plan import Plan, endpoint_url, prepare
from evaluation.report import detail_row, new_eval_dir, write_details
from models.scoring import score_in_child
from models.students import StudentServers

EVAL_METHOD = "eval"  # the method of the students' generations: never teacher data, never training data


class _Tracker:
    """Progress across the stages (each a planned number of units), and the cancel check between units."""

    def __init__(self, total: int, on_progress, cancel):
        self.total, self.on_progress, self.cancel = total, on_progress, cancel
        self.start = self.end = self.done = 0
        self.stage = ""
        self.started = time.monotonic()

    def enter(self, stage: str, units: int) -> None:
        self.stage, self.start, self.end = stage, self.done, self.done + units
        self.report()

    def at(self, done_in_stage: int) -> None:
        self.done = min(self.start + done_in_stage, self.end)
        self.report()

    def finish_stage(self) -> None:
        self.done = self.end
        self.report()

    def note(self, line: str) -> None:
        """A slow step inside the current stage (converting the student, starting its server)."""
        self.stage = line
        self.report()

    def report(self) -> None:
        if self.on_progress:
            self.on_progress(EvalProgress(self.done, self.total, self.stage, time.monotonic() - self.started))

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


def units_per_task(config: EvalConfig) -> int:
    """Work units per eval task: 1 teacher answer, 2 student answers, 1 NLL (both students), and the judge's
    calls: 2 verdicts against each opponent judged, 3 scores."""
    return 1 + 2 + 1 + judge_units(config)


def run_eval(store: Store, config: EvalConfig, base_url: str = "",
             on_progress: Callable[[EvalProgress], None] | None = None,
             cancel: threading.Event | None = None, students: StudentServers | None = None) -> dict:
    """Evaluate base vs distilled student vs teacher on the eval split; returns the eval's metrics.

    base_url: the embedded server's URL, used by a teacher or judge without a base URL of its own.
    The run (kind 'eval') ends 'completed', 'stopped' (cancel; a re-run resumes from what is stored)
    or 'failed' (the error is stored and re-raised).
    students: the studio's student servers; without them the eval starts its own and stops it at the end.
    """
    plan = prepare(store, config)
    run_dir = new_eval_dir(store.workspace / "runs")
    run_id = store.start_run("eval", _run_config(config, plan), run_dir=str(run_dir))
    tracker = _Tracker(units_per_task(config) * len(plan.tasks), on_progress, cancel)
    own = students is None
    students = students or StudentServers(store.workspace / "logs", store.workspace / "models")
    try:
        result = _evaluate(store, config, plan, run_id, base_url, tracker, students)
    except BaseException as exc:
        store.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if own:
            students.stop()
    if result is None:
        store.update_run(run_id, status="stopped", metrics={"stopped_at": tracker.stage})
        return {"eval_run_id": run_id, "stopped_at": tracker.stage}
    details, extra = result
    write_details(run_dir, details)
    metrics = {"eval_run_id": run_id, **em.summarise(details), "student": plan.student,
               "adapter": str(plan.adapter), "training": plan.training, **extra,
               "elapsed_s": round(time.monotonic() - tracker.started, 1)}
    store.update_run(run_id, status="completed", metrics=metrics)
    return metrics


def _run_config(config: EvalConfig, plan: Plan) -> dict:
    return {"student": plan.student, "adapter": str(plan.adapter), "training_run_id": plan.training.get("run_id"),
            "teacher": config.teacher.public(), "judge": config.judge_teacher.public(),
            "max_tokens": config.max_tokens, "temperature": config.temperature,
            "judge_max_tokens": config.judge_max_tokens, "rubric": config.rubric, "limit": config.limit,
            "seed": config.seed, "task_ids": [t["id"] for t in plan.tasks]}


def _evaluate(store, config, plan, run_id, base_url, tracker, students) -> tuple[list[dict], dict] | None:
    """The stages in order; None when cancelled between them."""
    teacher_gens, teacher_run = _teacher_answers(store, config, plan.tasks, base_url, tracker)
    if tracker.cancelled:
        return None
    students = _student_answers(store, config, plan, run_id, teacher_gens, tracker, students)
    if students is None:
        return None
    answers = {"teacher": teacher_gens, **{name: gens for name, (gens, _) in students.items()}}
    judged = judge_answers(store, config, plan.tasks, answers,
                           lambda: endpoint_url(config.judge_teacher, base_url), tracker)
    if judged is None:
        return None
    verdicts, scores, judge_run = judged
    nll = {name: values for name, (_, values) in students.items()}
    details = [detail_row(task, answers, scores, verdicts, nll) for task in plan.tasks]
    return details, {"teacher_model": config.teacher.model_name, "judge_model": config.judge_teacher.model_name,
                     "teacher_run_id": teacher_run, "judge_run_id": judge_run}


def _teacher_answers(store, config, tasks, base_url, tracker) -> tuple[dict[int, dict], int | None]:
    """{task id: teacher generation} via the label method (one sample per task, the eval's sampling)."""
    label = GenerateConfig(task_ids=[t["id"] for t in tasks], n=1, temperature=config.temperature,
                           max_tokens=config.max_tokens)
    tracker.enter("teacher answers", len(tasks))
    todo, _ = plan_calls(store, config.teacher, label)
    run = None
    if todo:
        summary = run_method(store, config.teacher, label, endpoint_url(config.teacher, base_url),
                             on_progress=lambda p: tracker.at(p.done), cancel=tracker.cancel)
        run = summary["run_id"]
    keys = {c["request_key"]: c["task_id"] for c in preview(store, config.teacher, label, limit=len(tasks))}
    tracker.finish_stage()
    return _by_task(store, keys), run


def _by_task(store, keys: dict[str, int]) -> dict[int, dict]:
    """{task id: stored generation} for request keys; failed calls are kept (their error is shown)."""
    return {keys[k]: g for k, g in store.generations_by_keys(list(keys)).items()}


def _student_answers(store, config, plan, run_id, teacher_gens, tracker, students: StudentServers):
    """{'base' | 'distilled': ({task id: generation}, {task id: NLL of the teacher's answer})}.

    Both students answer through one inference server (the adapter applied per request, calls batched);
    the NLLs, which no endpoint gives, come from a child process (models.scoring).
    """
    tracker.enter("preparing the student's inference server", 0)
    endpoint = students.endpoint(plan.student, plan.adapter, on_status=tracker.note)
    out = {}
    for name, model_id in (("base", plan.student), ("distilled", f"{plan.student}+adapter:{plan.adapter}")):
        tracker.enter(f"{name} student answers", len(plan.tasks))
        gens = _answer_on_endpoint(store, endpoint, name == "distilled", model_id, config, plan.tasks, run_id,
                                   tracker)
        if gens is None:
            return None
        out[name] = gens
        tracker.finish_stage()
    nll = _students_nll(store, plan, teacher_gens, tracker)
    if nll is None:
        return None
    return {name: (out[name], nll[name]) for name in out}


def _answer_on_endpoint(store, endpoint, distilled: bool, model_id, config, tasks, run_id, tracker):
    """{task id: stored generation}: the calls without a stored answer sent together, each stored on arrival."""
    calls = {task["id"]: Call.make(EVAL_METHOD, "student", STUDENT_ENDPOINT, model_id, build_messages(task),
                                   config.params(), 0, task_id=task["id"]) for task in tasks}
    done = store.done_request_keys([c.request_key for c in calls.values()])
    todo = [c for c in calls.values() if c.request_key not in done]
    store.plan_ledger(run_id, [c.ledger_row() for c in todo])
    finished = [len(calls) - len(todo)]
    tracker.at(finished[0])

    async def send():
        client = config.teacher.client(endpoint.base_url)
        semaphore = asyncio.Semaphore(endpoint.server.spec.parallel)

        async def one(call):
            async with semaphore:
                if tracker.cancelled:
                    return
                result = await call_chat(client, endpoint.model, call.messages,
                                         {**call.params, **endpoint.params(distilled)}, 1,
                                         diagnose=lambda: asyncio.to_thread(endpoint.server.death, 2.0))
                result.pop("server_died", None)  # the error already names the dead server and its log tail
                store.commit_call(call.request_key, result,
                                  generation=call.generation_row(result, run_id, method=EVAL_METHOD))
                finished[0] += 1
                tracker.at(finished[0])
        try:
            await asyncio.gather(*(one(c) for c in todo))
        finally:
            await client.close()

    asyncio.run(send())
    if tracker.cancelled:
        return None
    stored = store.generations_by_keys([c.request_key for c in calls.values()])
    return {task_id: stored.get(call.request_key) for task_id, call in calls.items()}


def _students_nll(store, plan, teacher_gens, tracker) -> dict | None:
    """{'base' | 'distilled': {task id: {'sum', 'tokens'}}} of the teacher's ok answers, from a child process."""
    scored = [t for t in plan.tasks if (g := teacher_gens.get(t["id"])) and g["status"] == "ok" and g["response"]]
    tracker.enter("students' NLL of the teacher's answers (child process)", len(scored))
    items = [{"messages": build_messages(t), "answer": teacher_gens[t["id"]]["response"]} for t in scored]
    results = score_in_child("nll", items, plan.student, store.workspace / "models", plan.adapter,
                             on_progress=lambda done, total: tracker.at(done),
                             should_stop=lambda: tracker.cancelled) if items else []
    if results is None:
        return None
    tracker.finish_stage()
    return {name: {t["id"]: r.get(name) for t, r in zip(scored, results)} for name in em.STUDENTS}


__all__ = ["run_eval", "units_per_task", "EVAL_METHOD"]
