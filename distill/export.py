"""Exporting a trained run: the adapter folder as trained, a merged model folder that plain transformers
loads and vLLM serves, with its model card (distill.model_card).

Merging loads the whole student, so it runs in a child process (`python -m distill merge --run-dir DIR`)
like training does: `export_merged` starts it and waits; `merge` is what the child runs.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from curation.errors import StudioError
from distill import runlog
from distill.child import REPO_ROOT, child_env
from distill.model_card import write_model_card

def export_merged(run_dir: Path, out_dir: Path | None = None, timeout: float | None = None) -> Path:
    """Merge the run's adapter into its student in a child process; returns the merged folder.

    Raises StudioError (with the child's last lines) when the run has no adapter or the merge fails.
    """
    run_dir = Path(run_dir)
    if not (run_dir / runlog.ADAPTER_DIR / "adapter_config.json").exists():
        raise StudioError(f"run {run_dir.name} has no trained adapter to export: only a completed run has one")
    out_dir = Path(out_dir) if out_dir else run_dir / runlog.MERGED_DIR
    log_path = run_dir / "export.log"
    with open(log_path, "ab") as log:
        result = subprocess.run([sys.executable, "-m", "distill", "merge", "--run-dir", str(run_dir),
                                 "--out", str(out_dir)], cwd=REPO_ROOT, env=child_env(), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        tail = runlog.tail_lines(log_path, 15)
        raise StudioError(f"merging run {run_dir.name} failed (exit {result.returncode}):\n{tail}")
    return out_dir


def merge(run_dir: Path, out_dir: Path | None = None) -> Path:
    """The child's work: student + adapter → merge_and_unload → safetensors folder with tokenizer and card.

    The weights keep the student's stored dtype, so the folder is the size of the original model.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.resolve import check_adapter_folder, resolve_student, trust_remote_code
    from distill.rundir import read_run_dir

    run_dir = Path(run_dir)
    config, _, models_dir = read_run_dir(run_dir)
    adapter = check_adapter_folder(run_dir / runlog.ADAPTER_DIR)
    out_dir = Path(out_dir) if out_dir else run_dir / runlog.MERGED_DIR
    student = resolve_student(config.student, models_dir)
    base = AutoModelForCausalLM.from_pretrained(str(student), dtype="auto", local_files_only=True,
                                                use_safetensors=True,
                                                trust_remote_code=trust_remote_code(student, config.student))
    with torch.no_grad():
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(adapter), trust_remote_code=trust_remote_code(adapter, config.student)
                                  ).save_pretrained(out_dir)
    metrics = runlog.summarise(runlog.read_events(run_dir))["metrics"]
    write_model_card(out_dir, run_dir, metrics, merged=True)
    return out_dir
