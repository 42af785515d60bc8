"""What a user does with open Batch API batches, against the scripted Batch API on a real socket: cancel one (what it
answered is kept, the rest goes back to pending), a job over the provider's limits split into several batches, and
collectors that race (the UI's timer and a click): every answer stored once."""
from __future__ import annotations

import json
import threading

import pytest

from curation.batch import BatchLimits, advance, cancel, collect, open_batches, request_line, submit_batch
from curation.errors import BatchTooLarge, StudioError
from curation.generate import GenerateConfig, plan_calls, run_method
from curation.teacher import TeacherConfig
from tests.batch_server import BatchServer, echo
from tests.test_batch import MODEL, cli, scripted


def states(store) -> dict:
    return {k: v for k, v in store.ledger_summary()["by_state"].items() if v}


def sent(server, store, batch_id) -> list[str]:
    """The instructions a batch's uploaded file asks about, in order."""
    lines = server.files[store.batch(batch_id)["input_file_id"]].decode().splitlines()
    return [json.loads(x)["body"]["messages"][-1]["content"] for x in lines]


def test_a_cancelled_batch_keeps_what_it_answered_and_its_other_calls_go_back_to_pending(store):
    store.add_tasks([{"instruction": f"Task {i}."} for i in range(5)])
    store.set_price(MODEL, 1000.0, 2000.0)
    with BatchServer(done_before_cancel=2) as server:
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        (row,) = submit_batch(store, teacher, GenerateConfig())
        first = cancel(store, teacher, row["id"])
        assert (first["collected"], store.batch(row["id"])["state"], server.cancels) == (False, "cancelling", 1)
        assert states(store) == {"batched": 5}  # nothing planned again before what it answered is stored
        with pytest.raises(StudioError, match="wait in a batch; collect it first"):
            submit_batch(store, teacher, GenerateConfig())
        assert run_method(store, teacher, GenerateConfig(), server.base_url)["planned"] == 0

        assert advance(store, teacher, row["id"])["state"] == "cancelled"
        summary = collect(store, teacher, row["id"])
        assert (summary["provider_state"], summary["ok"], summary["returned_to_pending"]) == ("cancelled", 2, 3)
        assert summary["cost_usd"] == pytest.approx(2 * (11 * 1000 + 5 * 2000) / 1e6 * 0.5)
        assert store.batch(row["id"])["state"] == "collected" and states(store) == {"ok": 2, "pending": 3}
        finished, unfinished = sent(server, store, row["id"])[:2], sent(server, store, row["id"])[2:]
        answers = store._fetchall("SELECT response FROM generations WHERE status = 'ok'")
        assert sorted(a[0] for a in answers) == sorted(f"batched answer to: {x}" for x in finished)
        with pytest.raises(StudioError, match="already ended \\(collected\\): nothing to cancel"):
            cancel(store, teacher, row["id"])

        calls, _ = plan_calls(store, teacher, GenerateConfig())  # a later run plans exactly the three not answered
        assert sorted(c.messages[-1]["content"] for c in calls) == sorted(unfinished)
        (again,) = submit_batch(store, teacher, GenerateConfig())
        assert sorted(sent(server, store, again["id"])) == sorted(unfinished)


def test_a_cancel_that_comes_after_the_provider_ended_the_batch_collects_it_whole(store):
    store.add_tasks([{"instruction": f"Task {i}."} for i in range(3)])
    with BatchServer() as server:
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        (row,) = submit_batch(store, teacher, GenerateConfig())
        server.finish(server.batches[row["remote_id"]])  # ended at the provider; the studio has not polled yet
        summary = cancel(store, teacher, row["id"])
    assert (summary["collected"], summary["provider_state"], summary["ok"]) == (True, "completed", 3)
    assert server.cancels == 0 and states(store) == {"ok": 3}


