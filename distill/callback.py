"""The TrainerCallback that turns Trainer logs into run_dir/log.jsonl events (see distill.runlog)."""
from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from distill import runlog


class JsonlLogCallback(TrainerCallback):
    """Appends a "start" event when training begins and a "step" event at every logging step.

    The "end" event is written by `distill.train` after the adapter is saved, so "completed" in the
    log always means the adapter files exist.
    """

    def __init__(self, run_dir: Path, student: str):
        self.run_dir = Path(run_dir)
        self.student = student
        self.started_at = time.time()
        self.tokens = 0
        self.device = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        self.started_at = time.time()
        self.device = args.device.type
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if model is not None else None
        n_examples = len(train_dataloader.dataset) if train_dataloader is not None else None
        runlog.append_event(self.run_dir, {
            "event": "start", "device": self.device, "student": self.student, "n_examples": n_examples,
            "max_steps": state.max_steps, "trainable_params": trainable})

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return  # the final summary log (train_runtime, ...) is reported in the "end" event instead
        # TRL's num_tokens sums the attention mask: real tokens seen so far, padding excluded.
        self.tokens = int(logs.get("num_tokens", self.tokens))
        step, max_steps = state.global_step, state.max_steps
        elapsed = time.time() - self.started_at
        eta = elapsed / step * (max_steps - step) if step else None
        runlog.append_event(self.run_dir, {
            "event": "step", "step": step, "max_steps": max_steps, "loss": logs["loss"],
            "learning_rate": logs.get("learning_rate"), "epoch": logs.get("epoch"), "tokens": self.tokens,
            "elapsed_s": round(elapsed, 3), "eta_s": round(eta, 1) if eta is not None else None})
