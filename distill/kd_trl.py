"""kd on TRL's trainers: fully on-policy on the stable `DistillationTrainer`, another tokenizer on GOLD.

Fully on-policy (`kd.on_policy` 1, GKD with lambda 1): every step the student samples answers to the
prompts and learns the teacher's distribution on its own tokens, by the generalised JSD of `kd.loss` /
`kd.beta` at `kd.temperature` — TRL's chunked kernel, which never materialises the [tokens, vocabulary]
logits of either model. The same checks as ours run first (shared vocabulary, memory); the same callbacks
log every step, stop and resume.

Why not every kd run: TRL's stable trainer is on-policy only. Training on the teacher's stored answers
(`on_policy` 0) or mixing both (0 < `on_policy` < 1, GKD's lambda) stays on `distill.kd`'s trainer, whose
loss tests (tests/test_losses.py) check it against TRL's to 1e-5.

Another tokenizer (`kd.cross_tokenizer`, when the vocabularies differ): TRL's experimental GOLD trainer with
its universal logit distillation loss (`build_cross_tokenizer_trainer`).
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


def build_cross_tokenizer_trainer(student, teacher, teacher_path: Path, tokenizer, rows: list[dict],
                                  config: TrainConfig, run_dir: Path, callbacks, device: str):
    """TRL's GOLD trainer for a teacher with another tokenizer: universal logit distillation (ULD).

    Each answer is tokenized by both tokenizers; tokens are aligned by their text (split tokens merged) and the
    two distributions compared sorted, so no token id has to mean the same thing in both vocabularies. The
    loss is GOLD's ULD at `kd.temperature`; `kd.on_policy` is its lambda (the share of steps on student
    samples). `kd.loss` / `kd.beta` choose among id-by-id divergences and do not apply here.
    """
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from trl.experimental.gold import GOLDConfig, GOLDTrainer

    from distill.loading import lora_config, trainer_args

    kd = config.kd
    args = GOLDConfig(**trainer_args(config, run_dir, device), use_uld_loss=True,
                      teacher_tokenizer_name_or_path=str(teacher_path), lmbda=kd.on_policy,
                      temperature=kd.temperature, top_p=1.0, uld_student_temperature=kd.temperature,
                      uld_teacher_temperature=kd.temperature, max_completion_length=kd.max_new_tokens,
                      max_length=config.max_length, disable_dropout=False)
    chats = Dataset.from_list([{"messages": row["messages"]} for row in rows])
    return GOLDTrainer(model=student, teacher_model=teacher, args=args, train_dataset=chats,
                       processing_class=tokenizer, peft_config=lora_config(config), callbacks=list(callbacks))
