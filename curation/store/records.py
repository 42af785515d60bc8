"""Tasks, generations and their labels: adding, reading, reviewing, undoing; the training snapshot and stats."""
from __future__ import annotations

import json

import pandas as pd

from curation.errors import StudioError
from curation.store.review import (_REVIEW_FROM, _REVIEW_STATUS_SQL, _SORT_COLUMNS, REVIEW_SORTS, REVIEW_STATUSES,
                                   ReviewFilter)


class RecordsMixin:
    """`Store` methods for tasks, generations, labels, the training snapshot and stats."""

    # ---- tasks --------------------------------------------------------------------------------
    def add_tasks(self, tasks: list[dict]) -> list[int]:
        """Insert tasks (dicts with at least 'instruction'; optional 'expected', a check such as 'contains:Paris')
        in one transaction; returns their ids."""
        cols = ("instruction", "input", "system_prompt", "source", "parent_id", "skill", "domain", "split", "expected",
                "chunk_id")
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
            f"SELECT g.*, t.instruction, t.input, t.skill, t.domain, t.split, t.chunk_id, "
            f"{_REVIEW_STATUS_SQL} AS review_status, l.edited_response, l.edited_messages, l.tags, l.note, l.reason "
            f"FROM {_REVIEW_FROM} WHERE g.id = ?", [gen_id])
        if not rows:
            return None
        row = rows[0]
        row["messages"] = json.loads(row["messages"])
        row["params"] = json.loads(row["params"])
        row["edited_messages"] = json.loads(row["edited_messages"]) if row["edited_messages"] else None
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
        with self._lock:
            if flt.search.strip():
                ids, total = self._keyword_page(flt, REVIEW_SORTS[sort], page, page_size)
            else:
                ids_sql, params = self._review_ids_sql(flt)
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

    def _keyword_page(self, flt: ReviewFilter, order: str, page: int, page_size: int) -> tuple[list[int], int]:
        """A keyword's page ids and match count from ONE scan of the text (it dominates: ~0.2 s at 1M
        rows): the matches are materialised once with their sort columns, then counted and paged."""
        ids_sql, params = self._review_ids_sql(flt, columns=_SORT_COLUMNS)
        rows = self.con.execute(
            f"WITH g AS MATERIALIZED ({ids_sql}) SELECT g.id, (SELECT count(*) FROM g) FROM g "
            f"ORDER BY {order} LIMIT ? OFFSET ?", [*params, page_size, (page - 1) * page_size]).fetchall()
        if rows:
            return [r[0] for r in rows], int(rows[0][1])
        return [], self.con.execute(f"SELECT count(*) FROM ({ids_sql})", params).fetchone()[0]  # past the end

    def matching_ids(self, flt: ReviewFilter) -> list[int]:
        ids_sql, params = self._review_ids_sql(flt)
        with self._lock:
            return [r[0] for r in self.con.execute(f"{ids_sql} ORDER BY g.id", params).fetchall()]

    # ---- labels -------------------------------------------------------------------------------
    def set_label(self, gen_ids: list[int], status: str, edited_response: str | None = None,
                  reason: str | None = None, edited_messages: list[dict] | None = None) -> int:
        """Approve / reject / edit generations; the teacher's response itself is never changed.

        `edited_response=None` keeps any earlier edit; `reason` says why (e.g. "filter:refusal");
        `edited_messages`: an edit of the turns before the answer (a conversation's), None keeps any earlier one.
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
            turns = json.dumps(edited_messages, ensure_ascii=False) if edited_messages is not None else None
            con.execute("""
                INSERT INTO label_events (generation_id, status, edited_response, reason, batch_id,
                                          previous_status, previous_reason, edited_messages)
                SELECT g.id, ?, ?, ?, ?, coalesce(l.status, 'pending'), l.reason, ?
                FROM generations g LEFT JOIN labels l ON l.generation_id = g.id
                WHERE list_contains(?, g.id)""", [status, edited_response, reason, batch, turns, gen_ids])
            con.execute("""
                INSERT INTO labels (generation_id, status, edited_response, reason, updated_at, edited_messages)
                SELECT unnest(?), ?, ?, ?, now(), ?
                ON CONFLICT (generation_id) DO UPDATE SET status = excluded.status,
                    edited_response = coalesce(excluded.edited_response, labels.edited_response),
                    edited_messages = coalesce(excluded.edited_messages, labels.edited_messages),
                    reason = excluded.reason, updated_at = now()""", [gen_ids, status, edited_response, reason, turns])
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

    def labelled_since(self, gen_ids: list[int], batch_mark: int) -> set[int]:
        """Which of `gen_ids` got a label event in a batch after `batch_mark` (-1: any batch)."""
        if not gen_ids:
            return set()
        rows = self._fetchdicts("SELECT DISTINCT generation_id AS id FROM label_events "
                                "WHERE batch_id > ? AND list_contains(?, generation_id)",
                                [int(batch_mark), [int(g) for g in gen_ids]])
        return {int(r["id"]) for r in rows}

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
        return self.set_label(self.labelable_ids(flt, status), status)

    def labelable_ids(self, flt: ReviewFilter, status: str) -> list[int]:
        """The generations matching the filter that `status` would change: not those that have it already,
        and no failed call when approving (it has no response)."""
        if status == "approved" and flt.status == "failed":
            return []
        ids_sql, params = self._review_ids_sql(flt)
        ok_only = "status = 'ok' AND " if status == "approved" else ""
        with self._lock:
            return [r[0] for r in self.con.execute(
                f"SELECT id FROM generations WHERE {ok_only}id IN ({ids_sql}) AND id NOT IN "
                "(SELECT generation_id FROM labels WHERE status = ?) ORDER BY id", [*params, status]).fetchall()]

    def review_status_counts(self, flt: ReviewFilter) -> dict[str, int]:
        """How many of the generations matching the filter are pending, approved, rejected and failed."""
        ids_sql, params = self._review_ids_sql(flt)
        rows = self._fetchdicts(
            f"SELECT {_REVIEW_STATUS_SQL} AS s, count(*) AS n FROM generations g "
            f"LEFT JOIN labels l ON l.generation_id = g.id WHERE g.id IN ({ids_sql}) GROUP BY ALL", params)
        return {"pending": 0, "approved": 0, "rejected": 0, "failed": 0, **{r["s"]: int(r["n"]) for r in rows}}

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
            f"SELECT g.id, g.task_id, coalesce(l.edited_messages, g.messages) AS messages, g.teacher_only_system, "
            f"coalesce(l.edited_response, g.response) AS answer "
            f"FROM {_REVIEW_FROM} WHERE l.status = 'approved' AND g.status = 'ok' AND t.split = 'train' ORDER BY g.id")
        return [self._chat_example(r) for r in rows]

    def heldout_examples(self, limit: int) -> list[dict]:
        """Up to `limit` teacher answers of eval-split tasks as chat examples, one per task (the approved
        one if any, else the first), by task id: the rows a run measures its eval loss on.

        Rejected answers and the local student's own answers (endpoint 'local') are no reference.
        """
        rows = self._fetchdicts(
            f"SELECT g.id, g.task_id, g.messages, g.teacher_only_system, coalesce(l.edited_response, g.response) AS answer "
            f"FROM {_REVIEW_FROM} WHERE g.status = 'ok' AND t.split = 'eval' AND g.endpoint != 'local' "
            f"AND coalesce(l.status, 'pending') != 'rejected' "
            f"QUALIFY row_number() OVER (PARTITION BY g.task_id ORDER BY (l.status = 'approved') DESC NULLS LAST, "
            f"g.id) = 1 ORDER BY g.task_id LIMIT ?", [int(limit)])
        return [self._chat_example(r) for r in rows]

    @staticmethod
    def _chat_example(row: dict) -> dict:
        messages = json.loads(row["messages"])
        if row["teacher_only_system"]:
            messages = [m for m in messages if m["role"] != "system"]
        return {"generation_id": row["id"], "task_id": row["task_id"],
                "messages": messages + [{"role": "assistant", "content": row["answer"]}]}

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
