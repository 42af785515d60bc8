"""Named training settings saved in the workspace's configs/ folder: a TrainConfig as JSON, loaded back by name
(the Train tab's *Before you train* panel; a saved file is also what `python -m distill train` flags describe)."""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from curation.errors import StudioError
from distill.config import TrainConfig


def _configs_dir(workspace) -> Path:
    return Path(workspace) / "configs"


def saved_configs(workspace) -> list[str]:
    folder = _configs_dir(workspace)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def save_config(workspace, label: str, config: TrainConfig) -> Path:
    """Write a TrainConfig as JSON to the workspace's configs/ (the name: letters, digits, - and _)."""
    label = (label or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", label):
        raise StudioError(f"a settings name is 1-64 letters, digits, - or _ (got {label!r})")
    path = _configs_dir(workspace) / f"{label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
    return path


def load_config(workspace, label: str) -> dict:
    path = _configs_dir(workspace) / f"{label}.json"
    if not path.is_file():
        raise StudioError(f"no saved settings named {label!r} in {path.parent}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StudioError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from exc
