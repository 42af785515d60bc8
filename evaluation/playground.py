"""The Evaluate tab's playground: one typed prompt answered by the base student, the distilled student and
the teacher, side by side. Nothing is stored (an eval stores everything: evaluation.evaluate).

The students answer through the studio's student server (models.students): the base model and the
adapter on one llama.cpp server, so asking again with the same student is quick.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from curation.errors import StudioError
from curation.teacher import TeacherConfig, call_chat
from evaluation import metrics as em
from evaluation.plan import endpoint_url
from models.students import StudentServers


class Playground:
    """A typed prompt answered by the base student, the distilled student and the teacher, side by side."""

    def __init__(self, students: StudentServers):
        self.students = students

    def ask(self, prompt: str, student: str, adapter: Path, teacher: TeacherConfig, base_url: str,
            max_tokens: int = 256, temperature: float = 0.0) -> dict:
        """{'base', 'distilled', 'teacher': answer text or an error line}."""
        if not (prompt or "").strip():
            raise StudioError("type a prompt first")
        messages = [{"role": "user", "content": prompt.strip()}]
        params = {"temperature": float(temperature), "max_tokens": int(max_tokens)}
        endpoint = self.students.endpoint(student, adapter)
        return asyncio.run(_ask_all(endpoint, teacher, endpoint_url(teacher, base_url), messages, params))


async def _ask_all(endpoint, teacher: TeacherConfig, teacher_url: str, messages: list[dict], params: dict) -> dict:
    student_client, teacher_client = teacher.client(endpoint.base_url), teacher.client(teacher_url)
    try:
        asks = [call_chat(student_client, endpoint.model, messages, {**params, **endpoint.params(name == "distilled")})
                for name in em.STUDENTS]
        asks.append(call_chat(teacher_client, teacher.model_name, messages, params, teacher.max_retries))
        results = await asyncio.gather(*asks)
    finally:
        await student_client.close()
        await teacher_client.close()
    return {name: r["response"] if r["status"] == "ok" else f"[error] {r['error']}"
            for name, r in zip((*em.STUDENTS, "teacher"), results)}


__all__ = ["Playground"]
