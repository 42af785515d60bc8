"""The inference servers: the real embedded llama-server answers, batches, dies loudly and is restarted once."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from curation.errors import TeacherError
from curation.generate import GenerateConfig, retry_failed, run_method
from curation.jobs import GenerationJobs, run_on_teacher
from curation.local_server import LocalTeacherServer
from curation.teacher import TeacherConfig
from models.engine import describe_exit, stop_recorded

pytestmark = pytest.mark.integration

TASKS = [{"instruction": f"Write one sentence about the number {i}."} for i in range(12)]


def _kill_after(server: LocalTeacherServer, calls: int, times: int = 1):
    """An on_progress hook that sends SIGSEGV to the server once `calls` answers are stored (up to `times` kills)."""
    killed = []

    def hook(progress):
        if progress.done >= calls and len(killed) < times and server.running:
            killed.append(server.pid)
            os.killpg(server.pid, signal.SIGSEGV)
    return hook, killed


def test_exit_descriptions_name_the_signal():
    assert describe_exit(-11) == "signal 11 (SIGSEGV)"
    assert describe_exit(3) == "code 3"


def test_the_embedded_teacher_answers_several_requests_at_once(tmp_path):
    """A real answer from the real server; it fails (never skips) when the server cannot start or dies."""
    server = LocalTeacherServer(tmp_path / "logs", parallel=4)
    try:
        base_url = server.ensure_started()
        import asyncio

        import openai

        async def ask():
            client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=120)
            try:
                return await asyncio.gather(*(client.chat.completions.create(
                    model="smollm2-135m-instruct", messages=[{"role": "user", "content": f"Say hello to {name}."}],
                    max_tokens=16, temperature=0.0) for name in ("Ann", "Bo", "Cy", "Di")))
            finally:
                await client.close()
        answers = asyncio.run(ask())
        assert all(a.choices[0].message.content.strip() for a in answers)
        info = server.info()
        assert info["state"] == "running" and info["slots"] == 4 and info["tokens"] >= 4
    finally:
        server.stop()
    assert not server.running and server.death() is None  # asked to stop: not a death


def test_a_server_killed_mid_job_is_reported_restarted_once_and_the_job_resumes(store, tmp_path):
    store.add_tasks(TASKS)
    server = LocalTeacherServer(tmp_path / "logs", parallel=2)
    hook, killed = _kill_after(server, calls=3)
    teacher = TeacherConfig(concurrency=2, max_retries=3)
    config = GenerateConfig(max_tokens=24, temperature=0.0)
    try:
        summary = run_on_teacher(server, teacher, lambda url, watch: run_method(
            store, teacher, config, url, on_progress=hook, watch=watch))
    finally:
        server.stop()
    assert len(killed) == 1
    assert "exited (signal 11 (SIGSEGV))" in summary["server_restarted"]
    assert summary["ok"] + summary["skipped_cached"] == len(TASKS) and summary["failed"] == 0
    first, second = store.runs("generate")[::-1][:2]
    assert first["status"] == "failed" and "signal 11" in first["error"]
    assert second["status"] == "completed"
    # the calls the death broke were stored as failed with the description, then answered on resume
    ledger = store.ledger_rows()
    assert all(r["state"] == "ok" for r in ledger) and len(ledger) == len(TASKS)
    assert store.stats()["generations"] == len(TASKS)


def test_a_second_death_fails_the_job_with_the_signal_and_retry_failed_works_after(store, tmp_path):
    store.add_tasks(TASKS[:8])
    server = LocalTeacherServer(tmp_path / "logs", parallel=2)
    teacher = TeacherConfig(concurrency=2, max_retries=3)
    config = GenerateConfig(max_tokens=16, temperature=0.0)
    state = {"kills": 0, "done_at_start": None}

    def hook(progress):  # one kill in each attempt, once it has stored an answer
        if state["kills"] < 2 and server.running and progress.done >= 1 and server.pid != state.get("last"):
            state["kills"] += 1
            state["last"] = server.pid
            os.killpg(server.pid, signal.SIGSEGV)
    try:
        with pytest.raises(TeacherError, match=r"exited \(signal 11 \(SIGSEGV\)\)[\s\S]*already died once"):
            run_on_teacher(server, teacher, lambda url, watch: run_method(
                store, teacher, config, url, on_progress=hook, watch=watch))
        failed = [r for r in store.ledger_rows() if r["state"] == "failed"]
        assert failed and all("exited (signal 11 (SIGSEGV))" in r["error"] for r in failed)
        assert "log tail" in failed[0]["error"]
        summary = run_on_teacher(server, teacher, lambda url, watch: retry_failed(store, teacher, url, watch=watch))
        assert summary["ok"] == len(failed) and summary["failed"] == 0
    finally:
        server.stop()


def test_the_background_job_shows_the_death_and_the_restart(store, tmp_path):
    store.add_tasks(TASKS[:6])
    server = LocalTeacherServer(tmp_path / "logs", parallel=2)
    jobs = GenerationJobs(store, server)
    server.ensure_started()
    try:
        jobs.start(TeacherConfig(concurrency=2), GenerateConfig(max_tokens=16, temperature=0.0))
        while jobs.status().progress.done < 1:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGSEGV)
        status = jobs.wait(timeout=300)
    finally:
        server.stop()
    assert status.state == "completed", status.error
    assert "signal 11" in status.summary["server_restarted"]
    from ui.generate import status_note
    assert "restarted once" in status_note(status)


def test_servers_a_dead_studio_left_are_stopped_at_the_next_start(tmp_path):
    logs = tmp_path / "logs"
    server = LocalTeacherServer(logs, parallel=1)
    server.ensure_started()
    pid = server.pid
    server._proc = None  # the studio "dies" without stopping it: the process and its record stay
    try:
        notes = stop_recorded(logs)
        assert notes and f"PID {pid}" in notes[0]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        assert not _alive(pid)
        assert stop_recorded(logs) == []  # the record is gone with it
    finally:
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


def test_the_server_binary_has_no_native_or_amx_code():
    """The build is portable: GGML_NATIVE off, no AMX, x86-64-v3 at most (the AMX build crashed on Q4_1)."""
    import distill_llama_server
    flags = distill_llama_server.build_flags()
    assert "-DGGML_NATIVE=OFF" in flags
    if os.uname().machine == "x86_64":
        assert "-DGGML_AMX_INT8=OFF" in flags and "-DGGML_AVX512=OFF" in flags
        out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(distill_llama_server.binary())],
                             capture_output=True, text=True).stdout if _has("objdump") else ""
        assert "tileloadd" not in out and "tdpbssd" not in out  # no AMX instruction anywhere in the binary


def _has(tool: str) -> bool:
    import shutil
    return shutil.which(tool) is not None


def test_a_dead_student_server_is_named_in_the_failed_rows(store, tmp_path, tiny_student):
    """The student's server dies mid-job: the self method's later answers fail with its exit and log tail,
    not a bare connection error."""
    from curation.methods.self_knowledge import SelfConfig
    from models.students import StudentServers
    from tests.fault_server import FaultServer
    store.add_tasks(TASKS[:3])
    students = StudentServers(tmp_path / "logs", tmp_path / "models")
    killed = []

    def kill_after_first_answer(progress):
        if progress.stage == "student" and progress.done >= 1 and not killed:
            killed.append(students.servers[0].pid)
            os.killpg(killed[0], signal.SIGKILL)
    try:
        with FaultServer([{"text": "Score: 5\nRationale: ok."}]) as judge:
            teacher = TeacherConfig(base_url=judge.base_url, model="scripted", max_retries=0, concurrency=1)
            summary = run_method(store, teacher, SelfConfig(student=str(tiny_student), max_tokens=4), judge.base_url,
                                 on_progress=kill_after_first_answer, students=students)
    finally:
        students.stop()
    assert killed and summary["failed"] == 2
    errors = [r["error"] for r in store.ledger_rows() if r["state"] == "failed"]
    assert len(errors) == 2 and all("the student server" in e and "signal 9 (SIGKILL)" in e for e in errors)
