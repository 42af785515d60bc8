"""The eval split: stratified, reproducible, and never exported for training."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from curation import exporting
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
    exporting.export_examples(store.approved_examples(), out)
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(e["task_id"] for e in store.approved_examples()) == ids[2:]
    assert len(exported) == 2 and "task 0" not in out.read_text() and "task 1" not in out.read_text()
    with pytest.raises(StudioError, match="train or eval"):
        store.set_split(ids, "test")
    with pytest.raises(StudioError, match="no task with id"):
        store.set_split([999], "eval")


def test_the_seeds_tab_splits_and_moves_tasks_through_the_api(tmp_path):
    from gradio_client import Client

    from curation.split import hold_out
    from tests.ui_helpers import running_studio
    with running_studio(tmp_path / "ws") as (studio, url):
        studio.store.add_tasks([{"instruction": f"task {i}", "skill": "code" if i % 2 else "nlu"} for i in range(8)])
        client = Client(url, verbose=False)
        message, _ = client.predict(0.25, 3, api_name="/split_tasks")
        held = [t["id"] for t in studio.store.tasks(split="eval")]
        assert message == "held out 2 of 8 tasks for evaluation (seed 3)" and len(held) == 2
        assert sorted({t["skill"] for t in studio.store.tasks(split="eval")}) == ["code", "nlu"]  # stratified
        assert client.predict(str(held[0]), api_name="/move_to_train")[0] == "moved 1 tasks to train"
        with pytest.raises(Exception, match="comma-separated numbers"):
            client.predict("1,x", api_name="/move_to_eval")
        assert [t["id"] for t in studio.store.tasks(split="eval")] == held[1:]
        assert hold_out(studio.store, 0.25, seed=3)[0] == held  # the same split the core gives
