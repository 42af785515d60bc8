"""The one training slot of a workspace: starts the training child, watches it, stops it, resumes it,
reports progress.

Training runs in a child process (`python -m distill train --run-dir DIR`) so that a crash, an OOM or a
cancel never takes the studio down, and so the same command runs headless or under torchrun /
accelerate (pass `launcher`). The child only writes its run dir; this object, living in the process
that owns the workspace, writes the store.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from curation.errors import StudioError, TrainingBusy
from distill import runlog
from distill.config import TrainConfig
from distill.child import REPO_ROOT, child_env  # noqa: F401  (REPO_ROOT: the tests import it here)
from distill.rundir import prepare_run_dir

# Grace between SIGTERM and SIGKILL: the child finishes its step and saves a checkpoint in it. A second
# Stop does not wait.
KILL_AFTER_S = 60.0
ERROR_TAIL_LINES = 40
RESUMABLE = ("stopped", "failed", "interrupted")


class TrainingSlot:
    """At most one training run at a time for one workspace. Thread-safe; created once by the app.

    launcher: the command that runs Python modules for the child, e.g. ["torchrun", "--nproc_per_node",
    "4"] or ["accelerate", "launch", "--num_processes", "4"]; default: this interpreter.
    """

    def __init__(self, store, workspace: Path, launcher: list[str] | str | None = None):
        self.store = store
        self.workspace = Path(workspace)
        self.launcher = shlex.split(launcher) if isinstance(launcher, str) else list(launcher or [sys.executable])
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

    @property
    def models_dir(self) -> Path:
        return self.workspace / "models"

    def start(self, config: TrainConfig) -> int:
        """Snapshot the method's rows into a new run dir and start the child; returns the run id.

        Refused before anything runs (StudioError saying why): no rows for the method (e.g. no DPO
        pairs), a kd teacher with another vocabulary, or a setting that clearly will not fit in memory.
        """
        from distill import preflight, snapshot
        from distill.data import snapshot_digest
        from distill.provenance import run_record

        with self._lock:
            if self.busy:
                raise TrainingBusy(self._run_id)
            rows = snapshot.collect(self.store, config)
            preflight.check(config, rows, self.models_dir)
            heldout = snapshot.heldout_rows(self.store, config)
            record = run_record(config, rows, snapshot_digest(rows), snapshot.teachers_of(rows), heldout)
            run_dir = prepare_run_dir(rows, config, self.workspace / "runs", self.models_dir, provenance=record,
                                      heldout=heldout)
            why = snapshot.heldout_note(self.store, config, heldout)
            if why:
                runlog.append_event(run_dir, {"event": "note", "note": why})
            run_id = self.store.start_run(config.method, {**asdict(config), "provenance": record},
                                          run_dir=str(run_dir))
            self.store.record_run_rows(run_id, [(row["row_id"], row["hash"]) for row in rows])
            self._launch(run_id, run_dir, resume=False)
            return run_id

    def resume(self, run_id: int) -> int:
        """Continue a stopped (or failed / interrupted) run from its last complete checkpoint, in the same
        run dir and under the same id; training goes on at the checkpoint's global step."""
        with self._lock:
            if self.busy:
                raise TrainingBusy(self._run_id)
            run = self.store.run(run_id)
            if run is None or run["kind"] not in ("sft", "dpo", "kd", "kd_logprobs"):
                raise StudioError(f"no training run with id {run_id}")
            if run["status"] not in RESUMABLE:
                raise StudioError(f"run {run_id} is {run['status']}; only a stopped, failed or interrupted run "
                                  "can be resumed")
            run_dir = Path(run["run_dir"])
            checkpoint = runlog.last_complete_checkpoint(run_dir)
            if checkpoint is None:
                raise StudioError(f"run {run_id} has no complete checkpoint to resume from (a run saves one when "
                                  "stopped, or every save_steps steps); start a new run instead")
            self.store.reopen_run(run_id)
            self._launch(run_id, run_dir, resume=True)
            return run_id

    def _launch(self, run_id: int, run_dir: Path, resume: bool) -> None:
        try:
            proc = _spawn(run_dir, self.launcher, resume)
        except OSError as exc:
            self.store.update_run(run_id, status="failed", error=f"could not start the training process: {exc}")
            raise StudioError(f"could not start the training process: {exc}") from exc
        self.store.update_run(run_id, pid=proc.pid)
        self._proc, self._run_id, self._run_dir, self._kill_at = proc, run_id, run_dir, None
        self._watcher = threading.Thread(target=self._watch, args=(proc, run_id, run_dir),
                                         name=f"training-run-{run_id}", daemon=True)
        self._watcher.start()

    def stop(self) -> bool:
        """Ask the running child to stop: SIGTERM to its process group; the child saves a resumable
        checkpoint at the end of its step and exits. SIGKILL follows after KILL_AFTER_S, or at once on a
        second call. Returns False when nothing was running. The run ends as 'stopped'."""
        with self._lock:
            if not self.busy or self._proc is None:
                return False
            if self._kill_at is not None:
                self._kill_at = time.monotonic()  # a second Stop: do not wait for the checkpoint
                _signal_group(self._proc.pid, signal.SIGKILL)
                return True
            self._kill_at = time.monotonic() + KILL_AFTER_S
            _signal_group(self._proc.pid, signal.SIGTERM)
            return True

    @property
    def stopping(self) -> bool:
        return self.busy and self._kill_at is not None

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
        out.update(run_id=run_id, status=run["status"], kind=run["kind"], run_dir=str(run_dir) if run_dir else None,
                   error=run.get("error") or out["error"],
                   metrics=run.get("metrics") or out["metrics"],
                   adapter_dir=str(run_dir / runlog.ADAPTER_DIR) if run_dir else None,
                   resumable=bool(run_dir and run["status"] in RESUMABLE
                                  and runlog.last_complete_checkpoint(run_dir)),
                   stopping=self.stopping and run_id == self._run_id,
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


def _spawn(run_dir: Path, launcher: list[str], resume: bool) -> subprocess.Popen:
    argv = [*launcher, "-m", "distill", "train", "--run-dir", str(run_dir), *(["--resume"] if resume else [])]
    # The child's output goes to a file, never a pipe: nobody has to drain it, so it can never block.
    with open(run_dir / runlog.STDOUT_NAME, "ab") as out:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=child_env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: stop() reaches every process


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
        metrics = {"steps": summary["steps"], "tokens": summary["tokens"], "device": summary["device"],
                   **summary["metrics"], "checkpoint": summary["checkpoint"]}
        return {"status": "stopped", "metrics": metrics}
    tail = runlog.tail_lines(run_dir / runlog.STDOUT_NAME, ERROR_TAIL_LINES)
    reason = summary["error"] or f"training process exited with code {returncode}"
    return {"status": "failed", "error": f"{reason}\n--- last lines of {runlog.STDOUT_NAME} ---\n{tail}"}
