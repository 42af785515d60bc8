"""The embedded teacher and judge: SmolLM2-135M-Instruct on llama.cpp's server.

One server shared by every job of the studio, started on first use (see models.engine for how servers
are started, watched and stopped). It serves the bundled Q4_1 GGUF re-encoded once as Q8_0
(models.requantize): llama.cpp decodes a batch of requests ~1.5x faster from Q8_0 on this CPU class.
"""
from __future__ import annotations

from pathlib import Path

from curation.teacher import EMBEDDED_MODEL
from models.bundled import smollm2_gguf
from models.engine import LlamaServer, ServerSpec, free_port  # noqa: F401  (tests take free_port from here)
from models.requantize import as_q8_0

TEACHER_ROLE = "embedded teacher"


class LocalTeacherServer(LlamaServer):
    """The embedded teacher's server. parallel: requests decoded together (continuous batching)."""

    def __init__(self, log_dir: Path, n_ctx: int = 2048, parallel: int = 16, startup_timeout_s: float = 180.0):
        spec = ServerSpec(TEACHER_ROLE, lambda: as_q8_0(smollm2_gguf()), EMBEDDED_MODEL, n_ctx=n_ctx, parallel=parallel)
        super().__init__(spec, log_dir, "teacher-server.log", startup_timeout_s)