def test_cancelling_a_batch_whose_create_went_unrecorded_cancels_the_providers_batch(store):
    store.add_tasks([{"instruction": f"Task {i}."} for i in range(3)])
    with BatchServer() as server:
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        (row,) = submit_batch(store, teacher, GenerateConfig())
        store.update_batch(row["id"], state="uploaded", remote_id=None)  # died before recording the create
        cancel(store, teacher, row["id"])
        assert (store.batch(row["id"])["remote_id"], server.cancels, server.created) == ("batch_1", 1, 1)
        assert collect(store, teacher, row["id"])["returned_to_pending"] == 3
    assert states(store) == {"pending": 3}


def test_batch_cancel_on_the_command_line_waits_and_collects(tmp_path):
    from curation.store import Store
    ws = tmp_path / "ws"
    with Store(ws) as store:
        store.add_tasks([{"instruction": f"Task {i}."} for i in range(4)])
    with BatchServer(done_before_cancel=1) as server:
        teacher = ["--base-url", server.base_url, "--model", MODEL]
        (submitted,) = [json.loads(x) for x in cli(ws, "generate", "--batch", *teacher).stdout.splitlines()]
        done = json.loads(cli(ws, "batch-cancel", submitted["id"], "--wait", "--poll-s", "0.01", *teacher).stdout)
        assert (done["collected"], done["provider_state"], done["ok"], done["returned_to_pending"]) == (
            True, "cancelled", 1, 3)
        refused = cli(ws, "batch-cancel", submitted["id"], *teacher, check=False)
        assert refused.returncode == 2 and "nothing to cancel" in refused.stderr
    with Store(ws) as store:
        assert states(store) == {"ok": 1, "pending": 3}


def test_the_default_limits_are_openais_per_batch():
    assert (BatchLimits().max_requests, BatchLimits().max_bytes) == (50_000, 200_000_000)
    with pytest.raises(ValueError, match="max_requests per batch must be at least 1"):
        BatchLimits(max_requests=0)


def test_a_job_over_the_request_limit_becomes_several_batches_each_in_the_ledger(store):
    store.add_tasks([{"instruction": f"Task {i}."} for i in range(7)])
    with BatchServer(scripted) as server:
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        rows = submit_batch(store, teacher, GenerateConfig(), limits=BatchLimits(max_requests=3))
        assert [(r["state"], r["request_count"]) for r in rows] == [("submitted", 3), ("submitted", 3),
                                                                     ("submitted", 1)]
        assert (server.uploads, server.created) == (3, 3)
        assert [sorted(sent(server, store, r["id"])) for r in rows] == [[f"Task {i}." for i in range(3)],
                                                                 [f"Task {i}." for i in range(3, 6)], ["Task 6."]]
        assert open_batches(store, teacher) == [r["id"] for r in rows]
        for _ in range(5):
            summaries = [collect(store, teacher, batch_id) for batch_id in open_batches(store, teacher)]
        assert open_batches(store, teacher) == [] and all(s["collected"] for s in summaries)
    assert states(store) == {"ok": 5, "failed": 1, "pending": 1}  # Task 2 refused, Task 3 expired


def test_a_job_over_the_file_limit_is_split_by_bytes(store):
    store.add_tasks([{"instruction": f"Task {i}."} for i in range(5)])
    with BatchServer() as server:
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        calls, _ = plan_calls(store, teacher, GenerateConfig())
        one = len(request_line(calls[0].request_key, calls[0].model, calls[0].messages, calls[0].params))
        rows = submit_batch(store, teacher, GenerateConfig(), limits=BatchLimits(max_bytes=2 * one + 1))
        assert [r["request_count"] for r in rows] == [2, 2, 1]
        assert all(len(server.files[store.batch(r["id"])["input_file_id"]]) <= 2 * one + 1 for r in rows)


