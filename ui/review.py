"""Review tab: a server-side paged table of generations, a detail view, and labels one by one or in bulk.

Layout in `_layout`, handlers as module functions taking the store first, wiring in `_wire`."""
from __future__ import annotations

import functools
import json
import math
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from curation import exporting
from curation.store import REVIEW_SORTS, ReviewFilter
from curation.toolsets import check_text
from ui.common import guarded

PAGE_SIZE = 25
STATUS_CHOICES = ["all", "pending", "approved", "rejected", "failed"]
CALL_COLUMNS = ["function", "arguments", "valid", "error"]
METADATA_KEYS = ("task_id", "model", "endpoint", "sample_index", "finish_reason", "prompt_tokens", "completion_tokens",
                 "latency_s", "status", "error", "attempts", "skill", "domain", "teacher_only_system")


def make_filter(search: str, status: str) -> ReviewFilter:
    return ReviewFilter(status="" if status in ("all", None) else status, search=search or "")


# ---- handlers: the store first, then the form's values -------------------------------------------
@guarded
def load_page(store, q, st, pg, order="id"):
    """One page of the table and the line above it: the page, what matches, and how many by status."""
    flt = make_filter(q, st)
    frame, total, pg, pages = _page(store, flt, pg, order)
    counts = store.review_status_counts(flt)
    done = ", ".join(f"{counts[k]} {k}" for k in ("approved", "rejected", "pending", "failed") if counts[k])
    return frame, f"page {pg} of {pages} · {total} matching generations" + (f" ({done})" if done else "")


def _page(store, flt: ReviewFilter, pg, order) -> tuple:
    """(frame, matching rows, page shown, pages): a page past the end (a narrower search) shows the last one."""
    pg = max(1, int(pg or 1))
    frame, total = store.review_page(flt, page=pg, page_size=PAGE_SIZE, sort=order or "id")
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if pg > pages:
        pg = pages
        frame, total = store.review_page(flt, page=pg, page_size=PAGE_SIZE, sort=order or "id")
    return frame, total, pg, pages


def clamp(store, pg, delta, q, st) -> int:
    _, total = store.review_page(make_filter(q, st), page=1, page_size=1)
    return max(1, min(max(1, math.ceil(total / PAGE_SIZE)), int(pg or 1) + delta))


def generation_id(value) -> int | None:
    """The id box's value as an id (None when empty); a clear error when it is not a whole number."""
    if value is None or str(value).strip() == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise gr.Error(f"a generation id is a whole number (got {value!r})") from None


def detail(store, gid):
    """Status, the messages sent, the original response, the response to keep (the edit box), metadata, the
    conversation view: its turns (the edit box of a conversation's earlier turns) and the source chunk, and the
    tool calls of a tool-use answer."""
    gid = generation_id(gid)
    if gid is None:
        return "", "", "", "", None, [], _turns_frame([]), "", _calls(store, {}, "")
    row = store.generation(gid)
    if row is None:
        raise gr.Error(f"no generation with id {int(gid)}")
    sent = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in row["messages"])
    original = row["response"] or row["error"] or ""
    kept = row["edited_response"] or row["response"] or ""
    turns = row["edited_messages"] or row["messages"]
    chat = [{"role": m["role"], "content": m["content"]} for m in turns if m["role"] != "system"]
    chat.append({"role": "assistant", "content": kept})
    return (row["review_status"], sent, original, kept, _metadata(store, row), chat, _turns_frame(turns),
            _source(store, row), _calls(store, row, kept))


def _turns_frame(turns: list[dict]) -> pd.DataFrame:
    return pd.DataFrame({"role": [m["role"] for m in turns], "text": [m["content"] for m in turns]})


def _source(store, row: dict) -> str:
    """Where a grounded answer's facts come from: the document and chunk its question was asked about."""
    chunk = store.chunk_of_task(row["task_id"]) if row.get("chunk_id") else None
    if chunk is None:
        return ""
    quoted = "\n".join("> " + line for line in chunk["text"].splitlines())
    return (f"**Source:** {chunk['document']}, chunk {chunk['ordinal'] + 1} (characters {chunk['char_start']:,}–"
            f"{chunk['char_end']:,}; chunk id {chunk['id']})\n\n{quoted}")


