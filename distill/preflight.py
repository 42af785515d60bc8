"""Checks the studio makes before a run is created, so a doomed run is refused with a reason at once:
the kd teacher's vocabulary, and the memory estimate (when the student is already on disk).

The child repeats both with exact token counts (`distill.loading.require_memory`), so a run started
headless from a run dir is held to the same rules.
"""
from __future__ import annotations

from pathlib import Path

from curation.errors import StudioError
from distill import memory
from distill.config import TrainConfig
from models.resolve import BASE_STUDENT, BUNDLED_STUDENT, resolve_student, trust_remote_code


def check(config: TrainConfig, rows: list[dict], models_dir: Path) -> None:
    """Raise StudioError (VocabularyMismatch for the teacher) when the run cannot work."""
    for spec in [config.student] + ([config.kd.teacher] if config.method == "kd" else []):
        folder = local_model_folder(spec, models_dir)
        if folder is not None:
            trust_remote_code(folder, spec)  # refuses a model that needs its own code unless it is trusted
    if config.method == "kd":
        from distill.kd import check_teacher

        check_teacher(config.student, config.kd.teacher, models_dir, config.kd.cross_tokenizer)
    found = preview_memory(config, rows, models_dir)
    if found is not None and not found.fits and not config.ignore_memory_estimate:
        raise StudioError(found.refusal())


def preview_memory(config: TrainConfig, rows: list[dict], models_dir: Path) -> memory.Estimate | None:
    """The memory estimate from the rows' approximate token counts; None while the student is not on
    disk yet (the bundled model before its first run): the child then estimates before loading it."""
    folder = local_model_folder(config.student, models_dir)
    if folder is None:
        return None
    teacher = None
    if config.method == "kd":
        teacher_folder = local_model_folder(config.kd.teacher, models_dir)
        teacher = memory.model_shape(teacher_folder) if teacher_folder is not None else None
    lengths = [_row_tokens(row) for row in rows]
    device = memory.training_device()
    return memory.estimate(config, memory.model_shape(folder), memory.micro_batch_tokens(config, lengths), device,
                           teacher, memory.available_memory(device))


def local_model_folder(spec: str, models_dir: Path) -> Path | None:
    """The model's safetensors folder if it is already local, without materialising or downloading."""
    spec = (spec or "").strip() or BUNDLED_STUDENT
    local = Path(spec).expanduser()
    if spec.lower() in (BUNDLED_STUDENT, BASE_STUDENT):
        folder = Path(models_dir) / spec.lower()
    elif local.suffix == ".gguf":
        folder = Path(models_dir) / local.stem.lower()
    else:
        try:
            folder = resolve_student(spec, models_dir)
        except StudioError:
            return None  # the child reports the real problem with its fix
    return folder if (folder / "config.json").exists() and any(folder.glob("*.safetensors")) else None


def _row_tokens(row: dict) -> int:
    if "prompt" in row:  # a DPO pair: the prompt with the longer of its two answers
        answer = max(len(row.get("chosen") or ""), len(row.get("rejected") or ""))
        return memory.approx_tokens(row["prompt"]) + answer // 3 + 8
    return memory.approx_tokens(row["messages"])
