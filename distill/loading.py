"""Pieces every method's trainer shares, in the training child: device, tokenizer, student, LoRA, the
Trainer arguments, and the memory check that runs before any weight is loaded."""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from curation.errors import StudioError
from distill import memory, runlog
from distill.config import TrainConfig
from models import chat_templates
from models.resolve import trust_remote_code


def device_of() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def load_tokenizer(model_path: Path, name: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True,
                                              trust_remote_code=trust_remote_code(model_path, name))
    # A base model has no chat template: it gets the studio's, whose answers end with the eos it knows.
    chat_templates.ensure_template(tokenizer, model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_path: Path, name: str, config: TrainConfig, device: str, quantize: bool = False):
    """A causal LM from a safetensors folder: bf16 on CUDA (4-bit NF4 when `quantize`), fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    kwargs = {"dtype": torch.bfloat16 if bf16 else torch.float32,
              "trust_remote_code": trust_remote_code(model_path, name)}
    if quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"])
        kwargs["device_map"] = {"": local_cuda_device()}
    # use_safetensors: a pickle checkpoint can run code on load; resolve_student already refused those.
    model = AutoModelForCausalLM.from_pretrained(str(model_path), local_files_only=True, use_safetensors=True,
                                                 **kwargs)
    if quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=use_checkpointing(config, device))
    return model


def load_student(model_path: Path, config: TrainConfig, device: str):
    if config.load_in_4bit:
        check_4bit(device)
    return load_model(model_path, config.student, config, device, quantize=config.load_in_4bit)


def check_4bit(device: str) -> None:
    if device != "cuda":
        raise StudioError("load_in_4bit (QLoRA) needs a CUDA GPU and this machine has none; train in full "
                          "precision on CPU (turn 4-bit off) or run on a GPU machine")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise StudioError("load_in_4bit (QLoRA) needs the bitsandbytes package: pip install bitsandbytes")


def use_checkpointing(config: TrainConfig, device: str) -> bool:
    # Recomputing activations saves GPU memory for big students; on CPU, memory is rarely the limit and
    # the recompute costs about a quarter of the step time, so it is off unless asked for.
    return config.gradient_checkpointing if config.gradient_checkpointing is not None else device == "cuda"


def use_liger(device: str) -> bool:
    """Liger's Triton kernels (fused linear cross-entropy, RMSNorm, RoPE, SwiGLU) for sft and dpo: on CUDA, when
    `pip install liger-kernel` put them there. Off on CPU, where Triton does not run."""
    return device == "cuda" and importlib.util.find_spec("liger_kernel") is not None


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_module_list(), task_type="CAUSAL_LM")


def trainer_args(config: TrainConfig, run_dir: Path, device: str) -> dict:
    """TrainingArguments fields every method shares (SFTConfig / DPOConfig / TrainingArguments take them)."""
    import torch

    cuda = device == "cuda"
    return dict(
        output_dir=str(run_dir), max_steps=config.max_steps, num_train_epochs=config.epochs,
        learning_rate=config.learning_rate, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, seed=config.seed, data_seed=config.seed,
        logging_strategy="steps", logging_steps=config.logging_steps,
        # Checkpoints: on Stop always (CheckpointOnStop), and every save_steps when asked; two kept.
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500,
        save_total_limit=2, report_to="none", bf16=cuda and torch.cuda.is_bf16_supported(), fp16=False,
        use_cpu=not cuda, disable_tqdm=True, dataloader_pin_memory=cuda,
        activation_checkpointing=use_checkpointing(config, device))


def require_memory(config: TrainConfig, model_path: Path, lengths: list[int], run_dir: Path, device: str,
                   teacher_path: Path | None = None) -> memory.Estimate:
    """Estimate the peak from the real token lengths; log it; refuse (with a setting that fits) if too big."""
    teacher = memory.model_shape(teacher_path) if teacher_path is not None else None
    tokens = memory.micro_batch_tokens(config, lengths)
    found = memory.estimate(config, memory.model_shape(model_path), tokens, device, teacher,
                            memory.available_memory(device))
    if is_main_process():
        runlog.append_event(run_dir, {
            "event": "memory", "device": device, "micro_batch_tokens": tokens,
            "estimate_mb": round(found.total / memory.MB, 1),
            "available_mb": round(found.available / memory.MB, 1) if found.available is not None else None,
            "parts_mb": {k: round(v / memory.MB, 1) for k, v in found.parts.items()}, "fits": found.fits,
            "ignored": bool(not found.fits and config.ignore_memory_estimate)})
    if not found.fits and not config.ignore_memory_estimate:
        raise StudioError(found.refusal())
    return found


@dataclass
class Prepared:
    """What a TRL trainer takes besides its data: the loaded student, the shared training arguments (a dict the
    method's own config class extends) and the fresh LoRA adapter's config."""

    model: object
    args: dict
    peft_config: object


def prepare_student(model_path: Path, config: TrainConfig, run_dir: Path, device: str, lengths: list[int] | None,
                    liger: bool = True) -> Prepared:
    """The one way from a config to a trainable student, for every method: the memory check on the examples' real
    token `lengths` (refusing before any weight is read), the load, the trainer arguments and the LoRA config.
    `lengths` None: no memory check (a caller that checked already). `liger`: let TRL use Liger's fused kernels
    where they run (CUDA, installed)."""
    if lengths is not None:
        require_memory(config, model_path, lengths, run_dir, device)
    model = load_student(model_path, config, device)
    args = trainer_args(config, run_dir, device)
    if liger:
        args["use_liger_kernel"] = use_liger(device)
    return Prepared(model, args, lora_config(config))


def local_cuda_device() -> int:
    """The GPU this process owns: its LOCAL_RANK under torchrun / accelerate (each rank its own GPU), else
    the current device. Read from the environment because the model is loaded before TrainingArguments
    would set the device, and torch.cuda.current_device() is 0 in every rank until then."""
    import torch
    rank = os.environ.get("LOCAL_RANK")
    return int(rank) if rank is not None and rank.isdigit() else torch.cuda.current_device()
