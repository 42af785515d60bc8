"""Exporting a trained run: the adapter folder as trained, a merged model folder that plain transformers
loads and vLLM serves, and a model card (README.md) listing the run's data and metrics.

Merging loads the whole student, so it runs in a child process (`python -m distill merge --run-dir DIR`)
like training does: `export_merged` starts it and waits; `merge` is what the child runs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from curation.errors import StudioError
from distill import runlog

CARD_ROWS = 100  # rows listed in the card; the full list is data_manifest.jsonl next to it
MANIFEST_NAME = "data_manifest.jsonl"


def export_merged(run_dir: Path, out_dir: Path | None = None, timeout: float | None = None) -> Path:
    """Merge the run's adapter into its student in a child process; returns the merged folder.

    Raises StudioError (with the child's last lines) when the run has no adapter or the merge fails.
    """
    from distill.runner import REPO_ROOT, child_env

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

    from distill.models import check_adapter_folder, resolve_student, trust_remote_code
    from distill.train import read_run_dir

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


def write_model_card(folder: Path, run_dir: Path, metrics: dict, merged: bool) -> Path:
    """README.md (the model card) and data_manifest.jsonl (every row id + content hash) in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = json.loads((Path(run_dir) / runlog.CONFIG_NAME).read_text(encoding="utf-8"))
    rows = _snapshot_rows(run_dir)
    with open(folder / MANIFEST_NAME, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"row_id": row["row_id"], "hash": row["hash"], "task_id": row.get("task_id")}) + "\n")
    (folder / "README.md").write_text(model_card(payload, rows, metrics, merged), encoding="utf-8")
    return folder / "README.md"


def model_card(payload: dict, rows: list[dict], metrics: dict, merged: bool) -> str:
    """The card's Markdown: what was trained, on which rows, how, and with what result."""
    config, prov = payload["train_config"], payload.get("provenance", {})
    kind = "merged model (LoRA merged into the base weights)" if merged else "LoRA adapter"
    lines = [
        "---", f"base_model: {config['student']}", "library_name: " + ("transformers" if merged else "peft"),
        "tags: [distill-studio, " + config["method"] + "]", "---", "",
        f"# {config['student']} — distilled with Distill Studio ({config['method']})", "",
        f"This folder holds a {kind}, trained by `python -m distill train` on a frozen snapshot of reviewed rows.", "",
        "## Run", "",
        "| | |", "|---|---|",
        f"| method | {config['method']} |", f"| student | `{config['student']}` |",
        f"| teacher | {_teachers(prov, config)} |", f"| seed | {config['seed']} |",
        f"| code version | `{prov.get('code_version', 'unknown')}` |",
        f"| libraries | {', '.join(f'{k} {v}' for k, v in (prov.get('libraries') or {}).items() if v)} |",
        f"| device | {metrics.get('device_name') or metrics.get('device', '?')} |", "",
        "## Metrics", "", "| metric | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in metrics.items() if k not in ("device", "device_name")], "",
        "## Settings", "", "```json", json.dumps(config, indent=2), "```", "",
        "## Data", "",
        f"{len(rows)} rows, snapshot sha256 `{(prov.get('snapshot') or {}).get('sha256', '?')}`. Every row id "
        f"and content hash is in `{MANIFEST_NAME}`" + (f"; the first {CARD_ROWS} are:" if len(rows) > CARD_ROWS
                                                       else ":"), "",
        "| row | task | content sha256 |", "|---|---|---|",
        *[f"| {r['row_id']} | {r.get('task_id', '')} | `{r['hash'][:16]}…` |" for r in rows[:CARD_ROWS]], "",
        "## Use", "", "```python",
        *(["from transformers import AutoModelForCausalLM, AutoTokenizer",
           "model = AutoModelForCausalLM.from_pretrained(\"<this folder>\")",
           "tokenizer = AutoTokenizer.from_pretrained(\"<this folder>\")"] if merged else
          ["from peft import AutoPeftModelForCausalLM",
           "model = AutoPeftModelForCausalLM.from_pretrained(\"<this folder>\")"]),
        "```", "",
    ]
    return "\n".join(lines)


def _teachers(prov: dict, config: dict) -> str:
    names = [prov["teacher"]] if prov.get("teacher") else []
    names += [f"{t} (answers)" for t in prov.get("answer_teachers") or []]
    return ", ".join(f"`{n}`" for n in names) or "—"


def _snapshot_rows(run_dir: Path) -> list[dict]:
    with open(Path(run_dir) / runlog.SNAPSHOT_NAME, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
