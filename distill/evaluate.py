"""Evaluation: base student vs distilled student vs teacher on the eval split.

`run_eval` answers every eval task three times and measures the answers:
  1. the teacher answers through the label method (stored generations, cached by request key);
  2. the base student and the distilled student (base + PEFT adapter) answer through the student's
     inference server (models.students: llama.cpp's server, the adapter applied per request, batched;
     generations with method 'eval', endpoint 'local'), and each student's per-token NLL of the
     teacher's answer is computed in a child process (models.scoring);
  3. the judge compares distilled vs base and distilled vs teacher in both orders (compare.j2) and
     scores all three answers 1-10 (judge.j2) — stored judgments, cached by request key
     (distill.eval_judge);
  4. metrics (distill.eval_metrics): win rates with ties, mean judge scores, ROUGE-L against the
     teacher, NLL, pass rate of checkable expectations.
The eval is a run of kind 'eval' with the metrics; run_dir/eval.jsonl has one detail row per task.
Every answer and verdict is stored as it arrives, so a stopped or failed eval resumes where it was.
Eval tasks never reach training (Store.approved_examples), so none of this can leak into a snapshot.

`failures_to_seeds` (distill.failures) closes the loop: the tasks the student lost become prompts for
NEW train-split tasks on the same skill (source 'student_failure', parent = the eval task), never
copies of them.

The studio's background slot for these jobs is distill.eval_jobs; the playground is distill.playground.
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from curation.errors import ConfigError, StudioError
from curation.generate import plan_calls, preview, run_method
from curation.methods.base import Call
from curation.methods.judge import default_rubric
from curation.methods.label import (GenerateConfig, Sampling, build_messages, check_sampling)
from curation.methods.self_knowledge import STUDENT_ENDPOINT
from curation.store import Store
from curation.teacher import TeacherConfig, call_chat
from distill import eval_metrics as em
from distill import runlog
from distill.eval_judge import judge_answers, judge_units
from models.resolve import BUNDLED_STUDENT
from models.scoring import score_in_child
from models.students import StudentServers

DETAILS_NAME = "eval.jsonl"
EVAL_METHOD = "eval"  # the method of the students' generations: never teacher data, never training data
TRAINING_KINDS = ("sft", "dpo", "kd", "kd_logprobs")  # run kinds that leave run_dir/adapter


@dataclass
class EvalConfig(Sampling):
    """One evaluation's settings. The CLI, the UI and the tests build this same object.

    student: the base model: empty means the training run's student (with `run_id`), else the bundled
        SmolLM2-135M-Instruct; or a local folder, a .gguf file, a cached hub id.
    adapter: the distilled student's PEFT adapter folder (a training run's run_dir/adapter).
    run_id: a completed training run whose adapter to evaluate (instead of `adapter`).
    teacher: the endpoint that answers as the teacher (default: the embedded server).
    judge: the endpoint that judges (default: the teacher).
    max_tokens, temperature: how every system answers (temperature 0 = greedy, the default).
    judge_max_tokens: room for the judge's verdict and rationale.
    rubric: what makes an answer better, for the judge; empty = the default rubric.
    structured_judge: the judge answers JSON valid against a schema (OpenAI structured output), so its
        verdicts parse; off for an endpoint without `response_format` json_schema.
    judge_scores: the judge also scores each answer 1-10 (three more calls a task); the win rates need only
        the pairwise verdicts.
    judge_vs_base: the judge compares the distilled student with the base student, both orders (two calls a
        task): the win rate over base. Off with judge_scores and judge_vs_teacher off, no judge is asked.
    judge_vs_teacher: the judge also compares the distilled student with the teacher (two more calls a task);
        off, only the win rate over the base student is measured.
    limit: evaluate at most this many eval tasks, drawn by `seed` (0 = all of them).
    seed: which eval tasks `limit` draws.
    """

    student: str = ""
    adapter: str = ""
    run_id: int | None = None
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    judge: TeacherConfig | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    judge_max_tokens: int = 256
    structured_judge: bool = True
    judge_scores: bool = True
    judge_vs_base: bool = True
    judge_vs_teacher: bool = True
    rubric: str = ""
    limit: int = 0
    seed: int = 0

    def __post_init__(self):
        check_sampling(self)
        if not 1 <= int(self.judge_max_tokens) <= 32768:
            raise ConfigError(f"judge_max_tokens must be between 1 and 32768 (got {self.judge_max_tokens})")
        if int(self.limit) < 0 or int(self.seed) < 0:
            raise ConfigError(f"limit and seed must be 0 or more (got {self.limit}, {self.seed})")
        self.judge_max_tokens, self.limit, self.seed = int(self.judge_max_tokens), int(self.limit), int(self.seed)
        self.structured_judge, self.judge_scores = bool(self.structured_judge), bool(self.judge_scores)
        self.judge_vs_base, self.judge_vs_teacher = bool(self.judge_vs_base), bool(self.judge_vs_teacher)
        self.run_id = int(self.run_id) if self.run_id not in (None, "") else None
        self.student, self.adapter = (self.student or "").strip(), (self.adapter or "").strip()
        if bool(self.adapter) == (self.run_id is not None):
            raise ConfigError("name the distilled student: an adapter folder or a training run id (one of them)")
        if self.adapter:
            folder = Path(self.adapter).expanduser()
            if not (folder / "adapter_config.json").is_file():
                raise ConfigError(f"adapter {self.adapter} is not a PEFT adapter folder (no adapter_config.json); "
                                  "pass a training run's adapter folder or its run id")
            self.adapter = str(folder.resolve())
        self.rubric = (self.rubric or "").strip() or default_rubric()

    @property
    def judge_teacher(self) -> TeacherConfig:
        return self.judge or self.teacher

    def judge_params(self) -> dict:
        return {"temperature": 0.0, "max_tokens": self.judge_max_tokens}


@dataclass
class EvalProgress:
    """Where an eval is: `done` of `total` work units (one answer, NLL or verdict each), in `stage`."""

    done: int
    total: int
    stage: str
    elapsed_s: float = 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (rough: the stages differ in speed per unit)."""
        return self.elapsed_s / self.done * (self.total - self.done) if self.done else None


