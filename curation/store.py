"""The workspace: one DuckDB file, its schema and migrations, and every read and write of it.

This module is the only place that writes SQL. Callers get plain dicts, lists and DataFrames back.
One process owns a workspace for writing; a second one gets `WorkspaceInUse` naming the owner's PID.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from curation.errors import StudioError, WorkspaceInUse

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
]

REVIEW_STATUSES = ("pending", "approved", "rejected", "failed")
RUN_FINAL = ("completed", "failed", "stopped", "interrupted")

# A generation's review status: a failed teacher call is 'failed' whatever its label says.
_REVIEW_STATUS_SQL = "CASE WHEN g.status = 'error' THEN 'failed' ELSE coalesce(l.status, 'pending') END"
_REVIEW_FROM = "generations g JOIN tasks t ON t.id = g.task_id LEFT JOIN labels l ON l.generation_id = g.id"


@dataclass(frozen=True)
class ReviewFilter:
    """Which generations a Review page or a bulk action covers. Empty fields match everything."""

    status: str = ""
    search: str = ""

    def __post_init__(self):
        if self.status and self.status not in REVIEW_STATUSES:
            raise StudioError(f"status must be one of {', '.join(REVIEW_STATUSES)} (got {self.status!r})")

    def where(self) -> tuple[str, list]:
        clauses, params = [], []
        if self.status:
            clauses.append(f"{_REVIEW_STATUS_SQL} = ?")
            params.append(self.status)
        if self.search.strip():
            clauses.append("(t.instruction ILIKE ? OR coalesce(t.input, '') ILIKE ? "
                           "OR coalesce(g.response, '') ILIKE ? OR coalesce(l.edited_response, '') ILIKE ?)")
            params += [f"%{_escape_like(self.search.strip())}%"] * 4
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _escape_like(text: str) -> str:
    # ILIKE's wildcards typed by a user are meant literally; DuckDB's default escape is none, so
    # we map them to the single-char wildcard, which still matches the literal character.
    return text.replace("%", "_")


class Store:
    """An open workspace. Thread-safe: every statement runs under one lock on one connection."""

    def __init__(self, workspace: str | os.PathLike):
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._lock_file = _acquire_workspace_lock(self.workspace)
        self._lock = threading.RLock()
        self.path = self.workspace / DB_NAME
        try:
            self.con = duckdb.connect(str(self.path))
            self._migrate()
        except BaseException:
            self._lock_file.close()
            raise

    # ---- lifecycle ----------------------------------------------------------------------------
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

    # ---- tasks --------------------------------------------------------------------------------
    def add_tasks(self, tasks: list[dict]) -> list[int]:
        """Insert tasks (dicts with at least 'instruction') in one transaction; returns their ids."""
        cols = ("instruction", "input", "system_prompt", "source", "parent_id", "skill", "domain", "split")
        ids = []
        with self.transaction() as con:
            for task in tasks:
                row = [task.get(c) for c in cols]
                row[3] = row[3] or "seed"
                row[7] = row[7] or "train"
                ids.append(con.execute(
                    f"INSERT INTO tasks ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING id",
                    row).fetchone()[0])
        return ids

    def tasks(self, ids: list[int] | None = None, split: str | None = None) -> list[dict]:
        sql, params = "SELECT * FROM tasks", []
        clauses = []
        if ids is not None:
            clauses.append("list_contains(?, id)")
            params.append(list(ids))
        if split:
            clauses.append("split = ?")
            params.append(split)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return self._fetchdicts(sql + " ORDER BY id", params)

    def tasks_frame(self) -> pd.DataFrame:
        return self._fetchdf(
            "SELECT t.id, t.instruction, t.input, t.skill, t.domain, t.source, t.split, "
            "count(g.id) FILTER (WHERE g.status = 'ok') AS generations "
            "FROM tasks t LEFT JOIN generations g ON g.task_id = t.id GROUP BY ALL ORDER BY t.id")

    def count_tasks(self) -> int:
        return self._fetchone("SELECT count(*) FROM tasks")[0]

    # ---- generations --------------------------------------------------------------------------
    def ok_request_keys(self, keys: list[str]) -> set[str]:
        """The subset of `keys` that already has a stored successful response (a re-run skips these)."""
        if not keys:
            return set()
        with self._lock:
            rows = self.con.execute(
                "SELECT request_key FROM generations WHERE status = 'ok' AND list_contains(?, request_key)",
                [list(keys)]).fetchall()
        return {r[0] for r in rows}

    def record_generation(self, row: dict) -> int:
        """Store one teacher call (ok or error). A retry of a failed call replaces that failed row."""
        cols = ("task_id", "run_id", "request_key", "endpoint", "model", "messages", "params",
                "sample_index", "teacher_only_system", "response", "finish_reason", "prompt_tokens",
                "completion_tokens", "latency_s", "status", "error", "attempts")
        values = [row.get(c) for c in cols]
        values[5] = json.dumps(row["messages"], ensure_ascii=False)
        values[6] = json.dumps(row["params"], sort_keys=True)
        values[8] = bool(row.get("teacher_only_system", False))
        values[16] = row.get("attempts") or 1
        with self.transaction() as con:
            existing = con.execute("SELECT id, status, attempts FROM generations WHERE request_key = ?",
                                   [row["request_key"]]).fetchone()
            if existing is None:
                return con.execute(
                    f"INSERT INTO generations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                    "RETURNING id", values).fetchone()[0]
            gen_id, status, attempts = existing
            if status == "ok":
                return gen_id  # never overwrite a paid-for answer
            updates = {c: v for c, v in zip(cols, values) if c not in ("request_key", "task_id")}
            updates["attempts"] = attempts + (row.get("attempts") or 1)
            con.execute(f"UPDATE generations SET {', '.join(f'{c} = ?' for c in updates)}, created_at = now() "
                        "WHERE id = ?", [*updates.values(), gen_id])
            return gen_id

    def generation(self, gen_id: int) -> dict | None:
        rows = self._fetchdicts(
            f"SELECT g.*, t.instruction, t.input, t.skill, t.domain, t.split, {_REVIEW_STATUS_SQL} AS review_status, "
            f"l.edited_response, l.tags, l.note, l.reason FROM {_REVIEW_FROM} WHERE g.id = ?", [gen_id])
        if not rows:
            return None
        row = rows[0]
        row["messages"] = json.loads(row["messages"])
        row["params"] = json.loads(row["params"])
        return row

    def review_page(self, flt: ReviewFilter, page: int = 1, page_size: int = 25) -> tuple[pd.DataFrame, int]:
        """One page of generations (newest last) and the total matching the filter."""
        if page_size < 1 or page_size > 500:
            raise StudioError(f"page size must be between 1 and 500 (got {page_size})")
        where, params = flt.where()
        total = self._fetchone(f"SELECT count(*) FROM {_REVIEW_FROM}{where}", params)[0]
        page = max(1, int(page))
        frame = self._fetchdf(
            f"SELECT g.id, g.task_id, {_REVIEW_STATUS_SQL} AS status, left(t.instruction, 120) AS instruction, "
            "left(coalesce(l.edited_response, g.response, g.error), 200) AS response, "
            "l.edited_response IS NOT NULL AS edited, g.model, g.completion_tokens AS tokens "
            f"FROM {_REVIEW_FROM}{where} ORDER BY g.id LIMIT ? OFFSET ?",
            [*params, page_size, (page - 1) * page_size])
        return frame, total

    def matching_ids(self, flt: ReviewFilter) -> list[int]:
        where, params = flt.where()
        with self._lock:
            return [r[0] for r in self.con.execute(f"SELECT g.id FROM {_REVIEW_FROM}{where} ORDER BY g.id",
                                                   params).fetchall()]

    # ---- labels -------------------------------------------------------------------------------
    def set_label(self, gen_ids: list[int], status: str, edited_response: str | None = None,
                  reason: str | None = None) -> int:
        """Approve / reject / edit generations; the teacher's response itself is never changed.

        `edited_response=None` keeps any earlier edit; `reason` says why (e.g. "filter:refusal").
        Every change is one batch in label_events with the previous state, so `undo_batch` can revert it.
        Failed calls cannot be approved. Returns how many rows were labelled.
        """
        if status not in ("pending", "approved", "rejected"):
            raise StudioError(f"label status must be pending, approved or rejected (got {status!r})")
        gen_ids = sorted({int(i) for i in gen_ids})
        if not gen_ids:
            return 0
        with self.transaction() as con:
            self._check_labelable(con, gen_ids, status)
            batch = con.execute("SELECT nextval('label_batch_seq')").fetchone()[0]
            con.execute("""
                INSERT INTO label_events (generation_id, status, edited_response, reason, batch_id,
                                          previous_status, previous_reason)
                SELECT g.id, ?, ?, ?, ?, coalesce(l.status, 'pending'), l.reason
                FROM generations g LEFT JOIN labels l ON l.generation_id = g.id
                WHERE list_contains(?, g.id)""", [status, edited_response, reason, batch, gen_ids])
            con.execute("""
                INSERT INTO labels (generation_id, status, edited_response, reason, updated_at)
                SELECT unnest(?), ?, ?, ?, now()
                ON CONFLICT (generation_id) DO UPDATE SET status = excluded.status,
                    edited_response = coalesce(excluded.edited_response, labels.edited_response),
                    reason = excluded.reason, updated_at = now()""", [gen_ids, status, edited_response, reason])
        return len(gen_ids)

    @staticmethod
    def _check_labelable(con, gen_ids, status):
        known = con.execute("SELECT id, status FROM generations WHERE list_contains(?, id)", [gen_ids]).fetchall()
        missing = set(gen_ids) - {r[0] for r in known}
        if missing:
            raise StudioError(f"no generation with id {sorted(missing)[:5]}")
        if status == "approved":
            bad = sorted(r[0] for r in known if r[1] != "ok")
            if bad:
                raise StudioError(f"generation {bad[:5]} failed at the teacher and has no response to approve")

    def last_label_batch(self) -> int | None:
        return self._fetchone("SELECT max(batch_id) FROM label_events")[0]

    def undo_batch(self, batch_id: int) -> int:
        """Put every row of a label batch back to its status and reason before it; edits stay in history."""
        with self.transaction() as con:
            rows = con.execute("SELECT generation_id, previous_status, previous_reason FROM label_events "
                               "WHERE batch_id = ?", [batch_id]).fetchall()
            if not rows:
                raise StudioError(f"no label batch {batch_id} to undo")
            for gen_id, prev_status, prev_reason in rows:
                con.execute("UPDATE labels SET status = ?, reason = ?, updated_at = now() WHERE generation_id = ?",
                            [prev_status, prev_reason, gen_id])
            undo = con.execute("SELECT nextval('label_batch_seq')").fetchone()[0]
            con.execute("""
                INSERT INTO label_events (generation_id, status, reason, batch_id, previous_status, previous_reason)
                SELECT generation_id, previous_status, 'undo batch ' || ?, ?, status, reason
                FROM label_events WHERE batch_id = ?""", [batch_id, undo, batch_id])
        return len(rows)

    def edit_response(self, gen_id: int, text: str) -> None:
        if not text.strip():
            raise StudioError("an edited response cannot be empty; reject the row instead")
        self.set_label([gen_id], "approved", edited_response=text)

    def label_filter(self, flt: ReviewFilter, status: str) -> int:
        """Label every generation matching the filter; failed calls are skipped when approving."""
        if status == "approved":
            if flt.status == "failed":
                return 0
            where, params = flt.where()
            where = (where + " AND " if where else " WHERE ") + "g.status = 'ok'"
            with self._lock:
                ids = [r[0] for r in self.con.execute(f"SELECT g.id FROM {_REVIEW_FROM}{where}", params).fetchall()]
        else:
            ids = self.matching_ids(flt)
        return self.set_label(ids, status)

    def label_history(self, gen_id: int) -> list[dict]:
        return self._fetchdicts("SELECT status, edited_response, reason, batch_id, changed_at FROM label_events "
                                "WHERE generation_id = ? "
                                "ORDER BY id", [gen_id])

    # ---- training snapshot --------------------------------------------------------------------
    def approved_examples(self) -> list[dict]:
        """Approved rows of train-split tasks as chat examples: the exact messages sent + the answer.

        The edited response wins over the teacher's; a system prompt marked teacher-only is left out.
        """
        rows = self._fetchdicts(
            f"SELECT g.id, g.task_id, g.messages, g.teacher_only_system, coalesce(l.edited_response, g.response) AS answer "
            f"FROM {_REVIEW_FROM} WHERE l.status = 'approved' AND g.status = 'ok' AND t.split = 'train' ORDER BY g.id")
        examples = []
        for r in rows:
            messages = json.loads(r["messages"])
            if r["teacher_only_system"]:
                messages = [m for m in messages if m["role"] != "system"]
            examples.append({"generation_id": r["id"], "task_id": r["task_id"],
                             "messages": messages + [{"role": "assistant", "content": r["answer"]}]})
        return examples

    # ---- stats --------------------------------------------------------------------------------
    def stats(self) -> dict:
        by_status = dict(self._fetchone(
            f"SELECT map(list(status), list(n)) FROM (SELECT {_REVIEW_STATUS_SQL} AS status, count(*) AS n "
            f"FROM {_REVIEW_FROM} GROUP BY 1)")[0] or {})
        tokens = self._fetchone("SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
                                "FROM generations")
        return {"tasks": self.count_tasks(),
                "generations": sum(by_status.values()),
                "by_status": {s: int(by_status.get(s, 0)) for s in REVIEW_STATUSES},
                "prompt_tokens": int(tokens[0]), "completion_tokens": int(tokens[1])}

    # ---- runs ---------------------------------------------------------------------------------
    def start_run(self, kind: str, config: dict, run_dir: str | None = None, pid: int | None = None) -> int:
        return self._fetchone("INSERT INTO runs (kind, config, status, run_dir, pid) VALUES (?, ?, 'running', ?, ?) "
                              "RETURNING id", [kind, json.dumps(config, sort_keys=True, default=str), run_dir, pid])[0]

    def update_run(self, run_id: int, **fields) -> None:
        allowed = {"status", "metrics", "run_dir", "pid", "error", "config"}
        if not fields or set(fields) - allowed:
            raise StudioError(f"update_run takes {sorted(allowed)}")
        for key in ("metrics", "config"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key], sort_keys=True, default=str)
        sets = ", ".join(f"{k} = ?" for k in fields)
        if fields.get("status") in RUN_FINAL:
            sets += ", finished_at = now()"
        with self._lock:
            self.con.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*fields.values(), run_id])

    def run(self, run_id: int) -> dict | None:
        rows = self._fetchdicts("SELECT * FROM runs WHERE id = ?", [run_id])
        return _decode_run(rows[0]) if rows else None

    def runs(self, kind: str | None = None) -> list[dict]:
        sql, params = "SELECT * FROM runs", []
        if kind:
            sql, params = sql + " WHERE kind = ?", [kind]
        return [_decode_run(r) for r in self._fetchdicts(sql + " ORDER BY id DESC", params)]

    def mark_interrupted_runs(self) -> list[int]:
        """Runs left 'running' by a process that died; called when a workspace is opened by its owner."""
        with self._lock:
            rows = self.con.execute("UPDATE runs SET status = 'interrupted', finished_at = now() "
                                    "WHERE status = 'running' RETURNING id").fetchall()
        return [r[0] for r in rows]


def _decode_run(row: dict) -> dict:
    row["config"] = json.loads(row["config"]) if row["config"] else {}
    row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else {}
    return row


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
