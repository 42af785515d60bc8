"""The OpenAI Batch API as a job mode, against a scripted Batch API on a real socket: submit, poll, collect with
a partial failure, the batch price, a restart between submit and collect, and nothing submitted or paid twice."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curation.batch import collect, open_batches, submit_batch, wait_and_collect
from curation.errors import ConfigError, StudioError
from curation.farm_config import EndpointConfig, TeacherFarm
from curation.generate import GenerateConfig, plan_calls, run_method
from curation.store import Store
from curation.teacher import TeacherConfig
from tests.batch_server import BatchServer, echo

ROOT = Path(__file__).resolve().parents[1]
MODEL = "batch-model"


def scripted(custom_id: str, body: dict):
    """Task 2 is refused (an error line), Task 3 never answered (expired), the others answered."""
    content = body["messages"][-1]["content"]
    return 400 if content == "Task 2." else None if content == "Task 3." else echo(custom_id, body)


def no_sleep(_):
    return None


def test_a_batch_is_collected_with_its_partial_failure_at_the_batch_price(store):
    store.add_tasks([{"instruction": f"Task {i}."} for i in range(5)])
    store.set_price(MODEL, 1000.0, 2000.0)
    with BatchServer(scripted) as server:
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        (row,) = submit_batch(store, teacher, GenerateConfig())
        assert (row["state"], row["remote_id"], row["request_count"]) == ("submitted", "batch_1", 5)
        assert store.ledger_summary()["by_state"]["batched"] == 5
        sent = [json.loads(x) for x in server.files["file-1"].decode().splitlines()]
        assert {x["custom_id"] for x in sent} == {r["request_key"] for r in store.ledger_rows()}
        assert {"model": MODEL, "messages": [{"role": "user", "content": "Task 0."}], "max_tokens": 256,
                "temperature": 0.7} in [x["body"] for x in sent]
        assert {(x["method"], x["url"]) for x in sent} == {("POST", "/v1/chat/completions")}
        assert Path(row["input_path"]).read_bytes() == server.files["file-1"]
        with pytest.raises(StudioError, match="wait in a batch; collect it first"):
            submit_batch(store, teacher, GenerateConfig())
        assert plan_calls(store, teacher, GenerateConfig()) == ([], 0)
        live = run_method(store, teacher, GenerateConfig(), server.base_url)  # /chat/completions would be a 404
        assert (live["planned"], live["skipped_cached"], live["failed"]) == (0, 5, 0)  # sends none of its calls

        summary = wait_and_collect(store, teacher, row["id"], poll_s=0, sleep=no_sleep)
        assert (summary["ok"], summary["failed"], summary["returned_to_pending"]) == (3, 1, 1)
        assert summary["cost_usd"] == pytest.approx(3 * (11 * 1000 + 5 * 2000) / 1e6 * 0.5)  # half the live price
        rows = store._fetchdicts("SELECT t.instruction, g.status, g.response, g.error, g.answered_by "
                                 "FROM generations g JOIN tasks t ON t.id = g.task_id ORDER BY t.id")
        ok = [r for r in rows if r["status"] == "ok"]
        assert [r["response"] for r in ok] == [f"batched answer to: Task {i}." for i in (0, 1, 4)]
        assert {r["answered_by"] for r in rows} == {"batch:batch_1"}
        (failed,) = [r for r in rows if r["status"] != "ok"]
        assert failed["instruction"] == "Task 2." and "HTTP 400" in failed["error"]
        assert "scripted refusal" in failed["error"]
        states = store.ledger_summary()["by_state"]
        assert (states["ok"], states["failed"], states["pending"], states["batched"]) == (3, 1, 1, 0)
        assert store.ledger_summary()["cost_usd"] == pytest.approx(summary["cost_usd"])
        assert store.batch(row["id"])["state"] == "collected"
        runs = len(store.runs("generate"))
        assert collect(store, teacher, row["id"])["collected"] and len(store.runs("generate")) == runs

        (again,) = submit_batch(store, teacher, GenerateConfig())  # only what has no answer: the refused, the expired
        assert (again["request_count"], server.created) == (2, 2)
        lines = server.files[store.batch(again["id"])["input_file_id"]].decode().splitlines()
        assert sorted(json.loads(x)["body"]["messages"][-1]["content"] for x in lines) == ["Task 2.", "Task 3."]


def test_a_batch_the_provider_failed_returns_every_call_to_pending(store):
    store.add_tasks([{"instruction": "Task 0."}, {"instruction": "Task 1."}])
    with BatchServer(end="failed") as server:
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        (row,) = submit_batch(store, teacher, GenerateConfig())
        summary = wait_and_collect(store, teacher, row["id"], poll_s=0, sleep=no_sleep)
    assert (summary["provider_state"], summary["ok"], summary["returned_to_pending"]) == ("failed", 0, 2)
    assert "invalid_json_line" in store.batch(row["id"])["error"]
    assert len(plan_calls(store, teacher, GenerateConfig())[0]) == 2


def test_only_one_openai_compatible_endpoint_takes_batches(store):
    store.add_tasks([{"instruction": "Task 0."}])
    farm = TeacherFarm((EndpointConfig("http://127.0.0.1:9/v1"),), name="f", model="m")
    for teacher in (TeacherConfig(), TeacherConfig(farm=farm)):
        with pytest.raises(ConfigError, match="the Batch API needs one OpenAI-compatible base URL"):
            submit_batch(store, teacher, GenerateConfig())
    assert store.ledger_summary()["by_state"]["batched"] == 0


def cli(ws, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "curation", "--workspace", str(ws), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_a_restart_between_submit_and_collect_resumes_the_same_batch(tmp_path):
    ws = tmp_path / "ws"
    with Store(ws) as store:
        store.add_tasks([{"instruction": f"Task {i}."} for i in range(4)])
    with BatchServer() as server:
        teacher = ["--base-url", server.base_url, "--model", MODEL]
        submitted = json.loads(cli(ws, "generate", "--batch", *teacher).stdout)
        assert submitted["state"] == "submitted" and submitted["request_count"] == 4
        with Store(ws) as store:  # the studio died after creating the batch, before recording it
            store.update_batch(submitted["id"], state="uploaded", remote_id=None)
            assert open_batches(store, TeacherConfig(base_url=server.base_url, model=MODEL)) == [submitted["id"]]
        status = json.loads(cli(ws, "batch-status", *teacher).stdout)
        assert (status["state"], status["remote_id"]) == ("submitted", submitted["remote_id"])  # found, not made
        done = json.loads(cli(ws, "batch-collect", "--wait", "--poll-s", "0.01", *teacher).stdout)
        assert (done["collected"], done["ok"], done["failed"]) == (True, 4, 0)
        assert (server.uploads, server.created) == (1, 1)
        nothing = cli(ws, "generate", "--batch", *teacher, check=False)
        assert nothing.returncode == 2 and "nothing to do: all 4 calls already have a stored answer" in nothing.stderr
        assert server.created == 1
    with Store(ws) as store:
        assert store.stats()["generations"] == 4 and store.ledger_summary()["by_state"]["ok"] == 4
