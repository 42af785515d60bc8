"""A trained run's model card (README.md) and data manifest: what the student learned from and how it did.
One home: the training child writes it beside the adapter, the export beside the merged model."""
from __future__ import annotations

import json
from pathlib import Path

from distill import runlog

CARD_ROWS = 100  # rows listed in the card; the full list is data_manifest.jsonl next to it
MANIFEST_NAME = "data_manifest.jsonl"


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
