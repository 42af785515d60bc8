"""The elicitation ledger (one row per teacher call), prices, and what the methods read."""
from __future__ import annotations

import json

import pandas as pd

from curation.errors import StudioError


class ElicitationMixin:
    """`Store` methods for the elicitation ledger, prices and what the methods read."""

    # ---- elicitation --------------------------------------------------------------------------
    # Every teacher call of an elicitation job has one ledger row, keyed by its request key: planned
    # 'pending', then 'ok' or 'failed' (last error kept); a failed call queued again is 'retried'.
    # A call's ledger row and what the method made of it are committed in one transaction, so a job
    # killed at any point leaves no answer that the ledger does not count as paid for.
    _LEDGER_COLS = ("request_key", "run_id", "method", "stage", "task_id", "generation_id", "other_generation_id",
                    "endpoint", "model", "messages", "params", "sample_index", "context")
    _LEDGER_JSON = ("messages", "params", "context", "result")
    LEDGER_STATES = ("pending", "ok", "failed", "retried", "batched")

    def done_request_keys(self, keys: list[str]) -> set[str]:
        """The subset of `keys` already answered: ok in the ledger, an ok generation, or a judgment."""
        if not keys:
            return set()
        keys = list(keys)
        rows = self._fetchall(
            "SELECT request_key FROM ledger WHERE state = 'ok' AND list_contains($1, request_key) UNION "
            "SELECT request_key FROM generations WHERE status = 'ok' AND list_contains($1, request_key) UNION "
            "SELECT request_key FROM judgments WHERE request_key IS NOT NULL AND list_contains($1, request_key)",
            [keys])
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
                    outcome: dict | None = None, raw_output: str | None = None,
                    batch_id: int | None = None) -> dict | None:
        """Store one finished call atomically: its ledger row (ok / failed, attempts, error, usage, cost)
        and what the method made of it — a generation, a judgment, new tasks. Returns the new ids.

        The ledger row must have been planned (`plan_ledger`). A judgment whose request key is already
        stored is not stored twice; an ok generation is never overwritten. With `batch_id` (a Batch API
        result) nothing is stored and None is returned unless the call still waits in that batch: when two
        collectors race, the ledger row decides which one stores it, once.
        """
        ids: dict = {}
        with self.transaction() as con:
            if batch_id is not None and con.execute(
                    "SELECT count(*) FROM ledger WHERE request_key = ? AND state = 'batched' AND batch_id = ?",
                    [request_key, batch_id]).fetchone()[0] == 0:
                return None
            if generation is not None:  # which farm member or batch answered: the call's, not the method's to say
                ids["generation_id"] = self._upsert_generation(con, {**generation,
                                                                     "answered_by": result.get("answered_by")})
            if judgment is not None:
                found = con.execute("SELECT id FROM judgments WHERE request_key = ?", [request_key]).fetchone()
                ids["judgment_id"] = found[0] if found else con.execute(
                    "INSERT INTO judgments (generation_id, judge_model, score, rationale, raw_output, kind, "
                    "other_generation_id, request_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [judgment["generation_id"], judgment["judge_model"], judgment.get("score"),
                     judgment.get("rationale"), judgment.get("raw_output"), judgment.get("kind", "score"),
                     judgment.get("other_generation_id"), request_key]).fetchone()[0]
            if new_tasks:
                cols = ("instruction", "input", "system_prompt", "source", "parent_id", "skill", "domain", "chunk_id",
                        "toolset_id", "split")
                ids["task_ids"] = [con.execute(
                    f"INSERT INTO tasks ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING id",
                    [t.get(c) for c in cols[:-1]] + [t.get("split") or "train"]).fetchone()[0] for t in new_tasks]
            state = "ok" if result["status"] == "ok" else "failed"
            summary = {**(outcome or {}), **ids}
            updated = con.execute(
                "UPDATE ledger SET state = ?, attempts = attempts + ?, error = ?, raw_output = ?, result = ?, "
                "prompt_tokens = ?, completion_tokens = ?, cost_usd = ?, latency_s = ?, updated_at = now(), "
                "answered_by = ?, generation_id = coalesce(generation_id, ?) WHERE request_key = ? "
                "RETURNING request_key",
                [state, result.get("attempts") or 1, result.get("error"), raw_output,
                 json.dumps(summary, ensure_ascii=False), result.get("prompt_tokens"),
                 result.get("completion_tokens"), result.get("cost_usd"), result.get("latency_s"),
                 result.get("answered_by"), ids.get("generation_id"), request_key]).fetchall()
            if not updated:
                raise StudioError(f"call {request_key[:12]} was never planned; plan_ledger() it before sending")
        return ids

    @staticmethod
    def _upsert_generation(con, row: dict) -> int:
        # record_generation's rule (never overwrite an ok answer; a retried failure replaces the failed
        # row) inside the caller's transaction, with the method and logprobs columns.
        cols = ("task_id", "run_id", "request_key", "endpoint", "model", "messages", "params", "sample_index",
                "teacher_only_system", "response", "finish_reason", "prompt_tokens", "completion_tokens",
                "latency_s", "status", "error", "attempts", "method", "logprobs", "tool_calls", "answered_by")
        values = dict(zip(cols, (row.get(c) for c in cols)))
        values["messages"] = json.dumps(row["messages"], ensure_ascii=False)
        values["params"] = json.dumps(row["params"], sort_keys=True)
        values["teacher_only_system"] = bool(row.get("teacher_only_system", False))
        values["attempts"] = row.get("attempts") or 1
        values["method"] = row.get("method") or "label"
        for col in ("logprobs", "tool_calls"):
            if values[col] is not None:
                values[col] = json.dumps(values[col], ensure_ascii=False)
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
        with self._snapshot():  # the count and the page of one committed state
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
        with self._snapshot():
            counts = {r["state"]: r["n"] for r in
                      self._fetchdicts(f"SELECT state, count(*) AS n FROM ledger{where} GROUP BY state", params)}
            pt, ct, cost = self._fetchone("SELECT coalesce(sum(prompt_tokens), 0), "
                                          f"coalesce(sum(completion_tokens), 0), sum(cost_usd) FROM ledger{where}",
                                          params)
        return {"by_state": {s: int(counts.get(s, 0)) for s in self.LEDGER_STATES}, "prompt_tokens": int(pt),
                "completion_tokens": int(ct), "cost_usd": cost}

    def set_run_usage(self, run_id: int, prompt_tokens: int, completion_tokens: int, cost_usd: float | None) -> None:
        self._write("UPDATE runs SET prompt_tokens = ?, completion_tokens = ?, cost_usd = ? WHERE id = ?",
                    [prompt_tokens, completion_tokens, cost_usd, run_id])

    # prices: USD per million tokens, per model name as the endpoint knows it; the user edits them.
    def set_price(self, model: str, input_usd_per_mtok: float, output_usd_per_mtok: float) -> None:
        model = (model or "").strip()
        if not model:
            raise StudioError("a price needs the model name it applies to")
        if not (input_usd_per_mtok >= 0 and output_usd_per_mtok >= 0):
            raise StudioError(f"prices must be 0 or more USD per million tokens (got {input_usd_per_mtok}, "
                              f"{output_usd_per_mtok})")
        self._write("INSERT INTO prices (model, input_usd_per_mtok, output_usd_per_mtok) VALUES (?, ?, ?) "
                    "ON CONFLICT (model) DO UPDATE SET input_usd_per_mtok = excluded.input_usd_per_mtok, "
                    "output_usd_per_mtok = excluded.output_usd_per_mtok, updated_at = now()",
                    [model, float(input_usd_per_mtok), float(output_usd_per_mtok)])

    def delete_price(self, model: str) -> bool:
        return bool(self._write("DELETE FROM prices WHERE model = ? RETURNING model", [model]))

    def prices(self) -> pd.DataFrame:
        return self._fetchdf("SELECT model, input_usd_per_mtok, output_usd_per_mtok, updated_at FROM prices "
                             "ORDER BY model")

    def price(self, model: str) -> tuple[float, float] | None:
        row = self._fetchone("SELECT input_usd_per_mtok, output_usd_per_mtok FROM prices WHERE model = ?", [model])
        return (float(row[0]), float(row[1])) if row else None

    # what the methods read
    def task_texts(self) -> list[tuple[int, str]]:
        """(id, instruction) of every task: the pool new tasks must be novel against."""
        return self._fetchall("SELECT id, instruction FROM tasks ORDER BY id")

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