def _calls(store, row: dict, kept: str):
    """The calls of the answer to keep (an edit is checked again), one row each, checked against the task's tool
    set; shown only for a task answered with one."""
    toolset = store.toolset(int(row["toolset_id"])) if row.get("toolset_id") else None
    if toolset is None:
        return gr.update(value=pd.DataFrame(columns=CALL_COLUMNS), visible=False)
    checked = check_text(toolset["tools"], kept)
    rows = [[c["name"], c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"]),
             "yes" if c["valid"] else "no", c["error"] or ""] for c in checked]
    if not rows:
        rows = [["", "", "no call", "the answer is text, without a tool call"]]
    return gr.update(value=pd.DataFrame(rows, columns=CALL_COLUMNS), visible=True,
                     label=f"Tool calls, checked against tool set {toolset['id']} ({toolset['name']})")


@guarded
def save_turns(store, gid, frame, q, st, pg, order="id"):
    """Approve a conversation with its edited earlier turns (the original is kept)."""
    gid = generation_id(gid)
    if gid is None:
        raise gr.Error("select a generation first")
    rows = frame.to_dict("records") if isinstance(frame, pd.DataFrame) else \
        [dict(zip(frame["headers"], r)) for r in frame["data"]]
    store.edit_turns(gid, [{"role": r["role"], "content": r["text"]} for r in rows])
    return (str(gid), *detail(store, gid), *load_page(store, q, st, pg, order),
            f"generation {gid}: turns saved and approved")


def on_select(store, frame, evt: gr.SelectData):
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    gid = int(frame.iloc[row]["id"])
    return (str(gid), *detail(store, gid))


@guarded
def label_one(store, gid, action, text, q, st, pg, order="id", go_on=False):
    """Approve, reject or save an edit; with `go_on`, open the row after it on the page it was labelled from."""
    gid = generation_id(gid)
    if gid is None:
        raise gr.Error("select a generation first")
    ids_before = [int(i) for i in _page(store, make_filter(q, st), pg, order)[0]["id"]] if go_on else []
    row = store.generation(gid)
    if action == "edit" and row is not None and (text or "") == (row["edited_response"] or row["response"]):
        action = "approved"  # nothing was changed: a plain approval, not an edit equal to the original
    if action == "edit":
        store.edit_response(gid, text or "")
    else:
        store.set_label([gid], action)
    done = f"generation {gid}: {action if action != 'edit' else 'edited and approved'}"
    shown = _next_id(ids_before, gid) if go_on else None
    if shown is not None:
        done += f" · next: generation {shown}"
    shown = gid if shown is None else shown
    return (str(shown), *detail(store, shown), *load_page(store, q, st, pg, order), done)


@guarded
def ask_bulk(store, action, q, st):
    """The first step of a bulk label: how many rows it will label, and a Confirm button."""
    flt = make_filter(q, st)
    ids = store.labelable_ids(flt, action)
    if not ids:
        gr.Warning(f"nothing to label {action}: no generation matches the filter")
        return gr.update(visible=False), "", None
    what = f"search “{flt.search}”" if flt.search else "no search"
    verb = "Approve" if action == "approved" else "Reject"
    text = (f"**{verb} {len(ids)} generations** matching the filter ({what}, status {st or 'all'})? "
            "One batch: *Undo the last bulk label* puts them back.")
    return gr.update(visible=True), text, {"action": action, "ids": ids}


@guarded
def do_bulk(store, pending, q, st, pg, order):
    if not pending:
        raise gr.Error("press Approve all matching or Reject all matching first")
    batch = store.label_batch(pending["ids"], pending["action"], reason="review:bulk")
    return (*load_page(store, q, st, pg, order), f"{pending['action']} {len(pending['ids'])} generations matching "
            "the filter", gr.update(visible=False), None, batch, gr.update(visible=batch is not None))


@guarded
def undo_bulk(store, batch, q, st, pg, order):
    if batch is None:
        raise gr.Error("no bulk label to undo in this tab")
    n = store.undo_batch(int(batch))
    return (*load_page(store, q, st, pg, order), f"undone: {n} generations are back to their earlier status", None,
            gr.update(visible=False))


@guarded
def do_export(store, name, fmt):
    path = exporting.export_path(store.workspace, name)
    n = exporting.export_examples(store.approved_examples(), path, fmt=fmt)
    return str(path), f"exported {n} approved rows (train split only) to `{path}`"


def _next_id(ids: list[int], gid: int) -> int | None:
    """The row after `gid` on the page the user labelled it from (None when it was the last)."""
    return ids[ids.index(gid) + 1] if gid in ids and ids.index(gid) + 1 < len(ids) else None


def _metadata(store, row: dict) -> dict:
    metadata = {k: row[k] for k in METADATA_KEYS}
    metadata["params"] = row["params"]
    metadata["created_at"] = str(row["created_at"])
    metadata["history"] = [{"status": h["status"], "at": str(h["changed_at"]),
                            "edited": h["edited_response"] is not None} for h in store.label_history(int(row["id"]))]
    return metadata


