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


class TrainingBusy(StudioError):
    def __init__(self, run_id):
        self.run_id = run_id
        super().__init__(f"training run {run_id} is still running; stop it before starting another")


class ConfigError(StudioError, ValueError):
    """A config field out of range; the message names the field and the allowed values."""
