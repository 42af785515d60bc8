"""Will this run fit in memory? An estimate before any weight is loaded, and a setting that fits if not.

The model's size comes from the safetensors headers and config.json (standard library only: no weight
is read, torch is not needed), so the studio can answer while the user is still choosing settings.

    weights     parameters x bytes per parameter (fp32 on CPU, bf16 on CUDA, ~0.6 for 4-bit NF4)
    adapter     LoRA parameters x 16 bytes (fp32 weight, gradient, two AdamW moments)
    activations tokens of the largest micro-batch x layers x (14 x hidden + 6 x intermediate) values kept
                for the backward pass (norms, LoRA inputs and dropout copies, q/k/v, MLP products);
                with checkpointing: one layer's worth plus 4 hidden vectors a layer
    logits      tokens x vocabulary x 4 bytes x LOGIT_COPIES (logits, log-softmax, their gradients, TRL's
                entropy/accuracy metrics; DPO and KD add the reference's or teacher's copies); sft counts
                at most SFT_VOCAB_TILE of the vocabulary (TRL's tiled LM head)
    teacher     kd: the teacher's weights
    overhead    200 MB of framework, tokenizer and dataset state; on CPU also half the weights again
                (the safetensors file stays mapped, and its pages count in RSS)
Calibrated for sft on CPU against the growth of the training child's peak RSS from just before the
model loads, with the child's allocator setting (runner.child_env): tiny Llama and SmolLM2-135M, 370 to
1950 tokens a micro-batch, with and without checkpointing: the estimate came out 1.0x-1.3x the measured
peak. The DPO and KD copy counts are reasoned, not measured, and nothing was calibrated on CUDA in this
project (no GPU was lent); there bf16 halves the weights and activations.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

from distill.config import TrainConfig

MB = 2 ** 20
OVERHEAD = 200 * MB
# sft: TRL 1.16's SFTTrainer projects the LM head in [tokens, 32768] vocabulary tiles (its fused log-prob
# kernel), so its logits term grows with min(vocabulary, SFT_VOCAB_TILE). 7.95 copies of that is the 5.3 copies
# of SmolLM2's full 49,152-token vocabulary it was calibrated on; for Gemma 3 270M (262,144 tokens) it predicted
# 0.94x the measured peak (6,935 MB at 1,927 tokens a micro-batch), where counting the whole vocabulary said 2.2x.
SFT_VOCAB_TILE = 32768
LOGIT_COPIES = {"sft": 7.95, "dpo": 7.5, "kd": 9.5, "kd_logprobs": 7.5, "grpo": 7.5}  # grpo: not yet calibrated
FIT_SHARE = 0.9  # leave a tenth of the free memory to everything else
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass
class ModelShape:
    """What memory depends on, read from a model folder without loading it."""

    params: int
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    linear: list[tuple[str, int, int]] = field(default_factory=list, repr=False)  # (name, out, in) of 2-D weights

    def lora_params(self, r: int, targets) -> int:
        """Trainable LoRA parameters: r x (in + out) for each adapted linear layer.

        'all-linear' follows peft: every linear layer except the output head (and the embeddings,
        which are not linear layers).
        """
        total = 0
        for name, out_f, in_f in self.linear:
            module = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else name
            if targets == "all-linear":
                if "embed" in name or "lm_head" in name or module in ("wte", "wpe", "output"):
                    continue
            elif module not in targets:
                continue
            total += r * (in_f + out_f)
        return total


def model_shape(folder: Path) -> ModelShape:
    """Read parameter counts from the safetensors headers (8-byte length + JSON) and sizes from config.json."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config = config.get("text_config", config)
    params, linear = 0, []
    for path in sorted(folder.glob("*.safetensors")):
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            shape = info["shape"]
            params += math.prod(shape)
            if len(shape) == 2 and name.endswith(".weight"):
                linear.append((name, shape[0], shape[1]))
    hidden = int(config.get("hidden_size") or config.get("n_embd") or 0)
    return ModelShape(params=params, hidden=hidden,
                      layers=int(config.get("num_hidden_layers") or config.get("n_layer") or 0),
                      intermediate=int(config.get("intermediate_size") or config.get("n_inner") or 4 * hidden),
                      vocab=int(config.get("vocab_size") or 0), linear=linear)


@dataclass
class Estimate:
    """Bytes by part, the total, what is free, and whether it fits (with a setting that does if not)."""

    parts: dict[str, int]
    available: int | None
    device: str
    suggestion: dict | None = None  # TrainConfig field changes that fit; None when it fits or nothing does
    suggested_total: int | None = None

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.available is None or self.total <= FIT_SHARE * self.available

    def refusal(self) -> str:
        """Why a run that does not fit is refused, and how to start it anyway."""
        return (f"{self.describe()} — the estimate is advice: to start anyway, tick 'Start anyway' "
                "(python -m distill train --ignore-memory-estimate)")

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / MB:,.0f}" for k, v in self.parts.items() if v)
        where = f"{self.available / MB:,.0f} MB free on {self.device}" if self.available is not None else self.device
        line = f"~{self.total / MB:,.0f} MB ({parts} MB) of {where}"
        if self.fits:
            return f"fits: {line}"
        if self.suggestion:
            changes = ", ".join(f"{k} = {v}" for k, v in self.suggestion.items())
            return (f"will not fit: {line}. This fits (~{self.suggested_total / MB:,.0f} MB): {changes} "
                    "(the effective batch stays batch_size x grad_accum)")
        return f"will not fit: {line}, and no smaller setting does; use a smaller student or a bigger machine"


