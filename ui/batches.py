"""The Generate tab's Batch API section: submit the form's job as an OpenAI Batch API batch, poll and collect.

Layout and wiring only; curation/batch.py does the work and keeps each batch's state in the workspace, so a
restarted studio shows and resumes the same batches.
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from curation.batch import collect, open_batches, submit_batch
from ui.common import guarded

COLUMNS = ["id", "state", "remote_id", "method", "stage", "request_count", "ok_count", "failed_count", "endpoint",
           "updated_at"]


def batches_table(studio) -> pd.DataFrame:
    rows = studio.store.batches()
    return pd.DataFrame([{c: r[c] for c in COLUMNS} for r in rows], columns=COLUMNS)


@guarded
def submit(studio, form: dict, teacher_of, config_of) -> tuple[pd.DataFrame, str]:
    method = form["method"]
    row = submit_batch(studio.store, teacher_of(form), config_of(method, form))
    return batches_table(studio), (f"batch {row['id']} ({row['request_count']} calls of {method}) is "
                                   f"{row['state']} as {row['remote_id'] or '(not yet created)'}; poll it below")


@guarded
def poll_and_collect(studio, form: dict, teacher_of) -> tuple[pd.DataFrame, str]:
    teacher = teacher_of(form)
    notes = []
    for batch_id in open_batches(studio.store, teacher):
        s = collect(studio.store, teacher, batch_id)
        notes.append(f"batch {batch_id}: " + (f"collected, {s['ok']} ok, {s['failed']} failed, "
                                              f"{s['returned_to_pending']} back to pending" if s["collected"]
                                              else f"{s.get('remote_status') or s['state']} at the provider"))
    return batches_table(studio), "\n".join(notes) or f"no open batches for {teacher.endpoint_id}"


def build(studio, form: dict, teacher_of, config_of) -> None:
    with gr.Accordion("OpenAI Batch API: half price, answered within 24 hours", open=False):
        gr.Markdown("Submit the job above as one batch to the teacher's base URL (it must serve /v1/batches, as "
                    "OpenAI does). Its calls wait in the ledger as 'batched' (a live job skips them); poll until "
                    "the provider has ended the batch, and its answers are stored at the batch price.")
        with gr.Row():
            submit_btn = gr.Button("Submit as a batch", elem_id="gen-batch-submit")
            poll_btn = gr.Button("Poll and collect", elem_id="gen-batch-poll")
        message = gr.Markdown(elem_id="gen-batch-message")
        table = gr.Dataframe(batches_table(studio), interactive=False, wrap=True, elem_id="gen-batches")
    submit_btn.click(lambda **f: submit(studio, f, teacher_of, config_of), inputs_kwargs=form,
                     outputs=[table, message], api_name="submit_batch")
    poll_btn.click(lambda **f: poll_and_collect(studio, f, teacher_of), inputs_kwargs=form, outputs=[table, message],
                   api_name="collect_batches")
