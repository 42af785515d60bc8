"""The headless CLI: the same steps as the UI, as subprocesses on a real workspace."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from curation.store import Store
from tests.conftest import add_generation
from tests.conftest import curation_cli as cli


@pytest.mark.parametrize("command", ["import", "seed-pack", "split", "generate", "review", "export", "stats", "embed",
                                     "dedupe", "filter", "rank", "undo"])
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


def _curation_workspace(ws) -> list[int]:
    """Six pending answers: three copies of one sentence (two only by case and punctuation), three others."""
    answers = ["Paris is the capital of France.", "paris is the capital of france", "PARIS is the capital of France!",
               "Water boils at 100 degrees.", "Ok", "A haiku has three lines."]
    with Store(ws) as store:
        tasks = store.add_tasks([{"instruction": f"Question {i}"} for i in range(len(answers))])
        gens = [add_generation(store, t, f"k{i}", response=a) for i, (t, a) in enumerate(zip(tasks, answers))]
        store.bulk_add("judgments", pd.DataFrame({"generation_id": gens, "judge_model": "judge",
                                                  "score": [3.0, 9.0, 5.0, 8.0, 1.0, 6.0]}))
    return gens


def test_the_curate_tab_runs_headless_with_dry_run_json_and_undo(tmp_path):
    ws = tmp_path / "ws"
    gens = _curation_workspace(ws)
    base = ("--workspace", ws)
    help_text = cli("dedupe", "--help").stdout
    assert "--threshold" in help_text and "cosine similarity, 0.5 to 1.0" in help_text  # the config's field doc
    planned = json.loads(cli(*base, "dedupe", "--method", "normalised", "--representative", "earliest",
                             "--dry-run", "--json").stdout)
    [cluster] = planned["clusters"]
    assert [m["id"] for m in cluster["members"]] == gens[:3] and cluster["kept"] == gens[0]
    assert cluster["members"][1] == {"id": gens[1], "text": "paris is the capital of france", "similarity": 1.0,
                                     "kept": False, "generations": [gens[1]]}
    assert planned["rows_marked"] == 2 and "batch" not in planned
    assert json.loads(cli(*base, "stats", "--json").stdout)["by_status"]["rejected"] == 0  # a dry run changes nothing
    applied = json.loads(cli(*base, "dedupe", "--method", "normalised", "--representative", "earliest",
                             "--json").stdout)
    assert applied["marked"] == 2 and json.loads(cli(*base, "stats", "--json").stdout)["by_status"]["rejected"] == 2
    assert json.loads(cli(*base, "undo", str(applied["batch"]), "--json").stdout)["restored"] == 2

    removed = json.loads(cli(*base, "filter", "length", "--unit", "chars", "--min-length", "3", "--json").stdout)
    assert (removed["removed"], [r["id"] for r in removed["sample"]]) == (1, [gens[4]])
    bad = cli(*base, "filter", "length", "--min-length", "50", "--max-length", "10", check=False)
    assert bad.returncode == 2 and "must not exceed" in bad.stderr

    ranked = json.loads(cli(*base, "rank", "--judge", "1", "--top", "2", "--json").stdout)
    assert [r["id"] for r in ranked["top"][:2]] == [gens[1], gens[3]] and ranked["approved"] == 2
    with Store(ws) as store:
        assert sorted(g for g in gens if store.generation(g)["review_status"] == "approved") == [gens[1], gens[3]]
    assert "rank" in cli(*base, "rank", "--help").stdout and "mean judge score" in cli("rank", "--help").stdout


@pytest.mark.integration
def test_semantic_dedupe_headless_embeds_first_with_the_bundled_encoder(tmp_path):
    ws = tmp_path / "ws"
    gens = _curation_workspace(ws)
    out = json.loads(cli("--workspace", ws, "dedupe", "--threshold", "0.8", "--dry-run", "--json").stdout)
    members = {m["id"]: m["similarity"] for c in out["clusters"] for m in c["members"]}
    assert set(gens[:3]) <= set(members) and all(0.8 <= v <= 1.0001 for v in members.values())
    again = json.loads(cli("--workspace", ws, "embed", "--json").stdout)
    assert again["encoded"] == 0 and again["reused"] == 6
