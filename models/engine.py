"""Inference servers: every model the studio runs is an OpenAI-compatible endpoint on llama.cpp's server.

`LlamaServer` is one `llama-server` process serving one GGUF model (plus LoRA adapters picked per request)
with `parallel` slots decoded together (continuous batching). It starts on first use on a free 127.0.0.1
port in its own process group, knows when it died and why (signal or exit code, with its log tail), and
records its PID in the workspace so that a studio that died leaves nothing behind: the next start stops
what the record names (`stop_recorded`).

The binary comes from `distill-llama-server` (packaging/llama-server): built once per machine for the
x86-64-v3 baseline with no AMX code, because a native build on an Intel Xeon with AMX repacked the bundled
Q4_1 weights for AMX and crashed with SIGSEGV on the first request.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from models.errors import ModelError

RECORD_NAME = "servers.json"


def server_binary() -> Path:
    """llama.cpp's llama-server, from the distill-llama-server package (pip install -r requirements.txt)."""
    try:
        import distill_llama_server
    except ImportError as exc:
        raise ModelError("the inference server needs the package distill-llama-server "
                         "(pip install -r requirements.txt builds it from packaging/llama-server)") from exc
    binary = distill_llama_server.binary()
    if not binary.exists():
        raise ModelError(f"{binary} is missing; reinstall: pip install --force-reinstall ./packaging/llama-server")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def describe_exit(returncode: int) -> str:
    """'signal 11 (SIGSEGV)' for a process killed by a signal, else 'code N'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"signal {-returncode} ({name})"
    return f"code {returncode}"


@dataclass(frozen=True)
class ServerSpec:
    """What one server serves and how.

    role: what the studio uses it for, in messages ("embedded teacher", "student").
    model: the GGUF file, or a function that finds (or makes) it when the server first starts: finding
        weights can fail or take time, and must do so when the model is first needed, not when the
        studio opens. alias: the model name clients send.
    loras: (name, GGUF adapter file) pairs, loaded at start with scale 0 and enabled per request
        (llama-server's `lora` field), so one server serves the base model and every adapter.
    n_ctx: context per request (prompt + answer). parallel: requests decoded together.
    threads: CPU threads (0: every core this process may use).
    chat_template: a Jinja chat template file used instead of the GGUF's own (a base model has none).
    """

    role: str
    model: Path | Callable[[], Path]
    alias: str
    loras: tuple[tuple[str, Path], ...] = ()
    n_ctx: int = 2048
    parallel: int = 8
    threads: int = 0
    chat_template: Path | None = None

    def args(self, binary: Path, port: int) -> list[str]:
        threads = self.threads or len(os.sched_getaffinity(0))
        model = self.model() if callable(self.model) else self.model
        args = [str(binary), "--model", str(model), "--alias", self.alias, "--host", "127.0.0.1",
                "--port", str(port), "--ctx-size", str(self.n_ctx * self.parallel), "--parallel", str(self.parallel),
                "--threads", str(threads), "--threads-batch", str(threads), "--kv-unified", "--cache-ram", "256",
                "--jinja", "--no-webui", "--metrics"]
        if self.chat_template:
            args += ["--chat-template-file", str(self.chat_template)]
        for _, path in self.loras:
            args += ["--lora", str(path)]
        if self.loras:
            args.append("--lora-init-without-apply")  # base model by default; each request names its adapter
        return args


@dataclass
class ServerState:
    started_at: float = 0.0
    starts: int = 0
    deaths: list[str] = field(default_factory=list)  # one description per unexpected exit


class LlamaServer:
    """One llama-server process; thread-safe. `ensure_started()` returns its base URL (".../v1")."""

    def __init__(self, spec: ServerSpec, log_dir: Path, log_name: str, startup_timeout_s: float = 180.0):
        self.spec = spec
        self.log_dir = Path(log_dir)
        self.log_path = self.log_dir / log_name
        self.startup_timeout_s = startup_timeout_s
        self.state = ServerState()
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._last_death: str | None = None
        self.port: int | None = None
        self.base_url: str | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------------

    def ensure_started(self) -> str:
        """Start the server unless it runs; returns its base URL. Raises ModelError if it cannot start."""
        with self._lock:
            if self.running:
                return self.base_url
            self.death()  # an exit nobody noticed yet is recorded before the restart
            self.port = free_port()
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                log.write(f"\n---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.spec.role} "
                          f"({self.spec.alias}) on port {self.port}\n".encode())
                log.flush()
                self._proc = subprocess.Popen(self.spec.args(server_binary(), self.port), stdout=log,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True)
            self._stopping, self._last_death = False, None
            self.base_url = f"http://127.0.0.1:{self.port}/v1"
            self.state.starts += 1
            self.state.started_at = time.time()
            _record(self.log_dir, self, add=True)
            self._wait_ready()
            return self.base_url

    def restart(self) -> str:
        with self._lock:
            self._kill()
            return self.ensure_started()

    def stop(self):
        with self._lock:
            self._kill()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def death(self, wait_s: float = 0.0) -> str | None:
        """If the server exited without being asked to: what happened, with its log tail; else None.

        wait_s: how long to give a dying process to finish exiting (a refused connection comes first).
        """
        proc = self._proc
        if self._stopping:
            return None
        if proc is None:
            return self._last_death  # every call that meets the dead server is told, until it is restarted
        try:
            returncode = proc.wait(timeout=wait_s) if wait_s else proc.poll()
        except subprocess.TimeoutExpired:
            return None
        if returncode is None:
            return None
        description = (f"the {self.spec.role} server ({self.spec.alias}, port {self.port}) exited "
                       f"({describe_exit(returncode)}); log tail:\n{self.log_tail(12)}")
        with self._lock:
            if self._proc is proc:
                self.state.deaths.append(description)
                self._last_death = description
                self._proc = None
                _record(self.log_dir, self, add=False, pid=proc.pid)
        return description

    def _wait_ready(self):
        deadline = time.monotonic() + self.startup_timeout_s
        health = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = describe_exit(self._proc.returncode)
                _record(self.log_dir, self, add=False, pid=self._proc.pid)
                self._proc = None
                raise ModelError(f"the {self.spec.role} server ({self.spec.alias}) exited ({code}) while starting; "
                                 f"log {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        self._kill()
        raise ModelError(f"the {self.spec.role} server ({self.spec.alias}) did not answer within "
                         f"{self.startup_timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}")

    def _kill(self):
        proc, self._proc = self._proc, None
        self._stopping = True
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        _record(self.log_dir, self, add=False, pid=proc.pid)

    # ---- what the user sees ---------------------------------------------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(line for line in text.splitlines()[-lines:])

    def info(self) -> dict:
        """One row of the server list: role, model, port, adapters, state, load and throughput."""
        row = {"role": self.spec.role, "model": self.spec.alias, "port": self.port if self.running else None,
               "pid": self.pid if self.running else None, "adapters": ", ".join(n for n, _ in self.spec.loras),
               "slots": self.spec.parallel, "state": "running" if self.running else "stopped",
               "restarts": max(0, self.state.starts - 1), "deaths": len(self.state.deaths),
               "busy_slots": None, "tokens_per_s": None, "tokens": None}
        if self.running:
            row.update(self._metrics())
        return row

    def _metrics(self) -> dict:
        """From llama-server's Prometheus /metrics: generated tokens, their rate, requests in flight."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=1) as resp:
                text = resp.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return {}
        values = {}
        for line in text.splitlines():
            if line.startswith("llamacpp:"):
                name, _, value = line.partition(" ")
                try:
                    values[name.split(":", 1)[1]] = float(value)
                except ValueError:
                    pass
        return {"busy_slots": int(values.get("requests_processing", 0)),
                "tokens": int(values.get("tokens_predicted_total", 0)),
                "tokens_per_s": round(values["predicted_tokens_seconds"], 1)
                if "predicted_tokens_seconds" in values else None}


# ---- the record of running servers, for the next start of a studio that died -----------------------------------

_record_lock = threading.Lock()


def _record(log_dir: Path, server: LlamaServer, add: bool, pid: int | None = None) -> None:
    path = Path(log_dir) / RECORD_NAME
    pid = pid or server.pid
    if pid is None:
        return
    with _record_lock:
        try:
            entries = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            entries = []
        entries = [e for e in entries if e.get("pid") != pid]
        if add:
            entries.append({"pid": pid, "port": server.port, "role": server.spec.role, "model": server.spec.alias,
                            "binary": str(server_binary())})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entries, indent=1))


def stop_recorded(log_dir: Path) -> list[str]:
    """Stop the servers a studio that died left running (per the workspace's record); returns what was done.

    A PID is only signalled while its command line is still that llama-server on that port, so a PID the
    system has since given to another process is left alone.
    """
    path = Path(log_dir) / RECORD_NAME
    try:
        entries = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    notes = []
    for entry in entries:
        pid = int(entry.get("pid", 0))
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in cmdline]
        if not args or not args[0].endswith("llama-server") or str(entry.get("port")) not in args:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        except PermissionError:
            os.kill(pid, signal.SIGTERM)
        notes.append(f"stopped the {entry.get('role')} server ({entry.get('model')}, PID {pid}, port "
                     f"{entry.get('port')}) that a previous studio left running")
    path.unlink(missing_ok=True)
    return notes
