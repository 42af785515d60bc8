"""Background elicitation jobs: run in a thread owned by the studio, so they outlive a closed browser tab.

One job at a time per studio; the UI polls `status()`. Any method runs here: the config's class picks it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from curation.errors import StudioError, TeacherError
from curation.joblog import job_failed
from curation.generate import (Budget, Progress, check_budget, plan_calls, retry_failed, run_method)
from curation.local_server import LocalTeacherServer
from curation.methods import method_for
from curation.store import Store
from curation.teacher import TeacherConfig
from models.students import StudentServers


@dataclass
class JobStatus:
    state: str = "idle"  # idle | starting | running | restarting | completed | stopped | failed
    progress: Progress | None = None
    summary: dict = field(default_factory=dict)
    error: str = ""
    started_at: float = 0.0
    method: str = ""


class BackgroundJob:
    """What every background job slot shares: one worker thread, a cancel flag, a status to poll.

    Subclasses set `_thread`, `_cancel` and `_status` when they start work.
    """

    _thread: threading.Thread | None = None
    _cancel: threading.Event
    _status: object

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> bool:
        if not self.busy:
            return False
        self._cancel.set()
        return True

    def wait(self, timeout: float | None = None):
        if self._thread is not None:
            self._thread.join(timeout)
        return self._status

    def status(self):
        return self._status


def run_on_teacher(server: LocalTeacherServer, teacher: TeacherConfig, work, on_restart=None) -> dict:
    """Run `work(base_url, watch)` against the teacher and return its summary.

    On the embedded server, a death during the work (the engine stores every call it broke as failed with
    the server's exit and log tail, and raises) restarts the server once and runs `work` again, which
    resumes: only calls without a stored answer are sent, the failed ones included. The summary then says
    so ('server_restarted'). A second death in the same job fails it with that description.
    on_restart: called with the death's description before the restart (to show it while it happens).
    """
    if not teacher.embedded:
        return work(teacher.base_url, None)
    base_url = server.ensure_started()
    deaths = len(server.state.deaths)
    try:
        return work(base_url, server.death)
    except TeacherError:
        if len(server.state.deaths) == deaths:
            raise  # not a death: the endpoint cannot serve the method
    died = server.state.deaths[-1]
    if on_restart is not None:
        on_restart(died)
    base_url = server.restart()
    try:
        summary = work(base_url, server.death)
    except TeacherError as exc:
        first = died.splitlines()[0]
        raise TeacherError(f"{exc}\n(it had already died once in this job and been restarted: {first})") from exc
    return {**summary, "server_restarted": died}


class GenerationJobs(BackgroundJob):
    def __init__(self, store: Store, server: LocalTeacherServer, students: StudentServers | None = None):
        self.store, self.server, self.students = store, server, students
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._status = JobStatus()

    def start(self, teacher: TeacherConfig, config, budget: Budget | None = None) -> int:
        """Start the job `config` describes (GenerateConfig, SelfInstructConfig, EvolConfig, TopicsConfig,
        JudgeConfig, CompareConfig, LogprobsConfig, SelfConfig) in the background; returns the number of
        calls its first stage will send. Inputs are checked here, before anything starts."""
        method = method_for(config)
        with self._lock:
            self._check_idle()
            calls, skipped = plan_calls(self.store, teacher, config)
            check_budget(self.store, teacher, budget)
            if not calls and len(method.stages(config)) == 1:
                raise StudioError(f"nothing to do: all {skipped} calls already have a stored answer"
                                  if skipped else "nothing to do: no tasks or responses to work on; add seed tasks first")
            self._launch(teacher, method.name, len(calls),
                         lambda base_url, watch: run_method(self.store, teacher, config, base_url, self._on_progress,
                                                            self._cancel, budget, watch=watch,
                                                            students=self.students))
            return len(calls)

    def retry_failed(self, teacher: TeacherConfig, keys: list[str] | None = None, budget: Budget | None = None) -> int:
        """Send failed calls again in the background (the keys given, or all this teacher made); returns how many."""
        with self._lock:
            self._check_idle()
            rows = [r for r in self.store.ledger_rows(keys, states=("failed", "retried"))
                    if (r["endpoint"], r["model"]) == (teacher.endpoint_id, teacher.model_name)]
            if not rows:
                raise StudioError("no failed calls to retry for this teacher")
            self._launch(teacher, "retry-failed", len(rows),
                         lambda base_url, watch: retry_failed(self.store, teacher, base_url, keys, self._on_progress,
                                                              self._cancel, budget, watch=watch))
            return len(rows)

    def _check_idle(self):
        if self.busy:
            raise StudioError("a generation job is already running; stop it or wait for it to finish")

    def _launch(self, teacher: TeacherConfig, method: str, planned: int, work):
        self._cancel = threading.Event()
        self._status = JobStatus(state="starting", started_at=time.time(), method=method,
                                 progress=Progress(0, planned, 0, 0, 0.0))
        self._thread = threading.Thread(target=self._run, args=(teacher, work), daemon=True, name="generation-job")
        self._thread.start()

    def _run(self, teacher: TeacherConfig, work):
        try:
            def running(base_url, watch):
                self._status.state = "running"
                return work(base_url, watch)

            summary = run_on_teacher(self.server, teacher, running, on_restart=self._on_restart)
            self._status.summary = summary
            self._status.state = "stopped" if summary.get("stopped_reason") else "completed"
        except Exception as exc:  # reported to the user through status(); the thread must not die silently
            self._status.error = job_failed(self.store.workspace, f"generation job ({self._status.method})", exc)
            self._status.state = "failed"

    def _on_restart(self, died: str):
        self._status.state = "restarting"
        self._status.error = died

    def _on_progress(self, progress: Progress):
        self._status.progress = progress
