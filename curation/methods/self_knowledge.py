"""self — the student answers, the judge filters (survey 3.1, Self-knowledge; ReST / self-rewarding).

Stage 1 (student): the student (the bundled SmolLM2, a folder, a .gguf, a cached hub id), optionally with
a PEFT adapter, answers each task through its own inference server (models.students: llama.cpp's server,
the adapter applied per request), as many at once as the teacher's concurrency; rendered like label
(label_user.j2); writes generations with method 'self' (endpoint 'local', no cost).
Stage 2 (teacher as judge): judge.j2 scores each of those answers; writes judgments.
Finish: answers the judge scored below `keep_threshold` are rejected with the reason; with
`approve_kept` the others are approved. Unreadable scores leave the answer pending for a human.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from curation.errors import ConfigError
from curation.methods.base import Call, Method, Stage, Writes
from curation.methods.judge import default_rubric, judge_call, write_judgment
from curation.methods.label import Sampling, check_sampling, plan_answers

STUDENT_ENDPOINT = "local"


@dataclass
class SelfConfig(Sampling):
    """Self-knowledge settings.

    student: the model that answers: empty (the bundled SmolLM2-135M-Instruct), a model folder, a .gguf
        file, or a hub id already in the local cache. adapter: a PEFT adapter folder to apply, or empty.
    task_ids, n, temperature, max_tokens, system_prompt: what the student answers, as in label.
    rubric: the judge's rubric (empty: default). keep_threshold: answers scored below it are rejected (1..10).
    approve_kept: approve the answers scored at or above the threshold (else they stay pending).
    judge_max_tokens: room for the judge's rationale.
    """

    student: str = ""
    adapter: str = ""
    task_ids: list[int] = field(default_factory=list)
    n: int = 1
    temperature: float = 0.7
    max_tokens: int = 256
    system_prompt: str = ""
    rubric: str = ""
    keep_threshold: float = 7.0
    approve_kept: bool = False
    judge_max_tokens: int = 256
    teacher_only_system: bool = False
    explain: bool = False

    def __post_init__(self):
        check_sampling(self)
        if not 1 <= int(self.n) <= 32:
            raise ConfigError(f"n (samples per task) must be between 1 and 32 (got {self.n})")
        if not 1 <= float(self.keep_threshold) <= 10:
            raise ConfigError(f"keep_threshold must be between 1 and 10 (got {self.keep_threshold})")
        if not 1 <= int(self.judge_max_tokens) <= 32768:
            raise ConfigError(f"judge_max_tokens must be between 1 and 32768 (got {self.judge_max_tokens})")
        if self.adapter and not Path(self.adapter).expanduser().is_dir():
            raise ConfigError(f"adapter {self.adapter} is not a folder; pass a PEFT adapter folder or leave it empty")
        self.n, self.keep_threshold, self.judge_max_tokens = int(self.n), float(self.keep_threshold), int(self.judge_max_tokens)
        self.rubric = (self.rubric or "").strip() or default_rubric()
        self.task_ids = [int(i) for i in self.task_ids]

    @property
    def student_id(self) -> str:
        """The student's identity in request keys: another model or adapter is another call."""
        name = (self.student or "").strip() or "smollm2-135m-instruct"
        return name + (f"+adapter:{Path(self.adapter).expanduser().resolve()}" if self.adapter else "")

    def judge_params(self) -> dict:
        return {"temperature": 0.0, "max_tokens": self.judge_max_tokens}


def _plan_student(ctx) -> list[Call]:
    return plan_answers(ctx, "self", ctx.config.params(), endpoint=STUDENT_ENDPOINT, model=ctx.config.student_id)


def _write_student(ctx, call: Call, result: dict) -> Writes:
    return Writes(generation=call.generation_row(result, ctx.run_id, method="self"))


def _student_generations(ctx) -> list[dict]:
    keys = {c.request_key for c in _plan_student(ctx)}
    return [g for g in ctx.store.ok_generations(methods=("self",)) if g["request_key"] in keys]


def _plan_judge(ctx) -> list[Call]:
    return [judge_call(ctx, g, ctx.config.rubric, ctx.config.judge_params(), method="self")
            for g in _student_generations(ctx)]


def _finish(ctx) -> dict:
    """Reject what the judge scored below the threshold (and approve the rest if asked); count both."""
    config = ctx.config
    keys = {c.request_key for c in _plan_judge(ctx)}
    scores = {j["generation_id"]: j["score"] for j in ctx.store.judgments_of(kind="score")
              if j["request_key"] in keys}
    pending = [g for g in scores if ctx.store.generation(g)["review_status"] == "pending"]
    low = [g for g in pending if scores[g] is not None and scores[g] < config.keep_threshold]
    kept = [g for g in pending if scores[g] is not None and scores[g] >= config.keep_threshold]
    if low:
        ctx.store.set_label(low, "rejected", reason=f"self: judge score below {config.keep_threshold:g}")
    if kept and config.approve_kept:
        ctx.store.set_label(kept, "approved", reason=f"self: judge score at least {config.keep_threshold:g}")
    return {"rejected_by_judge": len(low), "kept": len(kept),
            "unjudged": len([g for g in pending if scores[g] is None])}


def _stages(config) -> list[Stage]:
    return [Stage("student", _plan_student, _write_student, sender="student"),
            Stage("judge", _plan_judge, write_judgment)]


METHOD = Method("self", SelfConfig, "the student answers (its own inference server) and the teacher judges; "
                "low scores are rejected (self-knowledge loop)", _stages,
                writers={"student": _write_student, "judge": write_judgment}, finish=_finish)

