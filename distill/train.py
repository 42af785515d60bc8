"""LoRA SFT of a student on the approved snapshot: the config, the run directory, the child's entry.

The studio imports this module for `TrainConfig` and `prepare_run_dir` only, so torch, transformers,
peft and trl are imported inside the functions that run in the training child.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path

from curation.errors import ConfigError, StudioError
from distill import runlog
from distill.models import BUNDLED_STUDENT, resolve_student


@dataclass
class TrainConfig:
    """One SFT run's settings. The CLI, the UI and the tests all build this same object."""

    student: str = field(default=BUNDLED_STUDENT, metadata={
        "help": f"model to fine-tune: '{BUNDLED_STUDENT}' (bundled), a local folder, a .gguf file or a cached hub id"})
    max_steps: int = field(default=-1, metadata={
        "help": "optimizer steps to train for; -1 trains for `epochs` instead"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the snapshot (used when max_steps is -1)"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak AdamW learning rate of the LoRA weights"})
    batch_size: int = field(default=4, metadata={"help": "examples per device per forward pass"})
    grad_accum: int = field(default=1, metadata={
        "help": "forward passes per optimizer step (effective batch = batch_size * grad_accum)"})
    max_length: int = field(default=1024, metadata={"help": "tokens kept per example; longer ones are truncated"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank: capacity of the adapter"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scale numerator (update scaled by alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: str = field(default="all-linear", metadata={
        "help": "modules that get adapters: 'all-linear' or comma-separated names such as 'q_proj,v_proj'"})
    seed: int = field(default=0, metadata={"help": "seed for adapter init and data order"})
    logging_steps: int = field(default=1, metadata={"help": "write a progress line every this many steps"})

    def __post_init__(self):
        self._coerce_numbers()
        _check(isinstance(self.student, str) and self.student.strip(), "student",
               f"must name a model (e.g. '{BUNDLED_STUDENT}')")
        if Path(self.student).expanduser().exists():
            # The training child runs from the repo root, so a path relative to the caller's cwd would
            # point elsewhere there: pin it now, while it still means what the user meant.
            self.student = str(Path(self.student).expanduser().resolve())
        _check(self.max_steps == -1 or self.max_steps >= 1, "max_steps",
               f"must be -1 (train for `epochs`) or a positive number of steps (got {self.max_steps})")
        _check(0 < self.epochs <= 1000, "epochs", f"must be in (0, 1000] (got {self.epochs})")
        _check(0 < self.learning_rate <= 1, "learning_rate",
               f"must be in (0, 1]; LoRA usually works with 1e-4 to 3e-4 (got {self.learning_rate})")
        _check(self.batch_size >= 1, "batch_size", f"must be at least 1 (got {self.batch_size})")
        _check(self.grad_accum >= 1, "grad_accum", f"must be at least 1 (got {self.grad_accum})")
        _check(16 <= self.max_length <= 131072, "max_length",
               f"must be between 16 and 131072 tokens (got {self.max_length})")
        _check(1 <= self.lora_r <= 1024, "lora_r", f"must be between 1 and 1024; 8 to 64 is usual (got {self.lora_r})")
        _check(self.lora_alpha > 0, "lora_alpha", f"must be positive; 2 * lora_r is usual (got {self.lora_alpha})")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", f"must be in [0, 1) (got {self.lora_dropout})")
        _check(bool(self.target_module_list()), "target_modules",
               "must be 'all-linear' or comma-separated module names such as 'q_proj,v_proj'")
        _check(self.seed >= 0, "seed", f"must be 0 or more (got {self.seed})")
        _check(self.logging_steps >= 1, "logging_steps", f"must be at least 1 (got {self.logging_steps})")

    def _coerce_numbers(self) -> None:
        # UI number widgets and JSON hand us 3.0 for 3 and strings from text boxes; normalise them here
        # so every caller gets the same checks and Trainer gets real ints.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", "float") and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                try:
                    number = float(value)
                except ValueError:
                    raise ConfigError(f"{f.name} must be a number (got {value!r})") from None
                if f.type == "int":
                    _check(number.is_integer(), f.name, f"must be a whole number (got {value!r})")
                    number = int(number)
                setattr(self, f.name, number)

    def target_module_list(self) -> str | list[str]:
        """What peft's LoraConfig takes: the 'all-linear' shortcut or a list of module names."""
        names = [n.strip() for n in str(self.target_modules).split(",") if n.strip()]
        return "all-linear" if names == ["all-linear"] else names

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _check(ok, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name} {message}")


