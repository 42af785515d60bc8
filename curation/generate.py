"""Labeling: the teacher answers tasks, n samples each; every call is stored before it is shown.

The job is planned first (one call per task x sample, each with its request key), calls whose key
already has a stored answer are skipped, the rest run concurrently under a semaphore.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from curation.errors import ConfigError, StudioError
from curation.store import Store
from curation.teacher import TeacherConfig, call_chat, request_key


@dataclass
class GenerateConfig:
    """What to ask the teacher.

    task_ids: tasks to label; empty means every train-split task.
    n: samples per task (1..32).
    temperature: sampling temperature (0..2).
    max_tokens: cap on each answer's length in tokens (1..32768).
    system_prompt: sent before each task; empty means the task's own system prompt, if any.
    teacher_only_system: the system prompt steers the teacher but is left out of the training data.
    """

    task_ids: list[int] = field(default_factory=list)
    n: int = 1
    temperature: float = 0.7
    max_tokens: int = 256
    system_prompt: str = ""
    teacher_only_system: bool = False

    def __post_init__(self):
        if not 1 <= int(self.n) <= 32:
            raise ConfigError(f"n (samples per task) must be between 1 and 32 (got {self.n})")
        if not 0 <= float(self.temperature) <= 2:
            raise ConfigError(f"temperature must be between 0 and 2 (got {self.temperature})")
        if not 1 <= int(self.max_tokens) <= 32768:
            raise ConfigError(f"max_tokens must be between 1 and 32768 (got {self.max_tokens})")
        self.n, self.max_tokens, self.temperature = int(self.n), int(self.max_tokens), float(self.temperature)
        self.task_ids = [int(i) for i in self.task_ids]

    def params(self) -> dict:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


@dataclass
class Progress:
    """A snapshot of a running job, passed to the progress callback after every stored call."""

    done: int
    total: int
    failed: int
    tokens: int
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        if not self.done:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


def build_messages(task: dict, system_prompt: str = "") -> list[dict]:
    """The exact chat sent for a task: optional system prompt, then instruction (+ input)."""
    messages = []
    system = system_prompt or task.get("system_prompt") or ""
    if system:
        messages.append({"role": "system", "content": system})
    user = task["instruction"]
    if task.get("input"):
        user += "\n\n" + task["input"]
    messages.append({"role": "user", "content": user})
    return messages


def plan_calls(store: Store, teacher: TeacherConfig, config: GenerateConfig) -> tuple[list[dict], int]:
    """The calls still to make, and how many were skipped because an answer is already stored."""
    tasks = store.tasks(config.task_ids or None, split=None if config.task_ids else "train")
    if config.task_ids and len(tasks) != len(set(config.task_ids)):
        missing = sorted(set(config.task_ids) - {t["id"] for t in tasks})
        raise StudioError(f"no task with id {missing[:5]}")
    calls = []
    for task in tasks:
        messages = build_messages(task, config.system_prompt)
        for i in range(config.n):
            key = request_key(teacher.endpoint_id, teacher.model_name, messages, config.params(), i)
            calls.append({"task_id": task["id"], "messages": messages, "sample_index": i, "request_key": key})
    done = store.ok_request_keys([c["request_key"] for c in calls])
    return [c for c in calls if c["request_key"] not in done], len(done)


def run_generation(store: Store, teacher: TeacherConfig, config: GenerateConfig, base_url: str,
                   on_progress: Callable[[Progress], None] | None = None,
                   cancel: threading.Event | None = None) -> dict:
    """Run a labeling job to the end (or until `cancel` is set); returns its summary, also stored as a run."""
    calls, skipped = plan_calls(store, teacher, config)
    run_config = {"teacher": teacher.public(), **asdict(config), "planned": len(calls), "skipped": skipped}
    run_id = store.start_run("generate", run_config)
    started = time.monotonic()
    try:
        counts = asyncio.run(_run_calls(store, teacher, config, base_url, calls, run_id, on_progress, cancel))
    except BaseException as exc:
        store.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    stopped = cancel is not None and cancel.is_set() and counts["done"] < len(calls)
    summary = {"run_id": run_id, "planned": len(calls), "skipped_cached": skipped, **counts,
               "elapsed_s": round(time.monotonic() - started, 3)}
    summary["tokens_per_s"] = round(counts["tokens"] / summary["elapsed_s"], 2) if summary["elapsed_s"] else 0.0
    store.update_run(run_id, status="stopped" if stopped else "completed", metrics=summary)
    return summary


async def _run_calls(store, teacher, config, base_url, calls, run_id, on_progress, cancel) -> dict:
    client = teacher.client(base_url)  # one client per event loop
    semaphore = asyncio.Semaphore(teacher.concurrency)
    counts = {"done": 0, "ok": 0, "failed": 0, "tokens": 0}
    started = time.monotonic()

    async def one(call):
        async with semaphore:
            if cancel is not None and cancel.is_set():
                return
            result = await call_chat(client, teacher.model_name, call["messages"], config.params())
        row = {**call, **result, "run_id": run_id, "endpoint": teacher.endpoint_id, "model": teacher.model_name,
               "params": config.params(), "teacher_only_system": config.teacher_only_system}
        store.record_generation(row)  # stored before anyone sees it
        counts["done"] += 1
        counts["ok" if result["status"] == "ok" else "failed"] += 1
        counts["tokens"] += result.get("completion_tokens") or 0
        if on_progress:
            on_progress(Progress(counts["done"], len(calls), counts["failed"], counts["tokens"],
                                 time.monotonic() - started))

    try:
        await asyncio.gather(*(one(c) for c in calls))
    finally:
        await client.close()
    return counts
