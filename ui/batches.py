"""The Generate tab's Batch API section: submit the form's job as OpenAI Batch API batches, cancel one, poll and
collect — by hand, and by a timer while the page is open.

Layout and wiring only; curation/batch.py does the work and keeps each batch's state in the workspace, so a
restarted studio shows and resumes the same batches.
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from curation.batch import cancel, collect, open_batches, submit_batch
from curation.errors import StudioError
from ui.common import guarded

COLUMNS = ["id", "state", "remote_id", "method", "stage", "request_count", "ok_count", "failed_count", "endpoint",
           "updated_at"]
POLL_S = 60  # how often the page checks open batches by default: a batch takes minutes to hours


def batches_table(studio) -> pd.DataFrame:
    rows = studio.store.batches()
    return pd.DataFrame([{c: r[c] for c in COLUMNS} for r in rows], columns=COLUMNS)


@guarded
def submit(studio, form: dict, teacher_of, config_of) -> tuple[pd.DataFrame, str]:
    method = form["method"]
    rows = submit_batch(studio.store, teacher_of(form), config_of(method, form))
    split = f" (split in {len(rows)} to fit the provider's limits per batch)" if len(rows) > 1 else ""
    return batches_table(studio), "\n".join(
        f"batch {row['id']} ({row['request_count']} calls of {method}) is {row['state']} as "
        f"{row['remote_id'] or '(not yet created)'}; poll it below" for row in rows) + split


def _note(batch_id: int, s: dict) -> str:
    if s["collected"]:
        return (f"batch {batch_id}: collected, {s['ok']} ok, {s['failed']} failed, {s.get('returned_to_pending', 0)} "
                "back to pending")
    return f"batch {batch_id}: {s.get('remote_status') or s['state']} at the provider"


@guarded
def poll_and_collect(studio, form: dict, teacher_of) -> tuple[pd.DataFrame, str]:
    teacher = teacher_of(form)
    notes = [_note(batch_id, collect(studio.store, teacher, batch_id))
             for batch_id in open_batches(studio.store, teacher)]
    return batches_table(studio), "\n".join(notes) or f"no open batches for {teacher.endpoint_id}"


def poll_on_timer(studio, form: dict, teacher_of):
    """The timer's tick: like Poll and collect, but silent when there is nothing open, and a provider that does
    not answer is said in the message, not raised (a pop-up every tick would bury the page)."""
    try:
        teacher = teacher_of(form)
        ids = open_batches(studio.store, teacher)
        if not ids:
            return batches_table(studio), gr.skip()
        notes = [_note(batch_id, collect(studio.store, teacher, batch_id)) for batch_id in ids]
    except StudioError as exc:
        return batches_table(studio), f"checking the open batches: {exc}"
    return batches_table(studio), "\n".join(notes)


@guarded
def cancel_one(studio, form: dict, teacher_of, batch_id) -> tuple[pd.DataFrame, str]:
    if batch_id is None or int(batch_id) != batch_id or batch_id < 1:
        raise gr.Error("type the id of an open batch (the table's id column) to cancel it")
    s = cancel(studio.store, teacher_of(form), int(batch_id))
    text = (_note(int(batch_id), s) if s["collected"] else
            f"batch {int(batch_id)}: cancelling at the provider; what it answered is stored when it has stopped")
    return batches_table(studio), text


def every(seconds) -> gr.Timer:
    """The timer's new interval; 0 (or empty) stops checking."""
    return gr.Timer(value=max(float(seconds or 0), 1.0), active=bool(seconds and seconds > 0))


def build(studio, form: dict, teacher_of, config_of) -> None:
    with gr.Accordion("OpenAI Batch API: half price, answered within 24 hours", open=False):
        gr.Markdown("Submit the job above as a batch to the teacher's base URL (it must serve /v1/batches, as "
                    "OpenAI does); a job over the provider's limits (50,000 requests, 200 MB a batch) becomes several. "
                    "Its calls wait in the ledger as 'batched' (a live job skips them). While this page is open it "
                    "checks the open batches every few seconds and stores their answers at the batch price as soon "
                    "as the provider has ended them. Cancelling a batch keeps what it had answered; its other calls "
                    "go back to pending for a later run.")
        with gr.Row():
            submit_btn = gr.Button("Submit as a batch", elem_id="gen-batch-submit")
            poll_btn = gr.Button("Poll and collect", elem_id="gen-batch-poll")
            poll_s = gr.Number(POLL_S, label="Check open batches every (seconds; 0: never)", minimum=0,
                               elem_id="gen-batch-every")
        with gr.Row():
            cancel_id = gr.Number(None, label="Batch id", precision=0, minimum=1, elem_id="gen-batch-id")
            cancel_btn = gr.Button("Cancel batch", variant="stop", elem_id="gen-batch-cancel")
        message = gr.Markdown(elem_id="gen-batch-message")
        table = gr.Dataframe(batches_table(studio), interactive=False, wrap=True, elem_id="gen-batches")
        timer = gr.Timer(POLL_S)
    submit_btn.click(lambda **f: submit(studio, f, teacher_of, config_of), inputs_kwargs=form,
                     outputs=[table, message], api_name="submit_batch")
    poll_btn.click(lambda **f: poll_and_collect(studio, f, teacher_of), inputs_kwargs=form, outputs=[table, message],
                   api_name="collect_batches")
    cancel_btn.click(lambda batch_id, **f: cancel_one(studio, f, teacher_of, batch_id),
                     inputs_kwargs={**form, "batch_id": cancel_id}, outputs=[table, message], api_name="cancel_batch")
    poll_s.change(every, [poll_s], [timer], api_visibility="private")
    timer.tick(lambda **f: poll_on_timer(studio, f, teacher_of), inputs_kwargs=form, outputs=[table, message],
               show_progress="hidden", api_name="batch_timer")
