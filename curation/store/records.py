"""Tasks and generations: adding them (one by one or in bulk) and reading them; the training snapshot and stats."""
from __future__ import annotations

import json

import pandas as pd

from curation.errors import StudioError
from curation.store.review import _REVIEW_FROM, _REVIEW_STATUS_SQL, REVIEW_STATUSES


class RecordsMixin:
    """`Store` methods for tasks, generations, the training snapshot and stats."""

    # ---- tasks --------------------------------------------------------------------------------
    def add_tasks(self, tasks: list[dict]) -> list[int]:
        """Insert tasks (dicts with at least 'instruction'; optional 'expected', a check such as 'contains:Paris')
        in one transaction; returns their ids."""
        cols = ("instruction", "input", "system_prompt", "source", "parent_id", "skill", "domain", "split", "expected",
                "chunk_id", "toolset_id")
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
        rows = self._fetchall(
            "SELECT request_key FROM generations WHERE status = 'ok' AND list_contains(?, request_key)", [list(keys)])
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
            f"SELECT g.*, t.instruction, t.input, t.skill, t.domain, t.split, t.chunk_id, t.toolset_id, "
            f"{_REVIEW_STATUS_SQL} AS review_status, l.edited_response, l.edited_messages, l.tags, l.note, l.reason "
            f"FROM {_REVIEW_FROM} WHERE g.id = ?", [gen_id])
        if not rows:
            return None
        row = rows[0]
        row["messages"] = json.loads(row["messages"])
        row["params"] = json.loads(row["params"])
        row["edited_messages"] = json.loads(row["edited_messages"]) if row["edited_messages"] else None
        row["tool_calls"] = json.loads(row["tool_calls"]) if row["tool_calls"] else None
        return row

    # ---- bulk inserts -------------------------------------------------------------------------
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

    # ---- training snapshot --------------------------------------------------------------------
    def approved_examples(self) -> list[dict]:
        """Approved rows of train-split tasks as chat examples: the exact messages sent + the answer.

        The edited response wins over the teacher's; a system prompt marked teacher-only is left out. A task
        answered with a tool set carries its `tools` (the answer holds its calls as <tool_call> text, which
        training renders in the student's own tool-call format: distill/tool_format.py).
        """
        rows = self._fetchdicts(
            f"SELECT g.id, g.task_id, coalesce(l.edited_messages, g.messages) AS messages, g.teacher_only_system, "
            f"coalesce(l.edited_response, g.response) AS answer, {self._TOOLS_SQL} "
            f"FROM {_REVIEW_FROM} WHERE l.status = 'approved' AND g.status = 'ok' AND t.split = 'train' ORDER BY g.id")
        return [self._chat_example(r) for r in rows]

    def heldout_examples(self, limit: int) -> list[dict]:
        """Up to `limit` teacher answers of eval-split tasks as chat examples, one per task (the approved
        one if any, else the first), by task id: the rows a run measures its eval loss on.

        Rejected answers and the local student's own answers (endpoint 'local') are no reference.
        """
        rows = self._fetchdicts(
            f"SELECT g.id, g.task_id, g.messages, g.teacher_only_system, "
            f"coalesce(l.edited_response, g.response) AS answer, {self._TOOLS_SQL} "
            f"FROM {_REVIEW_FROM} WHERE g.status = 'ok' AND t.split = 'eval' AND g.endpoint != 'local' "
            f"AND coalesce(l.status, 'pending') != 'rejected' "
            f"QUALIFY row_number() OVER (PARTITION BY g.task_id ORDER BY (l.status = 'approved') DESC NULLS LAST, "
            f"g.id) = 1 ORDER BY g.task_id LIMIT ?", [int(limit)])
        return [self._chat_example(r) for r in rows]

    # The tool set of a row's task, as a scalar subquery (NULL without one), so the joins stay as they are.
    _TOOLS_SQL = "(SELECT ts.tools FROM toolsets ts WHERE ts.id = t.toolset_id) AS tools"

    @staticmethod
    def _chat_example(row: dict) -> dict:
        messages = json.loads(row["messages"])
        if row["teacher_only_system"]:
            messages = [m for m in messages if m["role"] != "system"]
        example = {"generation_id": row["id"], "task_id": row["task_id"],
                   "messages": messages + [{"role": "assistant", "content": row["answer"]}]}
        if row.get("tools"):
            example["tools"] = json.loads(row["tools"])
        return example

    # ---- stats --------------------------------------------------------------------------------
    def stats(self) -> dict:
        with self._snapshot():  # counts that add up: no commit lands between them
            by_status = dict(self._fetchone(
                f"SELECT map(list(status), list(n)) FROM (SELECT {_REVIEW_STATUS_SQL} AS status, count(*) AS n "
                f"FROM {_REVIEW_FROM} GROUP BY 1)")[0] or {})
            tokens = self._fetchone("SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
                                    "FROM generations")
            tasks = self.count_tasks()
        return {"tasks": tasks,
                "generations": sum(by_status.values()),
                "by_status": {s: int(by_status.get(s, 0)) for s in REVIEW_STATUSES},
                "prompt_tokens": int(tokens[0]), "completion_tokens": int(tokens[1])}
