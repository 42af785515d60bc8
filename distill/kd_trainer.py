"""The KD Trainer (distill.kd builds it): a transformers Trainer whose loss is the divergence from a teacher —
its white-box logits, or its stored top-k logprobs — optionally on the student's own samples. Imports torch and
transformers at the top: only the training child imports this module."""
from __future__ import annotations

import random

import torch
from transformers import Trainer

from distill import losses


def splice_samples(prompt_ids, prompt_mask, completions, eos_ids: list[int], pad_id: int, max_length: int) -> dict:
    """Student samples as a training batch: each real prompt + its completion up to and including the
    first end-of-sequence token, right-padded; labels on the completion only.
    prompt_ids, prompt_mask: [B, P] (left-padded); completions: [B, C] → input_ids, attention_mask, labels [B, L]."""
    rows = []
    for b in range(prompt_ids.shape[0]):
        prompt = prompt_ids[b][prompt_mask[b].bool()]
        completion = completions[b]
        ends = torch.isin(completion, torch.tensor(eos_ids, device=completion.device)).nonzero()
        if len(ends):
            completion = completion[: int(ends[0]) + 1]
        ids = torch.cat([prompt, completion])[:max_length]
        labels = torch.cat([torch.full_like(prompt, -100), completion])[:max_length]
        rows.append((ids, labels))
    longest = max(len(ids) for ids, _ in rows)
    out = {"input_ids": torch.full((len(rows), longest), pad_id, dtype=torch.long, device=prompt_ids.device),
           "attention_mask": torch.zeros((len(rows), longest), dtype=torch.long, device=prompt_ids.device),
           "labels": torch.full((len(rows), longest), -100, dtype=torch.long, device=prompt_ids.device)}
    for b, (ids, labels) in enumerate(rows):
        out["input_ids"][b, :len(ids)] = ids
        out["attention_mask"][b, :len(ids)] = 1
        out["labels"][b, :len(ids)] = labels
    return out


class KDTrainer(Trainer):
    """Trainer whose loss is the divergence from a teacher (white-box logits or stored top-k)."""

    def __init__(self, *args, teacher=None, kd=None, n_tokens: int = 0, eos_ids=(), max_length: int = 1024,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.kd, self.n_tokens = teacher, kd, n_tokens
        self.eos_ids, self.max_length = list(eos_ids), max_length
        # The loss is a per-token mean of each micro-batch; Trainer then divides by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self._tokens, self._positions, self._covered, self._on_policy_steps = 0, 0, 0, 0
        if teacher is not None:
            teacher.eval().requires_grad_(False)
            self.teacher = teacher.to(self.args.device)

    def _on_policy_now(self) -> bool:
        # Seeded by step, so a resumed run makes the same choices at the same steps.
        return random.Random(self.args.seed * 1_000_003 + self.state.global_step).random() < self.kd.on_policy

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.teacher is not None and self.kd.on_policy > 0 and self._on_policy_now():
            inputs = {**inputs, **self._student_samples(model, inputs)}
            self._on_policy_steps += 1
        return super().training_step(model, inputs, num_items_in_batch)

    def _student_samples(self, model, inputs) -> dict:
        unwrapped = self.accelerator.unwrap_model(model)
        was_training = unwrapped.training
        unwrapped.eval()
        with torch.no_grad():
            out = unwrapped.generate(
                input_ids=inputs["prompt_ids"], attention_mask=inputs["prompt_mask"], do_sample=True,
                temperature=self.kd.temperature, top_k=0, top_p=1.0, max_new_tokens=self.kd.max_new_tokens,
                pad_token_id=self.processing_class.pad_token_id, eos_token_id=self.eos_ids)
        unwrapped.train(was_training)
        completions = out[:, inputs["prompt_ids"].shape[1]:]
        return splice_samples(inputs["prompt_ids"], inputs["prompt_mask"], completions, self.eos_ids,
                              self.processing_class.pad_token_id, self.max_length)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        labels = inputs["labels"][:, 1:]
        chosen = labels != -100  # logits at i predict the token at i + 1
        student = outputs.logits[:, :-1][chosen][:, :self.n_tokens]
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(input_ids=inputs["input_ids"],
                                              attention_mask=inputs["attention_mask"]).logits
            teacher = teacher_logits[:, :-1][chosen][:, :self.n_tokens]
            per_token = losses.generalized_jsd(student, teacher, self.kd.jsd_beta(), self.kd.temperature)
            covered = per_token.numel()
        else:
            valid = inputs["kd_valid"][:, 1:][chosen]
            per_token = losses.sparse_kd_or_cross_entropy(
                student, labels[chosen], inputs["kd_ids"][:, 1:][chosen], inputs["kd_logprobs"][:, 1:][chosen],
                valid, self.kd.jsd_beta())
            covered = int(valid.any(-1).sum())
        # A batch whose answers were all cut off by max_length contributes a zero loss with a graph.
        loss = per_token.mean() if per_token.numel() else outputs.logits.sum() * 0.0
        if model.training:
            self._tokens += int(inputs["attention_mask"].sum())
            self._positions += int(chosen.sum())
            self._covered += covered
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        if "loss" in logs:
            logs["num_tokens"] = float(self._gathered(self._tokens))
            logs["kd_coverage"] = round(self._covered / self._positions, 4) if self._positions else 0.0
            if self.teacher is not None and self.kd.on_policy > 0:
                logs["on_policy_steps"] = float(self._on_policy_steps)
        return super().log(logs, *args, **kwargs)

    def _gathered(self, value: int) -> int:
        tensor = torch.tensor([value], device=self.args.device)
        return int(self.accelerator.gather(tensor).sum())
