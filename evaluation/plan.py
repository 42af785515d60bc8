"""What an eval works on, resolved and checked before anything runs: the eval tasks, the base student and
the distilled student's adapter (from a completed training run, or a folder), what that adapter was trained
on, and where the teacher and judge answer."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from curation.errors import ConfigError, StudioError
from curation.store import Store
from curation.teacher import TeacherConfig
from distill import runlog
from evaluation import metrics as em
from evaluation.config import EvalConfig
from models.resolve import BUNDLED_STUDENT

TRAINING_KINDS = ("sft", "dpo", "kd", "kd_logprobs", "grpo")  # run kinds that leave run_dir/adapter


@dataclass
class Plan:
    """What an eval works on, resolved and checked before anything runs."""

    tasks: list[dict]
    student: str
    adapter: Path
    training: dict


def set_expectation(store: Store, task_ids: list[int], expected: str | None) -> int:
    """Store a checkable expectation ("exact:…", "contains:…", "regex:…", see evaluation.metrics) on
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


def prepare(store: Store, config: EvalConfig) -> Plan:
    """Check everything an eval needs before it starts (tasks, adapter); raises StudioError with a fix."""
    tasks = eval_tasks(store, config.limit, config.seed)
    student, adapter = resolve_adapter(store, config)
    return Plan(tasks, student, adapter, training_info(store, config.run_id, adapter))


def endpoint_url(teacher: TeacherConfig, base_url: str) -> str:
    """Where `teacher` answers: its own base URL, or the embedded server's (`base_url`)."""
    if not teacher.embedded:
        return teacher.base_url
    if not base_url:
        raise StudioError("the embedded teacher is not running: start it (the studio does on first use) or "
                          "give a teacher base URL and model")
    return base_url


__all__ = ["Plan", "TRAINING_KINDS", "prepare", "resolve_adapter", "training_info", "eval_tasks", "endpoint_url",
           "set_expectation"]
