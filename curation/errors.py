"""Named domain errors. Each message says what went wrong and how to fix it; the UI and CLIs show it as is."""

from models.errors import ModelError, StudioError  # noqa: F401  (the base lives below curation, in models)


class WorkspaceInUse(StudioError):
    def __init__(self, path, pid):
        self.path, self.pid = path, pid
        super().__init__(
            f"workspace {path} is in use by PID {pid}; stop that process or pass another --workspace")


class ImportFormatError(StudioError):
    """A seed file that cannot be imported. Nothing was written."""

    def __init__(self, file, reason, line=None, field=None):
        self.file, self.line, self.field, self.reason = str(file), line, field, reason
        where = self.file
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {reason} (nothing was imported)")


class TeacherError(StudioError):
    """The teacher endpoint cannot be used at all (not: one call failed; that becomes a failed row)."""


class BatchTooLarge(StudioError):
    """One request is over what a provider takes in a whole batch: it cannot be sent as a batch. Nothing changed."""


class TrainingBusy(StudioError):
    def __init__(self, run_id):
        self.run_id = run_id
        super().__init__(f"training run {run_id} is still running; stop it before starting another")


class ConfigError(StudioError, ValueError):
    """A config field out of range; the message names the field and the allowed values."""


class NeedsRecovery(StudioError):
    """A workspace whose write-ahead log cannot be replayed: opening it at its last checkpoint would drop the
    writes in that log, so it is not opened until the user says so. Nothing was changed."""

    def __init__(self, workspace, wal, checkpoint: str, cause):
        self.workspace, self.wal = workspace, wal
        super().__init__(
            f"the workspace {workspace} cannot be opened as it is: its write-ahead log {wal.name} "
            f"({wal.stat().st_size:,} bytes) cannot be replayed ({cause}). Opening it at its last checkpoint "
            f"({checkpoint}) loses every write in that log (tasks, answers, labels since then). Nothing was "
            "changed. To do that, keeping the log and a copy of the database aside: start again with --recover "
            "(python app.py --workspace W --recover, or python -m curation --workspace W --recover ...); or "
            "restore the workspace from a backup first")
