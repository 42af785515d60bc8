"""An evaluation's settings (`EvalConfig`, one object for the CLI, the UI and the tests) and its progress."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from curation.errors import ConfigError
from curation.methods.judge import default_rubric
from curation.methods.label import Sampling, check_sampling
from curation.teacher import TeacherConfig


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


__all__ = ["EvalConfig", "EvalProgress"]
