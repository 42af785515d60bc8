"""A training run's folder, its one home: `prepare_run_dir` writes it (config.json with the config and its
provenance, snapshot.jsonl, heldout.jsonl), the readers below read it back. The studio, the child, the export
and the eval all go through here."""
from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from curation.errors import StudioError
from distill import runlog
from distill.config import TrainConfig
from distill.data import example_row, snapshot_digest


def prepare_run_dir(rows: list[dict], config: TrainConfig, runs_root: Path, models_dir: Path | None = None,
                    provenance: dict | None = None, heldout: list[dict] | None = None) -> Path:
    """Create runs_root/<timestamp>-<method> with config.json (config + provenance) and snapshot.jsonl,
    plus heldout.jsonl when `heldout` (eval-split chat examples for the eval loss) has rows.

    The child trains from this snapshot, never from the live workspace, so later review edits
    cannot change a run in flight and the run stays reproducible. Rows without a row_id / hash (plain
    chat examples) get them from their generation id and messages.
    """
    if not rows:
        raise StudioError("no approved examples to train on: approve some generations on the Review tab first")
    rows = [_with_identity(row) for row in rows]
    runs_root = Path(runs_root)
    models_dir = Path(models_dir) if models_dir is not None else runs_root.parent / "models"
    if provenance is None:
        from distill.provenance import run_record

        provenance = run_record(config, rows, snapshot_digest(rows), sorted({r["teacher"] for r in rows
                                                                             if r.get("teacher")}), heldout)
    run_dir = _new_run_dir(runs_root, config.method)
    payload = {"train_config": asdict(config), "models_dir": str(models_dir.resolve()), "provenance": provenance}
    (run_dir / runlog.CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    _write_jsonl(run_dir / runlog.SNAPSHOT_NAME, rows)
    if heldout:
        _write_jsonl(run_dir / runlog.HELDOUT_NAME, heldout)
    return run_dir


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_heldout(run_dir: Path) -> list[dict]:
    """The held-out rows `prepare_run_dir` froze for the eval loss ([] when the run has none)."""
    path = Path(run_dir) / runlog.HELDOUT_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _with_identity(row: dict) -> dict:
    return row if "row_id" in row and "hash" in row else example_row(row)


def _new_run_dir(runs_root: Path, method: str) -> Path:
    runs_root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        # Two runs started in the same second get -2, -3...; mkdir without exist_ok makes the claim atomic.
        candidate = runs_root / (f"{stamp}-{method}" if n == 1 else f"{stamp}-{n}-{method}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise StudioError(f"could not create a new run folder under {runs_root}")


def read_run_dir(run_dir: Path) -> tuple[TrainConfig, list[dict], Path]:
    """The config, the snapshot rows and the models folder written by `prepare_run_dir`."""
    payload = read_payload(run_dir)
    with open(Path(run_dir) / runlog.SNAPSHOT_NAME, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return TrainConfig.from_dict(payload["train_config"]), rows, Path(payload["models_dir"])


def read_payload(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / runlog.CONFIG_NAME).read_text(encoding="utf-8"))


def adapter_dir(run_dir: Path) -> Path:
    return Path(run_dir) / runlog.ADAPTER_DIR
