"""What a run needs on record to be trusted and reproduced: code version, library versions, data digest."""
from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from distill.data import snapshot_digest

REPO_ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")


def code_version() -> str:
    """The git commit of the studio's code ('+dirty' with uncommitted changes to tracked files), or,
    outside a git checkout, the installed package version."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return f"{commit}+dirty" if dirty else commit
    except (OSError, subprocess.SubprocessError):
        pass  # no git, or not a checkout: fall back to the package version below
    for name in ("distill-studio", "distill_studio"):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries that decide the numbers, read without importing them."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_record(config, rows: list[dict], snapshot_sha256: str, teachers: list[str],
               heldout: list[dict] | None = None) -> dict:
    """The provenance stored with a run (config.json of the run dir and the runs table); `heldout` are the
    eval-split rows its eval loss is measured on."""
    heldout = heldout or []
    return {"method": config.method, "student": config.student, "teacher": config.teacher_spec(),
            "answer_teachers": teachers, "seed": config.seed, "code_version": code_version(),
            "libraries": library_versions(), "snapshot": {"rows": len(rows), "sha256": snapshot_sha256},
            "heldout_rows": len(heldout), "heldout_digest": snapshot_digest(heldout) if heldout else None,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
