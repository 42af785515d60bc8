"""The closed loop: the eval tasks the student lost become prompts for NEW train-split tasks on the
same skill (source 'student_failure', parent = the eval task), never copies of them.

It reads a completed eval's detail rows (evaluation.report); the studio's background slot for it is
evaluation.jobs.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

from curation.errors import ConfigError
from curation.farm_config import TeacherFarm, farm_from_dict
from curation.generate import execute_stages
from curation.methods.context import RunContext
from curation.methods import get_method
from curation.methods.base import Call, Stage, render
from curation.methods.label import check_sampling
from curation.store import Store
from curation.teacher import TeacherConfig
from evaluation.plan import endpoint_url
from evaluation.report import read_details


@dataclass
class FailureSeedConfig:
    """How lost eval tasks become new practice tasks.

    per_failure: new tasks asked of the teacher per lost task (1..10).
    threshold: a new task whose ROUGE-L F1 against ANY task in the workspace (the eval task included)
        is at or above this is discarded as a near copy (0..1]. Stricter than Self-Instruct's 0.7: the
        same task with other numbers must not slip through into training (0.52 was seen with the
        embedded teacher).
    temperature, max_tokens: sampling of each call.
    """

    per_failure: int = 2
    threshold: float = 0.5
    temperature: float = 0.7
    max_tokens: int = 256

    def __post_init__(self):
        check_sampling(self)
        if not 1 <= int(self.per_failure) <= 10:
            raise ConfigError(f"per_failure must be between 1 and 10 (got {self.per_failure})")
        if not 0 < float(self.threshold) <= 1:
            raise ConfigError(f"threshold must be above 0 and at most 1 (got {self.threshold})")
        self.per_failure, self.threshold = int(self.per_failure), float(self.threshold)


def teacher_of_run(store: Store, eval_run_id: int, farm: TeacherFarm | None = None) -> TeacherConfig:
    """The teacher an eval run used, rebuilt from what the run stored: the embedded server, an endpoint URL and
    model, or a teacher farm (a run stores its farm's members, their keys only by variable name). Keys are never
    stored: they come from OPENAI_API_KEY, or each farm member's api_key_env. `farm` stands in for the farm when
    the run did not store its members; it must have the run's farm name, which its request keys carry."""
    run = store.run(int(eval_run_id))
    public = (run or {}).get("config", {}).get("teacher") or {}
    endpoint = public.get("endpoint", "embedded")
    if endpoint.startswith("farm:"):
        name = endpoint.removeprefix("farm:")
        if farm is None and not public.get("farm"):
            raise ConfigError(f"eval run {eval_run_id}'s teacher was the farm {name!r}, whose endpoints the run did "
                              f"not store: pass that farm (teacher_of_run(..., farm=load_farm('FARM.json')), or "
                              f"failures_to_seeds(..., teacher=TeacherConfig(farm=load_farm('FARM.json'))))")
        farm = farm or farm_from_dict(public["farm"])
        if farm.name != name:
            raise ConfigError(f"eval run {eval_run_id}'s teacher was the farm {name!r}, not {farm.name!r}: pass the "
                              "farm file of that name (its name is in every request key)")
        return TeacherConfig(farm=farm, model=public.get("model", ""))
    return TeacherConfig(base_url="" if endpoint == "embedded" else endpoint,
                         model="" if endpoint == "embedded" else public.get("model", ""))


def failure_seed_calls(store: Store, eval_run_id: int, teacher: TeacherConfig,
                       config: FailureSeedConfig) -> list[Call]:
    """One call per task the student lost in the eval: 'write N new practice tasks on the same skill'.

    The calls are self-instruct expansion calls (method 'self-instruct', stage 'expand'), so they are
    parsed, novelty-filtered, stored and retried exactly like Self-Instruct's: the new tasks get
    source 'student_failure' and parent_id = the eval task, in the train split.
    """
    lost = [r for r in read_details(store, eval_run_id) if r.get("lost")]
    calls = []
    for row in lost:
        content = render("student_failure.j2", instruction=row["instruction"], input=row.get("input") or "",
                         skill=row.get("skill"), domain=row.get("domain"), n=config.per_failure)
        context = {"source": "student_failure", "parent_id": row["task_id"], "skill": row.get("skill"),
                   "domain": row.get("domain"), "similarity": "rouge", "threshold": config.threshold}
        calls.append(Call.make("self-instruct", "expand", teacher.endpoint_id, teacher.model_name,
                               [{"role": "user", "content": content}],
                               {"temperature": config.temperature, "max_tokens": config.max_tokens},
                               task_id=row["task_id"], context=context))
    return calls


def failures_to_seeds(store: Store, eval_run_id: int, base_url: str = "", teacher: TeacherConfig | None = None,
                      config: FailureSeedConfig | None = None, on_progress=None,
                      cancel: threading.Event | None = None) -> list[int]:
    """New train-split tasks made from the eval tasks the student lost; returns their ids.

    Idempotent: a lost task whose call is already answered is not asked again, and its tasks are
    returned again. Eval tasks are never copied: a near copy of any task is discarded.
    """
    config = config or FailureSeedConfig()
    teacher = teacher or teacher_of_run(store, eval_run_id)
    calls = failure_seed_calls(store, eval_run_id, teacher, config)
    if not calls:
        return []
    write = get_method("self-instruct").writers["expand"]
    stages = [(Stage("expand", plan=lambda ctx: calls, write=write), calls)]
    if set(c.request_key for c in calls) - store.done_request_keys([c.request_key for c in calls]):
        execute_stages(store, teacher, RunContext(store, teacher), "student-failure",
                       {"method": "student-failure", "eval_run_id": int(eval_run_id), "teacher": teacher.public(),
                        **asdict(config)}, stages, endpoint_url(teacher, base_url), on_progress, cancel, None)
    rows = store.ledger_rows([c.request_key for c in calls], states=("ok",))
    return sorted(i for r in rows for i in ((r["result"] or {}).get("task_ids") or []))


__all__ = ["FailureSeedConfig", "failures_to_seeds", "failure_seed_calls", "teacher_of_run"]
