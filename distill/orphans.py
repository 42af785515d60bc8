"""Trainers left running by a studio that died (kill -9, power loss): found and stopped at the next start."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def is_our_trainer(pid: int, run_dir: str | None) -> bool:
    """True when `pid` is alive and is `python -m distill train --run-dir <run_dir>` (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    return "distill" in args and "--run-dir" in args and (run_dir is None or run_dir in args)


def stop_orphan(pid: int, grace_s: float = 10.0) -> None:
    """End the orphan's whole process group: SIGTERM, then SIGKILL after `grace_s`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_orphans(runs: list[dict]) -> list[str]:
    """Stop the trainers of interrupted runs that are still alive; returns one note per orphan found."""
    notes = []
    for run in runs:
        pid = run.get("pid")
        if pid and is_our_trainer(pid, run.get("run_dir")):
            stop_orphan(pid)
            notes.append(f"run {run['id']}: its trainer (PID {pid}) outlived the studio and was stopped")
    return notes