# ---- layout and wiring ----------------------------------------------------------------------------
def _table_section(ui) -> None:
    with gr.Row():
        ui.search = gr.Textbox(label="Search tasks and responses", scale=3, elem_id="review-search")
        ui.status = gr.Dropdown(STATUS_CHOICES, value="all", label="Status", scale=1, elem_id="review-status")
        ui.sort = gr.Dropdown(list(REVIEW_SORTS), value="id", label="Sort by", scale=1, elem_id="review-sort")
        ui.page = gr.Number(value=1, label="Page", precision=0, minimum=1, scale=1, elem_id="review-page")
    with gr.Row():
        ui.prev = gr.Button("◀ Previous", size="sm", elem_id="review-prev")
        ui.next = gr.Button("Next ▶", size="sm", elem_id="review-next")
        ui.refresh = gr.Button("Refresh", size="sm", elem_id="review-refresh")
    ui.info = gr.Markdown(elem_id="review-info")
    ui.table = gr.Dataframe(interactive=False, elem_id="review-table", wrap=True, max_height=1200,
                            column_widths=["5%", "6%", "8%", "28%", "37%", "6%", "10%", "5%"])
    with gr.Row():
        ui.bulk_approve = gr.Button("Approve all matching…", elem_id="review-approve-all")
        ui.bulk_reject = gr.Button("Reject all matching…", elem_id="review-reject-all")
        ui.bulk_undo = gr.Button("Undo the last bulk label", visible=False, elem_id="review-bulk-undo")
    with gr.Row(visible=False, elem_id="review-confirm-row") as ui.confirm_row:
        ui.confirm_text = gr.Markdown(elem_id="review-confirm-text")
        ui.confirm = gr.Button("Confirm", variant="primary", size="sm", elem_id="review-confirm")
        ui.cancel = gr.Button("Cancel", size="sm", elem_id="review-cancel")
    ui.pending_bulk, ui.last_batch = gr.State(None), gr.State(None)


def _detail_section(ui) -> None:
    gr.Markdown("### Selected generation (click a row)")
    with gr.Row():
        # a text box, not a number: an empty gr.Number shows 0, which reads as a generation id
        ui.gen_id = gr.Textbox(value="", label="Generation id", placeholder="click a row, or type an id",
                               max_lines=1, elem_id="review-gen-id")
        ui.detail_status = gr.Textbox(label="Status", interactive=False, elem_id="review-detail-status")
        ui.advance = gr.Checkbox(value=True, label="After a label, open the next row", elem_id="review-advance")
    with gr.Row():
        with gr.Column():
            ui.task = gr.Textbox(label="Task (as sent)", lines=6, interactive=False)
            ui.response = gr.Textbox(label="Teacher response (original)", lines=8, interactive=False,
                                     elem_id="review-response")
        with gr.Column():
            ui.edited = gr.Textbox(label="Response to keep (edit it; the original is kept)", lines=8,
                                   elem_id="review-edit")
            with gr.Row():
                ui.approve = gr.Button("Approve", variant="primary", elem_id="review-approve")
                ui.reject = gr.Button("Reject", variant="stop", elem_id="review-reject")
                ui.save_edit = gr.Button("Save edit & approve", elem_id="review-save-edit")
            ui.message = gr.Markdown(elem_id="review-message")
            ui.meta = gr.JSON(label="Metadata")


def _more_sections(ui) -> None:
    ui.calls = gr.Dataframe(pd.DataFrame(columns=CALL_COLUMNS), interactive=False, wrap=True, visible=False,
                            label="Tool calls", elem_id="review-calls")
    with gr.Accordion("Conversation and source (multi-turn rows, grounded answers)", open=False):
        with gr.Row():
            with gr.Column():
                ui.chat = gr.Chatbot(label="The conversation as trained on (every assistant turn is learned)",
                                     height=360, elem_id="review-chat")
                ui.source = gr.Markdown(elem_id="review-source")
            with gr.Column():
                ui.turns = gr.Dataframe(_turns_frame([]), interactive=True, wrap=True, elem_id="review-turns",
                                        label="Turns before the answer: edit any text (the original is kept)")
                ui.save_turns = gr.Button("Save turn edits & approve", elem_id="review-save-turns")
    with gr.Accordion("Export the approved rows", open=False):
        with gr.Row():
            ui.export_name = gr.Textbox(value="train.jsonl", label="File name (written to the workspace's exports/)",
                                        elem_id="review-export-name")
            ui.export_format = gr.Dropdown(list(exporting.EXPORT_FORMATS), value="chat-jsonl", label="Format")
            ui.export = gr.Button("Export", elem_id="review-export")
        ui.export_file = gr.File(label="Download", interactive=False)
        ui.export_message = gr.Markdown(elem_id="review-export-message")


