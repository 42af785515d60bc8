"""The workspace core: opening, migrating, locking and closing the DuckDB file, each thread's cursor,
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
from curation.store.batches import BatchesMixin
from curation.store.elicitation import ElicitationMixin
from curation.store.embeddings import EmbeddingsMixin
from curation.store.filtering import FilteringMixin
from curation.store.labels import LabelsMixin
from curation.store.records import RecordsMixin
from curation.store.review_pages import ReviewPagesMixin
from curation.store.review_queue import ReviewQueueMixin
from curation.store.runs import RunsMixin
from curation.store.schema import MIGRATIONS
from curation.store.sources import SourcesMixin

DB_NAME = "studio.duckdb"


class Store(RecordsMixin, LabelsMixin, ReviewPagesMixin, RunsMixin, FilteringMixin, ElicitationMixin,
            EmbeddingsMixin, ReviewQueueMixin, SourcesMixin, BatchesMixin):
    """An open workspace, safe to share between threads.

    Each thread runs its statements on its own cursor of `con` (a DuckDB cursor is a second connection to
    the same database), so a read never waits for a writer: it sees the last committed state. Writes and
    transactions still take one lock, `_lock`: DuckDB's optimistic concurrency would fail two threads that
    change the same rows with a conflict instead of making one wait, and a label batch reads, then writes.
    `con` is the connection the cursors come from (tests CHECKPOINT through it).

    The methods of each area live in its mixin; they reach the database only through the helpers below.
    """

    def __init__(self, workspace: str | os.PathLike, recover: bool = False):
        """recover: the user chose to open a workspace whose write-ahead log cannot be replayed at its last
        checkpoint (the writes in that log are set aside, not applied); without it such a workspace is
        refused with NeedsRecovery, and nothing is changed."""
        self.recover = bool(recover)
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._lock_file = _acquire_workspace_lock(self.workspace)
        self._lock = threading.RLock()  # held by every write and transaction
        # Held while a Batch API batch is uploaded or created: two threads (the UI's timer and a click) must not
        # make two batches of one; the workspace's file lock already keeps other processes out.
        self.batch_steps = threading.Lock()
        self._local = threading.local()  # this thread's cursor and whether it is inside a transaction
        self._cursors: dict[threading.Thread, duckdb.DuckDBPyConnection] = {}  # every thread's, to close them
        self._cursors_lock = threading.Lock()  # guards _cursors only; a reader never waits for a writer on it
        self.path = self.workspace / DB_NAME
        self.recovery_note: str | None = None  # set when a damaged WAL had to be set aside to open
        try:
            self.con = self._connect()
            self._migrate()
        except BaseException:
            if getattr(self, "con", None) is not None:
                self.con.close()
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
        with self._lock, self._cursors_lock:  # after any write in progress
            for cursor in self._cursors.values():
                cursor.close()
            self._cursors.clear()
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
            self._write("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, "
                        "applied_at TIMESTAMP NOT NULL DEFAULT now())")
            current = self._fetchone("SELECT coalesce(max(version), 0) FROM schema_version")[0]
            for version in range(current, len(MIGRATIONS)):
                with self.transaction() as con:
                    con.execute(MIGRATIONS[version])
                    con.execute("INSERT INTO schema_version (version) VALUES (?)", [version + 1])

    # ---- statements ---------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """The calling thread's cursor, made on its first statement."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is not None and self.con is not None:
            return cursor
        with self._cursors_lock:
            if self.con is None:
                raise StudioError(f"the workspace {self.workspace} is closed")
            # Threads come and go (a job's worker, the UI's request pool): drop the cursors of ended ones.
            for thread in [t for t in self._cursors if not t.is_alive()]:
                self._cursors.pop(thread).close()
            cursor = self.con.cursor()
            self._cursors[threading.current_thread()] = cursor
        self._local.cursor = cursor
        return cursor

    @contextlib.contextmanager
    def transaction(self):
        """Statements that commit together, on the calling thread's cursor, under the write lock."""
        with self._lock:
            con = self._cursor()
            con.execute("BEGIN TRANSACTION")
            self._local.in_transaction = True
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                self._local.in_transaction = False
            con.execute("COMMIT")

    @contextlib.contextmanager
    def _snapshot(self):
        """Reads that must agree with each other (a count and its page): one read-only transaction on the
        calling thread's cursor, without the lock. Inside this thread's own transaction, that one."""
        con = self._cursor()
        if getattr(self._local, "in_transaction", False):
            yield con
            return
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        finally:
            con.execute("ROLLBACK")  # it wrote nothing; this also ends a transaction a failed read aborted

    def _write(self, sql, params=()) -> list[tuple]:
        """One statement that changes the database, under the write lock; its rows (e.g. RETURNING)."""
        with self._lock:
            return self._cursor().execute(sql, list(params)).fetchall()

    def _fetchall(self, sql, params=()) -> list[tuple]:
        return self._cursor().execute(sql, list(params)).fetchall()

    def _fetchone(self, sql, params=()):
        return self._cursor().execute(sql, list(params)).fetchone()

    def _fetchdf(self, sql, params=()) -> pd.DataFrame:
        return self._cursor().execute(sql, list(params)).df()

    def _fetchdicts(self, sql, params=()) -> list[dict]:
        cur = self._cursor().execute(sql, list(params))
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
