"""Review tab: a server-side paged table of generations, a detail view, and labels one by one or in bulk."""
from __future__ import annotations

import json
import math

import gradio as gr

from curation import io
from curation.store import REVIEW_SORTS, ReviewFilter
from ui.common import guarded

PAGE_SIZE = 25
STATUS_CHOICES = ["all", "pending", "approved", "rejected", "failed"]


def make_filter(search: str, status: str) -> ReviewFilter:
    return ReviewFilter(status="" if status in ("all", None) else status, search=search or "")


def build(studio):
    with gr.Row():
        search = gr.Textbox(label="Search tasks and responses", scale=3, elem_id="review-search")
        status = gr.Dropdown(STATUS_CHOICES, value="all", label="Status", scale=1, elem_id="review-status")
        sort = gr.Dropdown(list(REVIEW_SORTS), value="id", label="Sort by", scale=1, elem_id="review-sort")
        page = gr.Number(value=1, label="Page", precision=0, minimum=1, scale=1, elem_id="review-page")
    with gr.Row():
        prev_btn = gr.Button("◀ Previous", size="sm", elem_id="review-prev")
        next_btn = gr.Button("Next ▶", size="sm", elem_id="review-next")
        refresh = gr.Button("Refresh", size="sm", elem_id="review-refresh")
    info = gr.Markdown(elem_id="review-info")
    table = gr.Dataframe(interactive=False, elem_id="review-table", wrap=True,
                         column_widths=["5%", "6%", "8%", "28%", "37%", "6%", "10%", "5%"])
    with gr.Row():
        bulk_approve = gr.Button("Approve all matching", elem_id="review-approve-all")
        bulk_reject = gr.Button("Reject all matching", elem_id="review-reject-all")
    gr.Markdown("### Selected generation (click a row)")
    with gr.Row():
        gen_id = gr.Number(label="Generation id", precision=0, elem_id="review-gen-id")
        detail_status = gr.Textbox(label="Status", interactive=False, elem_id="review-detail-status")
    with gr.Row():
        with gr.Column():
            task_md = gr.Textbox(label="Task (as sent)", lines=6, interactive=False)
            response_md = gr.Textbox(label="Teacher response (original)", lines=8, interactive=False,
                                     elem_id="review-response")
        with gr.Column():
            edited = gr.Textbox(label="Edited response (the original is kept)", lines=8, elem_id="review-edit")
            with gr.Row():
                approve = gr.Button("Approve", variant="primary", elem_id="review-approve")
                reject = gr.Button("Reject", variant="stop", elem_id="review-reject")
                save_edit = gr.Button("Save edit & approve", elem_id="review-save-edit")
            meta = gr.JSON(label="Metadata")
    with gr.Accordion("Export the approved rows", open=False):
        with gr.Row():
            export_name = gr.Textbox(value="train.jsonl", label="File name (written to the workspace's exports/)",
                                     elem_id="review-export-name")
            export_format = gr.Dropdown(list(io.EXPORT_FORMATS), value="chat-jsonl", label="Format")
            export_btn = gr.Button("Export", elem_id="review-export")
        export_file = gr.File(label="Download", interactive=False)
    message = gr.Markdown(elem_id="review-message")

    @guarded
    def load_page(q, st, pg, order="id"):
        flt = make_filter(q, st)
        pg = max(1, int(pg or 1))
        frame, total = studio.store.review_page(flt, page=pg, page_size=PAGE_SIZE, sort=order or "id")
        pages = max(1, math.ceil(total / PAGE_SIZE))
        if pg > pages:  # a page past the end (a narrower search) shows the last one
            pg = pages
            frame, total = studio.store.review_page(flt, page=pg, page_size=PAGE_SIZE, sort=order or "id")
        return frame, f"page {pg} of {pages} · {total} matching generations"

    def clamp(pg, delta, q, st):
        _, total = studio.store.review_page(make_filter(q, st), page=1, page_size=1)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        return max(1, min(pages, int(pg or 1) + delta))

    def detail(gid):
        if gid is None:
            return "", "", "", "", None
        row = studio.store.generation(int(gid))
        if row is None:
            raise gr.Error(f"no generation with id {int(gid)}")
        sent = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in row["messages"])
        metadata = {k: row[k] for k in ("task_id", "model", "endpoint", "sample_index", "finish_reason",
                                        "prompt_tokens", "completion_tokens", "latency_s", "status", "error",
                                        "attempts", "skill", "domain", "teacher_only_system")}
        metadata["params"] = row["params"]
        metadata["created_at"] = str(row["created_at"])
        metadata["history"] = [{"status": h["status"], "at": str(h["changed_at"]), "edited": h["edited_response"] is not None}
                               for h in studio.store.label_history(int(gid))]
        return row["review_status"], sent, row["response"] or row["error"] or "", row["edited_response"] or "", metadata

    def on_select(frame, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        gid = int(frame.iloc[row]["id"])
        return (gid, *detail(gid))

    @guarded
    def label_one(gid, action, text, q, st, pg):
        if gid is None:
            raise gr.Error("select a generation first")
        if action == "edit":
            studio.store.edit_response(int(gid), text or "")
        else:
            studio.store.set_label([int(gid)], action)
        return (*detail(gid), *load_page(q, st, pg), f"generation {int(gid)}: {action if action != 'edit' else 'edited and approved'}")

    @guarded
    def label_bulk(action, q, st, pg):
        n = studio.store.label_filter(make_filter(q, st), action)
        return (*load_page(q, st, pg), f"{action} {n} generations matching the filter")

    @guarded
    def do_export(name, fmt):
        path = io.export_path(studio.store.workspace, name)
        n = io.export_examples(studio.store.approved_examples(), path, fmt=fmt)
        return str(path), f"exported {n} approved rows (train split only) to `{path}`"

    export_btn.click(do_export, [export_name, export_format], [export_file, message], api_name="export")
    page_inputs = [search, status, page]
    detail_outputs = [detail_status, task_md, response_md, edited, meta]
    view_inputs = [*page_inputs, sort]
    refresh.click(load_page, view_inputs, [table, info], api_name="review_page")
    for trigger in (search.submit, status.change):  # a new search starts at its first page
        trigger(lambda: 1, None, [page], api_visibility="private").then(
            load_page, view_inputs, [table, info], api_visibility="private")
    for trigger in (page.submit, sort.change):
        trigger(load_page, view_inputs, [table, info], api_visibility="private")
    prev_btn.click(lambda p, q, s: clamp(p, -1, q, s), [page, search, status], [page], api_visibility="private").then(
        load_page, view_inputs, [table, info], api_visibility="private")
    next_btn.click(lambda p, q, s: clamp(p, 1, q, s), [page, search, status], [page], api_visibility="private").then(
        load_page, view_inputs, [table, info], api_visibility="private")
    table.select(on_select, [table], [gen_id, *detail_outputs], api_visibility="private")
    gen_id.submit(detail, [gen_id], detail_outputs, api_name="generation_detail")
    for btn, action in ((approve, "approved"), (reject, "rejected"), (save_edit, "edit")):
        btn.click(lambda g, t, q, s, p, a=action: label_one(g, a, t, q, s, p), [gen_id, edited, *page_inputs],
                  [*detail_outputs, table, info, message], api_name=f"label_{action}")
    for btn, action in ((bulk_approve, "approved"), (bulk_reject, "rejected")):
        btn.click(lambda q, s, p, a=action: label_bulk(a, q, s, p), page_inputs, [table, info, message],
                  api_name=f"bulk_{action}")
    return load_page, view_inputs, [table, info]