def _layout() -> SimpleNamespace:
    ui = SimpleNamespace()
    _table_section(ui)
    _detail_section(ui)
    _more_sections(ui)
    return ui


def _wire(ui, store) -> list:
    bound, private = functools.partial, {"api_visibility": "private"}
    page_inputs = [ui.search, ui.status, ui.page]
    view = [*page_inputs, ui.sort]
    shown = [ui.table, ui.info]
    detail_outputs = [ui.detail_status, ui.task, ui.response, ui.edited, ui.meta, ui.chat, ui.turns, ui.source,
                      ui.calls]
    ui.export.click(bound(do_export, store), [ui.export_name, ui.export_format], [ui.export_file, ui.export_message],
                    api_name="export")
    ui.refresh.click(bound(load_page, store), view, shown, api_name="review_page")
    for trigger in (ui.search.submit, ui.status.change):  # a new search starts at its first page
        trigger(lambda: 1, None, [ui.page], **private).then(bound(load_page, store), view, shown, **private)
    for trigger in (ui.page.submit, ui.sort.change):
        trigger(bound(load_page, store), view, shown, **private)
    for button, delta in ((ui.prev, -1), (ui.next, 1)):
        button.click(lambda p, q, s, d=delta: clamp(store, p, d, q, s), [ui.page, ui.search, ui.status], [ui.page],
                     **private).then(bound(load_page, store), view, shown, **private)
    def select(frame, evt: gr.SelectData):  # gradio finds the event data by this annotation
        return on_select(store, frame, evt)

    ui.table.select(select, [ui.table], [ui.gen_id, *detail_outputs], **private)
    ui.gen_id.submit(guarded(bound(detail, store)), [ui.gen_id], detail_outputs, api_name="generation_detail")
    for button, action in ((ui.approve, "approved"), (ui.reject, "rejected"), (ui.save_edit, "edit")):
        button.click(lambda g, t, q, s, p, o, a, act=action: label_one(store, g, act, t, q, s, p, o, a),
                     [ui.gen_id, ui.edited, *view, ui.advance], [ui.gen_id, *detail_outputs, *shown, ui.message],
                     api_name=f"label_{action}")
    ui.save_turns.click(bound(save_turns, store), [ui.gen_id, ui.turns, *view],
                        [ui.gen_id, *detail_outputs, *shown, ui.message], api_name="save_turns")
    for button, action in ((ui.bulk_approve, "approved"), (ui.bulk_reject, "rejected")):
        button.click(lambda q, s, act=action: ask_bulk(store, act, q, s), [ui.search, ui.status],
                     [ui.confirm_row, ui.confirm_text, ui.pending_bulk], **private)
    ui.confirm.click(bound(do_bulk, store), [ui.pending_bulk, *view],
                     [*shown, ui.message, ui.confirm_row, ui.pending_bulk, ui.last_batch, ui.bulk_undo], **private)
    ui.cancel.click(lambda: (gr.update(visible=False), None), None, [ui.confirm_row, ui.pending_bulk], **private)
    ui.bulk_undo.click(bound(undo_bulk, store), [ui.last_batch, *view],
                       [*shown, ui.message, ui.last_batch, ui.bulk_undo], **private)
    return view


def _bulk_api(store):
    """The API's one-step bulk labels (a script has no confirm dialog; the browser asks first)."""
    def bulk_approved(search: str, status: str) -> str:
        """Approve every generation matching the search and status (all, pending, approved, rejected, failed)."""
        return bulk(search, status, "approved")

    def bulk_rejected(search: str, status: str) -> str:
        """Reject every generation matching the search and status (all, pending, approved, rejected, failed)."""
        return bulk(search, status, "rejected")

    @guarded
    def bulk(search, status, action):
        n = store.label_filter(make_filter(search, status), action)
        return f"{action} {n} generations matching the filter"

    gr.api(bulk_approved, api_name="bulk_approved")
    gr.api(bulk_rejected, api_name="bulk_rejected")


def build(studio):
    """The tab; returns (page loader, its inputs, its outputs) for the app's load event."""
    ui = _layout()
    view = _wire(ui, studio.store)
    _bulk_api(studio.store)
    return functools.partial(load_page, studio.store), view, [ui.table, ui.info]
