"""Distill Studio: seed tasks -> teacher generations -> review -> LoRA student, in the browser.

python app.py [--workspace DIR] [--port N] [--host 127.0.0.1]
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from curation.jobs import GenerationJobs
from curation.local_server import LocalTeacherServer
from curation.store import Store
from distill.runner import TrainingSlot
from ui import generate, review, runs, seeds, train
from ui.common import CSS

DEFAULT_WORKSPACE = Path(__file__).resolve().parent / "data"


@dataclass
class Studio:
    """What every browser session shares: the workspace, the teacher server, the job and training slots."""

    store: Store
    server: LocalTeacherServer
    generation: GenerationJobs
    training: TrainingSlot

    @classmethod
    def open(cls, workspace: Path) -> "Studio":
        store = Store(workspace)
        store.mark_interrupted_runs()  # runs a dead studio left 'running'
        server = LocalTeacherServer(store.workspace / "logs")
        return cls(store, server, GenerationJobs(store, server), TrainingSlot(store, store.workspace))

    def close(self):
        self.generation.stop()
        self.generation.wait(timeout=30)
        if self.training.stop():
            self.training.wait(timeout=30)
        self.server.stop()
        self.store.close()


def build_app(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="Distill Studio") as demo:
        gr.Markdown(f"# Distill Studio\nworkspace `{studio.store.workspace}`")
        with gr.Tabs():
            with gr.Tab("Seeds", id="seeds"):
                seeds.build(studio)
            with gr.Tab("Generate", id="generate"):
                generate.build(studio)
            with gr.Tab("Review", id="review") as review_tab:
                load_page, page_inputs, page_outputs = review.build(studio)
            with gr.Tab("Train", id="train"):
                train.build(studio)
            with gr.Tab("Runs", id="runs") as runs_tab:
                runs_table = runs.build(studio)
        review_tab.select(load_page, page_inputs, page_outputs, api_visibility="private")
        runs_tab.select(lambda: runs.runs_frame(studio.store), None, [runs_table], api_visibility="private")
    return demo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE, help="workspace folder (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DISTILL_PORT", 7860)))
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    return parser.parse_args(argv)


def launch(studio: Studio, host: str, port: int, block: bool = True):
    demo = build_app(studio)
    demo.queue(default_concurrency_limit=8)
    return demo.launch(server_name=host, server_port=port, css=CSS, prevent_thread_lock=not block,
                       show_error=True, inbrowser=False)


def main(argv=None):
    args = parse_args(argv)
    studio = Studio.open(args.workspace)
    try:
        launch(studio, args.host, args.port)
    finally:
        studio.close()


if __name__ == "__main__":
    main()
