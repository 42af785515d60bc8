"""The one training slot of a workspace: starts the training child, watches it, stops it, reports progress.

Training runs in a child process (`python -m distill train --run-dir DIR`) so that a crash, an OOM or a
cancel never takes the studio down, and so the same command runs headless or under torchrun. The child
only writes its run dir; this object, living in the process that owns the workspace, writes the store.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from curation.errors import StudioError, TrainingBusy
from distill import runlog
from distill.train import TrainConfig, prepare_run_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
KILL_AFTER_S = 10.0  # grace between SIGTERM and SIGKILL: enough for the child to exit, short for a user
ERROR_TAIL_LINES = 40


class TrainingSlot:
    """At most one training run at a time for one workspace. Thread-safe; created once by the app."""

    def __init__(self, store, workspace: Path):
        self.store = store
        self.workspace = Path(workspace)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._run_id: int | None = None
        self._run_dir: Path | None = None
        self._watcher: threading.Thread | None = None
        self._kill_at: float | None = None  # set by stop(): when the watcher escalates to SIGKILL

    @property
    def busy(self) -> bool:
        # The watcher records the final status before it exits, so "not busy" means the store is up to date.
        watcher = self._watcher
        return watcher is not None and watcher.is_alive()

    @property
    def run_id(self) -> int | None:
        """The current (or last) run's id."""
        return self._run_id

    def start(self, config: TrainConfig) -> int:
        """Snapshot the approved examples into a new run dir and start the child; returns the run id."""
        with self._lock:
            if self.busy:
                raise TrainingBusy(self._run_id)
            examples = self.store.approved_examples()
            run_dir = prepare_run_dir(examples, config, self.workspace / "runs", self.workspace / "models")
            run_id = self.store.start_run("sft", asdict(config), run_dir=str(run_dir))
            try:
                proc = _spawn(run_dir)
            except OSError as exc:
                self.store.update_run(run_id, status="failed", error=f"could not start the training process: {exc}")
                raise StudioError(f"could not start the training process: {exc}") from exc
            self.store.update_run(run_id, pid=proc.pid)
            self._proc, self._run_id, self._run_dir, self._kill_at = proc, run_id, run_dir, None
            self._watcher = threading.Thread(target=self._watch, args=(proc, run_id, run_dir),
                                             name=f"training-run-{run_id}", daemon=True)
            self._watcher.start()
            return run_id

    def stop(self) -> bool:
        """Ask the running child's whole process group to stop (SIGTERM, then SIGKILL after 10 s).

        Returns False when nothing was running. The run ends as 'stopped' once the child has exited.
        """
        with self._lock:
            if not self.busy or self._proc is None:
                return False
            self._kill_at = time.monotonic() + KILL_AFTER_S
            _signal_group(self._proc.pid, signal.SIGTERM)
            return True

    def close(self) -> None:
        """Stop a run still going when the studio shuts down.

        The child lives in its own session so that a Ctrl-C in the studio's terminal does not kill it
        mid-step; without this it would outlive the studio and be marked 'interrupted' on restart.
        """
        if self.stop():
            self.wait(KILL_AFTER_S + 5)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run has ended and its status is stored; False on timeout."""
        watcher = self._watcher
        if watcher is None:
            return True
        watcher.join(timeout)
        return not watcher.is_alive()

    def progress(self, run_id: int | None = None) -> dict:
        """Status and progress of a run (default: the current or last one), read from its run dir."""
        run_id = self._run_id if run_id is None else run_id
        run = self.store.run(run_id) if run_id is not None else None
        if run is None:
            raise StudioError(f"no training run with id {run_id}")
        run_dir = Path(run["run_dir"]) if run.get("run_dir") else None
        events = runlog.read_events(run_dir) if run_dir else []
        out = runlog.summarise(events)
        out.update(run_id=run_id, status=run["status"], run_dir=str(run_dir) if run_dir else None,
                   error=run.get("error") or out["error"],
                   metrics=run.get("metrics") or out["metrics"],
                   adapter_dir=str(run_dir / runlog.ADAPTER_DIR) if run_dir else None,
                   log_tail=runlog.tail_lines(run_dir / runlog.STDOUT_NAME, 20) if run_dir else "")
        return out

    # ---- the watcher thread -------------------------------------------------------------------
    def _watch(self, proc: subprocess.Popen, run_id: int, run_dir: Path) -> None:
        while True:
            try:
                returncode = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                kill_at = self._kill_at
                if kill_at is not None and time.monotonic() >= kill_at:
                    _signal_group(proc.pid, signal.SIGKILL)
        # After the leader exits, kill any stragglers it left in its group (e.g. data-loader workers).
        _signal_group(proc.pid, signal.SIGKILL)
        self.store.update_run(run_id, **_final_fields(returncode, run_dir, stopped=self._kill_at is not None))


def _spawn(run_dir: Path) -> subprocess.Popen:
    # OMP_WAIT_POLICY=PASSIVE (unless the user chose): OpenMP threads that spin while waiting made CPU
    # training 6x slower on a 2-core machine shared with the teacher server (5.7 vs 41 tokens/s).
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ,
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           # Four one-line dataset passes would otherwise fill the log tail the UI shows with progress bars.
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    # The child's output goes to a file, never a pipe: nobody has to drain it, so it can never block.
    with open(run_dir / runlog.STDOUT_NAME, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "distill", "train", "--run-dir", str(run_dir)],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group, so stop() reaches every process it started


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the group has already exited: there is nothing left to signal


def _final_fields(returncode: int, run_dir: Path, stopped: bool) -> dict:
    summary = runlog.summarise(runlog.read_events(run_dir))
    if returncode == 0 and summary["ended"]:
        # Checked before `stopped`: a stop that arrives after the adapter was saved changes nothing.
        return {"status": "completed", "metrics": summary["metrics"]}
    if stopped:
        return {"status": "stopped", "metrics": {"steps": summary["steps"], "tokens": summary["tokens"]}}
    tail = runlog.tail_lines(run_dir / runlog.STDOUT_NAME, ERROR_TAIL_LINES)
    reason = summary["error"] or f"training process exited with code {returncode}"
    return {"status": "failed", "error": f"{reason}\n--- last lines of {runlog.STDOUT_NAME} ---\n{tail}"}
