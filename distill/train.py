"""The training child's entry that trains any method from a run directory (distill.rundir writes and
reads those); torch, transformers, peft and trl are imported inside the functions that run in the child.

Methods: sft (here: LoRA SFT, padding-free batches), dpo (`distill.dpo`), kd and kd_logprobs
(`distill.kd`), grpo (`distill.grpo`). Each builds a transformers Trainer with the same callbacks, so every method writes the
same log.jsonl events, stops into a resumable checkpoint and resumes with the same global step.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from curation.errors import StudioError
from distill import runlog
from distill.config import TrainConfig
from distill.data import tokenize_example
from distill.rundir import read_heldout, read_run_dir
from models.resolve import resolve_student


def to_prompt_completion(example: dict) -> dict:
    """TRL's conversational prompt-completion format: the loss then covers the last (assistant) turn only."""
    messages = example["messages"]
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise StudioError(f"example {example.get('generation_id')} does not end with an assistant answer")
    return {"prompt": messages[:-1], "completion": [messages[-1]]}


# ---- the training child ---------------------------------------------------------------------------
def train(run_dir: Path, resume: bool = False) -> dict:
    """The training child's entry: train the run's method; returns the end (or stop) metrics.

    Completed: run_dir/adapter (+ model card) is saved and an "end" event logged. Stopped (SIGTERM):
    a checkpoint-N folder is saved and a "stopped" event logged; `resume=True` continues from the last
    complete checkpoint. On any failure an "error" event is logged and the exception re-raised.
    """
    from distill.callback import StopSignal

    run_dir = Path(run_dir)
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: the runner sets it too; nothing may download
    stop = StopSignal().install()
    try:
        return _train(run_dir, resume, stop)
    except BaseException as exc:
        # A StudioError's message is already written for the user; anything else keeps its type name.
        message = str(exc) if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}".rstrip(": ")
        runlog.append_event(run_dir, {"event": "error", "error": message})
        raise
    finally:
        stop.uninstall()


def _train(run_dir: Path, resume: bool, stop) -> dict:
    from distill.callback import CheckpointOnStop, EvalLossCallback, JsonlLogCallback
    from distill.loading import device_of, is_main_process

    config, rows, models_dir = read_run_dir(run_dir)
    checkpoint = runlog.last_complete_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        raise StudioError(f"nothing to resume in {run_dir}: it has no complete checkpoint (a run saves one when "
                          "stopped, or every save_steps steps); start a new run instead")
    device = device_of()
    model_path = resolve_student(config.student, models_dir)  # may materialise the bundled GGUF: before the baseline
    baseline = _memory_baseline(device)
    step_before = int(checkpoint.name.removeprefix(runlog.CHECKPOINT_PREFIX)) if checkpoint else 0
    log = JsonlLogCallback(run_dir, student=config.student, method=config.method,
                           tokens_before=runlog.tokens_at_step(runlog.read_events(run_dir), step_before))
    on_stop = CheckpointOnStop(stop)
    heldout = read_heldout(run_dir)[:config.eval_rows]
    trainer = build_method_trainer(model_path, rows, config, run_dir, [log, on_stop], device, models_dir)
    eval_loss = EvalLossCallback(run_dir, heldout, trainer.processing_class, config.max_length, config.eval_steps)
    trainer.add_callback(eval_loss)
    if stop.requested:
        return _stopped(run_dir, step_before, log, device, checkpoint)
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    peak = _memory_peak(device, baseline)
    state = trainer.state
    if on_stop.stopped_at is not None and state.global_step < state.max_steps:
        return _stopped(run_dir, state.global_step, log, device, runlog.last_complete_checkpoint(run_dir), peak)
    adapter_dir = run_dir / runlog.ADAPTER_DIR
    metrics = {**end_metrics(output.metrics, state, log), **peak, "method": config.method}
    if eval_loss.last_loss is not None:
        metrics.update(eval_loss=eval_loss.last_loss, eval_rows=len(heldout))
    if trainer.is_fsdp_enabled:  # every rank takes part in gathering the sharded adapter; the main one writes it
        trainer.save_model(str(adapter_dir))
    if is_main_process():
        if not trainer.is_fsdp_enabled:
            trainer.model.save_pretrained(adapter_dir, safe_serialization=True)
        # The tokenizer (with its chat template) travels with the adapter so it can be used on its own.
        trainer.processing_class.save_pretrained(adapter_dir)
        from distill.model_card import write_model_card

        write_model_card(adapter_dir, run_dir, metrics, merged=False)
        runlog.append_event(run_dir, {"event": "end", "status": "completed", "adapter_dir": str(adapter_dir),
                                      "metrics": metrics})
    return metrics


def _stopped(run_dir: Path, step: int, log, device: str, checkpoint: Path | None, peak: dict | None = None) -> dict:
    from distill.loading import is_main_process

    metrics = {"steps": step, "tokens": log.tokens, "device": device, **(peak or {})}
    if is_main_process():
        runlog.append_event(run_dir, {"event": "stopped", "step": step, "metrics": metrics,
                                      "checkpoint": str(checkpoint) if checkpoint else None})
    return {"stopped": True, "checkpoint": str(checkpoint) if checkpoint else None, **metrics}


