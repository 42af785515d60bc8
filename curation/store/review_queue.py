"""The review queue: one task at a time with all its candidates, and exact undo of what it changed."""
from __future__ import annotations

from dataclasses import dataclass

from curation.errors import StudioError
from curation.store.review import _REVIEW_FROM, _REVIEW_STATUS_SQL


class ReviewQueueMixin:
    """`Store` methods for the review queue."""

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

    def queue_undo(self, action: "QueueAction") -> None:
        """Revert one `queue_label` (status, reason and the edit) or `set_tags_note` action."""
        if action.kind == "meta":
            self.set_tags_note(action.generation_id, action.previous_tags, action.previous_note)
            return
        with self._lock:
            self.undo_batch(action.batch_id)
            if action.edited:  # undo_batch keeps edits in history; the queue puts the earlier text back
                self._write("UPDATE labels SET edited_response = ? WHERE generation_id = ?",
                            [action.previous_edit, action.generation_id])


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
