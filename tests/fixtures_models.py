"""Tiny real models for fast tests (plain functions; test modules wrap them in fixtures)."""
from __future__ import annotations

from pathlib import Path


def make_tiny_student(folder: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A 2-layer LlamaForCausalLM (hidden 32) with the bundled SmolLM2 tokenizer, saved as safetensors.

    Same tokenizer and chat template as the real student, so data handling is exercised for real,
    while a training step takes milliseconds on CPU.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    folder = Path(folder)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
