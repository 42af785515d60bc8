"""Background generation jobs: run in a thread owned by the studio, so they outlive a closed browser tab.

One job at a time per studio; the UI polls `status()`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from curation.errors import StudioError
from curation.generate import GenerateConfig, Progress, plan_calls, run_generation
from curation.local_server import LocalTeacherServer
from curation.store import Store
from curation.teacher import TeacherConfig


@dataclass
class JobStatus:
    state: str = "idle"  # idle | starting | running | completed | stopped | failed
    progress: Progress | None = None
    summary: dict = field(default_factory=dict)
    error: str = ""
    started_at: float = 0.0


class GenerationJobs:
    def __init__(self, store: Store, server: LocalTeacherServer):
        self.store, self.server = store, server
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._status = JobStatus()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, teacher: TeacherConfig, config: GenerateConfig) -> int:
        """Start a job in the background; returns the number of calls it will make."""
        with self._lock:
            if self.busy:
                raise StudioError("a generation job is already running; stop it or wait for it to finish")
            calls, skipped = plan_calls(self.store, teacher, config)  # validates before anything starts
            if not calls:
                raise StudioError(f"nothing to do: all {skipped} calls already have a stored answer"
                                  if skipped else "no tasks to label; add seed tasks first")
            self._cancel = threading.Event()
            self._status = JobStatus(state="starting", started_at=time.time(),
                                     progress=Progress(0, len(calls), 0, 0, 0.0))
            self._thread = threading.Thread(target=self._run, args=(teacher, config), daemon=True,
                                            name="generation-job")
            self._thread.start()
            return len(calls)

    def _run(self, teacher: TeacherConfig, config: GenerateConfig):
        try:
            base_url = self.server.ensure_started() if teacher.embedded else teacher.base_url
            self._status.state = "running"
            summary = run_generation(self.store, teacher, config, base_url, on_progress=self._on_progress,
                                     cancel=self._cancel)
            self._status.summary = summary
            self._status.state = "stopped" if self._cancel.is_set() else "completed"
        except Exception as exc:  # reported to the user through status(); the thread must not die silently
            self._status.error = f"{type(exc).__name__}: {exc}"
            self._status.state = "failed"

    def _on_progress(self, progress: Progress):
        self._status.progress = progress

    def stop(self) -> bool:
        if not self.busy:
            return False
        self._cancel.set()
        return True

    def wait(self, timeout: float | None = None) -> JobStatus:
        if self._thread is not None:
            self._thread.join(timeout)
        return self._status

    def status(self) -> JobStatus:
        return self._status
