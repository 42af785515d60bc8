"""Batches sent to the OpenAI Batch API, and the ledger's calls waiting in them."""
from __future__ import annotations

from curation.errors import StudioError

# planned: its calls are 'batched' in the ledger and its JSONL written, nothing sent; uploaded: the input file is
# at the provider; submitted: the batch exists there (remote_id), polled until the provider ends it; cancelling:
# the user cancelled it, polled until the provider says cancelled (OpenAI: up to 10 minutes);
# completed / failed / expired / cancelled: the provider's end (some calls may have answers even when expired or
# cancelled); collected: every answer and error stored, any call left unanswered back to 'pending'.
BATCH_STATES = ("planned", "uploaded", "submitted", "cancelling", "completed", "failed", "expired", "cancelled",
                "collected")
BATCH_OPEN = ("planned", "uploaded", "submitted", "cancelling")
BATCH_FIELDS = ("state", "remote_id", "input_file_id", "output_file_id", "error_file_id", "ok_count", "failed_count",
                "input_path", "error", "run_id")


class BatchesMixin:
    """`Store` methods for Batch API batches."""

    def batched_request_keys(self, keys: list[str]) -> set[str]:
        """The subset of `keys` waiting in a batch: a live job must not send them too (that would pay twice)."""
        if not keys:
            return set()
        rows = self._fetchall("SELECT request_key FROM ledger WHERE state = 'batched' AND list_contains($1, "
                              "request_key)", [list(keys)])
        return {r[0] for r in rows}

    def create_batch(self, endpoint: str, model: str, method: str, stage: str, keys: list[str], discount: float,
                     run_id: int | None = None) -> int:
        """Record a planned batch and move its calls (planned in the ledger, not ok, not in another batch) to
        'batched'; returns its id. StudioError when one of them cannot go in it."""
        return self.create_batches(endpoint, model, method, stage, [keys], discount, run_id)[0]

    def create_batches(self, endpoint: str, model: str, method: str, stage: str, parts: list[list[str]],
                       discount: float, run_id: int | None = None) -> list[int]:
        """`create_batch` for each list of keys (a job split to fit the provider's limits per batch), all in one
        transaction: either every part is recorded or none is. Returns their ids, in order."""
        keys = [k for part in parts for k in part]
        with self.transaction() as con:
            rows = con.execute("SELECT request_key, state FROM ledger WHERE list_contains(?, request_key)",
                               [keys]).fetchall()
            states = dict(rows)
            bad = [k for k in keys if states.get(k) not in ("pending", "failed", "retried")]
            if bad:
                raise StudioError(f"call {bad[0][:12]} cannot be batched: it is {states.get(bad[0], 'not planned')}")
            ids = []
            for part in parts:
                ids.append(con.execute(
                    "INSERT INTO batches (run_id, endpoint, model, method, stage, request_count, discount) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [run_id, endpoint, model, method, stage, len(part), discount]).fetchone()[0])
                con.execute("UPDATE ledger SET state = 'batched', batch_id = ?, updated_at = now() "
                            "WHERE list_contains(?, request_key)", [ids[-1], list(part)])
        return ids

    def update_batch(self, batch_id: int, **fields) -> None:
        if not fields or set(fields) - set(BATCH_FIELDS):
            raise StudioError(f"update_batch takes {list(BATCH_FIELDS)}")
        if fields.get("state", "planned") not in BATCH_STATES:
            raise StudioError(f"batch state must be one of {', '.join(BATCH_STATES)} (got {fields['state']!r})")
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(f"UPDATE batches SET {sets}, updated_at = now() WHERE id = ?", [*fields.values(), batch_id])

    def batch(self, batch_id: int) -> dict:
        rows = self._fetchdicts("SELECT * FROM batches WHERE id = ?", [batch_id])
        if not rows:
            raise StudioError(f"no batch {batch_id}; python -m curation batch-status lists them")
        return rows[0]

    def batches(self, open_only: bool = False) -> list[dict]:
        """Every batch, newest first; with open_only those not yet collected."""
        where = " WHERE state != 'collected'" if open_only else ""
        return self._fetchdicts(f"SELECT * FROM batches{where} ORDER BY id DESC")

    def batch_calls(self, batch_id: int, waiting_only: bool = True) -> list[dict]:
        """The ledger rows of a batch's calls (decoded as ledger_rows does); by default those still waiting."""
        keys = [r[0] for r in self._fetchall(
            "SELECT request_key FROM ledger WHERE batch_id = ?" + (" AND state = 'batched'" if waiting_only else ""),
            [batch_id])]
        return self.ledger_rows(keys) if keys else []

    def finish_batch(self, batch_id: int) -> dict | None:
        """After its results are stored: its calls still waiting back to 'pending', its counts from the ledger and
        its state 'collected', in one transaction. None when another collector finished it first (it did all this)."""
        with self.transaction() as con:
            if con.execute("SELECT state FROM batches WHERE id = ?", [batch_id]).fetchone()[0] == "collected":
                return None
            released = len(con.execute("UPDATE ledger SET state = 'pending', batch_id = NULL, updated_at = now() "
                                       "WHERE batch_id = ? AND state = 'batched' RETURNING request_key",
                                       [batch_id]).fetchall())
            counts = dict(con.execute("SELECT state, count(*) FROM ledger WHERE batch_id = ? AND state IN ('ok', "
                                      "'failed') GROUP BY state", [batch_id]).fetchall())
            ok, failed = counts.get("ok", 0), counts.get("failed", 0)
            con.execute("UPDATE batches SET state = 'collected', ok_count = ?, failed_count = ?, updated_at = now() "
                        "WHERE id = ?", [ok, failed, batch_id])
        return {"ok": ok, "failed": failed, "returned_to_pending": released}

    def release_batched(self, batch_id: int) -> int:
        """Calls of a batch that ended without an answer or an error for them: back to 'pending' (a rerun or
        another batch sends them). Returns how many."""
        return len(self._write("UPDATE ledger SET state = 'pending', batch_id = NULL, updated_at = now() "
                               "WHERE batch_id = ? AND state = 'batched' RETURNING request_key", [batch_id]))