def micro_batch_tokens(config: TrainConfig, lengths: list[int]) -> int:
    """Tokens in the largest micro-batch a run can draw, from its examples' token lengths.

    padding_free packs the batch_size longest examples into one sequence; padded batches cost
    batch_size x the longest; DPO pads chosen and rejected of each pair together (2 x batch_size);
    on-policy KD may grow each example by the sampled tokens.
    """
    if not lengths:
        return 0
    capped = sorted((min(n, config.max_length) for n in lengths), reverse=True)
    if config.method == "kd" and config.kd.on_policy > 0:
        capped = [min(n + config.kd.max_new_tokens, config.max_length) for n in capped]
    longest, batch = capped[0], min(config.batch_size, len(capped))
    if config.method == "dpo":
        return 2 * batch * longest
    if config.method == "sft" and config.batching == "padding_free":
        return sum(capped[:batch])
    return batch * longest


def estimate(config: TrainConfig, student: ModelShape, tokens: int, device: str = "cpu",
             teacher: ModelShape | None = None, available: int | None = None) -> Estimate:
    """Peak training memory (bytes, by part) for `tokens` tokens a micro-batch; see the module docstring."""
    parts = _parts(config, student, tokens, device, teacher)
    result = Estimate(parts=parts, available=available, device=device)
    if not result.fits:
        found = suggest(config, student, tokens, device, teacher, available)
        if found is not None:
            result.suggestion, result.suggested_total = found
    return result


def _parts(config: TrainConfig, student: ModelShape, tokens: int, device: str, teacher: ModelShape | None) -> dict:
    cuda = device == "cuda"
    act_bytes = 2 if cuda else 4
    weight_bytes = 0.6 if config.load_in_4bit else act_bytes
    checkpointing = config.gradient_checkpointing if config.gradient_checkpointing is not None else cuda
    per_layer = act_bytes * (14 * student.hidden + 6 * student.intermediate)
    if checkpointing:
        activations = tokens * (per_layer + student.layers * act_bytes * 4 * student.hidden)
    else:
        activations = tokens * student.layers * per_layer
    weights = int(student.params * weight_bytes)
    logit_vocab = min(student.vocab, SFT_VOCAB_TILE) if config.method == "sft" else student.vocab
    teacher_weights = int(teacher.params * act_bytes) if teacher is not None and config.method == "kd" else 0
    return {
        "weights": weights,
        "adapter": student.lora_params(config.lora_r, config.target_module_list()) * 16,
        "activations": int(activations),
        "logits": int(tokens * logit_vocab * 4 * LOGIT_COPIES[config.method]),
        "teacher": teacher_weights,
        "overhead": OVERHEAD + (0 if cuda else (weights + teacher_weights) // 2),
    }


def suggest(config: TrainConfig, student: ModelShape, tokens: int, device: str, teacher: ModelShape | None,
            available: int) -> tuple[dict, int] | None:
    """The first of: smaller micro-batches (more accumulation), + gradient checkpointing, + 4-bit (CUDA
    with bitsandbytes), + shorter max_length, that fits. Returns (field changes, total bytes) or None."""
    for changes in _candidates(config, device):
        trial = replace(config, **changes)
        scaled = _scale_tokens(tokens, config, trial)
        total = sum(_parts(trial, student, scaled, device, teacher).values())
        if total <= FIT_SHARE * available:
            return changes, total
    return None


def _candidates(config: TrainConfig, device: str):
    batch, accum, changes = config.batch_size, config.grad_accum, {}
    while batch > 1:
        batch, accum = batch // 2, accum * 2
        changes = {"batch_size": batch, "grad_accum": accum}
        yield dict(changes)
    if not config.gradient_checkpointing:
        changes["gradient_checkpointing"] = True
        yield dict(changes)
    if device == "cuda" and not config.load_in_4bit and _bitsandbytes_installed():
        changes["load_in_4bit"] = True
        yield dict(changes)
    length = config.max_length
    while length > 256:
        length //= 2
        changes["max_length"] = length
        yield dict(changes)


def _scale_tokens(tokens: int, before: TrainConfig, after: TrainConfig) -> int:
    # Fewer examples per micro-batch or a shorter cap shrink the worst micro-batch proportionally (an upper bound).
    scaled = tokens * min(1.0, after.batch_size / before.batch_size)
    return int(scaled * min(1.0, after.max_length / before.max_length))


def _bitsandbytes_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def training_device() -> str:
    """'cuda' when torch sees a GPU, else 'cpu' (imports torch: call it where training is decided)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def available_memory(device: str) -> int:
    """Free bytes where the run will live: GPU memory on CUDA, RAM (psutil's 'available') on CPU."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


def approx_tokens(messages: list[dict]) -> int:
    """A tokenizer-free upper guess of a chat's token count (≈3 characters a token plus the template)."""
    return sum(len(m.get("content") or "") // 3 + 8 for m in messages) + 8
