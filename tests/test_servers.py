"""The inference servers: the real embedded llama-server answers, batches, dies loudly and is restarted once."""
from __future__ import annotations

import os
import subprocess

import pytest

from curation.local_server import LocalTeacherServer
from models.engine import describe_exit

pytestmark = pytest.mark.integration


def test_exit_descriptions_name_the_signal():
    assert describe_exit(-11) == "signal 11 (SIGSEGV)"
    assert describe_exit(3) == "code 3"


def test_the_embedded_teacher_answers_several_requests_at_once(tmp_path):
    """A real answer from the real server; it fails (never skips) when the server cannot start or dies."""
    server = LocalTeacherServer(tmp_path / "logs", parallel=4)
    try:
        base_url = server.ensure_started()
        import asyncio

        import openai

        async def ask():
            client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=120)
            try:
                return await asyncio.gather(*(client.chat.completions.create(
                    model="smollm2-135m-instruct", messages=[{"role": "user", "content": f"Say hello to {name}."}],
                    max_tokens=16, temperature=0.0) for name in ("Ann", "Bo", "Cy", "Di")))
            finally:
                await client.close()
        answers = asyncio.run(ask())
        assert all(a.choices[0].message.content.strip() for a in answers)
        info = server.info()
        assert info["state"] == "running" and info["slots"] == 4 and info["tokens"] >= 4
    finally:
        server.stop()
    assert not server.running and server.death() is None  # asked to stop: not a death


def test_the_server_binary_has_no_native_or_amx_code():
    """The build is portable: GGML_NATIVE off, no AMX, x86-64-v3 at most (the AMX build crashed on Q4_1)."""
    import distill_llama_server
    flags = distill_llama_server.build_flags()
    assert "-DGGML_NATIVE=OFF" in flags
    if os.uname().machine == "x86_64":
        assert "-DGGML_AMX_INT8=OFF" in flags and "-DGGML_AVX512=OFF" in flags
        out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(distill_llama_server.binary())],
                             capture_output=True, text=True).stdout if _has("objdump") else ""
        assert "tileloadd" not in out and "tdpbssd" not in out  # no AMX instruction anywhere in the binary


def _has(tool: str) -> bool:
    import shutil
    return shutil.which(tool) is not None
