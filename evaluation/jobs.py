"""The studio's one evaluation job slot: an eval or a failures-to-seeds job in a background thread.

The work itself is `evaluation.evaluate.run_eval` and `evaluation.failures.failures_to_seeds`; this module only
owns the thread, the cancel flag and the status the UI polls.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from curation.errors import StudioError
from curation.joblog import job_failed
from curation.jobs import BackgroundJob
from curation.store import Store
from evaluation.config import EvalConfig, EvalProgress
from evaluation.evaluate import run_eval
from evaluation.failures import (FailureSeedConfig, failure_seed_calls, failures_to_seeds, teacher_of_run)
from evaluation.plan import prepare
from models.students import StudentServers


@dataclass
class EvalJobStatus:
    state: str = "idle"  # idle | running | completed | stopped | failed
    kind: str = ""  # eval | seeds
    progress: EvalProgress | None = None
    result: dict | list | None = None
    error: str = ""
    started_at: float = 0.0


class EvalJobs(BackgroundJob):
    """One eval (or failures-to-seeds) job at a time, in a background thread owned by the studio;
    it outlives a closed browser tab, and the UI polls `status()`."""

    def __init__(self, store: Store, server, students: StudentServers | None = None):
        self.store, self.server, self.students = store, server, students
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._status = EvalJobStatus()

    def start(self, config: EvalConfig) -> int:
        """Check the config's inputs and start the eval; returns how many eval tasks it covers."""
        with self._lock:
            self._check_idle()
            plan = prepare(self.store, config)
            needs_server = config.teacher.embedded or config.judge_teacher.embedded
            self._launch("eval", lambda cancel: run_eval(self.store, config, self._url(needs_server),
                                                         self._on_progress, cancel, students=self.students))
            return len(plan.tasks)

    def start_seeds(self, eval_run_id: int, config: FailureSeedConfig | None = None) -> int:
        """Start turning a completed eval's lost tasks into new train tasks; returns how many were lost."""
        with self._lock:
            self._check_idle()
            teacher = teacher_of_run(self.store, eval_run_id)
            calls = failure_seed_calls(self.store, eval_run_id, teacher, config or FailureSeedConfig())
            if not calls:
                raise StudioError(f"eval run {eval_run_id}: the student lost no task, so there is nothing to seed")
            self._launch("seeds", lambda cancel: failures_to_seeds(
                self.store, eval_run_id, self._url(teacher.embedded), teacher, config, cancel=cancel,
                on_progress=lambda p: self._on_progress(EvalProgress(p.done, p.total, "new tasks", p.elapsed_s))))
            return len(calls)

    def _url(self, needs_server: bool) -> str:
        return self.server.ensure_started() if needs_server else ""

    def _check_idle(self):
        if self.busy:
            raise StudioError("an evaluation job is already running; stop it or wait for it to finish")

    def _launch(self, kind: str, work):
        self._cancel = threading.Event()
        self._status = EvalJobStatus(state="running", kind=kind, started_at=time.time())
        self._thread = threading.Thread(target=self._run, args=(work, self._cancel), daemon=True,
                                        name=f"{kind}-job")
        self._thread.start()

    def _run(self, work, cancel):
        try:
            result = work(cancel)
            self._status.result = result
            stopped = cancel.is_set() or (isinstance(result, dict) and "stopped_at" in result)
            self._status.state = "stopped" if stopped else "completed"
        except Exception as exc:  # reported through status(); the thread must not die silently
            self._status.error = job_failed(self.store.workspace, f"{self._status.kind} job", exc)
            self._status.state = "failed"

    def _on_progress(self, progress: EvalProgress):
        self._status.progress = progress


__all__ = ["EvalJobs", "EvalJobStatus"]
