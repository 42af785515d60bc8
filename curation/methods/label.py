"""label — the teacher answers each task (survey 3.1, Labeling).

Reads: tasks (the ids given, else every train-split task, and the eval split's too with `with_eval`).
Renders: label_user.j2, and with `explain` the Orca-style label_explain_system.j2. Writes: one generation
per task x sample. Parser: none — the answer is the product; an empty answer is stored as it came.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from curation.errors import ConfigError, StudioError
from curation.methods.base import Call, Method, Stage, Writes, render


class Sampling:
    """What every method config with `temperature` and `max_tokens` sends with each call."""

    def params(self) -> dict:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


@dataclass
class GenerateConfig(Sampling):
    """What to ask the teacher when labeling.

    task_ids: tasks to label; empty means every train-split task.
    n: samples per task (1..32).
    temperature: sampling temperature (0..2).
    max_tokens: cap on each answer's length in tokens (1..32768).
    system_prompt: sent before each task; empty means the task's own system prompt, if any.
    teacher_only_system: the system prompt steers the teacher but is left out of the training data.
    explain: Orca-style explanation traces: a system message asks the teacher to reason step by step
        (added after the system prompt, if any).
    with_eval: with no task ids, answer the eval-split tasks too: reference answers for the eval loss
        during training and for evaluation. They are never trained on or exported.
    """

    task_ids: list[int] = field(default_factory=list)
    n: int = 1
    temperature: float = 0.7
    max_tokens: int = 256
    system_prompt: str = ""
    teacher_only_system: bool = False
    explain: bool = False
    with_eval: bool = False

    def __post_init__(self):
        check_sampling(self)
        if not 1 <= int(self.n) <= 32:
            raise ConfigError(f"n (samples per task) must be between 1 and 32 (got {self.n})")
        self.n = int(self.n)
        self.task_ids = [int(i) for i in self.task_ids]


LabelConfig = GenerateConfig


def check_sampling(config) -> None:
    """Range checks for the temperature and max_tokens every method has; normalises their types."""
    if not 0 <= float(config.temperature) <= 2:
        raise ConfigError(f"temperature must be between 0 and 2 (got {config.temperature})")
    if not 1 <= int(config.max_tokens) <= 32768:
        raise ConfigError(f"max_tokens must be between 1 and 32768 (got {config.max_tokens})")
    config.temperature, config.max_tokens = float(config.temperature), int(config.max_tokens)


def build_messages(task: dict, system_prompt: str = "", explain: bool = False) -> list[dict]:
    """The exact chat sent for a task: optional system prompt (+ the step-by-step request), then the task."""
    messages = []
    system = system_prompt or task.get("system_prompt") or ""
    if explain:
        system = render("label_explain_system.j2", system_prompt=system)
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": render("label_user.j2", instruction=task["instruction"],
                                                       input=task.get("input") or "")})
    return messages


def select_tasks(store, task_ids: list[int], with_eval: bool = False) -> list[dict]:
    """The tasks named (all must exist), or every train-split task (and every eval-split one, `with_eval`)."""
    tasks = store.tasks(task_ids or None, split=None if task_ids or with_eval else "train")
    if task_ids and len(tasks) != len(set(task_ids)):
        missing = sorted(set(task_ids) - {t["id"] for t in tasks})
        raise StudioError(f"no task with id {missing[:5]}")
    return tasks


def plan_answers(ctx, method: str, params: dict, endpoint: str | None = None, model: str | None = None) -> list[Call]:
    """One call per selected task x sample, each rendered from the task (label, logprobs, self)."""
    config = ctx.config
    endpoint, model = endpoint or ctx.teacher.endpoint_id, model or ctx.teacher.model_name
    calls = []
    for task in select_tasks(ctx.store, config.task_ids, getattr(config, "with_eval", False)):
        messages = build_messages(task, config.system_prompt, getattr(config, "explain", False))
        for i in range(config.n):
            calls.append(Call.make(method, "answer", endpoint, model, messages, params, i, task_id=task["id"],
                                   context={"teacher_only_system": bool(config.teacher_only_system)}))
    return calls


def _plan(ctx) -> list[Call]:
    return plan_answers(ctx, "label", ctx.config.params())


def write_answer(ctx, call: Call, result: dict) -> Writes:
    """A generation row for the answer (or the failure) — what Review shows and training uses."""
    return Writes(generation=call.generation_row(result, ctx.run_id))


METHOD = Method("label", GenerateConfig, "the teacher answers each task (optional system prompt, "
                "Orca-style step-by-step explanations, teacher-only system prompt)",
                lambda config: [Stage("answer", _plan, write_answer)],
                writers={"answer": write_answer})
