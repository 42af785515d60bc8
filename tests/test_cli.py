"""The headless CLI: the same steps as the UI, as subprocesses on a real workspace."""
from __future__ import annotations

import json

import pytest

from curation.store import Store
from tests.conftest import curation_cli as cli


@pytest.mark.parametrize("command", ["import", "seed-pack", "split", "generate", "review", "export", "stats"])
def test_every_command_has_help(command):
    assert "usage" in cli(command, "--help").stdout


@pytest.mark.integration
def test_import_generate_approve_export_stats(tmp_path):
    ws, seeds, out = tmp_path / "ws", tmp_path / "seeds.jsonl", tmp_path / "train.jsonl"
    seeds.write_text('{"prompt": "Say hello."}\n{"instruction": "Name a fruit.", "skill": "nlu"}\n')
    assert "imported 2 tasks" in cli("--workspace", ws, "import", seeds).stdout
    summary = json.loads(cli("--workspace", ws, "generate", "--n", "2", "--max-tokens", "16").stdout)
    assert summary["ok"] == 4 and summary["failed"] == 0
    assert "approved 4" in cli("--workspace", ws, "review", "--approve-all", "--status", "pending").stdout
    assert "wrote 4 examples" in cli("--workspace", ws, "export", "--status", "approved", "--format",
                                     "chat-jsonl", out).stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["role"] for m in lines[0]["messages"]] == ["user", "assistant"]
    stats = json.loads(cli("--workspace", ws, "stats", "--json").stdout)
    assert stats["by_status"]["approved"] == 4 and stats["tasks"] == 2


def test_generate_against_a_custom_endpoint_and_bad_import_writes_nothing(tmp_path):
    from tests.fault_server import FaultServer
    ws, bad = tmp_path / "ws", tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"instruction": \n')
    proc = cli("--workspace", ws, "import", bad, check=False)
    assert proc.returncode == 2 and "bad.jsonl, line 2" in proc.stderr
    cli("--workspace", ws, "seed-pack", "general")
    with FaultServer([200]) as server:
        proc = cli("--workspace", ws, "generate", "--base-url", server.base_url, "--model", "scripted",
                   "--task-ids", "1,2")
        assert json.loads(proc.stdout)["ok"] == 2 and len(server.requests) == 2
    assert json.loads(cli("--workspace", ws, "stats", "--json").stdout)["by_status"]["pending"] == 2


def test_split_holds_tasks_out_reproducibly_and_by_hand(tmp_path):
    ws = tmp_path / "ws"
    cli("--workspace", ws, "seed-pack", "general")
    out = cli("--workspace", ws, "split", "--fraction", "0.25", "--seed", "3").stdout
    with Store(ws) as store:
        held = [t["id"] for t in store.tasks(split="eval")]
        total = len(store.tasks())
    assert out.strip() == f"held out {len(held)} of {total} tasks for evaluation (seed 3)" and held
    cli("--workspace", ws, "split", "--fraction", "0.25", "--seed", "3")  # same seed, same split
    with Store(ws) as store:
        assert [t["id"] for t in store.tasks(split="eval")] == held
    assert "moved 1 tasks to train" in cli("--workspace", ws, "split", "--train", held[0]).stdout
    bad = cli("--workspace", ws, "split", "--eval", "1,x", check=False)
    assert bad.returncode == 2 and "comma-separated numbers" in bad.stderr
    bad = cli("--workspace", ws, "split", "--fraction", "1.5", check=False)
    assert bad.returncode == 2 and "between 0 and 1" in bad.stderr
    with Store(ws) as store:  # neither bad call changed anything
        assert [t["id"] for t in store.tasks(split="eval")] == held[1:]


def test_workspace_in_use_names_the_pid(tmp_path):
    import os
    with Store(tmp_path / "ws"):
        proc = cli("--workspace", tmp_path / "ws", "stats", check=False)
    assert proc.returncode == 2 and f"in use by PID {os.getpid()}" in proc.stderr
