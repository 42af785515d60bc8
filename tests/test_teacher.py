"""The teacher engine against the real embedded llama.cpp server and a scripted fault server."""
from __future__ import annotations

import json

import pytest

from curation.errors import ConfigError
from curation.generate import GenerateConfig, build_messages, run_generation
from curation.store import ReviewFilter
from curation.teacher import TeacherConfig, request_key
from tests.fault_server import FaultServer

TASKS = [{"instruction": "Name one primary colour."}, {"instruction": "What is 2 + 3?"},
         {"instruction": "Summarise in five words.", "input": "The cat sat on the mat all afternoon."}]


@pytest.mark.integration
def test_real_teacher_labels_three_tasks_twice_with_usage(store, teacher_url):
    ids = store.add_tasks(TASKS)
    config = GenerateConfig(n=2, max_tokens=24, temperature=0.7, system_prompt="Answer briefly.")
    summary = run_generation(store, TeacherConfig(concurrency=4), config, teacher_url)
    assert summary["ok"] == 6 and summary["failed"] == 0 and summary["tokens"] > 0
    frame, total = store.review_page(ReviewFilter(), page_size=50)
    assert total == 6 and sorted(frame["task_id"].tolist()) == sorted(ids * 2)
    row = store.generation(int(frame["id"][0]))
    task = store.tasks([row["task_id"]])[0]
    assert row["messages"] == build_messages(task, "Answer briefly.")  # the exact messages sent
    assert row["params"] == {"temperature": 0.7, "max_tokens": 24}
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["latency_s"] > 0
    assert row["response"] and row["status"] == "ok" and row["model"] == "smollm2-135m-instruct"
    # A re-run pays for nothing: every call already has a stored answer.
    again = run_generation(store, TeacherConfig(), config, teacher_url)
    assert again["planned"] == 0 and again["skipped_cached"] == 6
    assert store.stats()["generations"] == 6
    assert [r["status"] for r in store.runs("generate")] == ["completed", "completed"]


def test_http_500_becomes_a_failed_row_with_its_error(store):
    store.add_tasks(TASKS[:1])
    with FaultServer([500]) as server:
        teacher = TeacherConfig(base_url=server.base_url, model="scripted", max_retries=1)
        summary = run_generation(store, teacher, GenerateConfig(), server.base_url)
        assert len(server.requests) == 2  # one try + one retry
    assert summary["failed"] == 1 and summary["ok"] == 0
    frame, total = store.review_page(ReviewFilter(status="failed"))
    row = store.generation(int(frame["id"][0]))
    assert total == 1 and row["status"] == "error" and "500" in row["error"] and row["attempts"] == 2
    assert row["response"] is None


def test_failed_call_is_retried_on_rerun_and_the_row_replaced(store):
    store.add_tasks(TASKS[:1])
    with FaultServer([500, 200]) as server:
        teacher = TeacherConfig(base_url=server.base_url, model="scripted", max_retries=0)
        run_generation(store, teacher, GenerateConfig(), server.base_url)
        summary = run_generation(store, teacher, GenerateConfig(), server.base_url)
    assert summary["ok"] == 1
    frame, total = store.review_page(ReviewFilter())
    row = store.generation(int(frame["id"][0]))
    assert total == 1 and row["status"] == "ok" and row["response"] == "scripted answer" and row["attempts"] == 2


def test_the_api_key_is_sent_but_never_stored(store, tmp_path):
    store.add_tasks(TASKS[:1])
    secret = "sk-test-never-store-me-0123456789"
    with FaultServer([200]) as server:
        teacher = TeacherConfig(base_url=server.base_url, model="scripted", api_key=secret)
        run_generation(store, teacher, GenerateConfig(), server.base_url)
        assert {k.lower(): v for k, v in server.requests[0]["headers"].items()}["authorization"] == f"Bearer {secret}"
    assert secret not in repr(teacher)
    assert secret not in json.dumps(store.runs(), default=str)
    store.con.execute("CHECKPOINT")
    for path in store.workspace.rglob("*"):
        if path.is_file() and path.name != ".lock":
            assert secret.encode() not in path.read_bytes(), path


def test_request_key_changes_with_every_input():
    messages = [{"role": "user", "content": "hi"}]
    base = request_key("e", "m", messages, {"temperature": 0.7}, 0)
    assert base == request_key("e", "m", [{"content": "hi", "role": "user"}], {"temperature": 0.7}, 0)
    assert len({base, request_key("e2", "m", messages, {"temperature": 0.7}, 0),
                request_key("e", "m2", messages, {"temperature": 0.7}, 0),
                request_key("e", "m", messages, {"temperature": 0.8}, 0),
                request_key("e", "m", messages, {"temperature": 0.7}, 1)}) == 5


@pytest.mark.parametrize("kwargs, field", [({"concurrency": 0}, "concurrency"), ({"timeout_s": 0}, "timeout_s"),
                                           ({"base_url": "ftp://x", "model": "m"}, "base_url"),
                                           ({"base_url": "http://x/v1"}, "model")])
def test_teacher_config_names_the_bad_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        TeacherConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [({"n": 0}, "n"), ({"temperature": 3}, "temperature"),
                                           ({"max_tokens": 0}, "max_tokens")])
def test_generate_config_names_the_bad_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        GenerateConfig(**kwargs)
