"""Train tab: one click starts a LoRA SFT child process on the approved rows; the tab polls its log."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from distill.models import BUNDLED_STUDENT
from distill.train import TrainConfig
from ui.common import fmt_seconds, guarded, progress_html


def build(studio):
    gr.Markdown("Trains a LoRA adapter on the **approved** rows (train split), with the student's chat template "
                "and the loss on the response tokens only. Runs in its own process: GPU (bf16) when present, "
                "else CPU. One run at a time.")
    with gr.Row():
        student = gr.Textbox(value=BUNDLED_STUDENT, label="Student (bundled name, local folder or model id)",
                             elem_id="train-student")
        max_steps = gr.Number(value=30, label="Max steps (-1 = by epochs)", precision=0, elem_id="train-max-steps")
        epochs = gr.Number(value=1, label="Epochs")
    with gr.Row():
        lr = gr.Number(value=2e-4, label="Learning rate")
        batch = gr.Number(value=4, label="Batch size", precision=0)
        rank = gr.Number(value=16, label="LoRA rank", precision=0)
        max_length = gr.Number(value=1024, label="Max length (tokens)", precision=0)
    with gr.Row():
        start = gr.Button("Train student", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    run_id = gr.Number(label="Run", precision=0, interactive=False, elem_id="train-run-id")
    progress = gr.HTML(progress_html(0, 0, state="idle"), elem_id="train-progress")
    message = gr.Markdown(elem_id="train-message")
    loss_plot = gr.LinePlot(x="step", y="loss", title="Training loss", elem_id="train-loss")
    log_tail = gr.Textbox(label="Log tail", lines=10, max_lines=10, interactive=False, elem_id="train-log")
    timer = gr.Timer(1.0)

    @guarded
    def do_start(stu, steps, ep, rate, bs, r, length):
        config = TrainConfig(student=(stu or BUNDLED_STUDENT).strip(), max_steps=int(steps), epochs=float(ep),
                             learning_rate=float(rate), batch_size=int(bs), lora_r=int(r),
                             lora_alpha=2 * int(r), max_length=int(length))
        rid = studio.training.start(config)
        return rid, f"started training run {rid}"

    def poll(rid):
        rid = int(rid) if rid is not None else studio.training.run_id
        if rid is None:
            return progress_html(0, 0, state="idle"), None, "", gr.skip()
        p = studio.training.progress(rid)
        detail = f"· loss {p['losses'][-1][1]:.4f}" if p["losses"] else ""
        detail += f" · {p['tokens']} tokens · ETA {fmt_seconds(p['eta_s'])}"
        frame = pd.DataFrame(p["losses"], columns=["step", "loss"])
        note = f"run {rid}: {p['status']}"
        if p["status"] == "completed":
            note += f" · adapter in `{p['adapter_dir']}`"
        elif p["status"] == "failed" and p.get("error"):
            note += f" · {p['error'].splitlines()[-1] if p['error'] else ''}"
        return progress_html(p["steps"], p["max_steps"] or 0, detail, state=p["status"]), frame, p["log_tail"], note

    def do_stop():
        return "stopping the training process…" if studio.training.stop() else "no training is running"

    start.click(do_start, [student, max_steps, epochs, lr, batch, rank, max_length], [run_id, message],
                api_name="start_training")
    stop.click(do_stop, None, [message], api_name="stop_training")
    timer.tick(poll, [run_id], [progress, loss_plot, log_tail, message], show_progress="hidden",
               api_name="training_status")