@dataclass
class _Plan:
    """What an eval works on, resolved and checked before anything runs."""

    tasks: list[dict]
    student: str
    adapter: Path
    training: dict


# ---- resolving and checking the inputs ------------------------------------------------------------

def set_expectation(store: Store, task_ids: list[int], expected: str | None) -> int:
    """Store a checkable expectation ("exact:…", "contains:…", "regex:…", see distill.eval_metrics) on
    tasks, after checking its format; empty clears it. Returns how many tasks were changed."""
    expected = (expected or "").strip() or None
    if expected:
        em.parse_expectation(expected)
    return store.set_expected(task_ids, expected)


def training_info(store: Store, run_id: int | None, adapter: Path) -> dict:
    """Rows and tokens the adapter was trained on: from its run when known, else from the run dir the
    adapter sits in (run_dir/adapter); empty when neither is found."""
    run_dir = adapter.parent if (adapter.parent / runlog.SNAPSHOT_NAME).is_file() else None
    run = store.run(run_id) if run_id is not None else None
    if run is None and run_dir is not None:
        run = next((r for r in store.runs() if r["run_dir"] and Path(r["run_dir"]).resolve() == run_dir.resolve()),
                   None)
    if run is not None and run.get("run_dir"):
        run_dir = Path(run["run_dir"])
    if run_dir is None:
        return {}
    snapshot = run_dir / runlog.SNAPSHOT_NAME
    rows = (sum(1 for line in snapshot.read_text(encoding="utf-8").splitlines() if line.strip())
            if snapshot.is_file() else None)
    metrics = (run or {}).get("metrics") or runlog.summarise(runlog.read_events(run_dir))["metrics"]
    return {"run_id": run["id"] if run else None, "rows": rows, "tokens": metrics.get("tokens"),
            "steps": metrics.get("steps"), "train_loss": metrics.get("train_loss")}


