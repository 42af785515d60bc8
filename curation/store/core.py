"""The workspace core: the schema and its migrations, opening, locking and closing the DuckDB file,
transactions, and the `Store` class that combines one mixin per area of the workspace.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd

from curation.errors import NeedsRecovery, StudioError, WorkspaceInUse
from curation.store.elicitation import ElicitationMixin
from curation.store.embeddings import EmbeddingsMixin
from curation.store.filtering import FilteringMixin
from curation.store.records import RecordsMixin
from curation.store.review_queue import ReviewQueueMixin
from curation.store.runs import RunsMixin
from curation.store.sources import SourcesMixin

DB_NAME = "studio.duckdb"

# Each entry migrates the schema from version i to i+1. Append only; never edit a shipped entry.
MIGRATIONS = [
    """
    CREATE SEQUENCE task_id_seq START 1;
    CREATE TABLE tasks (
        id BIGINT PRIMARY KEY DEFAULT nextval('task_id_seq'),
        instruction VARCHAR NOT NULL,
        input VARCHAR,
        system_prompt VARCHAR,
        source VARCHAR NOT NULL DEFAULT 'seed',
        parent_id BIGINT,
        skill VARCHAR,
        domain VARCHAR,
        split VARCHAR NOT NULL DEFAULT 'train',
        created_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE SEQUENCE generation_id_seq START 1;
    CREATE TABLE generations (
        id BIGINT PRIMARY KEY DEFAULT nextval('generation_id_seq'),
        task_id BIGINT NOT NULL,
        run_id BIGINT,
        request_key VARCHAR NOT NULL UNIQUE,
        endpoint VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        messages VARCHAR NOT NULL,
        params VARCHAR NOT NULL,
        sample_index INTEGER NOT NULL,
        teacher_only_system BOOLEAN NOT NULL DEFAULT false,
        response VARCHAR,
        finish_reason VARCHAR,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        latency_s DOUBLE,
        status VARCHAR NOT NULL,
        error VARCHAR,
        attempts INTEGER NOT NULL DEFAULT 1,
        created_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE TABLE labels (
        generation_id BIGINT PRIMARY KEY,
        status VARCHAR NOT NULL,
        edited_response VARCHAR,
        tags VARCHAR,
        note VARCHAR,
        updated_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE SEQUENCE label_event_id_seq START 1;
    CREATE TABLE label_events (
        id BIGINT PRIMARY KEY DEFAULT nextval('label_event_id_seq'),
        generation_id BIGINT NOT NULL,
        status VARCHAR NOT NULL,
        edited_response VARCHAR,
        changed_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE SEQUENCE judgment_id_seq START 1;
    CREATE TABLE judgments (
        id BIGINT PRIMARY KEY DEFAULT nextval('judgment_id_seq'),
        generation_id BIGINT NOT NULL,
        judge_model VARCHAR NOT NULL,
        score DOUBLE,
        rationale VARCHAR,
        raw_output VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE TABLE embeddings (
        item_kind VARCHAR NOT NULL,
        item_id BIGINT NOT NULL,
        model VARCHAR NOT NULL,
        content_hash VARCHAR NOT NULL,
        vector FLOAT[] NOT NULL,
        PRIMARY KEY (item_kind, item_id, model)
    );
    CREATE SEQUENCE run_id_seq START 1;
    CREATE TABLE runs (
        id BIGINT PRIMARY KEY DEFAULT nextval('run_id_seq'),
        kind VARCHAR NOT NULL,
        config VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        started_at TIMESTAMP NOT NULL DEFAULT now(),
        finished_at TIMESTAMP,
        metrics VARCHAR,
        run_dir VARCHAR,
        pid INTEGER,
        error VARCHAR
    );
    """,
    # 2: reasons and undo for labels (dedupe/filters mark rows with why), logprobs, checkable tasks,
    # pairwise judgments.
    """
    ALTER TABLE labels ADD COLUMN reason VARCHAR;
    ALTER TABLE label_events ADD COLUMN reason VARCHAR;
    ALTER TABLE label_events ADD COLUMN batch_id BIGINT;
    ALTER TABLE label_events ADD COLUMN previous_status VARCHAR;
    ALTER TABLE label_events ADD COLUMN previous_reason VARCHAR;
    CREATE SEQUENCE label_batch_seq START 1;
    ALTER TABLE generations ADD COLUMN logprobs VARCHAR;
    ALTER TABLE tasks ADD COLUMN expected VARCHAR;
    ALTER TABLE judgments ADD COLUMN kind VARCHAR DEFAULT 'score';
    ALTER TABLE judgments ADD COLUMN other_generation_id BIGINT;
    ALTER TABLE judgments ADD COLUMN request_key VARCHAR;
    """,
    # 3: knowledge elicitation — a per-call ledger (every planned teacher call with its state, attempts,
    # error, usage, cost and raw output), an editable price table, the method of each generation, and
    # usage/cost per run.
    """
    CREATE TABLE ledger (
        request_key VARCHAR PRIMARY KEY,
        run_id BIGINT,
        method VARCHAR NOT NULL,
        stage VARCHAR,
        task_id BIGINT,
        generation_id BIGINT,
        other_generation_id BIGINT,
        endpoint VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        messages VARCHAR NOT NULL,
        params VARCHAR NOT NULL,
        sample_index INTEGER NOT NULL DEFAULT 0,
        context VARCHAR,
        state VARCHAR NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        error VARCHAR,
        raw_output VARCHAR,
        result VARCHAR,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        cost_usd DOUBLE,
        latency_s DOUBLE,
        created_at TIMESTAMP NOT NULL DEFAULT now(),
        updated_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE TABLE prices (
        model VARCHAR PRIMARY KEY,
        input_usd_per_mtok DOUBLE NOT NULL,
        output_usd_per_mtok DOUBLE NOT NULL,
        updated_at TIMESTAMP NOT NULL DEFAULT now()
    );
    INSERT INTO prices (model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('smollm2-135m-instruct', 0, 0);
    ALTER TABLE generations ADD COLUMN method VARCHAR DEFAULT 'label';
    ALTER TABLE runs ADD COLUMN prompt_tokens BIGINT;
    ALTER TABLE runs ADD COLUMN completion_tokens BIGINT;
    ALTER TABLE runs ADD COLUMN cost_usd DOUBLE;
    """,
    # 4: distillation — the rows each training run was given (id + content hash), so two runs' data
    # can be diffed and a run reproduced even after the run dir is gone.
    """
    CREATE TABLE run_rows (
        run_id BIGINT NOT NULL,
        row_id VARCHAR NOT NULL,
        content_hash VARCHAR NOT NULL,
        PRIMARY KEY (run_id, row_id)
    );
    """,
    # 5: the survey's further skills (issue 16) — documents cut into chunks, each question task grounded
    # in one; edits of any turn of a conversation (the original kept, as for answers).
    """
    CREATE SEQUENCE chunk_id_seq START 1;
    CREATE TABLE chunks (
        id BIGINT PRIMARY KEY DEFAULT nextval('chunk_id_seq'),
        document VARCHAR NOT NULL,
        document_hash VARCHAR NOT NULL,
        ordinal INTEGER NOT NULL,
        text VARCHAR NOT NULL,
        char_start INTEGER,
        char_end INTEGER,
        created_at TIMESTAMP NOT NULL DEFAULT now()
    );
    ALTER TABLE tasks ADD COLUMN chunk_id BIGINT;
    ALTER TABLE labels ADD COLUMN edited_messages VARCHAR;
    ALTER TABLE label_events ADD COLUMN edited_messages VARCHAR;
    """,
]


class Store(RecordsMixin, RunsMixin, FilteringMixin, ElicitationMixin, EmbeddingsMixin, ReviewQueueMixin,
            SourcesMixin):
    """An open workspace. Thread-safe: every statement runs under one lock on one connection.

    The methods of each area live in its mixin; they all share `con`, `_lock` and the helpers below.
    """

    def __init__(self, workspace: str | os.PathLike, recover: bool = False):
        """recover: the user chose to open a workspace whose write-ahead log cannot be replayed at its last
        checkpoint (the writes in that log are set aside, not applied); without it such a workspace is
        refused with NeedsRecovery, and nothing is changed."""
        self.recover = bool(recover)
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._lock_file = _acquire_workspace_lock(self.workspace)
        self._lock = threading.RLock()
        self.path = self.workspace / DB_NAME
        self.recovery_note: str | None = None  # set when a damaged WAL had to be set aside to open
        try:
            self.con = self._connect()
            self._migrate()
        except BaseException:
            self._lock_file.close()
            raise

    # ---- lifecycle ----------------------------------------------------------------------------
    def _connect(self):
        """Open the file. A WAL that cannot be replayed (a crash mid-write, a full disk) is refused with
        NeedsRecovery, saying what would be lost, unless the user chose `recover`: then the WAL and a copy
        of the database are kept aside (never deleted), the last checkpoint is opened, and what happened is
        appended to the workspace's recovery.log."""
        try:
            return duckdb.connect(str(self.path))
        except duckdb.Error as exc:
            wal = self.path.with_name(self.path.name + ".wal")
            if not wal.exists() or "WAL" not in str(exc):
                raise StudioError(f"cannot open the workspace database {self.path}: {exc}") from exc
            checkpoint = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.path.stat().st_mtime))
            if not self.recover:
                raise NeedsRecovery(self.workspace, wal, checkpoint, exc) from exc
            stamp = time.strftime("%Y%m%d-%H%M%S")
            shutil.copy2(self.path, self.path.with_name(f"{self.path.name}.damaged-{stamp}"))
            kept = wal.rename(wal.with_name(f"{wal.name}.damaged-{stamp}"))
            self.recovery_note = (f"the write-ahead log could not be replayed ({exc}); as you chose (--recover), "
                                  f"it was kept as {kept.name} ({kept.stat().st_size:,} bytes of writes not applied) "
                                  f"and the workspace opened at its last checkpoint ({checkpoint})")
            with open(self.workspace / "recovery.log", "a", encoding="utf-8") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self.recovery_note}\n")
            return duckdb.connect(str(self.path))

    def close(self):
        with self._lock:
            if self.con is not None:
                self.con.close()
                self.con = None
            if not self._lock_file.closed:
                self._lock_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def schema_version(self) -> int:
        return self._fetchone("SELECT max(version) FROM schema_version")[0] or 0

    def _migrate(self):
        with self._lock:
            self.con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, "
                             "applied_at TIMESTAMP NOT NULL DEFAULT now())")
            current = self.con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            for version in range(current, len(MIGRATIONS)):
                with self.transaction():
                    self.con.execute(MIGRATIONS[version])
                    self.con.execute("INSERT INTO schema_version (version) VALUES (?)", [version + 1])

    @contextlib.contextmanager
    def transaction(self):
        with self._lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    def _fetchone(self, sql, params=()):
        with self._lock:
            return self.con.execute(sql, list(params)).fetchone()

    def _fetchdf(self, sql, params=()) -> pd.DataFrame:
        with self._lock:
            return self.con.execute(sql, list(params)).df()

    def _fetchdicts(self, sql, params=()) -> list[dict]:
        with self._lock:
            cur = self.con.execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]


def _acquire_workspace_lock(workspace: Path):
    lock_path = workspace / ".lock"
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "unknown"
        handle.close()
        raise WorkspaceInUse(workspace, pid) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
