"""A student (and its trained LoRA adapter) as GGUF files that llama.cpp's server can serve.

Run as a child process by `models.students` (the web process imports no torch):

    python -m distill.to_gguf --student SPEC --models-dir DIR [--adapter ADAPTER_DIR]

prints one JSON line {"base": GGUF, "adapter": GGUF or null}. The converters are llama.cpp's own
(`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`) from the same build as the server, so the files match
the engine that reads them. The base model is written in f16 (not re-quantised: the adapter was trained on
these weights) once per model folder, and the adapter once per adapter folder; a later call reuses both
unless the weights changed.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from curation.errors import StudioError
from models.resolve import (BUNDLED_STUDENT, check_adapter_folder, resolve_student, trust_remote_code)

GGUF_DIR = "gguf"


def _fresh(target: Path, sources: list[Path]) -> bool:
    return target.exists() and all(target.stat().st_mtime >= s.stat().st_mtime for s in sources if s.exists())


def _convert(script: str, args: list[str], target: Path) -> None:
    import distill_llama_server
    tmp = target.with_name(target.name + ".partial")
    proc = subprocess.run([sys.executable, str(distill_llama_server.converter(script)), *args, "--outfile", str(tmp),
                           "--outtype", "f16"], capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise StudioError(f"llama.cpp's {script} could not convert {args[-1]} to GGUF:\n{tail}")
    tmp.rename(target)


def base_gguf(folder: Path, models_dir: Path) -> Path:
    """models_dir/gguf/<folder name>.f16.gguf, converted once from the model folder's safetensors."""
    target = Path(models_dir) / GGUF_DIR / f"{folder.name}.f16.gguf"
    if not _fresh(target, sorted(folder.glob("*.safetensors")) + [folder / "config.json"]):
        target.parent.mkdir(parents=True, exist_ok=True)
        _convert("convert_hf_to_gguf.py", [str(folder)], target)
    return target


def adapter_gguf(adapter: Path, base_folder: Path) -> Path:
    """adapter/adapter.gguf, converted once from the PEFT adapter against its base model folder."""
    target = adapter / "adapter.gguf"
    if not _fresh(target, list(adapter.glob("adapter_model.*")) + [adapter / "adapter_config.json"]):
        _convert("convert_lora_to_gguf.py", ["--base", str(base_folder), str(adapter)], target)
    return target


def convert(student: str, models_dir: Path, adapter: str | None = None) -> dict:
    adapter_dir = check_adapter_folder(adapter) if adapter else None  # before any slow model work
    folder = resolve_student(student, models_dir)
    trust_remote_code(folder, student or BUNDLED_STUDENT)  # a model that needs its own code is refused unless trusted
    return {"base": str(base_gguf(folder, models_dir)),
            "adapter": str(adapter_gguf(Path(adapter_dir), folder)) if adapter_dir else None,
            "folder": str(folder), "chat_template": base_template_file(folder, models_dir)}


def base_template_file(folder: Path, models_dir: Path) -> str | None:
    """For a base model without a chat template: a file with the template it was trained with
    (`models.chat_templates`), for the server to render prompts the same way; None when it has its own."""
    from transformers import AutoTokenizer

    from models import chat_templates

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if not chat_templates.ensure_template(tokenizer, folder):
        return None
    target = Path(models_dir) / GGUF_DIR / f"{folder.name}.chat_template.jinja"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(tokenizer.chat_template, encoding="utf-8")
    return str(target)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="", help="bundled name, model folder, .gguf file or cached hub id")
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--adapter", default="", help="a PEFT adapter folder trained on that student")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(convert(args.student, args.models_dir, args.adapter or None)))
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
