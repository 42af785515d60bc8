"""Seeds tab: type tasks, import a file, or load a bundled seed pack.

Layout in `_layout`, handlers as module functions taking the store first, wiring in `build`."""
from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from curation import importing
from curation.errors import StudioError
from curation.split import hold_out
from ui.common import guarded

TASKS_SHOWN = 200


# ---- handlers: the store first, then the form's values -------------------------------------------
def table(store):
    return store.tasks_frame().tail(TASKS_SHOWN)


@guarded
def add(store, instr, inp, sk, dom, keep=False):
    if not (instr or "").strip():
        raise gr.Error("type an instruction first")
    task = {"instruction": instr.strip(), "input": (inp or "").strip() or None, "skill": (sk or "").strip() or None,
            "domain": (dom or "").strip() or None}
    ids = importing.add_new_tasks(store, [task], bool(keep))
    if not ids:
        return ("this task is already in the workspace (same instruction and input); tick 'keep duplicates' "
                "to add it anyway", table(store), gr.skip())
    return f"added task {ids[0]}", table(store), ""


@guarded
def do_import(store, path, keep=False):
    if not path:
        raise gr.Error("choose a file to import first")
    try:
        return importing.import_file(store, path, keep_duplicates=bool(keep)).message("imported"), table(store)
    except StudioError as exc:  # name the file the user chose, not the server's copy of it
        raise StudioError(str(exc).replace(str(path), Path(path).name)) from exc


@guarded
def do_pack(store, name, keep=False):
    if not name:
        raise gr.Error("choose a seed pack")
    loaded = importing.load_seed_pack(store, name, keep_duplicates=bool(keep)).message("loaded")
    return f"{loaded} from pack {name}", table(store)


@guarded
def do_split(store, frac, sd):
    held, total = hold_out(store, float(frac), seed=int(sd))
    return f"held out {len(held)} of {total} tasks for evaluation (seed {int(sd)})", table(store)


@guarded
def do_move(store, ids_text, split):
    n = store.set_split(importing.parse_ids(ids_text, "task ids"), split)
    return f"moved {n} tasks to {split}", table(store)


# ---- layout and wiring ----------------------------------------------------------------------------
def _layout() -> SimpleNamespace:
    ui = SimpleNamespace()
    gr.Markdown("Seed tasks are what the teacher answers. Type one, import a CSV / JSONL / JSON / Parquet file "
                "with an `instruction` column (or `prompt` / `question`), or load a bundled pack.")
    with gr.Row():
        with gr.Column():
            ui.instruction = gr.Textbox(label="Instruction", lines=3, elem_id="seed-instruction")
            ui.task_input = gr.Textbox(label="Input (optional)", lines=2)
            with gr.Row():
                ui.skill = gr.Textbox(label="Skill (optional)", placeholder="e.g. reasoning")
                ui.domain = gr.Textbox(label="Domain (optional)", placeholder="e.g. finance")
            ui.add = gr.Button("Add task", variant="primary", elem_id="seed-add")
        with gr.Column():
            ui.upload = gr.File(label="Import a file", file_types=[".csv", ".jsonl", ".ndjson", ".json", ".parquet"],
                                type="filepath", elem_id="seed-file")
            ui.import_btn = gr.Button("Import file", elem_id="seed-import")
            ui.pack = gr.Dropdown(choices=importing.seed_packs(), label="Bundled seed pack",
                                  value=(importing.seed_packs() or [None])[0])
            ui.pack_btn = gr.Button("Load pack", elem_id="seed-pack-load")
            ui.keep_dups = gr.Checkbox(False, label="Keep duplicates (tasks already in the workspace)",
                                       elem_id="seed-keep-duplicates")
    with gr.Accordion("Eval split: hold tasks out of training", open=False):
        gr.Markdown("Held-out (eval) tasks are never exported or trained on; evaluation runs on them.")
        with gr.Row():
            ui.fraction = gr.Slider(0.05, 0.5, value=0.1, step=0.05, label="Fraction to hold out")
            ui.seed = gr.Number(value=0, precision=0, label="Seed")
            ui.split = gr.Button("Stratified split by skill/domain", elem_id="seed-split")
        with gr.Row():
            ui.split_ids = gr.Textbox(label="Task ids (comma-separated)", elem_id="seed-split-ids")
            ui.to_eval = gr.Button("Move to eval")
            ui.to_train = gr.Button("Move to train")
    ui.message = gr.Markdown(elem_id="seed-message")
    ui.tasks = gr.Dataframe(label="Tasks", interactive=False, elem_id="seed-tasks")
    return ui


def build(studio):
    """The tab; returns (the task table, its loader) for the app's load event."""
    ui, store, bound = _layout(), studio.store, functools.partial
    shown = [ui.message, ui.tasks]
    ui.split.click(bound(do_split, store), [ui.fraction, ui.seed], shown, api_name="split_tasks")
    ui.to_eval.click(lambda t: do_move(store, t, "eval"), [ui.split_ids], shown, api_name="move_to_eval")
    ui.to_train.click(lambda t: do_move(store, t, "train"), [ui.split_ids], shown, api_name="move_to_train")
    ui.add.click(bound(add, store), [ui.instruction, ui.task_input, ui.skill, ui.domain, ui.keep_dups],
                 [*shown, ui.instruction], api_name="add_task")
    ui.import_btn.click(bound(do_import, store), [ui.upload, ui.keep_dups], shown, api_name="import_file")
    ui.pack_btn.click(bound(do_pack, store), [ui.pack, ui.keep_dups], shown, api_name="load_seed_pack")
    return ui.tasks, bound(table, store)
