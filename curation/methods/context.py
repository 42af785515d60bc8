"""What a method's hooks may use during one job (RunContext): it lives with the methods, which use it, and the
engine (curation.generate) creates it; so the methods never import the engine."""
from __future__ import annotations

import threading

from curation.methods.novelty import NoveltyFilter
from curation.store import Store
from curation.teacher import TeacherConfig
from models.students import StudentEndpoint, StudentServers


class RunContext:
    """What a method's hooks may use during one job: the store, the teacher, the config, the run id,
    and the job's shared pools (novelty filter, the student's endpoint), built on first use.

    students: the studio's student servers (one per workspace); without it a job that needs the student
    starts its own and stops it at the end (`close`).
    """

    def __init__(self, store: Store, teacher: TeacherConfig, config=None, run_id: int | None = None,
                 students: StudentServers | None = None):
        self.store, self.teacher, self.config, self.run_id = store, teacher, config, run_id
        self._novelty: dict[tuple, NoveltyFilter] = {}
        self._students, self._own_students = students, students is None
        self._student = None
        self._student_lock = threading.Lock()

    def novelty(self, similarity: str, threshold: float) -> NoveltyFilter:
        key = (similarity, threshold)
        if key not in self._novelty:
            self._novelty[key] = NoveltyFilter([text for _, text in self.store.task_texts()], similarity, threshold)
        return self._novelty[key]

    def ledger_row(self, key: str) -> dict | None:
        rows = self.store.ledger_rows([key])
        return rows[0] if rows else None

    def student(self) -> StudentEndpoint:
        """The endpoint of the config's student (+ adapter), started in the worker thread that first needs it."""
        with self._student_lock:
            if self._student is None:
                if self._students is None:
                    self._students = StudentServers(self.store.workspace / "logs", self.store.workspace / "models")
                self._student = self._students.endpoint(self.config.student, self.config.adapter or None)
            return self._student

    def close(self):
        if self._own_students and self._students is not None:
            self._students.stop()
