"""TrainerCallbacks of the training child: log.jsonl events, and a checkpoint when the run is stopped."""
from __future__ import annotations

import math
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

from distill import runlog

# Logged by every trainer; everything else numeric (DPO rewards, KD coverage, ...) goes into "metrics".
_STANDARD_LOGS = {"loss", "learning_rate", "epoch", "num_tokens", "grad_norm", "step"}


class JsonlLogCallback(TrainerCallback):
    """Appends a "start" event when training begins, a "step" event at every logging step and a
    "checkpoint" event after each complete checkpoint. Only the main process writes (torchrun/accelerate).

    The "end" event is written by `distill.train` after the adapter is saved, so "completed" in the
    log always means the adapter files exist. On resume, `tokens_before` carries the token count of
    the steps already done, so tokens and tokens/s continue where they stopped.
    """

    def __init__(self, run_dir: Path, student: str, method: str = "sft", tokens_before: int = 0):
        self.run_dir = Path(run_dir)
        self.student = student
        self.method = method
        self.tokens_before = int(tokens_before)
        self.started_at = time.time()
        self.first_step = 0
        self.tokens = int(tokens_before)
        self.device = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        self.started_at = time.time()
        self.first_step = state.global_step  # > 0 when resuming from a checkpoint
        self.device = args.device.type
        if not state.is_world_process_zero:
            return
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if model is not None else None
        n_examples = len(train_dataloader.dataset) if train_dataloader is not None else None
        event = {"event": "start", "method": self.method, "device": self.device, "student": self.student,
                 "n_examples": n_examples, "max_steps": state.max_steps, "trainable_params": trainable,
                 "world_size": args.world_size}
        if state.global_step:
            event.update(resumed_from=state.global_step, tokens=self.tokens_before)
        runlog.append_event(self.run_dir, event)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs or not state.is_world_process_zero:
            return  # the final summary log (train_runtime, ...) is reported in the "end" event instead
        # num_tokens (TRL and our KD trainer) counts real tokens of this session, padding excluded.
        self.tokens = self.tokens_before + int(logs.get("num_tokens", self.tokens - self.tokens_before))
        step, max_steps = state.global_step, state.max_steps
        elapsed = time.time() - self.started_at
        done = step - self.first_step
        eta = elapsed / done * (max_steps - step) if done else None
        extra = {k: round(float(v), 6) for k, v in logs.items()
                 if k not in _STANDARD_LOGS and isinstance(v, (int, float)) and not isinstance(v, bool)}
        runlog.append_event(self.run_dir, {
            "event": "step", "step": step, "max_steps": max_steps, "loss": logs["loss"],
            "learning_rate": logs.get("learning_rate"), "epoch": logs.get("epoch"), "tokens": self.tokens,
            "elapsed_s": round(elapsed, 3), "eta_s": round(eta, 1) if eta is not None else None,
            **({"metrics": extra} if extra else {})})

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            # on_save runs after trainer_state.json, the last file of a checkpoint, is written.
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            runlog.append_event(self.run_dir, {"event": "checkpoint", "step": state.global_step, "path": str(path),
                                               "tokens": self.tokens})


# eval_steps 0: the eval loss is measured about this many times per run. On CPU one measurement of 16
# answers of the bundled student costs about as long as one training step (batch 4), so 5 add ~5 steps.
EVALS_PER_RUN = 5


class EvalLossCallback(TrainerCallback):
    """The student's per-token NLL (nats) of held-out teacher answers, every `every` steps and at the last.

    The rows are chat examples of eval-split tasks, which no run trains on. It is the Evaluate tab's NLL
    measure, whatever loss the method trains with (cross-entropy, DPO, KL), so the curves of runs of
    different methods compare. Each measurement is an "eval" event in log.jsonl. Only the main process
    measures; under torchrun the other ranks wait for it at the next step's all-reduce.
    """

    def __init__(self, run_dir: Path, rows: list[dict], tokenizer, max_length: int, every: int = 0):
        from models.nll import response_token_ids

        self.run_dir = Path(run_dir)
        self.max_length = max_length
        # Tokenized once: each measurement then only runs the model.
        self.encoded = [response_token_ids(tokenizer, row["messages"][:-1], row["messages"][-1]["content"])
                        for row in rows]
        self.every = every
        self.interval = every or 1
        self.last_loss: float | None = None
        self.last_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.interval = self.every or max(1, math.ceil(state.max_steps / EVALS_PER_RUN))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        due = step % self.interval == 0 or step >= state.max_steps
        if self.encoded and model is not None and due and step != self.last_step and state.is_world_process_zero:
            self.measure(model, step)

    def measure(self, model, step: int) -> float | None:
        from models.nll import ids_nll

        started = time.time()
        was_training = model.training
        model.eval()  # no dropout while measuring
        total, tokens = 0.0, 0
        try:
            for ids, start in self.encoded:
                nll, count = ids_nll(model, ids, start, self.max_length)
                total, tokens = total + nll, tokens + count
        finally:
            model.train(was_training)
        self.last_step = step
        self.last_loss = round(total / tokens, 6) if tokens else None
        runlog.append_event(self.run_dir, {"event": "eval", "step": step, "eval_loss": self.last_loss,
                                           "rows": len(self.encoded), "tokens": tokens,
                                           "seconds": round(time.time() - started, 3)})
        return self.last_loss


class StopSignal:
    """SIGTERM (the studio's Stop) → a flag the training loop reads at the next step end.

    Installed at the very start of the child: a stop that arrives while the model is still loading
    then ends the run cleanly too, instead of killing it with nothing saved.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def install(self) -> "StopSignal":
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def uninstall(self) -> None:
        """Put the previous handler back (the child exits anyway; an in-process caller keeps its own)."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum, frame):
        self.requested = True


class CheckpointOnStop(TrainerCallback):
    """When a stop was requested: save a resumable checkpoint at the end of this step, then stop.

    Under torchrun every rank gets the signal at a slightly different moment; the flag is agreed on
    with an all-reduce so all ranks save and stop at the same step (otherwise they would deadlock).
    """

    def __init__(self, stop: StopSignal):
        self.stop = stop
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if _agreed(self.stop.requested):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


def _agreed(flag: bool) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