def build_method_trainer(model_path: Path, rows: list[dict], config: TrainConfig, run_dir: Path, callbacks,
                         device: str, models_dir: Path):
    """The method's Trainer; every builder checks memory before loading weights."""
    if config.method == "sft":
        return build_trainer(model_path, rows, config, run_dir, callbacks, device=device, check_memory=True)
    if config.method == "dpo":
        from distill.dpo import build_dpo_trainer

        return build_dpo_trainer(model_path, rows, config, run_dir, callbacks, device)
    if config.method == "grpo":
        from distill.grpo import build_grpo_trainer

        return build_grpo_trainer(model_path, rows, config, run_dir, callbacks, device)
    from distill.kd import build_kd_trainer

    return build_kd_trainer(model_path, rows, config, run_dir, callbacks, device, models_dir)


def end_metrics(train_metrics: dict, state, callback) -> dict:
    runtime = float(train_metrics.get("train_runtime") or (time.time() - callback.started_at))
    tokens = int(callback.tokens)
    session_tokens = tokens - callback.tokens_before  # a resumed run's speed counts its own session only
    return {"train_loss": train_metrics.get("train_loss"), "steps": int(state.global_step), "tokens": tokens,
            "tokens_per_s": round(session_tokens / runtime, 2) if runtime > 0 else None,
            "runtime_s": round(runtime, 3), "device": callback.device}


def _memory_baseline(device: str) -> int:
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return 0
    import psutil

    try:
        # Reset the kernel's peak-RSS mark (Linux >= 4.0), so that an earlier peak (materialising the
        # bundled model) does not count as training's.
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the process-lifetime peak is used instead
    return psutil.Process().memory_info().rss


def _memory_peak(device: str, baseline: int) -> dict:
    """Peak memory of the run: on CPU the process's peak RSS (and its growth since just before the model
    loaded: what the memory estimate predicts); on CUDA the peak of torch's allocations."""
    if device == "cuda":
        import torch

        peak = torch.cuda.max_memory_allocated()
        return {"peak_memory_mb": round(peak / 2 ** 20, 1), "train_memory_mb": round(peak / 2 ** 20, 1),
                "device_name": torch.cuda.get_device_name()}
    peak = _peak_rss()
    return {"peak_memory_mb": round(peak / 2 ** 20, 1), "train_memory_mb": round((peak - baseline) / 2 ** 20, 1)}


def _peak_rss() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# ---- sft ------------------------------------------------------------------------------------------
def build_trainer(model_path: Path, examples: list[dict], config: TrainConfig, run_dir: Path, callbacks=(),
                  device: str | None = None, check_memory: bool = False):
    """An SFTTrainer with a fresh LoRA adapter on the student, on pre-tokenized examples.

    The examples are tokenized here (`distill.data.tokenize_example`: labels on the answer only), so
    TRL skips its own preparation. batching 'padding_free' has TRL's collator concatenate a batch into
    one sequence without a pad token, with position ids restarting at each example and the examples'
    boundaries (cu_seq_lens); attention then runs per example (`distill.attention.segmented_sdpa`, or
    flash-attention's varlen kernel), so no example attends to another and the loss equals the padded
    one. The first token of each example is never a label, so no loss crosses a boundary.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from distill.loading import device_of, load_tokenizer, prepare_student

    device = device or device_of()
    tokenizer = load_tokenizer(model_path, config.student)
    tokenized = [tokenize_example(tokenizer, ex["messages"], config.max_length, ex.get("tools")) for ex in examples]
    tokenized = [{"input_ids": t["input_ids"], "labels": t["labels"]} for t in tokenized if t is not None]
    if not tokenized:
        raise StudioError("every example was dropped during tokenization: its prompt alone fills max_length; "
                          "raise max_length")
    student = prepare_student(model_path, config, run_dir, device,
                              [len(t["input_ids"]) for t in tokenized] if check_memory else None)
    padding_free = config.batching == "padding_free"
    if padding_free:
        from distill.attention import use_segments

        use_segments(student.model)  # SDPA per example instead of one block-diagonal mask (see distill/attention.py)
    args = SFTConfig(**student.args, completion_only_loss=True, padding_free=padding_free,
                     max_length=None if padding_free else config.max_length)
    trainer = SFTTrainer(model=student.model, args=args, train_dataset=Dataset.from_list(tokenized),
                         processing_class=tokenizer, peft_config=student.peft_config, callbacks=list(callbacks))
    check_response_only_labels(trainer.train_dataset)
    return trainer


def check_response_only_labels(dataset) -> None:
    """Fail fast if the prepared labels do not mask the prompt (one example is enough to catch a
    systematic change, e.g. a template that renders the prompt differently)."""
    if len(dataset) == 0:
        raise StudioError("every example was dropped during tokenization; raise max_length")
    labels = dataset[0]["labels"]
    if labels[0] != -100 or all(label == -100 for label in labels):
        raise StudioError("internal error: the prepared labels do not mask the prompt; not training on it")