def test_one_request_over_the_file_limit_is_refused_by_name_and_nothing_changes(store):
    store.add_tasks([{"instruction": "Short."}, {"instruction": "Long " * 400}])
    with BatchServer() as server:
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        calls, _ = plan_calls(store, teacher, GenerateConfig())
        long = next(c for c in calls if c.messages[-1]["content"].startswith("Long"))
        with pytest.raises(BatchTooLarge, match=f"request {long.request_key[:12]} \\(task {long.task_id}, stage "
                                                "answer\\) is [0-9,]+ bytes .* over the 1,000-byte limit"):
            submit_batch(store, teacher, GenerateConfig(), limits=BatchLimits(max_bytes=1000))
        assert (server.uploads, server.created) == (0, 0)
    assert store.batches() == [] and store.runs("generate") == [] and store.ledger_summary()["by_state"].get(
        "batched", 0) == 0


def test_generate_batch_on_the_command_line_prints_each_batch_of_a_split(tmp_path):
    from curation.store import Store
    ws = tmp_path / "ws"
    with Store(ws) as store:
        store.add_tasks([{"instruction": f"Task {i}."} for i in range(3)])
    with BatchServer() as server:
        out = cli(ws, "generate", "--batch", "--batch-max-requests", "2", "--base-url", server.base_url,
                  "--model", MODEL).stdout
    assert [(r["id"], r["request_count"], r["state"]) for r in map(json.loads, out.splitlines())] == [
        (1, 2, "submitted"), (2, 1, "submitted")]


def run_together(*targets):
    """Start each target on its own thread at once; return their results (re-raising the first error)."""
    results, errors, start = [None] * len(targets), [], threading.Barrier(len(targets))

    def run(i, target):
        start.wait()
        try:
            results[i] = target()
        except BaseException as exc:  # noqa: BLE001 — re-raised below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def test_two_collectors_racing_store_each_answer_once(store):
    store.add_tasks([{"instruction": f"Task {i}."} for i in range(6)])
    store.set_price(MODEL, 1000.0, 2000.0)
    with BatchServer(scripted, delay_s=0.5) as server:  # both download the results before either stores them
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        (row,) = submit_batch(store, teacher, GenerateConfig())
        while advance(store, teacher, row["id"])["state"] == "submitted":
            pass
        first, second = run_together(*[lambda: collect(store, teacher, row["id"])] * 2)
    assert first["collected"] and second["collected"]
    assert (first["ok"], first["failed"]) == (second["ok"], second["failed"]) == (4, 1)  # the batch's, either way
    assert first["stored_ok"] + second["stored_ok"] == 4 and first["stored_failed"] + second["stored_failed"] == 1
    assert first["returned_to_pending"] + second["returned_to_pending"] == 1
    assert store._fetchall("SELECT max(attempts), count(*) FROM ledger WHERE state = 'ok'") == [(1, 4)]
    assert store._fetchone("SELECT count(*) FROM generations")[0] == 5
    assert states(store) == {"ok": 4, "failed": 1, "pending": 1}
    paid = first["cost_usd"] + second["cost_usd"]  # what the two runs recorded: each answer paid once
    assert paid == pytest.approx(store.ledger_summary()["cost_usd"]) == pytest.approx(4 * 0.021 * 0.5)


def test_two_threads_advancing_a_planned_batch_upload_and_create_it_once(store):
    store.add_tasks([{"instruction": f"Task {i}."} for i in range(3)])
    with BatchServer(echo, delay_s=0.5) as server:
        teacher = TeacherConfig(base_url=server.base_url, model=MODEL)
        calls, _ = plan_calls(store, teacher, GenerateConfig())
        store.plan_ledger(None, [c.ledger_row() for c in calls])
        batch_id = store.create_batch(teacher.endpoint_id, MODEL, "label", "answer",
                                      [c.request_key for c in calls], 0.5)
        rows = run_together(*[lambda: advance(store, teacher, batch_id)] * 2)
        assert [r["remote_id"] for r in rows] == ["batch_1", "batch_1"]
        assert (server.uploads, server.created) == (1, 1)