def resolve_adapter(store: Store, config: EvalConfig) -> tuple[str, Path]:
    """(base student spec, adapter folder) of the distilled student the config names."""
    if config.run_id is None:
        return config.student or BUNDLED_STUDENT, Path(config.adapter)
    run = store.run(config.run_id)
    if run is None or run["kind"] not in TRAINING_KINDS:
        raise StudioError(f"no training run with id {config.run_id}; pick one from the Runs tab")
    if run["status"] != "completed":
        raise StudioError(f"training run {config.run_id} is {run['status']}; only a completed run has an adapter")
    adapter = Path(run["run_dir"] or "") / runlog.ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise StudioError(f"training run {config.run_id} has no adapter in {adapter}")
    return config.student or run["config"].get("student") or BUNDLED_STUDENT, adapter


def eval_tasks(store: Store, limit: int = 0, seed: int = 0) -> list[dict]:
    """The eval-split tasks to evaluate: all, or `limit` of them drawn by `seed`; by id."""
    tasks = store.tasks(split="eval")
    if not tasks:
        raise StudioError("there are no eval tasks: hold some tasks out first (Seeds tab, or "
                          "python -m curation split) — an eval needs tasks the student never trained on")
    if limit and limit < len(tasks):
        tasks = sorted(random.Random(seed).sample(tasks, limit), key=lambda t: t["id"])
    for task in tasks:
        if task.get("expected"):
            try:
                em.parse_expectation(task["expected"])
            except ConfigError as exc:
                raise ConfigError(f"task {task['id']}: {exc}") from None
    return tasks


def prepare(store: Store, config: EvalConfig) -> _Plan:
    """Check everything an eval needs before it starts (tasks, adapter); raises StudioError with a fix."""
    tasks = eval_tasks(store, config.limit, config.seed)
    student, adapter = resolve_adapter(store, config)
    return _Plan(tasks, student, adapter, training_info(store, config.run_id, adapter))


def endpoint_url(teacher: TeacherConfig, base_url: str) -> str:
    """Where `teacher` answers: its own base URL, or the embedded server's (`base_url`)."""
    if not teacher.embedded:
        return teacher.base_url
    if not base_url:
        raise StudioError("the embedded teacher is not running: start it (the studio does on first use) or "
                          "give a teacher base URL and model")
    return base_url


# ---- the eval ---------------------------------------------------------------------------------------

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
    run_dir = _new_eval_dir(store.workspace / "runs")
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


def _run_config(config: EvalConfig, plan: _Plan) -> dict:
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
    details = [_detail(task, answers, scores, verdicts, nll) for task in plan.tasks]
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


def _detail(task, answers, scores, verdicts, nll) -> dict:
    gens = {n: answers[n].get(task["id"]) for n in em.SYSTEMS}
    text = {n: (g["response"] if g and g["status"] == "ok" else None) for n, g in gens.items()}
    row = {"task_id": task["id"], "instruction": task["instruction"], "input": task.get("input"),
           "skill": task.get("skill"), "domain": task.get("domain"), "expected": task.get("expected"),
           "answers": text,
           "errors": {n: gens[n]["error"] for n in em.SYSTEMS if gens[n] and gens[n]["status"] != "ok"},
           "generation_ids": {n: (gens[n] or {}).get("id") for n in em.SYSTEMS},
           # only the systems the judge was asked to score (none when judge_scores is off)
           "scores": {n: scores[(task["id"], n)][0] for n in em.SYSTEMS if (task["id"], n) in scores},
           "rationales": {n: scores[(task["id"], n)][1] for n in em.SYSTEMS if (task["id"], n) in scores},
           "rouge_l": {n: (em.rouge_l_text(text[n], text["teacher"]) if text[n] is not None
                           and text["teacher"] is not None else None) for n in em.STUDENTS},
           "nll": {n: nll[n].get(task["id"]) for n in em.STUDENTS},
           "pass": {n: (em.check_expectation(task.get("expected"), text[n]) if text[n] is not None else None)
                    for n in em.SYSTEMS},
           # ended its turn by itself (not cut at max tokens): what a base model that rambles never does
           "stopped": {n: (gens[n].get("finish_reason") == "stop" if text[n] is not None else None)
                       for n in em.SYSTEMS}}
    for other in ("base", "teacher"):
        v = verdicts.get((task["id"], other), {"verdicts": [], "identical": False, "failed": 0})
        row[f"vs_{other}"] = {**v, "outcome": em.pairwise_outcome(v["verdicts"])}
    row["lost"], row["deficit"] = em.is_lost(row), round(em.deficit(row), 4)
    return row


