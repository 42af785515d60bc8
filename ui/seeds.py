"""Seeds tab: type tasks, import a file, or load a bundled seed pack."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from curation import importing
from curation.errors import StudioError
from curation.split import hold_out
from ui.common import guarded

TASKS_SHOWN = 200


def build(studio):
    gr.Markdown("Seed tasks are what the teacher answers. Type one, import a CSV / JSONL / JSON / Parquet file "
                "with an `instruction` column (or `prompt` / `question`), or load a bundled pack.")
    with gr.Row():
        with gr.Column():
            instruction = gr.Textbox(label="Instruction", lines=3, elem_id="seed-instruction")
            task_input = gr.Textbox(label="Input (optional)", lines=2)
            with gr.Row():
                skill = gr.Textbox(label="Skill (optional)", placeholder="e.g. reasoning")
                domain = gr.Textbox(label="Domain (optional)", placeholder="e.g. finance")
            add_btn = gr.Button("Add task", variant="primary", elem_id="seed-add")
        with gr.Column():
            upload = gr.File(label="Import a file", file_types=[".csv", ".jsonl", ".ndjson", ".json", ".parquet"],
                             type="filepath", elem_id="seed-file")
            import_btn = gr.Button("Import file", elem_id="seed-import")
            pack = gr.Dropdown(choices=importing.seed_packs(), label="Bundled seed pack",
                               value=(importing.seed_packs() or [None])[0])
            pack_btn = gr.Button("Load pack", elem_id="seed-pack-load")
            keep_dups = gr.Checkbox(False, label="Keep duplicates (tasks already in the workspace)",
                                    elem_id="seed-keep-duplicates")
    with gr.Accordion("Eval split: hold tasks out of training", open=False):
        gr.Markdown("Held-out (eval) tasks are never exported or trained on; evaluation runs on them.")
        with gr.Row():
            fraction = gr.Slider(0.05, 0.5, value=0.1, step=0.05, label="Fraction to hold out")
            seed = gr.Number(value=0, precision=0, label="Seed")
            split_btn = gr.Button("Stratified split by skill/domain", elem_id="seed-split")
        with gr.Row():
            split_ids = gr.Textbox(label="Task ids (comma-separated)", elem_id="seed-split-ids")
            to_eval = gr.Button("Move to eval")
            to_train = gr.Button("Move to train")
    message = gr.Markdown(elem_id="seed-message")
    tasks = gr.Dataframe(label="Tasks", interactive=False, elem_id="seed-tasks")

    def table():
        frame = studio.store.tasks_frame()
        return frame.tail(TASKS_SHOWN)

    @guarded
    def add(instr, inp, sk, dom, keep=False):
        if not (instr or "").strip():
            raise gr.Error("type an instruction first")
        task = {"instruction": instr.strip(), "input": (inp or "").strip() or None, "skill": (sk or "").strip() or None,
                "domain": (dom or "").strip() or None}
        ids = importing.add_new_tasks(studio.store, [task], bool(keep))
        if not ids:
            return ("this task is already in the workspace (same instruction and input); tick 'keep duplicates' "
                    "to add it anyway", table(), gr.skip())
        return f"added task {ids[0]}", table(), ""

    @guarded
    def do_import(path, keep=False):
        if not path:
            raise gr.Error("choose a file to import first")
        try:
            return importing.import_file(studio.store, path, keep_duplicates=bool(keep)).message("imported"), table()
        except StudioError as exc:  # name the file the user chose, not the server's copy of it
            raise StudioError(str(exc).replace(str(path), Path(path).name)) from exc

    @guarded
    def do_pack(name, keep=False):
        if not name:
            raise gr.Error("choose a seed pack")
        return importing.load_seed_pack(studio.store, name, keep_duplicates=bool(keep)).message("loaded") + \
            f" from pack {name}", table()

    @guarded
    def do_split(frac, sd):
        held, total = hold_out(studio.store, float(frac), seed=int(sd))
        return f"held out {len(held)} of {total} tasks for evaluation (seed {int(sd)})", table()

    @guarded
    def do_move(ids_text, split):
        n = studio.store.set_split(importing.parse_ids(ids_text, "task ids"), split)
        return f"moved {n} tasks to {split}", table()

    split_btn.click(do_split, [fraction, seed], [message, tasks], api_name="split_tasks")
    to_eval.click(lambda t: do_move(t, "eval"), [split_ids], [message, tasks], api_name="move_to_eval")
    to_train.click(lambda t: do_move(t, "train"), [split_ids], [message, tasks], api_name="move_to_train")
    add_btn.click(add, [instruction, task_input, skill, domain, keep_dups], [message, tasks, instruction],
                  api_name="add_task")
    import_btn.click(do_import, [upload, keep_dups], [message, tasks], api_name="import_file")
    pack_btn.click(do_pack, [pack, keep_dups], [message, tasks], api_name="load_seed_pack")
    return tasks, table