def prepare_run_dir(examples: list[dict], config: TrainConfig, runs_root: Path,
                    models_dir: Path | None = None) -> Path:
    """Create runs_root/<timestamp>-sft with config.json and the frozen snapshot.jsonl.

    The child trains from this snapshot, never from the live workspace, so later review edits
    cannot change a run in flight and the run stays reproducible.
    """
    if not examples:
        raise StudioError("no approved examples to train on: approve some generations on the Review tab first")
    runs_root = Path(runs_root)
    models_dir = Path(models_dir) if models_dir is not None else runs_root.parent / "models"
    run_dir = _new_run_dir(runs_root)
    payload = {"train_config": asdict(config), "models_dir": str(models_dir.resolve())}
    (run_dir / runlog.CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    with open(run_dir / runlog.SNAPSHOT_NAME, "w", encoding="utf-8") as f:
        for ex in examples:
            row = {"generation_id": ex.get("generation_id"), "task_id": ex.get("task_id"), "messages": ex["messages"]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return run_dir


def _new_run_dir(runs_root: Path) -> Path:
    runs_root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        # Two runs started in the same second get -2, -3...; mkdir without exist_ok makes the claim atomic.
        candidate = runs_root / (f"{stamp}-sft" if n == 1 else f"{stamp}-{n}-sft")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise StudioError(f"could not create a new run folder under {runs_root}")


def read_run_dir(run_dir: Path) -> tuple[TrainConfig, list[dict], Path]:
    """The config, the snapshot examples and the models folder written by `prepare_run_dir`."""
    payload = json.loads((Path(run_dir) / runlog.CONFIG_NAME).read_text(encoding="utf-8"))
    with open(Path(run_dir) / runlog.SNAPSHOT_NAME, encoding="utf-8") as f:
        examples = [json.loads(line) for line in f if line.strip()]
    return TrainConfig.from_dict(payload["train_config"]), examples, Path(payload["models_dir"])


def to_prompt_completion(example: dict) -> dict:
    """TRL's conversational prompt-completion format: the loss then covers the last (assistant) turn only."""
    messages = example["messages"]
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise StudioError(f"example {example.get('generation_id')} does not end with an assistant answer")
    return {"prompt": messages[:-1], "completion": [messages[-1]]}


def train(run_dir: Path) -> dict:
    """The training child's entry: train, save run_dir/adapter, log every step; returns the end metrics.

    On any failure an "error" event is logged and the exception re-raised, so the exit code is non-zero.
    """
    run_dir = Path(run_dir)
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: the runner sets it too; nothing may download
    try:
        return _train(run_dir)
    except BaseException as exc:
        # A StudioError's message is already written for the user; anything else keeps its type name.
        message = str(exc) if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}".rstrip(": ")
        runlog.append_event(run_dir, {"event": "error", "error": message})
        raise


def _train(run_dir: Path) -> dict:
    from distill.callback import JsonlLogCallback

    config, examples, models_dir = read_run_dir(run_dir)
    model_path = resolve_student(config.student, models_dir)
    callback = JsonlLogCallback(run_dir, student=config.student)
    trainer = build_trainer(model_path, examples, config, run_dir, callbacks=[callback])
    check_response_only_labels(trainer.train_dataset)
    output = trainer.train()
    adapter_dir = run_dir / runlog.ADAPTER_DIR
    trainer.model.save_pretrained(adapter_dir, safe_serialization=True)
    # The tokenizer (with its chat template) travels with the adapter so it can be used on its own.
    trainer.processing_class.save_pretrained(adapter_dir)
    metrics = end_metrics(output.metrics, trainer.state, callback)
    runlog.append_event(run_dir, {"event": "end", "status": "completed", "adapter_dir": str(adapter_dir),
                                  "metrics": metrics})
    return metrics


def end_metrics(train_metrics: dict, state, callback) -> dict:
    runtime = float(train_metrics.get("train_runtime") or (time.time() - callback.started_at))
    tokens = int(callback.tokens)
    return {"train_loss": train_metrics.get("train_loss"), "steps": int(state.global_step), "tokens": tokens,
            "tokens_per_s": round(tokens / runtime, 2) if runtime > 0 else None,
            "runtime_s": round(runtime, 3), "device": callback.device}


def build_trainer(model_path: Path, examples: list[dict], config: TrainConfig, run_dir: Path, callbacks=()):
    """An SFTTrainer with a fresh LoRA adapter on the student; the dataset is tokenized on construction."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    if not tokenizer.chat_template:
        raise StudioError(f"student {config.student} has no chat template; pick an instruct (chat) model")
    # use_safetensors: a pickle checkpoint can run code on load; resolve_student already refused those.
    model = AutoModelForCausalLM.from_pretrained(
        str(model_path), local_files_only=True, use_safetensors=True,
        dtype=torch.bfloat16 if bf16 else torch.float32)
    args = SFTConfig(
        output_dir=str(run_dir), max_steps=config.max_steps, num_train_epochs=config.epochs,
        learning_rate=config.learning_rate, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, max_length=config.max_length, seed=config.seed,
        logging_strategy="steps", logging_steps=config.logging_steps, save_strategy="no", report_to="none",
        completion_only_loss=True, bf16=bf16, fp16=False, use_cpu=not cuda, disable_tqdm=True,
        dataloader_pin_memory=cuda,
        # Recomputing activations saves GPU memory for big students; on CPU, memory is not the limit
        # and the recompute would cost about a quarter of the step time.
        activation_checkpointing=cuda)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_module_list(), task_type="CAUSAL_LM")
    dataset = Dataset.from_list([to_prompt_completion(ex) for ex in examples])
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=lora, callbacks=list(callbacks))


def check_response_only_labels(dataset) -> None:
    """Fail fast if the prepared labels do not mask the prompt.

    TRL builds the masks from the prompt-completion split; if a future version (or a template that
    renders the prompt differently) trained on the prompt too, the run would silently learn to parrot
    user turns. One example is enough to catch a systematic change.
    """
    if len(dataset) == 0:
        raise StudioError("every example was dropped during tokenization; raise max_length")
    labels = dataset[0]["labels"]
    if labels[0] != -100 or all(label == -100 for label in labels):
        raise StudioError("internal error: the prepared labels do not mask the prompt; not training on it")


def adapter_dir(run_dir: Path) -> Path:
    return Path(run_dir) / runlog.ADAPTER_DIR
