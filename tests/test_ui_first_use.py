"""First use through the HTTP API (gradio_client): what a refused upload names, what the Runs tab says about each
run, the Train tab's command preview and saved settings, and the Review tab's labels, counts and bulk actions."""
from __future__ import annotations

import json

import pytest
from gradio_client import Client, handle_file

from curation.store import Store
from tests.conftest import add_generation
from tests.ui_helpers import running_studio
from ui.runs import runs_frame


def _answers(store, n: int) -> list[int]:
    tasks = store.add_tasks([{"instruction": f"Question {i}"} for i in range(n)])
    return [add_generation(store, t, f"k{i}", response=f"Answer {i}.") for i, t in enumerate(tasks)]


def test_a_refused_upload_names_the_file_the_user_chose(tmp_path):
    bad = tmp_path / "my seeds.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"instruction": \n')
    with running_studio(tmp_path / "ws") as (studio, url):
        client = Client(url, verbose=False)
        with pytest.raises(Exception) as refused:
            client.predict(handle_file(str(bad)), False, api_name="/import_file")
        assert studio.store.count_tasks() == 0
    message = str(refused.value)
    assert "my seeds.jsonl, line 2" in message and "gradio" not in message.lower().split("my seeds")[0]


def test_runs_say_what_each_run_was(tmp_path):
    with Store(tmp_path / "ws") as store:
        teacher = store.start_run("generate", {"method": "label"})
        store.update_run(teacher, status="completed", metrics={"ok": 4, "failed": 0, "tokens": 80})
        judge = store.start_run("generate", {"method": "eval-judge"})
        store.update_run(judge, status="completed", metrics={"ok": 8, "failed": 0, "tokens": 300})
        ev = store.start_run("eval", {})
        store.update_run(ev, status="completed", metrics={
            "tasks": 4, "teacher_run_id": teacher, "judge_run_id": judge, "distilled_vs_base": {"win_rate": 0.75},
            "intervals": {"change": {"stop_rate": {"value": 0.5}, "rouge_l": {"value": 0.123},
                                     "nll": {"value": -0.2}, "pass_rate": {"value": None}}}})
        dedupe = store.start_run("dedupe", {"target": "responses", "method": "semantic", "threshold": 0.9})
        store.update_run(dedupe, status="completed", metrics={"rows_marked": 3, "clusters": 2})
        summaries = dict(zip(runs_frame(store)["id"], runs_frame(store)["summary"]))
    assert summaries[teacher] == f"teacher answers for eval {ev}: 4 ok / 0 failed, 80 tokens"
    assert summaries[judge] == f"judge verdicts for eval {ev}: 8 ok / 0 failed, 300 tokens"
    assert summaries[ev] == "4 tasks · ends by itself +50.0 pts · ROUGE-L +0.123 · NLL -20.0% · wins vs base 75%"
    assert summaries[dedupe] == "marked 3 duplicate rows in 2 clusters (responses, semantic ≥ 0.9)"


def test_train_tab_shows_the_command_and_the_data_and_saves_settings(tmp_path):
    with Store(tmp_path / "ws") as store:
        gens = _answers(store, 3)
        store.set_label(gens, "approved")
    with running_studio(tmp_path / "ws") as (studio, url):
        client = Client(url, verbose=False)
        command, rows = client.predict("gemma-3-270m", 40, 1, 2e-4, 8, 16, 512, api_name="/train_preview")
        assert f"python -m distill train --workspace {studio.store.workspace} --max-steps 40 --batch-size 8 " \
               "--max-length 512" in command
        assert "**3 rows** for sft" in command and len(rows["data"]) == 3
        note, saved = client.predict("quick", "gemma-3-270m", 40, 1, 2e-4, 8, 16, 512, api_name="/train_save_config")
        assert "configs/quick.json" in note
        stored = json.loads((studio.store.workspace / "configs" / "quick.json").read_text())
        assert (stored["max_steps"], stored["batch_size"], stored["lora_alpha"]) == (40, 8, 32)
        loaded = client.predict("quick", api_name="/train_load_config")
        assert list(loaded[:7]) == ["gemma-3-270m", 40, 1, 2e-4, 8, 16, 512]
        with pytest.raises(Exception, match="a settings name is 1-64 letters"):
            client.predict("../escape", "gemma-3-270m", api_name="/train_save_config")


def test_review_labels_open_the_next_row_and_the_page_counts_by_status(tmp_path):
    with Store(tmp_path / "ws") as store:
        gens = _answers(store, 4)
    with running_studio(tmp_path / "ws") as (studio, url):
        client = Client(url, verbose=False)
        shown, status, _, response, edit, *_, info, message = client.predict(
            gens[0], "", "", "all", 1, "id", True, api_name="/label_approved")
        assert (shown, status, response, edit) == (str(gens[1]), "pending", "Answer 1.", "Answer 1.")
        assert message == f"generation {gens[0]}: approved · next: generation {gens[1]}"
        assert info == "page 1 of 1 · 4 matching generations (1 approved, 3 pending)"
        # an unchanged edit box is a plain approval, not an edit
        client.predict(gens[1], "Answer 1.", "", "all", 1, "id", False, api_name="/label_edit")
        assert studio.store.generation(gens[1])["edited_response"] is None
        assert client.predict("", "pending", api_name="/bulk_rejected") == "rejected 2 generations matching the filter"
        assert studio.store.stats()["by_status"] == {"pending": 0, "approved": 2, "rejected": 2, "failed": 0}
