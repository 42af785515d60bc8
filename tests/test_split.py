"""The eval split: stratified, reproducible, and never exported for training."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from curation import io
from curation.errors import ConfigError, StudioError
from curation.split import stratified_split
from tests.conftest import add_generation


def make_tasks():
    tasks, next_id = [], 1
    for skill, domain, n in (("code", "general", 10), ("reasoning", "finance", 6), ("nlu", None, 4)):
        for _ in range(n):
            tasks.append({"id": next_id, "skill": skill, "domain": domain})
            next_id += 1
    return tasks


def test_split_is_stratified_and_reproducible():
    tasks = make_tasks()
    held = stratified_split(tasks, 0.25, seed=7)
    assert len(held) == 5 and held == stratified_split(tasks, 0.25, seed=7)
    per = Counter(next(t["skill"] for t in tasks if t["id"] == i) for i in held)
    assert per == {"code": 3, "reasoning": 1, "nlu": 1} or per == {"code": 2, "reasoning": 2, "nlu": 1}
    assert len({tuple(stratified_split(tasks, 0.25, seed=s)) for s in range(6)}) > 1  # seeds draw differently


def test_split_fraction_must_be_inside_0_1():
    with pytest.raises(ConfigError, match="between 0 and 1"):
        stratified_split(make_tasks(), 1.0)


def test_eval_tasks_are_never_exported_or_trained_on(store, tmp_path):
    ids = store.add_tasks([{"instruction": f"task {i}", "skill": "code"} for i in range(4)])
    gens = [add_generation(store, t, f"k{t}") for t in ids]
    store.set_label(gens, "approved")
    assert store.set_split(ids[:2], "eval") == 2
    out = tmp_path / "train.jsonl"
    io.export_examples(store.approved_examples(), out)
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(e["task_id"] for e in store.approved_examples()) == ids[2:]
    assert len(exported) == 2 and "task 0" not in out.read_text() and "task 1" not in out.read_text()
    with pytest.raises(StudioError, match="train or eval"):
        store.set_split(ids, "test")
    with pytest.raises(StudioError, match="no task with id"):
        store.set_split([999], "eval")
