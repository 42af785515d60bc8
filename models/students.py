"""Students as endpoints: a base student and its trained LoRA adapter on one llama.cpp server.

`StudentServers.endpoint(student, adapter)` converts the student and the adapter to GGUF in a child
process (`python -m distill.to_gguf`, which needs torch; this process never imports it), starts a server
for them on first use, and returns a `StudentEndpoint`: where to send chat calls, and the request field
that picks the base model or the distilled one (llama-server applies the adapter per request, so base and
distilled answers are batched by one server). One student server runs at a time: asking for another
student or adapter stops the previous one, so memory holds one model.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from models.engine import LlamaServer, ServerSpec
from models.errors import ModelError

STUDENT_ROLE = "student"


@dataclass(frozen=True)
class StudentEndpoint:
    """base_url: the server's ".../v1"; model: the name to send; has_adapter: whether 'distilled' differs."""

    base_url: str
    model: str
    has_adapter: bool
    server: LlamaServer

    def params(self, distilled: bool) -> dict:
        """What to add to a chat call's parameters to get the base or the distilled student."""
        if not self.has_adapter:
            return {}
        return {"extra_body": {"lora": [{"id": 0, "scale": 1.0 if distilled else 0.0}]}}


class StudentServers:
    """The student server of a workspace; thread-safe. log_dir: server logs; models_dir: GGUF cache."""

    def __init__(self, log_dir: Path, models_dir: Path, parallel: int = 8, n_ctx: int = 2048):
        self.log_dir, self.models_dir = Path(log_dir), Path(models_dir)
        self.parallel, self.n_ctx = parallel, n_ctx
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._server: LlamaServer | None = None
        self._endpoint: StudentEndpoint | None = None

    def endpoint(self, student: str, adapter: str | Path | None = None, on_status=None) -> StudentEndpoint:
        """The running endpoint for (student, adapter), converting and starting it if needed.

        on_status: called with a short line before each slow step (conversion, server start).
        """
        key = ((student or "").strip(), str(Path(adapter).expanduser().resolve()) if adapter else "")
        with self._lock:
            if self._key == key and self._server is not None and self._server.running:
                return self._endpoint
            if self._key != key:
                self._stop()
            if on_status:
                on_status("preparing the student for the inference server (GGUF conversion, once per model)")
            files = self._convert(*key)
            name = Path(files["folder"]).name
            loras = (("distilled", Path(files["adapter"])),) if files["adapter"] else ()
            template = Path(files["chat_template"]) if files.get("chat_template") else None
            spec = ServerSpec(STUDENT_ROLE, Path(files["base"]), name, loras=loras, n_ctx=self.n_ctx,
                              parallel=self.parallel, chat_template=template)
            if self._server is None or self._key != key:
                self._server = LlamaServer(spec, self.log_dir, "student-server.log")
            if on_status:
                on_status("starting the student's inference server")
            url = self._server.ensure_started()
            self._key = key
            self._endpoint = StudentEndpoint(url, name, bool(loras), self._server)
            return self._endpoint

    def _convert(self, student: str, adapter: str) -> dict:
        args = [sys.executable, "-m", "distill.to_gguf", "--student", student, "--models-dir", str(self.models_dir)]
        if adapter:
            args += ["--adapter", adapter]
        proc = subprocess.run(args, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            message = (proc.stderr.strip().splitlines() or ["no output"])
            text = "\n".join(message[-8:]).removeprefix("error: ")
            raise ModelError(f"the student could not be prepared for serving: {text}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    @property
    def servers(self) -> list[LlamaServer]:
        return [self._server] if self._server is not None else []

    def stop(self):
        with self._lock:
            self._stop()

    def _stop(self):
        if self._server is not None:
            self._server.stop()
        self._server, self._key, self._endpoint = None, None, None
