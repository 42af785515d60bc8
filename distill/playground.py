"""The Evaluate tab's playground: one typed prompt answered by the base student, the distilled student and
the teacher, side by side. Nothing is stored (an eval stores everything: distill.evaluate)."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from curation.errors import StudioError
from curation.methods.base import Call
from curation.methods.self_knowledge import STUDENT_ENDPOINT, LocalStudent
from curation.teacher import TeacherConfig, call_chat
from distill import eval_metrics as em
from distill.evaluate import EVAL_METHOD, adapter_enabled, endpoint_url


class Playground:
    """A typed prompt answered by the base student, the distilled student and the teacher, side by side.

    Nothing is stored. The last student loaded is kept (one at a time) so that the next prompt is quick.
    """

    def __init__(self, models_dir: Path):
        self.models_dir = Path(models_dir)
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._student: LocalStudent | None = None

    def _load(self, student: str, adapter: Path) -> LocalStudent:
        key = (student, str(adapter))
        if self._key != key:
            self._student, self._key = None, None  # free the old model before loading the next
            self._student, self._key = LocalStudent(student, str(adapter), self.models_dir), key
        return self._student

    def ask(self, prompt: str, student: str, adapter: Path, teacher: TeacherConfig, base_url: str,
            max_tokens: int = 256, temperature: float = 0.0) -> dict:
        """{'base', 'distilled', 'teacher': answer text or an error line}."""
        if not (prompt or "").strip():
            raise StudioError("type a prompt first")
        messages = [{"role": "user", "content": prompt.strip()}]
        params = {"temperature": float(temperature), "max_tokens": int(max_tokens)}
        out = {}
        with self._lock:
            local = self._load(student, adapter)
            for name in em.STUDENTS:
                call = Call.make(EVAL_METHOD, "playground", STUDENT_ENDPOINT, name, messages, params)
                with adapter_enabled(local.model, name == "distilled"):
                    result = local.generate(call)
                out[name] = result["response"] if result["status"] == "ok" else f"[error] {result['error']}"
        result = asyncio.run(_ask_teacher(teacher, endpoint_url(teacher, base_url), messages, params))
        out["teacher"] = result["response"] if result["status"] == "ok" else f"[error] {result['error']}"
        return out


async def _ask_teacher(teacher: TeacherConfig, url: str, messages: list[dict], params: dict) -> dict:
    client = teacher.client(url)
    try:
        return await call_chat(client, teacher.model_name, messages, params, teacher.max_retries)
    finally:
        await client.close()


__all__ = ["Playground"]
