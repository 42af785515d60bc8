"""The workspace's own log: background jobs write their failures here with the full traceback, in a rotating
file (logs/studio.log, 1 MB x 5), and tell the user where it is; the UI shows only the one-line cause."""
from __future__ import annotations

import logging
import logging.handlers
import threading
from pathlib import Path

LOG_NAME = "studio.log"
_lock = threading.Lock()


def log_path(workspace: Path | str) -> Path:
    return Path(workspace) / "logs" / LOG_NAME


def workspace_logger(workspace: Path | str) -> logging.Logger:
    """A logger writing to the workspace's rotating studio.log (one handler per workspace, made once)."""
    path = log_path(workspace).resolve()
    logger = logging.getLogger(f"distill_studio.{path}")
    with _lock:
        if not logger.handlers:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=5,
                                                           encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s: %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
    return logger


def job_failed(workspace: Path | str, job: str, exc: BaseException) -> str:
    """Log a background job's failure with its traceback; the one line the user reads, naming the log."""
    workspace_logger(workspace).error("%s failed", job, exc_info=exc)
    return f"{type(exc).__name__}: {exc} (traceback in {log_path(workspace)})"
