"""Teacher farm: settings, routing by load, rpm/tpm limits (on an injected clock), and failover on real sockets
with a member's process killed mid-job: every call stored once, none lost, none paid twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from curation.errors import ConfigError, TeacherError
from curation.farm import RateWindow, Router
from curation.farm_config import EndpointConfig, TeacherFarm, farm_from_rows, load_farm
from curation.generate import GenerateConfig, plan_calls, run_method
from curation.teacher import Attempt, TeacherConfig
from tests.fault_server import FaultServer

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def farm_of(*endpoints, **kwargs) -> TeacherFarm:
    return TeacherFarm(tuple(endpoints), **{"name": "test", "model": "m", **kwargs})


# ---- settings ---------------------------------------------------------------------------------------

def test_a_farm_file_loads_from_json_and_yaml_and_names_what_is_wrong(tmp_path):
    spec = {"name": "vllm", "model": "llama-8b", "cooldown_s": 5,
            "endpoints": [{"base_url": "http://gpu1:8000/v1/", "concurrency": 32, "rpm": 600, "tpm": 90000},
                          {"base_url": "http://gpu2:8000/v1", "name": "gpu2", "api_key_env": "GPU2_KEY"}]}
    (tmp_path / "farm.json").write_text(json.dumps(spec))
    (tmp_path / "farm.yaml").write_text("name: vllm\nmodel: llama-8b\ncooldown_s: 5\nendpoints:\n"
                                        "  - {base_url: 'http://gpu1:8000/v1/', concurrency: 32, rpm: 600, "
                                        "tpm: 90000}\n"
                                        "  - {base_url: 'http://gpu2:8000/v1', name: gpu2, api_key_env: GPU2_KEY}\n")
    farm = load_farm(tmp_path / "farm.json")
    assert farm == load_farm(tmp_path / "farm.yaml")
    assert [e.name for e in farm.endpoints] == ["http://gpu1:8000/v1", "gpu2"]
    assert farm.concurrency == 48 and farm.endpoints[0].rpm == 600
    (tmp_path / "bad.json").write_text(json.dumps({**spec, "endpoints": [{"base_url": "x", "api_key": "sk-1"}]}))
    with pytest.raises(ConfigError, match="bad.json: a farm file must not hold API keys"):
        load_farm(tmp_path / "bad.json")
    (tmp_path / "twice.json").write_text(json.dumps({**spec, "endpoints": [spec["endpoints"][1]] * 2}))
    with pytest.raises(ConfigError, match="endpoint names must differ"):
        load_farm(tmp_path / "twice.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="broken.json: not valid JSON"):
        load_farm(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="environment variable GPU2_KEY"):
        farm.check_keys()


def test_the_request_keys_are_the_farms_whichever_members_it_has(store):
    store.add_tasks([{"instruction": "Say hi."}])
    one = TeacherConfig(farm=farm_of(EndpointConfig("http://a:1/v1")))
    two = TeacherConfig(farm=farm_of(EndpointConfig("http://b:1/v1", model="other-name"),
                                     EndpointConfig("http://c:1/v1")))
    keys = [plan_calls(store, t, GenerateConfig())[0][0].request_key for t in (one, two)]
    assert keys[0] == keys[1] and one.endpoint_id == "farm:test" and not one.embedded
    with pytest.raises(ConfigError, match="either a base_url or a teacher farm"):
        TeacherConfig(base_url="http://a:1/v1", model="m", farm=one.farm)
    with pytest.raises(ConfigError, match="needs the model it serves"):
        TeacherConfig(farm=TeacherFarm((EndpointConfig("http://a:1/v1"),)))
    table = farm_from_rows("ui", "m", [["", "http://a:1/v1", "", "", 4, "", ""], ["", "", "", "", "", "", ""]])
    assert table.endpoints == (EndpointConfig("http://a:1/v1", concurrency=4),)


# ---- routing and limits (no waiting: the clock is ours) ---------------------------------------------

def test_calls_go_to_the_least_loaded_member_within_its_concurrency():
    router = Router(farm_of(EndpointConfig("http://a:1/v1", name="a", concurrency=1),
                            EndpointConfig("http://b:1/v1", name="b", concurrency=3)), clock=Clock())
    picked = []
    for _ in range(4):
        member = router.pick(10)
        router.start(member, 10)
        picked.append(member.name)
    assert picked == ["a", "b", "b", "b"]  # a at 0/1 first (a tie goes to the first listed), then b's 1/3, 2/3
    assert router.pick(10) is None  # everyone full
    router.finish(router.members[1], [0, 10, True], Attempt(result={"status": "ok"}))
    assert router.pick(10).name == "b"


def test_rpm_and_tpm_limits_hold_a_member_back_until_its_minute_has_room():
    clock = Clock()
    window = RateWindow(rpm=2, tpm=None, clock=clock)
    window.admit(1)
    clock.now += 10
    window.admit(1)
    assert window.wait_s(1) == 50  # the first call leaves the window 60 s after it went
    clock.now += 50
    assert window.wait_s(1) == 0
    tokens = RateWindow(rpm=None, tpm=100, clock=clock)
    first = tokens.admit(80)
    assert tokens.wait_s(30) == 60
    tokens.settle(first, 40)  # it used fewer than estimated: room now
    assert tokens.wait_s(30) == 0
    assert RateWindow(None, 100, clock).wait_s(500) == 0  # larger than the limit: alone in an empty window
    router = Router(farm_of(EndpointConfig("http://a:1/v1", name="a", rpm=1),
                            EndpointConfig("http://b:1/v1", name="b")), clock=clock)
    router.start(router.pick(1), 1)
    router.finish(router.members[0], [clock.now, 1, True], Attempt(result={"status": "ok"}))
    assert router.pick(1).name == "b"  # a is idle but has used its one request this minute


def test_a_dead_member_is_rested_then_probed_with_one_call():
    clock = Clock()
    router = Router(farm_of(EndpointConfig("http://a:1/v1", name="a"), EndpointConfig("http://b:1/v1", name="b"),
                            cooldown_s=30, fail_after=2), clock=clock)
    a, b = router.members
    router.finish(a, router.start(a, 1), Attempt(error="refused", kind="connection"))
    assert router.counts()["a"]["state"] == "down" and router.pick(1) is b
    router.finish(b, router.start(b, 1), Attempt(error="503", kind="status", status=503))
    assert b.state(clock.now) == "up"  # one 5xx is not death; fail_after=2 in a row is
    router.finish(b, router.start(b, 1), Attempt(error="503", kind="status", status=503))
    assert router.all_down()
    clock.now += 30
    assert a.state(clock.now) == "probing" and router.pick(1) is a
    router.start(a, 1)
    assert router.pick(1) is b  # a probe goes alone
    router.finish(a, [clock.now, 1, True], Attempt(result={"status": "ok"}))
    assert a.state(clock.now) == "up"


# ---- real sockets, real processes -------------------------------------------------------------------

def start_server(delay: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.farm_server", "--delay", str(delay)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


@pytest.fixture
def two_servers():
    servers = [start_server(0.15), start_server(0.15)]
    yield servers
    for proc, _ in servers:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_a_member_killed_mid_job_loses_nothing_and_a_rerun_pays_nothing(store, two_servers):
    (a_proc, a_url), (b_proc, b_url) = two_servers
    tasks = [{"instruction": f"Question {i}?"} for i in range(40)]
    store.add_tasks(tasks)
    teacher = TeacherConfig(farm=farm_of(EndpointConfig(a_url, name="a", concurrency=4),
                                         EndpointConfig(b_url, name="b", concurrency=4)), max_retries=0)
    at_kill = {}

    def kill_b(progress):
        if progress.done >= 10 and not at_kill:
            at_kill.update(progress.endpoints["b"])
            os.kill(b_proc.pid, signal.SIGKILL)

    summary = run_method(store, teacher, GenerateConfig(max_tokens=16), "", on_progress=kill_b)
    assert at_kill["in_flight"] > 0  # it died with calls in flight
    assert (summary["planned"], summary["ok"], summary["failed"]) == (40, 40, 0)
    b = summary["endpoints"]["b"]
    assert b["state"] == "down" and b["failed_over"] >= 1 and b["failed_over"] == b["failed"]
    rows = store._fetchdicts("SELECT g.request_key, g.response, g.answered_by, g.endpoint, t.instruction "
                             "FROM generations g JOIN tasks t ON t.id = g.task_id")
    assert len(rows) == 40 and len({r["request_key"] for r in rows}) == 40
    assert all(r["response"] == f"answer to: {r['instruction']}" for r in rows)  # each its own call's answer
    assert {r["endpoint"] for r in rows} == {"farm:test"}
    by = [r["answered_by"] for r in rows]
    assert by.count(b_url) == b["ok"] > 0 and by.count(a_url) == 40 - b["ok"]
    ledger = store.ledger_rows()
    assert [r["state"] for r in ledger] == ["ok"] * 40 and all(r["attempts"] >= 1 for r in ledger)
    assert sum(r["answered_by"] == a_url for r in ledger) == by.count(a_url)

    assert plan_calls(store, teacher, GenerateConfig(max_tokens=16)) == ([], 40)
    again = run_method(store, teacher, GenerateConfig(max_tokens=16), "")
    assert (again["planned"], again["skipped_cached"], again["endpoints"]["a"]["sent"]) == (0, 40, 0)


def test_a_farm_with_every_member_down_stops_the_job_and_a_rerun_resumes(store):
    store.add_tasks([{"instruction": f"Q{i}"} for i in range(6)])
    with FaultServer([{"text": "ok"}]) as alive:
        dead = FaultServer([])
        dead_url = dead.base_url
        dead.httpd.server_close()  # nothing listens there: connection refused
        teacher = TeacherConfig(farm=farm_of(EndpointConfig(dead_url, name="dead", concurrency=2)), max_retries=0)
        with pytest.raises(TeacherError, match="every endpoint of teacher farm 'test' is down .*dead: "):
            run_method(store, teacher, GenerateConfig(), "")
        assert store.ledger_summary()["by_state"]["ok"] == 0
        revived = TeacherConfig(farm=farm_of(EndpointConfig(alive.base_url, name="alive")), max_retries=0)
        summary = run_method(store, revived, GenerateConfig(), "")  # same farm name: same keys
        assert (summary["ok"], summary["failed"]) == (6, 0)
        assert len(alive.requests) == 6


def test_the_cli_runs_a_job_on_a_farm_file_and_its_ledger_says_who_answered(tmp_path):
    from curation.store import Store
    from tests.conftest import curation_cli
    ws = tmp_path / "ws"
    with Store(ws) as store:
        store.add_tasks([{"instruction": f"Q{i}"} for i in range(8)])
    with FaultServer([{"text": "a", "delay": 0.05}]) as a, FaultServer([{"text": "b", "delay": 0.05}]) as b:
        farm = tmp_path / "farm.yaml"
        farm.write_text(f"name: local\nmodel: scripted\nendpoints:\n  - {{base_url: '{a.base_url}', name: a, "
                        f"concurrency: 2}}\n  - {{base_url: '{b.base_url}', name: b, concurrency: 2, rpm: 1000}}\n")
        out = curation_cli("--workspace", ws, "generate", "--teacher-farm", farm, "--max-tokens", 8)
        summary = json.loads(out.stdout)
        assert summary["ok"] == 8 and summary["endpoints"]["a"]["ok"] == len(a.requests) > 0
        assert summary["endpoints"]["b"]["ok"] == len(b.requests) > 0
        assert "a " in out.stderr and "b " in out.stderr  # per-endpoint counts in the progress line
        bad = curation_cli("--workspace", ws, "generate", "--teacher-farm", farm, "--base-url", a.base_url,
                           check=False)
        assert bad.returncode != 0 and "either a base_url or a teacher farm" in bad.stderr


def test_two_embedded_llama_servers_as_a_farm_one_killed_mid_job(store, teacher_url, tmp_path):
    """The real engine on both members: the bundled SmolLM2 on llama.cpp's server, twice."""
    from curation.local_server import LocalTeacherServer
    from curation.teacher import EMBEDDED_MODEL
    second = LocalTeacherServer(tmp_path / "logs", parallel=4)
    try:
        second_url = second.ensure_started()
        store.add_tasks([{"instruction": f"Name the number {i}."} for i in range(16)])
        teacher = TeacherConfig(farm=farm_of(EndpointConfig(teacher_url, name="first", concurrency=4),
                                             EndpointConfig(second_url, name="second", concurrency=4),
                                             model=EMBEDDED_MODEL), max_retries=0, timeout_s=120)
        at_kill = {}

        def kill_second(progress):
            if progress.done >= 4 and not at_kill:
                at_kill.update(progress.endpoints["second"])
                os.killpg(second.pid, signal.SIGKILL)

        summary = run_method(store, teacher, GenerateConfig(max_tokens=8), "", on_progress=kill_second)
    finally:
        second.stop()
    assert (summary["ok"], summary["failed"]) == (16, 0)
    assert at_kill and summary["endpoints"]["second"]["state"] == "down"
    assert summary["endpoints"]["second"]["failed_over"] >= at_kill["in_flight"] > 0  # more may go before the kill
    counts = dict(store._fetchall("SELECT answered_by, count(*) FROM generations GROUP BY 1"))
    # Whether the second answered any before its kill depends on the two servers' pace (none, on a loaded machine);
    # what matters is that every call is stored once, by one of them.
    assert counts[teacher_url] + counts.get(second_url, 0) == 16 and set(counts) <= {teacher_url, second_url}
    assert run_method(store, teacher, GenerateConfig(max_tokens=8), "")["planned"] == 0