def _new_eval_dir(runs_root: Path) -> Path:
    runs_root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        candidate = runs_root / (f"{stamp}-eval" if n == 1 else f"{stamp}-{n}-eval")
        try:
            candidate.mkdir()  # without exist_ok: two evals started in one second get -2, -3
            return candidate
        except FileExistsError:
            continue
    raise StudioError(f"could not create a new run folder under {runs_root}")


def write_details(run_dir: Path, details: list[dict]) -> Path:
    """run_dir/eval.jsonl, written to a temp file and renamed, so a reader never sees half of it."""
    path = Path(run_dir) / DETAILS_NAME
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in details:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)
    return path


def read_details(store: Store, eval_run_id: int) -> list[dict]:
    """The per-task detail rows of a completed eval run."""
    run = store.run(int(eval_run_id))
    if run is None or run["kind"] != "eval":
        raise StudioError(f"no eval run with id {eval_run_id}")
    path = Path(run["run_dir"] or "") / DETAILS_NAME
    if run["status"] != "completed" or not path.is_file():
        raise StudioError(f"eval run {eval_run_id} is {run['status']} and has no report; run the eval to the end")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- reports ---------------------------------------------------------------------------------------

def compare_runs(store: Store, eval_run_ids: list[int]) -> list[dict]:
    """One row per completed eval run, for comparing students trained differently on the same eval split.

    `same_tasks` says whether a run evaluated the same tasks as the first one (else its numbers are
    not comparable).
    """
    rows, first_tasks = [], None
    for rid in eval_run_ids:
        run = store.run(int(rid))
        if run is None or run["kind"] != "eval" or run["status"] != "completed":
            raise StudioError(f"eval run {rid} is not a completed eval run")
        m, task_ids = run["metrics"], run["config"].get("task_ids") or []
        first_tasks = task_ids if first_tasks is None else first_tasks
        training = m.get("training") or {}
        rows.append({"eval_run": run["id"], "training_run": training.get("run_id"), "tasks": m.get("tasks"),
                     "same_tasks": sorted(task_ids) == sorted(first_tasks), "training_rows": training.get("rows"),
                     "training_tokens": training.get("tokens"),
                     "score_base": m["base"]["judge_score"], "score_distilled": m["distilled"]["judge_score"],
                     "score_teacher": m["teacher"]["judge_score"],
                     "win_vs_base": m["distilled_vs_base"]["win_rate"],
                     "win_vs_teacher": m["distilled_vs_teacher"]["win_rate"],
                     "rouge_l_base": m["base"]["rouge_l"], "rouge_l_distilled": m["distilled"]["rouge_l"],
                     "nll_base": m["base"]["nll"], "nll_distilled": m["distilled"]["nll"],
                     "pass_distilled": m["distilled"]["pass_rate"],
                     "stop_base": m["base"].get("stop_rate"), "stop_distilled": m["distilled"].get("stop_rate")})
    return rows


__all__ = ["EvalConfig", "EvalProgress", "TRAINING_KINDS", "run_eval", "prepare", "resolve_adapter",
           "training_info", "eval_tasks", "endpoint_url", "set_expectation", "read_details",
           "write_details", "compare_runs", "DETAILS_NAME", "EVAL_METHOD"]
