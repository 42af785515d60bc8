"""The engine against a scripted OpenAI-compatible server on real sockets: retries that honour
Retry-After, failures that become rows, timeouts, unreadable answers, budgets, the ledger and retries,
a SIGKILLed job that resumes with exactly the missing calls, background jobs and the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curation.errors import ConfigError, StudioError, TeacherError
from curation.generate import Budget, GenerateConfig, Progress, retry_failed, run_method
from curation.jobs import GenerationJobs
from curation.local_server import LocalTeacherServer
from curation.methods import JudgeConfig, LogprobsConfig
from curation.store import Store
from curation.teacher import TeacherConfig, backoff_s
from tests.conftest import add_generation, curation_cli
from tests.fault_server import FaultServer

ROOT = Path(__file__).resolve().parents[1]
TASKS = [{"instruction": f"Task number {i}."} for i in range(1, 7)]


def teacher_for(server, **kwargs) -> TeacherConfig:
    return TeacherConfig(base_url=server.base_url, model="scripted", **{"concurrency": 1, "max_retries": 0, **kwargs})


def test_429_with_retry_after_is_waited_out_then_stored_once(store):
    store.add_tasks(TASKS[:1])
    script = [(429, {"retry-after": "1"}), (429, {"retry-after": "1"}), 200]
    with FaultServer(script) as server:
        started = time.monotonic()
        summary = run_method(store, teacher_for(server, max_retries=3), GenerateConfig(), server.base_url)
        elapsed = time.monotonic() - started
        assert len(server.requests) == 3
    assert elapsed >= 2.0  # the server's Retry-After, not our shorter backoff
    assert summary["ok"] == 1 and store.stats()["generations"] == 1
    [row] = store.ledger_rows()
    assert (row["state"], row["attempts"], row["error"]) == ("ok", 3, None)
    assert store.generation(row["generation_id"])["attempts"] == 3


def test_a_commit_that_fails_does_not_drop_the_other_answers_in_flight(store):
    store.add_tasks(TASKS[:4])
    commit, failed = store.commit_call, []

    def first_commit_fails(request_key, result, **kwargs):
        if not failed:
            failed.append(request_key)
            raise RuntimeError("disk full")
        return commit(request_key, result, **kwargs)

    store.commit_call = first_commit_fails
    # all four are in flight at once; the first answer's commit fails while the others are still coming
    with FaultServer([{"text": "paid for", "delay": 0.1}, {"text": "paid for", "delay": 0.6}]) as server:
        with pytest.raises(RuntimeError, match="disk full"):
            run_method(store, teacher_for(server, concurrency=4), GenerateConfig(), server.base_url)
        assert len(server.requests) == 4
    assert store.stats()["generations"] == 3  # every other paid answer is stored
    assert store.runs()[0]["status"] == "failed"
    states = sorted(r["state"] for r in store.ledger_rows())
    assert states == ["ok", "ok", "ok", "pending"]  # the one that failed to commit is sent again by a re-run


def test_429_forever_becomes_a_failed_row_with_its_error(store):
    store.add_tasks(TASKS[:1])
    with FaultServer([(429, {"retry-after-ms": "10"})]) as server:
        summary = run_method(store, teacher_for(server, max_retries=2), GenerateConfig(), server.base_url)
        assert len(server.requests) == 3
    assert summary["failed"] == 1
    [row] = store.ledger_rows()
    assert row["state"] == "failed" and row["attempts"] == 3 and "429" in row["error"]
    gen = store.generation(row["generation_id"])
    assert gen["status"] == "error" and "RateLimitError" in gen["error"] and gen["response"] is None


def test_a_hung_call_times_out_into_a_failed_row(store):
    store.add_tasks(TASKS[:1])
    with FaultServer(["hang"]) as server:
        started = time.monotonic()
        summary = run_method(store, teacher_for(server, timeout_s=1), GenerateConfig(), server.base_url)
        assert time.monotonic() - started < 10
    [row] = store.ledger_rows()
    assert summary["failed"] == 1 and row["state"] == "failed" and "Timeout" in row["error"]


def test_a_body_that_is_not_json_is_a_failed_row_not_a_crash(store):
    store.add_tasks(TASKS[:2])
    with FaultServer(["garbage"]) as server:
        summary = run_method(store, teacher_for(server, max_retries=3), GenerateConfig(), server.base_url)
        assert len(server.requests) == 2  # not retried: the same garbage would come back
    assert summary["failed"] == 2
    assert all("unreadable answer" in r["error"] for r in store.ledger_rows())


def test_the_eta_waits_for_the_first_wave_of_calls():
    # 16 sent at once: the first 3 back are the short answers; a pace read from them ran short
    assert Progress(3, 100, 0, 0, 3.0, in_flight=16).eta_s is None
    assert Progress(16, 100, 0, 0, 32.0, in_flight=16).eta_s == pytest.approx(32.0 / 16 * 84)
    assert Progress(2, 2, 0, 0, 5.0, in_flight=16).eta_s == 0.0  # a job smaller than one wave


def test_backoff_honours_retry_after_and_grows_without_it():
    assert backoff_s(1, 1.0) == 1.0 and backoff_s(1, 500.0) == 60.0
    assert 0.375 <= backoff_s(1, None) <= 0.5 and 3.0 <= backoff_s(4, None) <= 4.0 and backoff_s(10, None) <= 8.0


def test_logprobs_are_stored_per_token_when_the_endpoint_gives_them(store):
    store.add_tasks(TASKS[:1])
    with FaultServer([{"text": "two words", "logprobs": True}]) as server:
        run_method(store, teacher_for(server), LogprobsConfig(top_logprobs=2), server.base_url)
        assert server.requests[0]["body"]["logprobs"] is True and server.requests[0]["body"]["top_logprobs"] == 2
    [gen] = store.ok_generations(methods=("logprobs",))
    assert store.generation_logprobs(gen["id"]) == [
        {"token": w, "logprob": -0.5, "top": [{"token": w, "logprob": -0.5}, {"token": "other", "logprob": -1.5}]}
        for w in ("two", "words")]


@pytest.mark.parametrize("step, why", [({"text": "no logprobs here"}, "came without a 'logprobs' field"),
                                       ({"status": 400, "text": "logprobs is not supported"}, "refused")])
def test_an_endpoint_without_logprobs_stops_the_job_with_a_clear_message(store, step, why):
    store.add_tasks(TASKS[:3])
    with FaultServer([step]) as server:
        with pytest.raises(TeacherError, match=f"does not return token logprobs: .*{why}"):
            run_method(store, teacher_for(server), LogprobsConfig(), server.base_url)
        assert len(server.requests) == 1  # stopped at the first answer
    assert store.ledger_summary()["by_state"] == {"pending": 2, "ok": 0, "failed": 1, "retried": 0, "batched": 0}
    assert store.runs()[0]["status"] == "failed" and "logprobs" in store.runs()[0]["error"]


def test_a_token_budget_stops_cleanly_between_calls_and_a_rerun_finishes(store):
    store.add_tasks(TASKS[:5])
    with FaultServer([200]) as server:  # every answer: 7 prompt + 3 completion tokens
        teacher = teacher_for(server)
        summary = run_method(store, teacher, GenerateConfig(), server.base_url, budget=Budget(max_tokens=25))
        assert len(server.requests) == 3
        assert summary["stopped_reason"] == "budget" and summary["ok"] == 3 and summary["pending"] == 2
        assert summary["total_tokens"] == 30 and store.runs()[0]["status"] == "stopped"
        assert store.ledger_summary()["by_state"]["pending"] == 2
        rest = run_method(store, teacher, GenerateConfig(), server.base_url)
        assert len(server.requests) == 5 and rest["skipped_cached"] == 3 and rest["ok"] == 2


def test_cost_comes_from_the_price_table_and_caps_a_money_budget(store):
    store.add_tasks(TASKS[:4])
    with FaultServer([200]) as server:
        teacher = teacher_for(server)
        with pytest.raises(ConfigError, match="needs a price for model 'scripted'"):
            run_method(store, teacher, GenerateConfig(), server.base_url, budget=Budget(max_usd=0.02))
        store.set_price("scripted", 1000.0, 2000.0)  # USD per million tokens: 7*1000 + 3*2000 = 0.013 a call
        summary = run_method(store, teacher, GenerateConfig(), server.base_url, budget=Budget(max_usd=0.02))
        assert len(server.requests) == 2
    assert summary["cost_usd"] == pytest.approx(0.026) and summary["stopped_reason"] == "budget"
    assert [r["cost_usd"] for r in store.ledger_rows(states=("ok",))] == [pytest.approx(0.013)] * 2
    assert store.run(summary["run_id"])["cost_usd"] == pytest.approx(0.026)
    assert store.ledger_summary()["cost_usd"] == pytest.approx(0.026)


def test_retry_failed_one_then_all_with_the_same_keys(store):
    store.add_tasks(TASKS[:2])
    with FaultServer([500]) as server:
        teacher = teacher_for(server)
        run_method(store, teacher, GenerateConfig(), server.base_url)
        first, second = [r["request_key"] for r in store.ledger_rows()]
        server.script = [200]
        one = retry_failed(store, teacher, server.base_url, keys=[first])
        assert len(server.requests) == 3 and one["ok"] == 1
        states = {r["request_key"]: (r["state"], r["attempts"]) for r in store.ledger_rows()}
        assert states == {first: ("ok", 2), second: ("failed", 1)}
        with pytest.raises(StudioError, match="only failed calls can be retried"):
            retry_failed(store, teacher, server.base_url, keys=[first])
        every = retry_failed(store, teacher, server.base_url)
        assert len(server.requests) == 4 and every["ok"] == 1
    assert store.stats()["generations"] == 2 and store.stats()["by_status"]["failed"] == 0
    with pytest.raises(StudioError, match="no failed calls"):
        retry_failed(store, teacher, "http://unused")


def test_a_failed_call_queued_again_is_retried_in_the_ledger(store):
    store.add_tasks(TASKS[:1])
    with FaultServer([500]) as server:
        run_method(store, teacher_for(server), GenerateConfig(), server.base_url)
    [row] = store.ledger_rows()
    store.plan_ledger(99, [row])
    [again] = store.ledger_rows()
    assert (again["state"], again["run_id"], again["attempts"], again["error"]) == ("retried", 99, 1, row["error"])
    frame, total = store.ledger_page(state="retried")
    assert total == 1 and frame["request_key"][0] == row["request_key"]


def test_killed_with_sigkill_then_rerun_sends_exactly_the_missing_calls(tmp_path):
    ws, m, n, concurrency = tmp_path / "ws", 6, 3, 2
    with Store(ws) as store:
        store.add_tasks(TASKS[:m])
    # n quick answers, then every call hangs: the job is stuck with `concurrency` calls in flight.
    with FaultServer([{"text": "stored before the kill", "delay": 0.05}] * n + ["hang"]) as server:
        args = [sys.executable, "-m", "curation", "--workspace", str(ws), "generate", "--base-url", server.base_url,
                "--model", "scripted", "--concurrency", str(concurrency), "--max-retries", "0"]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        # A slot frees only once its answer is committed, so n + concurrency requests mean n rows stored.
        while len(server.requests) < n + concurrency and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(server.requests) == n + concurrency, proc.communicate(timeout=5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        with Store(ws) as store:
            assert store.stats()["generations"] == n
            assert store.ledger_summary()["by_state"] == {"pending": m - n, "ok": n, "failed": 0, "retried": 0, "batched": 0}
        server.script = [{"text": "after the restart"}]
        before = len(server.requests)
        rerun = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert len(server.requests) - before == m - n
    summary = json.loads(rerun.stdout)
    assert summary["skipped_cached"] == n and summary["ok"] == m - n
    with Store(ws) as store:
        keys = store._fetchone("SELECT count(*), count(DISTINCT request_key) FROM generations")
        assert keys == (m, m) and store.stats()["by_status"]["pending"] == m
        assert [r["status"] for r in store.runs("generate")] == ["completed", "interrupted"]


def test_background_job_runs_any_method_and_stops_cleanly(store, tmp_path):
    store.add_tasks(TASKS[:1])
    for i in range(4):
        add_generation(store, 1, f"g{i}", response=f"answer {i}")
    jobs = GenerationJobs(store, LocalTeacherServer(tmp_path / "logs"))
    with FaultServer([{"text": "Score: 6\nRationale: fine.", "delay": 0.3}]) as server:
        teacher = teacher_for(server)
        assert jobs.start(teacher, JudgeConfig(generation_ids=[1])) == 1
        status = jobs.wait(timeout=30)
        assert (status.state, status.method, status.summary["ok"]) == ("completed", "judge", 1)
        with pytest.raises(StudioError, match="nothing to do"):
            jobs.start(teacher, JudgeConfig(generation_ids=[1]))
        assert jobs.start(teacher, JudgeConfig()) == 3
        while jobs.status().progress.done < 1:
            time.sleep(0.02)
        assert jobs.stop()
        status = jobs.wait(timeout=30)
    assert status.state == "stopped" and status.summary["stopped_reason"] == "cancelled"
    assert status.summary["ok"] + status.summary["pending"] == 3 and status.summary["pending"] >= 1
    assert len(store.judgments_of()) == 1 + status.summary["ok"]


def test_a_failed_background_job_keeps_its_traceback_in_the_workspace_log(store, tmp_path):
    store.add_tasks(TASKS[:1])

    def broken_commit(*args, **kwargs):
        raise RuntimeError("the disk is full")

    store.commit_call = broken_commit
    jobs = GenerationJobs(store, LocalTeacherServer(tmp_path / "logs"))
    with FaultServer([200]) as server:
        jobs.start(teacher_for(server), GenerateConfig())
        status = jobs.wait(timeout=30)
    log = store.workspace / "logs" / "studio.log"
    assert status.state == "failed" and status.error == f"RuntimeError: the disk is full (traceback in {log})"
    text = log.read_text()
    assert "generation job (label) failed" in text and "Traceback" in text and "broken_commit" in text


def test_cli_preview_judge_ledger_prices_and_retry(tmp_path):
    ws = tmp_path / "ws"
    with Store(ws) as store:
        store.add_tasks(TASKS[:1])
        add_generation(store, 1, "g1", response="Blue.")
    with FaultServer([{"text": "Score: 9\nRationale: right."}]) as server:
        target = ["--base-url", server.base_url, "--model", "scripted"]
        shown = curation_cli("--workspace", ws, "generate", "--method", "judge", "--rubric", "Be exact.", "--preview", *target)
        [call] = [json.loads(line) for line in shown.stdout.splitlines()]
        assert "rubric:\nBe exact.\n" in call["messages"][0]["content"] and server.requests == []
        bad = curation_cli("--workspace", ws, "generate", "--method", "topics", "--task-ids", "1", *target, check=False)
        assert bad.returncode == 2 and "--task-ids does not apply to method topics" in bad.stderr
        assert "--topics" not in curation_cli("judge", "--help").stdout
        curation_cli("--workspace", ws, "prices", "--set", "scripted", "1000", "1000")
        summary = json.loads(curation_cli("--workspace", ws, "judge", "--rubric", "Be exact.", "--budget-usd", "1",
                                  *target).stdout)
        assert summary["method"] == "judge" and summary["ok"] == 1 and summary["cost_usd"] == pytest.approx(0.01)
        assert len(server.requests) == 1
    ledger = json.loads(curation_cli("--workspace", ws, "ledger", "--json").stdout)
    assert ledger["by_state"]["ok"] == 1 and ledger["rows"][0]["method"] == "judge"
    assert "scripted" in curation_cli("--workspace", ws, "prices").stdout
    none = curation_cli("--workspace", ws, "retry-failed", "--all", "--base-url", "http://127.0.0.1:9/v1", "--model",
                "scripted", check=False)
    assert none.returncode == 2 and "no failed calls to retry" in none.stderr
