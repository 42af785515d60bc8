"""Runs, eval expectations and stored answers, and the rows each training run was given."""
from __future__ import annotations

import json

import pandas as pd

from curation.errors import StudioError
from curation.store.review import _REVIEW_FROM, _REVIEW_STATUS_SQL

RUN_FINAL = ("completed", "failed", "stopped", "interrupted")


class RunsMixin:
    """`Store` methods for runs, evaluation and distillation."""

    # ---- runs ---------------------------------------------------------------------------------
    def start_run(self, kind: str, config: dict, run_dir: str | None = None, pid: int | None = None) -> int:
        return self._write("INSERT INTO runs (kind, config, status, run_dir, pid) VALUES (?, ?, 'running', ?, ?) "
                           "RETURNING id", [kind, json.dumps(config, sort_keys=True, default=str), run_dir, pid])[0][0]

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
        self._write(f"UPDATE runs SET {sets} WHERE id = ?", [*fields.values(), run_id])

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
        rows = self._write("UPDATE runs SET status = 'interrupted', finished_at = now() WHERE status = 'running' "
                           "RETURNING id")
        return [r[0] for r in rows]

    # ---- evaluation ---------------------------------------------------------------------------
    # evaluation.evaluate finds the answers and verdicts of an eval by the request keys it planned, so an
    # answer stored by an earlier run (or by the label / judge methods) is reused, never asked twice.
    def set_expected(self, task_ids: list[int], expected: str | None) -> int:
        """Store a checkable expectation on tasks ("exact:…", "contains:…", "regex:…"; None clears it).
        The format is checked by evaluation.plan.set_expectation, which is what callers use."""
        ids = sorted({int(i) for i in task_ids})
        with self.transaction() as con:
            found = {r[0] for r in con.execute("SELECT id FROM tasks WHERE list_contains(?, id)", [ids]).fetchall()}
            if set(ids) - found:
                raise StudioError(f"no task with id {sorted(set(ids) - found)[:5]}")
            con.execute("UPDATE tasks SET expected = ? WHERE list_contains(?, id)", [expected or None, ids])
        return len(ids)

    def generations_by_keys(self, keys: list[str]) -> dict[str, dict]:
        """Stored generations (any status) by request key: id, task_id, status, response, error, model,
        completion_tokens, finish_reason ('stop': the answer ended by itself; 'length': cut at max tokens)."""
        if not keys:
            return {}
        rows = self._fetchdicts("SELECT request_key, id, task_id, status, response, error, model, completion_tokens, "
                                "finish_reason "
                                "FROM generations WHERE list_contains(?, request_key)", [list(keys)])
        return {r["request_key"]: r for r in rows}

    def judgments_by_keys(self, keys: list[str]) -> dict[str, dict]:
        """Stored judgments (score and compare) by the request key of the call that made them."""
        if not keys:
            return {}
        rows = self._fetchdicts("SELECT * FROM judgments WHERE list_contains(?, request_key) ORDER BY id",
                                [list(keys)])
        return {r["request_key"]: r for r in rows}

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

    def revision_candidates(self, ids: list[int] | None = None) -> list[dict]:
        """Answers the constitution method may critique: successful, not rejected, of train-split tasks, not
        revisions themselves (the ids given, else all); id, task_id, messages (as trained on), response."""
        where = "AND list_contains(?, g.id) " if ids is not None else ""
        rows = self._fetchdicts(
            f"SELECT g.id, g.task_id, g.messages, g.teacher_only_system, coalesce(l.edited_response, g.response) "
            f"AS response FROM {_REVIEW_FROM} WHERE g.status = 'ok' AND t.split = 'train' AND "
            f"coalesce(g.method, 'label') != 'constitution' AND {_REVIEW_STATUS_SQL} != 'rejected' {where}"
            "ORDER BY g.id", [list(ids)] if ids is not None else [])
        for r in rows:
            messages = json.loads(r.pop("messages"))
            r["messages"] = [m for m in messages if m["role"] != "system"] if r.pop("teacher_only_system") else messages
        return rows

    def revision_links(self) -> list[dict]:
        """(original_id, revised_id) of every stored revision (the constitution method's ledger), oldest first."""
        return self._fetchdicts(
            "SELECT CAST(json_extract_string(context, '$.original_id') AS BIGINT) AS original_id, "
            "generation_id AS revised_id FROM ledger WHERE method = 'constitution' AND stage = 'revise' "
            "AND state = 'ok' AND generation_id IS NOT NULL ORDER BY generation_id")

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
        self._write("UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, pid = ? WHERE id = ?",
                    [pid, int(run_id)])


def _decode_run(row: dict) -> dict:
    row["config"] = json.loads(row["config"]) if row["config"] else {}
    row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else {}
    return row
