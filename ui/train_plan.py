"""Train tab, the *Before you train* panel: the exact headless command and the rows a run would train on, and
named settings saved in (and loaded from) the workspace's configs/ folder."""
from __future__ import annotations

import json

import gradio as gr
import pandas as pd

from distill.saved_settings import load_config, save_config, saved_configs
from ui.common import guarded


def build(studio, inputs, config_from_values, values_from_config):
    """Before a run: the exact headless command and the rows it trains on; save and load the settings.

    inputs: the Train tab's settings; config_from_values / values_from_config: its form <-> TrainConfig."""
    with gr.Accordion("Before you train: the command, the data, saved settings", open=False):
        with gr.Row():
            show = gr.Button("Show the command and the data", size="sm", elem_id="train-preview")
            name = gr.Textbox(label="Settings name", value="my-settings", scale=1, elem_id="train-config-name")
            save = gr.Button("Save settings", size="sm", elem_id="train-config-save")
            saved = gr.Dropdown(saved_configs(studio.store.workspace), label="Saved settings", scale=1,
                                elem_id="train-config-saved")
            load = gr.Button("Load", size="sm", elem_id="train-config-load")
        command = gr.Markdown(elem_id="train-command")
        rows = gr.Dataframe(interactive=False, wrap=True, max_height=300, elem_id="train-data-preview")

    @guarded
    def do_show(*values):
        from distill import snapshot
        from distill.cli import command_for

        config = config_from_values(*values)
        found = snapshot.collect(studio.store, config)
        keys = ("prompt", "chosen", "rejected") if config.method == "dpo" else ("messages",)
        frame = pd.DataFrame([{k: _short(r.get(k)) for k in keys} for r in found[:PREVIEW_ROWS]])
        return (f"Same run, headless:\n```\n{command_for(config, studio.store.workspace)}\n```\n"
                f"**{len(found)} rows** for {config.method} (the first {min(len(found), PREVIEW_ROWS)} below)", frame)

    @guarded
    def do_save(label, *values):
        path = save_config(studio.store.workspace, label, config_from_values(*values))
        return f"saved the settings to `{path}`", gr.update(choices=saved_configs(studio.store.workspace),
                                                             value=path.stem)

    @guarded
    def do_load(label):
        if not label:
            raise gr.Error("choose saved settings first")
        return values_from_config(load_config(studio.store.workspace, label))

    show.click(do_show, inputs, [command, rows], api_name="train_preview")
    save.click(do_save, [name, *inputs], [command, saved], api_name="train_save_config")
    load.click(do_load, [saved], inputs, api_name="train_load_config")
    return command


PREVIEW_ROWS = 20


def _short(value, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"
