"""The studio through its HTTP API with gradio_client: import -> generate -> approve -> train."""
from __future__ import annotations

import json

import pytest
from gradio_client import Client, handle_file

from curation.store import ReviewFilter
from tests.ui_helpers import running_studio, wait_for


@pytest.mark.integration
def test_import_generate_approve_train_through_the_api(tmp_path, teacher_url, tiny_student):
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("question,skill\nWhat is the capital of France?,nlu\nName two even numbers.,reasoning\n")
    student = tiny_student
    with running_studio(tmp_path / "ws", teacher_url) as (studio, url):
        client = Client(url, verbose=False)
        message, _ = client.predict(handle_file(str(seeds)), api_name="/import_file")
        assert message == "imported 2 tasks"
        # a fresh page's Run box holds 0: no error, an idle bar and what to do
        *_, note = client.predict(0, api_name="/training_status")
        assert note == "no training run yet: set the options and press Train"

        started = client.predict(method="label", base_url="", model="", concurrency=2, timeout_s=30, n=2,
                                 temperature=0.7, max_tokens=24, api_name="/start_generation")
        assert started.startswith("started: 4 calls")
        wait_for(lambda: studio.generation.status().state == "completed", what="generation")
        progress, note = client.predict(api_name="/generation_status")
        assert "4 / 4" in progress and "4 ok, 0 failed" in note

        table, info = client.predict("", "pending", 1, api_name="/review_page")
        assert "4 matching" in info and len(table["data"]) == 4
        first = table["data"][0][0]
        # without "open the next row", the labelled row stays shown
        shown, status, _, response, _, meta, *_ = client.predict(first, "", "", "all", 1, "id", False,
                                                                 api_name="/label_approved")
        assert shown == str(first) and status == "approved" and meta["status"] == "ok" and response
        _, status, _, original, edited, *_ = client.predict(first, "A better answer.", "", "all", 1, "id", False,
                                                            api_name="/label_edit")
        assert (status, original, edited) == ("approved", response, "A better answer.")
        message = client.predict("", "pending", api_name="/bulk_approved")
        assert message == "approved 3 generations matching the filter"
        assert studio.store.stats()["by_status"]["approved"] == 4

        run_id, message = client.predict(str(student), 3, 1, 1e-3, 2, 4, 128, api_name="/start_training")
        assert message == f"started training run {int(run_id)}"
        with pytest.raises(Exception, match="still running"):
            client.predict(str(student), 3, 1, 1e-3, 2, 4, 128, api_name="/start_training")
        studio.training.wait(timeout=300)
        progress, plot, log_tail, note = client.predict(run_id, api_name="/training_status")
        assert "completed" in note and "3 / 3" in progress
        # a reload: the Train tab reattaches to the latest run with its settings, the task table is filled
        reattached = client.predict(api_name="/train_reattach")
        assert list(reattached[:4]) == [int(run_id), str(student), 3, 1] and reattached[8] == "sft"
        assert "completed" in client.predict(0, api_name="/training_status")[-1]
        assert len(client.predict(api_name="/tasks_table")["data"]) == 2
        run = studio.store.run(int(run_id))
        assert run["status"] == "completed"
        snapshot = [json.loads(x) for x in open(f"{run['run_dir']}/snapshot.jsonl")]
        assert sorted(r["generation_id"] for r in snapshot) == studio.store.matching_ids(
            ReviewFilter(status="approved"))
        assert "A better answer." in json.dumps(snapshot)
