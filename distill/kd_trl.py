"""kd fully on-policy (`kd.on_policy` 1) on TRL's own `DistillationTrainer` (GKD with lambda 1).

Every step the student samples answers to the prompts and learns the teacher's distribution on its own
tokens, by the generalised JSD of `kd.loss` / `kd.beta` at `kd.temperature` — TRL's chunked kernel, which
never materialises the [tokens, vocabulary] logits of either model. The same checks as ours run first
(shared vocabulary, memory); the same callbacks log every step, stop and resume.

Why not every kd run: TRL's stable trainer is on-policy only. Training on the teacher's stored answers
(`on_policy` 0) or mixing both (0 < `on_policy` < 1, GKD's lambda) stays on `distill.kd`'s trainer, whose
loss tests (tests/test_losses.py) check it against TRL's to 1e-5.
"""
from __future__ import annotations

from pathlib import Path

from distill.config import TrainConfig


def fits(config: TrainConfig) -> bool:
    """Whether TRL's trainer runs this config: kd against a local teacher, every step on student samples."""
    return config.method == "kd" and config.kd.on_policy == 1.0


def build_trainer(student, teacher, tokenizer, rows: list[dict], config: TrainConfig, run_dir: Path, callbacks,
                  device: str):
    """trl.DistillationTrainer with a fresh LoRA adapter on `student`; prompts are the rows' chats minus the answer."""
    from datasets import Dataset
    from trl import DistillationConfig, DistillationTrainer

    from distill.loading import lora_config, trainer_args

    tokenizer.padding_side = "left"  # the trainer generates from left-padded prompts
    args = DistillationConfig(**trainer_args(config, run_dir, device), beta=config.kd.jsd_beta(),
                              temperature=config.kd.temperature, max_completion_length=config.kd.max_new_tokens,
                              top_k=0, top_p=1.0, disable_dropout=False)
    prompts = Dataset.from_list([{"prompt": row["messages"][:-1]} for row in rows])
    return DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=prompts,
                               processing_class=tokenizer, peft_config=lora_config(config),
                               callbacks=list(callbacks))
