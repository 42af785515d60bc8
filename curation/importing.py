"""Adding tasks to a workspace: from a seed file or a bundled seed pack, leaving out those it already has;
and id lists typed in the UI and the CLI. Reading the file itself is curation/seed_files.py."""
from __future__ import annotations

import os
from pathlib import Path

from curation.errors import ConfigError, StudioError
from curation.seed_files import IMPORT_EXTENSIONS, read_tasks

SEEDS_DIR = Path(__file__).resolve().parents[1] / "data" / "seeds"


class Added(list):
    """The ids of the tasks an import added; `skipped` counts those left out as already in the workspace."""

    def __init__(self, ids, skipped: int = 0):
        super().__init__(ids)
        self.skipped = skipped

    def message(self, what: str) -> str:
        text = f"{what} {len(self)} tasks"
        if self.skipped:
            text += (f"; skipped {self.skipped} already in the workspace (same instruction and input; tick "
                     "'keep duplicates' to add them anyway)")
        return text


def task_key(task: dict) -> tuple[str, str]:
    """What makes two tasks the same: their instruction and input, case and whitespace ignored."""
    return tuple(" ".join((task.get(k) or "").casefold().split()) for k in ("instruction", "input"))


def add_new_tasks(store, tasks: list[dict], keep_duplicates: bool = False) -> Added:
    """Add tasks, leaving out (unless `keep_duplicates`) those equal to a task already in the workspace or
    earlier in the same list: a duplicate's calls would be the original's, so it would never get its own answer."""
    if keep_duplicates:
        return Added(store.add_tasks(tasks))
    seen = {task_key(t) for t in store.tasks()}
    new = []
    for task in tasks:
        key = task_key(task)
        if key not in seen:
            seen.add(key)
            new.append(task)
    return Added(store.add_tasks(new) if new else [], skipped=len(tasks) - len(new))


def import_file(store, path: str | os.PathLike, skill: str | None = None,
                domain: str | None = None, keep_duplicates: bool = False) -> Added:
    """Import a seed file in one transaction; `skill`/`domain` fill rows that carry none; tasks already in the
    workspace are skipped unless `keep_duplicates` (the result says how many)."""
    tasks = read_tasks(path)
    skill, domain = _blank_to_none(skill), _blank_to_none(domain)
    for task in tasks:
        task["skill"] = task["skill"] or skill
        task["domain"] = task["domain"] or domain
    return add_new_tasks(store, tasks, keep_duplicates)


def seed_packs() -> list[str]:
    """Names (file stems) of the bundled seed packs."""
    return sorted(p.stem for p in _seed_files())


def load_seed_pack(store, name: str, keep_duplicates: bool = False) -> Added:
    """Add every task of the bundled pack `name` to the workspace, tagged source='seed' (a pack loaded twice
    adds nothing the second time unless `keep_duplicates`)."""
    matches = [p for p in _seed_files() if p.stem == name]
    if not matches:
        raise StudioError(f"no seed pack named {name!r}; available: {', '.join(seed_packs()) or 'none'}")
    tasks = read_tasks(matches[0])
    for task in tasks:
        task["source"] = "seed"
    return add_new_tasks(store, tasks, keep_duplicates)


def _seed_files() -> list[Path]:
    if not SEEDS_DIR.is_dir():
        return []
    return [p for p in SEEDS_DIR.iterdir() if p.is_file() and p.suffix.lower() in IMPORT_EXTENSIONS]


def _blank_to_none(value: str | None) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else value


def parse_ids(text: str | None, what: str = "ids") -> list[int]:
    """Ids typed as '1, 2,3' (the UI's and the CLI's id fields); ConfigError naming `what` otherwise."""
    try:
        return [int(x) for x in (text or "").replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers (got {text!r})") from None
