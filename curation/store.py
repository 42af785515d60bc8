"""The workspace: one DuckDB file, its schema and migrations, and every read and write of it.

This module is the only place that writes SQL. Callers get plain dicts, lists and DataFrames back.
One process owns a workspace for writing; a second one gets `WorkspaceInUse` naming the owner's PID.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
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
]

REVIEW_STATUSES = ("pending", "approved", "rejected", "failed")
# Review table orders; each sorts on generations' own columns, so paging stays on the narrow query.
REVIEW_SORTS = {"id": "g.id", "newest": "g.id DESC", "longest": "g.completion_tokens DESC NULLS LAST, g.id",
                "shortest": "g.completion_tokens ASC NULLS LAST, g.id", "slowest": "g.latency_s DESC NULLS LAST, g.id",
                "task": "g.task_id, g.id"}
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
        self.recovery_note: str | None = None  # set when a damaged WAL had to be set aside to open
        try:
            self.con = self._connect()
            self._migrate()
        except BaseException:
            self._lock_file.close()
            raise

    # ---- lifecycle ----------------------------------------------------------------------------
    def _connect(self):
        """Open the file; a WAL that cannot be replayed is kept aside and the last checkpoint opened.

        A corrupt WAL (a crash mid-write, a full disk) otherwise makes every start fail the same way.
        The damaged files are copied, never deleted, so nothing is thrown away for good.
        """
        try:
            return duckdb.connect(str(self.path))
        except duckdb.Error as exc:
            wal = self.path.with_name(self.path.name + ".wal")
            if not wal.exists() or "WAL" not in str(exc):
                raise StudioError(f"cannot open the workspace database {self.path}: {exc}") from exc
            stamp = time.strftime("%Y%m%d-%H%M%S")
            shutil.copy2(self.path, self.path.with_name(f"{self.path.name}.damaged-{stamp}"))
            kept = wal.rename(wal.with_name(f"{wal.name}.damaged-{stamp}"))
            self.recovery_note = (f"the write-ahead log could not be replayed ({exc}); it was kept as {kept.name} "
                                  f"and the workspace opened at its last checkpoint")
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

    def set_split(self, task_ids: list[int], split: str) -> int:
        """Move tasks to the train or eval split. Eval tasks never reach a training snapshot or export."""
        if split not in ("train", "eval"):
            raise StudioError(f"split must be train or eval (got {split!r})")
        ids = sorted({int(i) for i in task_ids})
        with self.transaction() as con:
            found = {r[0] for r in con.execute("SELECT id FROM tasks WHERE list_contains(?, id)", [ids]).fetchall()}
            if set(ids) - found:
                raise StudioError(f"no task with id {sorted(set(ids) - found)[:5]}")
            con.execute("UPDATE tasks SET split = ? WHERE list_contains(?, id)", [split, ids])
        return len(ids)

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

    def review_page(self, flt: ReviewFilter, page: int = 1, page_size: int = 25,
                    sort: str = "id") -> tuple[pd.DataFrame, int]:
        """One page of generations and the total matching the filter, ordered by `sort` (see REVIEW_SORTS).

        The count and the page's ids come from the narrowest join the filter needs; the shown columns are
        then read for those ids alone (on 1M rows this is ms instead of ~0.5 s; see bench/browse.py).
        """
        if page_size < 1 or page_size > 500:
            raise StudioError(f"page size must be between 1 and 500 (got {page_size})")
        page = max(1, int(page))
        if sort not in REVIEW_SORTS:
            raise StudioError(f"sort must be one of {', '.join(REVIEW_SORTS)} (got {sort!r})")
        ids_sql, params = self._review_ids_sql(flt)
        with self._lock:
            total = self.con.execute(f"SELECT count(*) FROM ({ids_sql})", params).fetchone()[0]
            ids = [r[0] for r in self.con.execute(f"{ids_sql} ORDER BY {REVIEW_SORTS[sort]} LIMIT ? OFFSET ?",
                                                  [*params, page_size, (page - 1) * page_size]).fetchall()]
        # The page's rows first, then only their task and label: a join DuckDB would build on all of
        # tasks and labels costs ~50 ms at 1M rows.
        frame = self._fetchdf(
            "WITH page AS MATERIALIZED (SELECT * FROM generations WHERE list_contains(?::BIGINT[], id)) "
            f"SELECT g.id, g.task_id, {_REVIEW_STATUS_SQL} AS status, left(t.instruction, 120) AS instruction, "
            "left(coalesce(l.edited_response, g.response, g.error), 200) AS response, "
            "l.edited_response IS NOT NULL AS edited, g.model, g.completion_tokens AS tokens "
            "FROM page g LEFT JOIN (SELECT * FROM tasks WHERE id IN (SELECT task_id FROM page)) t ON t.id = g.task_id "
            "LEFT JOIN (SELECT * FROM labels WHERE generation_id IN (SELECT id FROM page)) l ON l.generation_id = g.id "
            "ORDER BY list_position(?::BIGINT[], g.id)", [ids, ids])
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
            count = con.execute("SELECT count(*) FROM label_events WHERE batch_id = ?", [batch_id]).fetchone()[0]
            if not count:
                raise StudioError(f"no label batch {batch_id} to undo")
            # One set-based UPDATE: a row-by-row loop took a minute for a 50k-row filter.
            con.execute("UPDATE labels SET status = e.previous_status, reason = e.previous_reason, updated_at = now() "
                        "FROM label_events e WHERE e.batch_id = ? AND labels.generation_id = e.generation_id",
                        [batch_id])
            undo = con.execute("SELECT nextval('label_batch_seq')").fetchone()[0]
            con.execute("""
                INSERT INTO label_events (generation_id, status, reason, batch_id, previous_status, previous_reason)
                SELECT generation_id, previous_status, 'undo batch ' || ?, ?, status, reason
                FROM label_events WHERE batch_id = ?""", [batch_id, undo, batch_id])
        return count

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

    # ---- filters, ranking & stats -------------------------------------------------------------
    # Mean of the 1-10 'score' judgments per generation; pairwise judgments are not scores.
    _JUDGE_MEAN_SQL = ("SELECT generation_id, avg(score) AS judge_score, count(*) AS judgments FROM judgments "
                       "WHERE coalesce(kind, 'score') = 'score' AND score IS NOT NULL GROUP BY generation_id")
    _BREAKDOWN_COLUMNS = {"skill": "t.skill", "domain": "t.domain", "teacher": "g.model"}
    # table -> (id sequence, insertable columns); labels are keyed by generation_id.
    _BULK_TABLES = {
        "tasks": ("task_id_seq", ("instruction", "input", "system_prompt", "source", "parent_id", "skill",
                                  "domain", "split", "expected")),
        "generations": ("generation_id_seq", ("task_id", "run_id", "request_key", "endpoint", "model", "messages",
                                              "params", "sample_index", "teacher_only_system", "response",
                                              "finish_reason", "prompt_tokens", "completion_tokens", "latency_s",
                                              "status", "error", "attempts")),
        "judgments": ("judgment_id_seq", ("generation_id", "judge_model", "score", "rationale", "raw_output",
                                          "kind", "other_generation_id", "request_key")),
        "labels": (None, ("generation_id", "status", "edited_response", "tags", "note", "reason")),
    }

    def candidate_rows(self, flt: ReviewFilter | None = None,
                       statuses: tuple[str, ...] = ("pending", "approved")) -> list[dict]:
        """Successful generations whose review status is in `statuses` and that match `flt`, oldest first.

        Keys: id, task_id, instruction, input, skill, domain, split, model, status, response (the edited
        one wins), edited, finish_reason, completion_tokens, judge_score (mean, None when unjudged), judgments.
        """
        where, params = (flt or ReviewFilter()).where()
        where = ((where + " AND " if where else " WHERE ")
                 + f"g.status = 'ok' AND list_contains(?, {_REVIEW_STATUS_SQL})")
        return self._fetchdicts(
            "SELECT g.id, g.task_id, t.instruction, t.input, t.skill, t.domain, t.split, g.model, "
            f"{_REVIEW_STATUS_SQL} AS status, coalesce(l.edited_response, g.response) AS response, "
            "l.edited_response IS NOT NULL AS edited, g.finish_reason, g.completion_tokens, "
            "js.judge_score, coalesce(js.judgments, 0) AS judgments "
            f"FROM {_REVIEW_FROM} LEFT JOIN ({self._JUDGE_MEAN_SQL}) js ON js.generation_id = g.id"
            f"{where} ORDER BY g.id", [*params, list(statuses)])

    # `_REVIEW_STATUS_SQL = status` written per status so that paging joins only the table it needs.
    _STATUS_IDS_SQL = {
        "failed": "g.status = 'error'",
        "approved": "g.status <> 'error' AND g.id IN (SELECT generation_id FROM labels WHERE status = 'approved')",
        "rejected": "g.status <> 'error' AND g.id IN (SELECT generation_id FROM labels WHERE status = 'rejected')",
        "pending": "g.status <> 'error' AND g.id NOT IN (SELECT generation_id FROM labels WHERE status <> 'pending')",
    }

    def _review_ids_sql(self, flt: ReviewFilter) -> tuple[str, list]:
        """`SELECT g.id` of the generations matching `flt` (for review_page): the full join only for a
        keyword search; a status needs labels alone; no filter reads the generations table alone."""
        if flt.search.strip():
            where, params = flt.where()
            return f"SELECT g.id FROM {_REVIEW_FROM}{where}", params
        if flt.status:
            return f"SELECT g.id FROM generations g WHERE {self._STATUS_IDS_SQL[flt.status]}", []
        return "SELECT g.id FROM generations g", []

    def label_batch(self, gen_ids: list[int], status: str, reason: str | None = None) -> int | None:
        """`set_label` that returns its batch id (None when there was nothing to label), for an exact undo."""
        with self._lock:  # re-entrant: no other label batch can slip in between the two calls
            if not self.set_label(gen_ids, status, reason=reason):
                return None
            return self.last_label_batch()

    def eval_tasks(self) -> list[dict]:
        """Tasks of the eval split (id, instruction, input, expected): what training rows must not leak."""
        return self._fetchdicts("SELECT id, instruction, input, expected FROM tasks WHERE split = 'eval' ORDER BY id")

    def mean_judge_scores(self, gen_ids: list[int]) -> dict[int, float]:
        """Mean 'score' judgment per generation; unjudged generations are absent."""
        rows = self._fetchdicts(f"SELECT * FROM ({self._JUDGE_MEAN_SQL}) WHERE list_contains(?, generation_id)",
                                [[int(i) for i in gen_ids]])
        return {r["generation_id"]: float(r["judge_score"]) for r in rows}

    def status_counts_by(self, column: str) -> pd.DataFrame:
        """Generations per (key, review status) for column skill / domain / teacher; key NULL when untagged."""
        if column not in self._BREAKDOWN_COLUMNS:
            raise StudioError(f"count by one of {', '.join(self._BREAKDOWN_COLUMNS)} (got {column!r})")
        return self._fetchdf(f"SELECT {self._BREAKDOWN_COLUMNS[column]} AS key, {_REVIEW_STATUS_SQL} AS status, "
                             f"count(*) AS n FROM {_REVIEW_FROM} GROUP BY ALL ORDER BY ALL")

    def task_counts_by(self, column: str) -> pd.DataFrame:
        """Tasks per skill or domain (key NULL when untagged)."""
        if column not in ("skill", "domain"):
            raise StudioError(f"count tasks by skill or domain (got {column!r})")
        return self._fetchdf(f"SELECT {column} AS key, count(*) AS n FROM tasks GROUP BY ALL ORDER BY ALL")

    def response_measures(self) -> pd.DataFrame:
        """One row per successful generation: status, chars and tokens of the response, mean judge score.

        tokens is the teacher's completion_tokens, NULL for an edited response (the count no longer applies).
        """
        return self._fetchdf(
            f"SELECT {_REVIEW_STATUS_SQL} AS status, length(coalesce(l.edited_response, g.response, '')) AS chars, "
            "CASE WHEN l.edited_response IS NULL THEN g.completion_tokens END AS tokens, js.judge_score "
            f"FROM {_REVIEW_FROM} LEFT JOIN ({self._JUDGE_MEAN_SQL}) js ON js.generation_id = g.id "
            "WHERE g.status = 'ok'")

    def bulk_add(self, table: str, frame: pd.DataFrame) -> list[int]:
        """Insert a DataFrame of rows in one statement (imports, synthetic workspaces); returns the new ids.

        messages and params of generations are JSON text. No label history is written for labels, so a
        bulk-inserted label cannot be undone; use `set_label` for changes a user makes.
        """
        if table not in self._BULK_TABLES:
            raise StudioError(f"bulk insert works on {', '.join(self._BULK_TABLES)} (got {table!r})")
        sequence, allowed = self._BULK_TABLES[table]
        unknown = [c for c in frame.columns if c not in allowed]
        if unknown:
            raise StudioError(f"{table} has no column {unknown}; allowed: {', '.join(allowed)}")
        cols = ", ".join(frame.columns)
        with self.transaction() as con:
            if sequence is None:
                ids = [int(i) for i in frame["generation_id"]]
                rows, id_col = frame, ""
            else:
                ids = sorted(r[0] for r in con.execute(f"SELECT nextval('{sequence}') FROM range(?)",
                                                       [len(frame)]).fetchall())
                rows, id_col = frame.assign(id=ids), "id, "
            con.register("_bulk_rows", rows)
            try:
                con.execute(f"INSERT INTO {table} ({id_col}{cols}) SELECT {id_col}{cols} FROM _bulk_rows")
            finally:
                con.unregister("_bulk_rows")
        return ids

    # ---- elicitation --------------------------------------------------------------------------
    # Every teacher call of an elicitation job has one ledger row, keyed by its request key: planned
    # 'pending', then 'ok' or 'failed' (last error kept); a failed call queued again is 'retried'.
    # A call's ledger row and what the method made of it are committed in one transaction, so a job
    # killed at any point leaves no answer that the ledger does not count as paid for.
    _LEDGER_COLS = ("request_key", "run_id", "method", "stage", "task_id", "generation_id", "other_generation_id",
                    "endpoint", "model", "messages", "params", "sample_index", "context")
    _LEDGER_JSON = ("messages", "params", "context", "result")
    LEDGER_STATES = ("pending", "ok", "failed", "retried")

    def done_request_keys(self, keys: list[str]) -> set[str]:
        """The subset of `keys` already answered: ok in the ledger, an ok generation, or a judgment."""
        if not keys:
            return set()
        keys = list(keys)
        with self._lock:
            rows = self.con.execute(
                "SELECT request_key FROM ledger WHERE state = 'ok' AND list_contains($1, request_key) UNION "
                "SELECT request_key FROM generations WHERE status = 'ok' AND list_contains($1, request_key) UNION "
                "SELECT request_key FROM judgments WHERE request_key IS NOT NULL AND list_contains($1, request_key)",
                [keys]).fetchall()
        return {r[0] for r in rows}

    def plan_ledger(self, run_id: int, calls: list[dict]) -> None:
        """Enter calls about to be sent: new ones 'pending', failed ones 'retried'; all now of `run_id`."""
        if not calls:
            return
        rows = []
        for c in calls:
            row = [c.get(col) for col in self._LEDGER_COLS]
            row[1] = run_id
            for i, col in enumerate(self._LEDGER_COLS):
                if col in self._LEDGER_JSON:
                    row[i] = json.dumps(row[i], ensure_ascii=False, sort_keys=col == "params")
            rows.append(row)
        frame = pd.DataFrame(rows, columns=list(self._LEDGER_COLS))
        cols = ", ".join(self._LEDGER_COLS)
        with self.transaction() as con:
            con.register("_ledger_plan", frame)
            try:
                con.execute(f"INSERT INTO ledger ({cols}) SELECT {cols} FROM _ledger_plan ON CONFLICT (request_key) "
                            "DO UPDATE SET run_id = excluded.run_id, updated_at = now(), state = CASE "
                            "WHEN ledger.state = 'failed' THEN 'retried' ELSE ledger.state END")
            finally:
                con.unregister("_ledger_plan")

    def commit_call(self, request_key: str, result: dict, generation: dict | None = None,
                    judgment: dict | None = None, new_tasks: list[dict] | None = None,
                    outcome: dict | None = None, raw_output: str | None = None) -> dict:
        """Store one finished call atomically: its ledger row (ok / failed, attempts, error, usage, cost)
        and what the method made of it — a generation, a judgment, new tasks. Returns the new ids.

        The ledger row must have been planned (`plan_ledger`). A judgment whose request key is already
        stored is not stored twice; an ok generation is never overwritten.
        """
        ids: dict = {}
        with self.transaction() as con:
            if generation is not None:
                ids["generation_id"] = self._upsert_generation(con, generation)
            if judgment is not None:
                found = con.execute("SELECT id FROM judgments WHERE request_key = ?", [request_key]).fetchone()
                ids["judgment_id"] = found[0] if found else con.execute(
                    "INSERT INTO judgments (generation_id, judge_model, score, rationale, raw_output, kind, "
                    "other_generation_id, request_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [judgment["generation_id"], judgment["judge_model"], judgment.get("score"),
                     judgment.get("rationale"), judgment.get("raw_output"), judgment.get("kind", "score"),
                     judgment.get("other_generation_id"), request_key]).fetchone()[0]
            if new_tasks:
                cols = ("instruction", "input", "system_prompt", "source", "parent_id", "skill", "domain", "split")
                ids["task_ids"] = [con.execute(
                    f"INSERT INTO tasks ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING id",
                    [t.get(c) for c in cols[:7]] + [t.get("split") or "train"]).fetchone()[0] for t in new_tasks]
            state = "ok" if result["status"] == "ok" else "failed"
            summary = {**(outcome or {}), **ids}
            updated = con.execute(
                "UPDATE ledger SET state = ?, attempts = attempts + ?, error = ?, raw_output = ?, result = ?, "
                "prompt_tokens = ?, completion_tokens = ?, cost_usd = ?, latency_s = ?, updated_at = now(), "
                "generation_id = coalesce(generation_id, ?) WHERE request_key = ? RETURNING request_key",
                [state, result.get("attempts") or 1, result.get("error"), raw_output,
                 json.dumps(summary, ensure_ascii=False), result.get("prompt_tokens"),
                 result.get("completion_tokens"), result.get("cost_usd"), result.get("latency_s"),
                 ids.get("generation_id"), request_key]).fetchall()
            if not updated:
                raise StudioError(f"call {request_key[:12]} was never planned; plan_ledger() it before sending")
        return ids

    @staticmethod
    def _upsert_generation(con, row: dict) -> int:
        # record_generation's rule (never overwrite an ok answer; a retried failure replaces the failed
        # row) inside the caller's transaction, with the method and logprobs columns.
        cols = ("task_id", "run_id", "request_key", "endpoint", "model", "messages", "params", "sample_index",
                "teacher_only_system", "response", "finish_reason", "prompt_tokens", "completion_tokens",
                "latency_s", "status", "error", "attempts", "method", "logprobs")
        values = dict(zip(cols, (row.get(c) for c in cols)))
        values["messages"] = json.dumps(row["messages"], ensure_ascii=False)
        values["params"] = json.dumps(row["params"], sort_keys=True)
        values["teacher_only_system"] = bool(row.get("teacher_only_system", False))
        values["attempts"] = row.get("attempts") or 1
        values["method"] = row.get("method") or "label"
        if values["logprobs"] is not None:
            values["logprobs"] = json.dumps(values["logprobs"], ensure_ascii=False)
        existing = con.execute("SELECT id, status, attempts FROM generations WHERE request_key = ?",
                               [row["request_key"]]).fetchone()
        if existing is None:
            return con.execute(f"INSERT INTO generations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                               "RETURNING id", list(values.values())).fetchone()[0]
        gen_id, status, attempts = existing
        if status == "ok":
            return gen_id
        updates = {c: v for c, v in values.items() if c not in ("request_key", "task_id")}
        updates["attempts"] = attempts + values["attempts"]
        con.execute(f"UPDATE generations SET {', '.join(f'{c} = ?' for c in updates)}, created_at = now() "
                    "WHERE id = ?", [*updates.values(), gen_id])
        return gen_id

    def ledger_rows(self, keys: list[str] | None = None, states: tuple[str, ...] | None = None,
                    run_id: int | None = None) -> list[dict]:
        """Full ledger rows (messages, params, context and result decoded), oldest first."""
        clauses, params = [], []
        if keys is not None:
            clauses.append("list_contains(?, request_key)")
            params.append(list(keys))
        if states:
            clauses.append("list_contains(?, state)")
            params.append(list(states))
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._fetchdicts(f"SELECT * FROM ledger{where} ORDER BY created_at, request_key", params)
        for row in rows:
            for col in self._LEDGER_JSON:
                row[col] = json.loads(row[col]) if row[col] else None
        return rows

    def ledger_page(self, run_id: int | None = None, state: str = "", method: str = "", page: int = 1,
                    page_size: int = 50) -> tuple[pd.DataFrame, int]:
        """One page of the ledger for the UI (newest first) and the number of rows matching."""
        if state and state not in self.LEDGER_STATES:
            raise StudioError(f"ledger state must be one of {', '.join(self.LEDGER_STATES)} (got {state!r})")
        if not 1 <= page_size <= 500:
            raise StudioError(f"page size must be between 1 and 500 (got {page_size})")
        clauses, params = [], []
        for col, value in (("run_id", run_id), ("state", state), ("method", method)):
            if value not in (None, ""):
                clauses.append(f"{col} = ?")
                params.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        total = self._fetchone(f"SELECT count(*) FROM ledger{where}", params)[0]
        frame = self._fetchdf(
            "SELECT request_key, run_id, method, stage, task_id, generation_id, state, attempts, "
            "left(error, 300) AS error, prompt_tokens, completion_tokens, cost_usd, latency_s, updated_at "
            f"FROM ledger{where} ORDER BY updated_at DESC, request_key LIMIT ? OFFSET ?",
            [*params, page_size, (max(1, int(page)) - 1) * page_size])
        return frame, total

    def ledger_summary(self, run_id: int | None = None) -> dict:
        """Counts by state and the tokens and cost paid, for one run or the whole workspace."""
        where, params = (" WHERE run_id = ?", [run_id]) if run_id is not None else ("", [])
        counts = {r["state"]: r["n"] for r in
                  self._fetchdicts(f"SELECT state, count(*) AS n FROM ledger{where} GROUP BY state", params)}
        pt, ct, cost = self._fetchone("SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
                                      f"sum(cost_usd) FROM ledger{where}", params)
        return {"by_state": {s: int(counts.get(s, 0)) for s in self.LEDGER_STATES}, "prompt_tokens": int(pt),
                "completion_tokens": int(ct), "cost_usd": cost}

    def set_run_usage(self, run_id: int, prompt_tokens: int, completion_tokens: int, cost_usd: float | None) -> None:
        with self._lock:
            self.con.execute("UPDATE runs SET prompt_tokens = ?, completion_tokens = ?, cost_usd = ? WHERE id = ?",
                             [prompt_tokens, completion_tokens, cost_usd, run_id])

    # prices: USD per million tokens, per model name as the endpoint knows it; the user edits them.
    def set_price(self, model: str, input_usd_per_mtok: float, output_usd_per_mtok: float) -> None:
        model = (model or "").strip()
        if not model:
            raise StudioError("a price needs the model name it applies to")
        if not (input_usd_per_mtok >= 0 and output_usd_per_mtok >= 0):
            raise StudioError(f"prices must be 0 or more USD per million tokens (got {input_usd_per_mtok}, "
                              f"{output_usd_per_mtok})")
        with self._lock:
            self.con.execute("INSERT INTO prices (model, input_usd_per_mtok, output_usd_per_mtok) VALUES (?, ?, ?) "
                             "ON CONFLICT (model) DO UPDATE SET input_usd_per_mtok = excluded.input_usd_per_mtok, "
                             "output_usd_per_mtok = excluded.output_usd_per_mtok, updated_at = now()",
                             [model, float(input_usd_per_mtok), float(output_usd_per_mtok)])

    def delete_price(self, model: str) -> bool:
        with self._lock:
            return bool(self.con.execute("DELETE FROM prices WHERE model = ? RETURNING model", [model]).fetchall())

    def prices(self) -> pd.DataFrame:
        return self._fetchdf("SELECT model, input_usd_per_mtok, output_usd_per_mtok, updated_at FROM prices "
                             "ORDER BY model")

    def price(self, model: str) -> tuple[float, float] | None:
        row = self._fetchone("SELECT input_usd_per_mtok, output_usd_per_mtok FROM prices WHERE model = ?", [model])
        return (float(row[0]), float(row[1])) if row else None

    # what the methods read
    def task_texts(self) -> list[tuple[int, str]]:
        """(id, instruction) of every task: the pool new tasks must be novel against."""
        with self._lock:
            return self.con.execute("SELECT id, instruction FROM tasks ORDER BY id").fetchall()

    def ok_generations(self, generation_ids: list[int] | None = None, task_ids: list[int] | None = None,
                       methods: tuple[str, ...] | None = None) -> list[dict]:
        """Successful generations with their task (id, task_id, method, model, request_key, response,
        instruction, input), oldest first."""
        clauses, params = ["g.status = 'ok'"], []
        for col, values in (("g.id", generation_ids), ("g.task_id", task_ids), ("coalesce(g.method, 'label')", methods)):
            if values:
                clauses.append(f"list_contains(?, {col})")
                params.append(list(values))
        return self._fetchdicts(
            "SELECT g.id, g.task_id, coalesce(g.method, 'label') AS method, g.model, g.request_key, g.response, "
            "t.instruction, "
            f"t.input FROM generations g JOIN tasks t ON t.id = g.task_id WHERE {' AND '.join(clauses)} ORDER BY g.id",
            params)

    def judgments_of(self, generation_ids: list[int] | None = None, kind: str | None = None) -> list[dict]:
        clauses, params = [], []
        if generation_ids is not None:
            clauses.append("(list_contains(?, generation_id) OR list_contains(?, other_generation_id))")
            params += [list(generation_ids)] * 2
        if kind:
            clauses.append("coalesce(kind, 'score') = ?")
            params.append(kind)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._fetchdicts(f"SELECT * FROM judgments{where} ORDER BY id", params)

    def generation_logprobs(self, gen_id: int) -> list[dict] | None:
        row = self._fetchone("SELECT logprobs FROM generations WHERE id = ?", [gen_id])
        return json.loads(row[0]) if row and row[0] else None

    # ---- embeddings & dedupe ------------------------------------------------------------------
    # The text an item is embedded and deduplicated by: a task is its instruction plus its input; a
    # response is what would be trained on (the edit wins). Stored vectors carry md5 of that text, so
    # SQL alone tells which are stale without shipping every text to Python.
    _ITEM_TEXT_SQL = {
        "task": "SELECT t.id, t.instruction || CASE WHEN coalesce(t.input, '') = '' THEN '' "
                "ELSE chr(10) || chr(10) || t.input END AS text FROM tasks t",
        "response": "SELECT g.id, coalesce(l.edited_response, g.response) AS text FROM generations g "
                    "LEFT JOIN labels l ON l.generation_id = g.id WHERE g.status = 'ok' "
                    "AND coalesce(l.edited_response, g.response) IS NOT NULL",
    }
    # Highest 1-10 'score' judgment per generation: a dedupe keeps the best answer it has seen.
    _JUDGE_MAX_SQL = ("SELECT generation_id, max(score) AS score FROM judgments "
                      "WHERE coalesce(kind, 'score') = 'score' AND score IS NOT NULL GROUP BY generation_id")

    def _item_text_sql(self, kind: str) -> str:
        if kind not in self._ITEM_TEXT_SQL:
            raise StudioError(f"embedding kind must be task or response (got {kind!r})")
        return self._ITEM_TEXT_SQL[kind]

    def items_to_embed(self, kind: str, model: str) -> tuple[int, list[tuple[int, str, str]]]:
        """(how many items of `kind` exist, [(id, text, content hash)] of those whose vector under
        `model` is missing or was made from other text), ordered by id."""
        sql = self._item_text_sql(kind)
        with self._lock:
            total = self.con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
            stale = self.con.execute(
                f"SELECT i.id, i.text, md5(i.text) FROM ({sql}) i LEFT JOIN embeddings e ON e.item_kind = ? "
                "AND e.model = ? AND e.item_id = i.id WHERE e.content_hash IS DISTINCT FROM md5(i.text) "
                "ORDER BY i.id", [kind, model]).fetchall()
        return total, stale

    def put_embeddings(self, kind: str, model: str, ids: list[int], hashes: list[str], vectors) -> None:
        """Store float32[n, d] `vectors` for items `ids` (with the content hash each was made from),
        replacing older vectors of the same items and model, in one transaction."""
        # Local imports: only this section needs numpy/pyarrow, and an Arrow list column is the one
        # way to hand DuckDB 100k vectors without a Python object per float.
        import numpy as np
        import pyarrow as pa

        self._item_text_sql(kind)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        if n != len(ids) or n != len(hashes):
            raise StudioError(f"{n} vectors for {len(ids)} ids and {len(hashes)} hashes")
        if n == 0:
            return
        offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
        incoming = pa.table({"item_id": pa.array(np.asarray(ids, dtype=np.int64)),
                             "content_hash": pa.array(list(hashes), pa.string()),
                             "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel()))})
        # Registered outside the transaction: DuckDB refuses register() while a result is pending.
        with self._lock:
            self.con.register("_incoming_embeddings", incoming)
            try:
                with self.transaction() as con:
                    con.execute("DELETE FROM embeddings WHERE item_kind = ? AND model = ? "
                                "AND item_id IN (SELECT item_id FROM _incoming_embeddings)", [kind, model])
                    con.execute("INSERT INTO embeddings (item_kind, item_id, model, content_hash, vector) "
                                "SELECT ?, item_id, ?, content_hash, vector FROM _incoming_embeddings", [kind, model])
            finally:
                self.con.unregister("_incoming_embeddings")

    def fresh_embeddings(self, kind: str, model: str):
        """(ids int64[n], vectors float32[n, d]) of the stored vectors whose item text is unchanged, by id."""
        import numpy as np

        sql = self._item_text_sql(kind)
        with self._lock:
            table = self.con.sql(
                f"SELECT e.item_id, e.vector FROM embeddings e JOIN ({sql}) i ON i.id = e.item_id "
                "AND e.content_hash = md5(i.text) WHERE e.item_kind = ? AND e.model = ? ORDER BY e.item_id",
                params=[kind, model]).to_arrow_table()
        ids = table.column("item_id").to_numpy().astype(np.int64)
        if not len(ids):
            return ids, np.zeros((0, 0), dtype=np.float32)
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        return ids, np.ascontiguousarray(flat.reshape(len(ids), -1), dtype=np.float32)

    def dedupe_items(self, target: str) -> pd.DataFrame:
        """The rows a dedupe covers, ordered by id; only train-split tasks, and only successful
        generations not already rejected (rejected rows are out of the dataset; failed ones have no text).

        target 'responses': id (generation), task_id, text, created_at, score (max judge score or NaN),
        status, tags, skill, domain, generation_ids ([id]).
        target 'tasks': id (task), text, created_at, score (max over its generations), skill, domain,
        generation_ids (its generations a dedupe would mark; may be empty).
        """
        live = "g.status = 'ok' AND coalesce(l.status, 'pending') <> 'rejected'"
        if target == "responses":
            return self._fetchdf(
                f"SELECT g.id, g.task_id, i.text, g.created_at, j.score, {_REVIEW_STATUS_SQL} AS status, l.tags, "
                f"t.skill, t.domain, [g.id] AS generation_ids FROM {_REVIEW_FROM} "
                f"JOIN ({self._ITEM_TEXT_SQL['response']}) i ON i.id = g.id "
                f"LEFT JOIN ({self._JUDGE_MAX_SQL}) j ON j.generation_id = g.id "
                f"WHERE {live} AND t.split = 'train' ORDER BY g.id")
        if target == "tasks":
            return self._fetchdf(
                f"SELECT t.id, any_value(i.text) AS text, any_value(t.created_at) AS created_at, "
                f"max(j.score) FILTER (WHERE {live}) AS score, any_value(t.skill) AS skill, "
                f"any_value(t.domain) AS domain, "
                f"coalesce(list(g.id ORDER BY g.id) FILTER (WHERE {live}), []) AS generation_ids "
                f"FROM tasks t JOIN ({self._ITEM_TEXT_SQL['task']}) i ON i.id = t.id "
                "LEFT JOIN generations g ON g.task_id = t.id LEFT JOIN labels l ON l.generation_id = g.id "
                f"LEFT JOIN ({self._JUDGE_MAX_SQL}) j ON j.generation_id = g.id "
                "WHERE t.split = 'train' GROUP BY t.id ORDER BY t.id")
        raise StudioError(f"dedupe target must be tasks or responses (got {target!r})")

    def label_with_reasons(self, reasons: dict[int, str], status: str = "rejected") -> int | None:
        """`set_label` for many generations at once, each with its own reason, as ONE batch that
        `undo_batch` reverts; returns the batch id (None when `reasons` is empty). Edits are kept."""
        if status not in ("pending", "approved", "rejected"):
            raise StudioError(f"label status must be pending, approved or rejected (got {status!r})")
        ids = sorted(int(i) for i in reasons)
        if not ids:
            return None
        incoming = pd.DataFrame({"generation_id": ids, "reason": [reasons[i] for i in ids]})
        with self._lock:
            self.con.register("_label_reasons", incoming)  # before the transaction, as in put_embeddings
            try:
                with self.transaction() as con:
                    self._check_labelable(con, ids, status)
                    batch = con.execute("SELECT nextval('label_batch_seq')").fetchone()[0]
                    con.execute("""
                        INSERT INTO label_events (generation_id, status, reason, batch_id, previous_status,
                                                  previous_reason)
                        SELECT r.generation_id, ?, r.reason, ?, coalesce(l.status, 'pending'), l.reason
                        FROM _label_reasons r LEFT JOIN labels l ON l.generation_id = r.generation_id""",
                                [status, batch])
                    con.execute("""
                        INSERT INTO labels (generation_id, status, reason, updated_at)
                        SELECT generation_id, ?, reason, now() FROM _label_reasons
                        ON CONFLICT (generation_id) DO UPDATE SET status = excluded.status,
                            reason = excluded.reason, updated_at = now()""", [status])
            finally:
                self.con.unregister("_label_reasons")
        return batch

    # ---- evaluation ---------------------------------------------------------------------------
    # distill.evaluate finds the answers and verdicts of an eval by the request keys it planned, so an
    # answer stored by an earlier run (or by the label / judge methods) is reused, never asked twice.
    def set_expected(self, task_ids: list[int], expected: str | None) -> int:
        """Store a checkable expectation on tasks ("exact:…", "contains:…", "regex:…"; None clears it).
        The format is checked by distill.evaluate.set_expectation, which is what callers use."""
        ids = sorted({int(i) for i in task_ids})
        with self.transaction() as con:
            found = {r[0] for r in con.execute("SELECT id FROM tasks WHERE list_contains(?, id)", [ids]).fetchall()}
            if set(ids) - found:
                raise StudioError(f"no task with id {sorted(set(ids) - found)[:5]}")
            con.execute("UPDATE tasks SET expected = ? WHERE list_contains(?, id)", [expected or None, ids])
        return len(ids)

    def generations_by_keys(self, keys: list[str]) -> dict[str, dict]:
        """Stored generations (any status) by request key: id, task_id, status, response, error, model,
        completion_tokens."""
        if not keys:
            return {}
        rows = self._fetchdicts("SELECT request_key, id, task_id, status, response, error, model, completion_tokens "
                                "FROM generations WHERE list_contains(?, request_key)", [list(keys)])
        return {r["request_key"]: r for r in rows}

    def judgments_by_keys(self, keys: list[str]) -> dict[str, dict]:
        """Stored judgments (score and compare) by the request key of the call that made them."""
        if not keys:
            return {}
        rows = self._fetchdicts("SELECT * FROM judgments WHERE list_contains(?, request_key) ORDER BY id",
                                [list(keys)])
        return {r["request_key"]: r for r in rows}

    # ---- review queue -------------------------------------------------------------------------
    # One task at a time with all its candidate responses. Tasks are walked by id, so moving to the
    # next one is one indexed query, never a list of every task held in the browser.
    _QUEUE_TASKS_SQL = {
        False: "SELECT DISTINCT task_id AS id FROM generations",
        True: "SELECT DISTINCT g.task_id AS id FROM generations g LEFT JOIN labels l ON l.generation_id = g.id "
              "WHERE g.status = 'ok' AND coalesce(l.status, 'pending') = 'pending'",
    }

    def queue_task(self, task_id: int | None, step: int = 0, pending_only: bool = True) -> int | None:
        """The queue's task `step` places from `task_id`: +1 the next, -1 the previous, 0 `task_id`
        itself or else the nearest after (then before) it. The queue holds the tasks with generations
        (pending_only: with a successful one still pending), by id. None when there is none that way."""
        sql = self._QUEUE_TASKS_SQL[bool(pending_only)]
        current = int(task_id) if task_id is not None else 0
        if step > 0:
            return self._fetchone(f"SELECT min(id) FROM ({sql}) WHERE id > ?", [current])[0]
        if step < 0:
            return self._fetchone(f"SELECT max(id) FROM ({sql}) WHERE id < ?", [current])[0]
        after, before = self._fetchone(f"SELECT min(id) FILTER (WHERE id >= ?), max(id) FILTER (WHERE id < ?) "
                                       f"FROM ({sql})", [current, current])
        return after if after is not None else before

    def queue_position(self, task_id: int | None, pending_only: bool = True) -> tuple[int, int]:
        """(how many queue tasks have an id ≤ `task_id`, how many tasks the queue holds)."""
        sql = self._QUEUE_TASKS_SQL[bool(pending_only)]
        upto, total = self._fetchone(f"SELECT count(*) FILTER (WHERE id <= ?), count(*) FROM ({sql})",
                                     [int(task_id or 0)])
        return int(upto), int(total)

    def task_candidates(self, task_id: int) -> list[dict]:
        """Every generation of a task, oldest first: id, model, sample_index, call_status (ok / error),
        status (review status), response (the teacher's original), error, edited_response, tags, note,
        reason, finish_reason, completion_tokens, judge_score (mean; None when unjudged)."""
        return self._fetchdicts(
            f"SELECT g.id, g.model, g.sample_index, g.status AS call_status, {_REVIEW_STATUS_SQL} AS status, "
            "g.response, g.error, l.edited_response, l.tags, l.note, l.reason, g.finish_reason, "
            "g.completion_tokens, js.judge_score "
            f"FROM {_REVIEW_FROM} LEFT JOIN (SELECT generation_id, avg(score) AS judge_score FROM judgments "
            "WHERE coalesce(kind, 'score') = 'score' AND score IS NOT NULL "
            "AND generation_id IN (SELECT id FROM generations WHERE task_id = ?) GROUP BY generation_id) js "
            "ON js.generation_id = g.id WHERE g.task_id = ? ORDER BY g.id", [int(task_id), int(task_id)])

    def queue_label(self, gen_id: int, status: str, edited_response: str | None = None) -> "QueueAction":
        """`set_label` on one generation (with an edit: the new text, the original stays), returning
        what `queue_undo` needs to put it back exactly, the earlier edit included."""
        if edited_response is not None and not edited_response.strip():
            raise StudioError("an edited response cannot be empty; reject the row instead")
        with self._lock:  # re-entrant: no other label batch can slip in between these calls
            before = self._fetchone("SELECT edited_response FROM labels WHERE generation_id = ?", [int(gen_id)])
            self.set_label([int(gen_id)], status, edited_response=edited_response)
            return QueueAction("label", int(gen_id), batch_id=self.last_label_batch(),
                               edited=edited_response is not None, previous_edit=before[0] if before else None)

    def set_tags_note(self, gen_id: int, tags: str | None, note: str | None) -> "QueueAction":
        """Replace a generation's tags (comma-separated; trimmed, duplicates dropped) and note; the
        status is untouched. Returns what `queue_undo` needs to restore the previous ones."""
        clean_tags = ", ".join(dict.fromkeys(t.strip() for t in (tags or "").split(",") if t.strip())) or None
        clean_note = (note or "").strip() or None
        with self.transaction() as con:
            if not con.execute("SELECT 1 FROM generations WHERE id = ?", [int(gen_id)]).fetchone():
                raise StudioError(f"no generation with id {int(gen_id)}")
            before = con.execute("SELECT tags, note FROM labels WHERE generation_id = ?", [int(gen_id)]).fetchone()
            con.execute("INSERT INTO labels (generation_id, status, tags, note, updated_at) "
                        "VALUES (?, 'pending', ?, ?, now()) ON CONFLICT (generation_id) DO UPDATE SET "
                        "tags = excluded.tags, note = excluded.note, updated_at = now()",
                        [int(gen_id), clean_tags, clean_note])
        return QueueAction("meta", int(gen_id), previous_tags=before[0] if before else None,
                           previous_note=before[1] if before else None)

    def label_batch_count(self, batch_id: int | None) -> int:
        """How many generations a label batch changed (0 for None)."""
        if batch_id is None:
            return 0
        return self._fetchone("SELECT count(*) FROM label_events WHERE batch_id = ?", [int(batch_id)])[0]

    def queue_undo(self, action: "QueueAction") -> None:
        """Revert one `queue_label` (status, reason and the edit) or `set_tags_note` action."""
        if action.kind == "meta":
            self.set_tags_note(action.generation_id, action.previous_tags, action.previous_note)
            return
        with self._lock:
            self.undo_batch(action.batch_id)
            if action.edited:  # undo_batch keeps edits in history; the queue puts the earlier text back
                self.con.execute("UPDATE labels SET edited_response = ? WHERE generation_id = ?",
                                 [action.previous_edit, action.generation_id])

    # ---- distillation -------------------------------------------------------------------------
    def generation_sources(self, gen_ids: list[int], with_logprobs: bool = False) -> dict[int, dict]:
        """Per generation id: model (the teacher that wrote it), edited (the review replaced its
        answer) and, with `with_logprobs`, logprobs (the teacher's stored top-k per token, or None)."""
        column = "g.logprobs" if with_logprobs else "NULL"
        rows = self._fetchdicts(
            f"SELECT g.id, g.model, l.edited_response IS NOT NULL AS edited, {column} AS logprobs FROM generations g "
            "LEFT JOIN labels l ON l.generation_id = g.id WHERE list_contains(?, g.id)", [[int(i) for i in gen_ids]])
        return {r["id"]: {"model": r["model"], "edited": bool(r["edited"]),
                          "logprobs": json.loads(r["logprobs"]) if r["logprobs"] else None} for r in rows}

    def preference_candidates(self) -> list[dict]:
        """Successful generations of train-split tasks, the raw material of DPO pairs, oldest first: id,
        task_id, model, messages (as sent; a teacher-only system prompt dropped), response (the edit
        wins), status (review status), reason (why a filter labelled it; None for a hand decision),
        judge_score (mean 1-10 score; None when unjudged)."""
        rows = self._fetchdicts(
            f"SELECT g.id, g.task_id, g.model, g.messages, g.teacher_only_system, {_REVIEW_STATUS_SQL} AS status, "
            "l.reason, coalesce(l.edited_response, g.response) AS response, js.judge_score "
            f"FROM {_REVIEW_FROM} LEFT JOIN ({self._JUDGE_MEAN_SQL}) js ON js.generation_id = g.id "
            "WHERE g.status = 'ok' AND t.split = 'train' ORDER BY g.id")
        for r in rows:
            messages = json.loads(r.pop("messages"))
            if r.pop("teacher_only_system"):
                messages = [m for m in messages if m["role"] != "system"]
            r["messages"] = messages
        return rows

    def record_run_rows(self, run_id: int, rows: list[tuple[str, str]]) -> None:
        """Store the (row id, content hash) of every row a training run was given, in one statement."""
        run_rows_frame = pd.DataFrame(rows, columns=["row_id", "content_hash"]).astype(str)
        run_rows_frame.insert(0, "run_id", int(run_id))
        with self.transaction() as con:
            con.execute("DELETE FROM run_rows WHERE run_id = ?", [int(run_id)])
            # DuckDB reads the local DataFrame by its name (a replacement scan): one statement, no register().
            con.execute("INSERT INTO run_rows SELECT run_id, row_id, content_hash FROM run_rows_frame")

    def run_rows(self, run_id: int) -> dict[str, str]:
        """row id -> content hash of the rows a training run was given."""
        return dict(self._fetchone("SELECT map(list(row_id), list(content_hash)) FROM run_rows WHERE run_id = ?",
                                   [int(run_id)])[0] or {})

    def diff_run_rows(self, run_a: int, run_b: int) -> dict:
        """What changed in the data from run_a to run_b: {added, removed, changed: [row ids], same: count}.
        changed = the same row (generation, or DPO pair) with other content, e.g. an edited answer."""
        rows = self._fetchdicts(
            "SELECT coalesce(a.row_id, b.row_id) AS row_id, CASE WHEN a.row_id IS NULL THEN 'added' "
            "WHEN b.row_id IS NULL THEN 'removed' WHEN a.content_hash <> b.content_hash THEN 'changed' "
            "ELSE 'same' END AS change FROM (SELECT * FROM run_rows WHERE run_id = ?) a "
            "FULL OUTER JOIN (SELECT * FROM run_rows WHERE run_id = ?) b ON a.row_id = b.row_id",
            [int(run_a), int(run_b)])
        out = {"added": [], "removed": [], "changed": [], "same": 0}
        for r in rows:
            if r["change"] == "same":
                out["same"] += 1
            else:
                out[r["change"]].append(r["row_id"])
        for key in ("added", "removed", "changed"):
            out[key].sort(key=lambda rid: (len(rid), rid))  # numeric ids in numeric order
        return out

    def reopen_run(self, run_id: int, pid: int | None = None) -> None:
        """Mark a stopped / failed / interrupted run running again (resume): no finish time, no error."""
        with self._lock:
            self.con.execute("UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, pid = ? "
                             "WHERE id = ?", [pid, int(run_id)])


@dataclass(frozen=True)
class QueueAction:
    """One change made in the review queue, with what it replaced (see `Store.queue_undo`)."""

    kind: str  # "label" (status / edit) or "meta" (tags and note)
    generation_id: int
    batch_id: int | None = None  # label: the label batch to undo
    edited: bool = False  # label: the action stored an edited response
    previous_edit: str | None = None  # label: the edited response before it (None: there was none)
    previous_tags: str | None = None  # meta
    previous_note: str | None = None  # meta



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
