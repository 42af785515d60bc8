"""Failures-to-seeds after an eval whose teacher was a farm: the farm is rebuilt from what the eval run stored
(members, model, name), or a run that did not store it fails saying what to pass."""
from __future__ import annotations

import json

import pytest

from curation.errors import ConfigError
from curation.farm_config import EndpointConfig, TeacherFarm
from curation.teacher import TeacherConfig
from evaluation.failures import failures_to_seeds, teacher_of_run
from evaluation.report import new_eval_dir, write_details
from tests.fault_server import FaultServer

LOST = {"What is 2+2?": "A farmer has 7 apples and buys 5 more. How many does she have?",
        "Name the capital of France.": "Which river flows through the city of Cairo?"}


def task_writer(body: dict) -> dict:
    """A farm member that writes one new practice task for the lost task in its prompt."""
    content = body["messages"][-1]["content"]
    return {"text": json.dumps([next(new for old, new in LOST.items() if old in content)])}


def eval_run(store, teacher: dict) -> int:
    """A completed eval run, as run_eval leaves one, in which the student lost every eval task."""
    ids = store.add_tasks([{"instruction": text, "skill": "reasoning", "domain": "general"} for text in LOST])
    store.set_split(ids, "eval")
    run_dir = new_eval_dir(store.workspace / "runs")
    write_details(run_dir, [{"task_id": i, "instruction": text, "input": None, "skill": "reasoning",
                             "domain": "general", "lost": True} for i, text in zip(ids, LOST)])
    run_id = store.start_run("eval", {"teacher": teacher, "task_ids": ids}, run_dir=str(run_dir))
    store.update_run(run_id, status="completed", metrics={"tasks": len(ids)})
    return run_id


def test_failures_to_seeds_asks_the_farm_the_eval_run_used(store):
    with FaultServer([task_writer]) as member:
        farm = TeacherFarm((EndpointConfig(member.base_url, name="gpu1", concurrency=2),), name="eval-farm",
                           model="scripted")
        run_id = eval_run(store, TeacherConfig(farm=farm, max_retries=0).public())
        rebuilt = teacher_of_run(store, run_id)
        assert rebuilt.farm == farm and rebuilt.endpoint_id == "farm:eval-farm" and rebuilt.model == "scripted"

        new_ids = failures_to_seeds(store, run_id)
        assert sorted(t["instruction"] for t in store.tasks(new_ids)) == sorted(LOST.values())
        assert len(member.requests) == 2
        assert {(r["endpoint"], r["answered_by"]) for r in store.ledger_rows()} == {("farm:eval-farm", member.base_url)}
        assert failures_to_seeds(store, run_id) == new_ids and len(member.requests) == 2  # asked once only


def test_a_farm_run_without_its_members_says_to_pass_the_farm_file(store):
    run_id = eval_run(store, {"endpoint": "farm:gone", "model": "scripted"})  # the farm's members not stored
    with pytest.raises(ConfigError, match=r"farm 'gone'.*load_farm\('FARM.json'\)"):
        teacher_of_run(store, run_id)
    farm = TeacherFarm((EndpointConfig("http://127.0.0.1:9/v1"),), name="gone", model="scripted")
    assert teacher_of_run(store, run_id, farm=farm).farm == farm
    with pytest.raises(ConfigError, match="farm 'gone', not 'other'"):
        teacher_of_run(store, run_id, farm=TeacherFarm(farm.endpoints, name="other", model="scripted"))
