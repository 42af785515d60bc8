"""Labels: approving, rejecting and editing generations, each change one batch in label_events with the state
it replaced, so `undo_batch` puts it back; and the history and counts of those batches."""
from __future__ import annotations

import json

import pandas as pd

from curation.errors import StudioError
from curation.store.review import ReviewFilter


class LabelsMixin:
    """`Store` methods that change labels, undo them and read their history."""

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

    def label_batch(self, gen_ids: list[int], status: str, reason: str | None = None) -> int | None:
        """`set_label` that returns its batch id (None when there was nothing to label), for an exact undo."""
        with self._lock:  # re-entrant: no other label batch can slip in between the two calls
            if not self.set_label(gen_ids, status, reason=reason):
                return None
            return self.last_label_batch()

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
            con = self._cursor()
            con.register("_label_reasons", incoming)  # before the transaction, as in put_embeddings
            try:
                with self.transaction():  # on the same cursor, which alone sees what it registered
                    self._check_labelable(con, ids, status)
                    batch = con.execute("SELECT nextval('label_batch_seq')").fetchone()[0]
                    con.execute("""
                        INSERT INTO label_events (generation_id, status, reason, batch_id, previous_status,
                                                  previous_reason)
                        SELECT r.generation_id, ?, r.reason, ?, coalesce(l.status, 'pending'), l.reason
                        FROM _label_reasons r LEFT JOIN labels l ON l.generation_id = r.generation_id""",
                                [status, batch])
                    _rewrite_labels(con, """
                        SELECT l.* REPLACE (?::VARCHAR AS status, r.reason AS reason, now() AS updated_at)
                        FROM labels l JOIN _label_reasons r ON l.generation_id = r.generation_id""", [status])
                    con.execute("""
                        INSERT INTO labels (generation_id, status, reason, updated_at)
                        SELECT generation_id, ?, reason, now() FROM _label_reasons
                        WHERE generation_id NOT IN (SELECT generation_id FROM labels)""", [status])
            finally:
                con.unregister("_label_reasons")
        return batch

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
        return [r[0] for r in self._fetchall(
            f"SELECT id FROM generations WHERE {ok_only}id IN ({ids_sql}) AND id NOT IN "
            "(SELECT generation_id FROM labels WHERE status = ?) ORDER BY id", [*params, status])]

    def undo_batch(self, batch_id: int) -> int:
        """Put every row of a label batch back to its status and reason before it; edits stay in history."""
        with self.transaction() as con:
            count = con.execute("SELECT count(*) FROM label_events WHERE batch_id = ?", [batch_id]).fetchone()[0]
            if not count:
                raise StudioError(f"no label batch {batch_id} to undo")
            _rewrite_labels(con, """
                SELECT l.* REPLACE (e.previous_status AS status, e.previous_reason AS reason, now() AS updated_at)
                FROM labels l JOIN label_events e ON l.generation_id = e.generation_id WHERE e.batch_id = ?""",
                            [batch_id])
            undo = con.execute("SELECT nextval('label_batch_seq')").fetchone()[0]
            con.execute("""
                INSERT INTO label_events (generation_id, status, reason, batch_id, previous_status, previous_reason)
                SELECT generation_id, previous_status, 'undo batch ' || ?, ?, status, reason
                FROM label_events WHERE batch_id = ?""", [batch_id, undo, batch_id])
        return count

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

    def label_batch_count(self, batch_id: int | None) -> int:
        """How many generations a label batch changed (0 for None)."""
        if batch_id is None:
            return 0
        return self._fetchone("SELECT count(*) FROM label_events WHERE batch_id = ?", [int(batch_id)])[0]

    def label_history(self, gen_id: int) -> list[dict]:
        return self._fetchdicts("SELECT status, edited_response, reason, batch_id, changed_at FROM label_events "
                                "WHERE generation_id = ? "
                                "ORDER BY id", [gen_id])


def _rewrite_labels(con, rows_sql: str, params: list) -> None:
    """Replace the label rows that `rows_sql` (a SELECT of whole `labels` rows, new values in place) gives, inside
    the caller's transaction. Deleting and inserting them, not an UPDATE: DuckDB 2.0 updates the strings of a
    checkpointed table slowly (an undo setting `reason` on 415k rows took 47 s; this takes 0.3 s)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _relabel AS {rows_sql}", params)
    con.execute("DELETE FROM labels WHERE generation_id IN (SELECT generation_id FROM _relabel)")
    con.execute("INSERT INTO labels SELECT * FROM _relabel")
    con.execute("DROP TABLE _relabel")
