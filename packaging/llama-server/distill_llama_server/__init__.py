"""Where the portable llama-server build and its matching converters live (see build_backend.py)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
LLAMA_CPP_BUILD = 11434


def binary() -> Path:
    """The llama-server executable."""
    return HERE / "bin" / "llama-server"


def converter(name: str) -> Path:
    """convert_hf_to_gguf.py or convert_lora_to_gguf.py of the same llama.cpp build as the server."""
    return HERE / "llama.cpp" / name


def build_flags() -> str:
    """The CMake flags the binary was built with (no -march=native, no AMX)."""
    return (HERE / "FLAGS").read_text().strip()
