"""The teacher box's farm table and the Batch API section, through the Generate tab's HTTP API, on scripted servers."""
from __future__ import annotations

from tests.fault_server import FaultServer
from tests.test_ui_generate import MODEL, finished, studio_with  # noqa: F401  (the fixture)


def test_a_farm_typed_in_the_table_shares_the_calls_and_shows_each_endpoints_count(studio_with):  # noqa: F811
    studio, client, first = studio_with([{"text": "from the first", "delay": 0.05}])
    with FaultServer([{"text": "from the second", "delay": 0.05}]) as second:
        studio.store.add_tasks([{"instruction": f"Task {i}."} for i in range(12)])
        rows = [["one", first.base_url, "", "", 2, "", ""], ["two", second.base_url, "", "", 2, "", ""]]
        table = {"headers": ["name", "base_url", "model", "api_key_env", "concurrency", "rpm", "tpm"], "data": rows}
        started = client.predict(base_url="", model=MODEL, farm_name="pair", farm_endpoints=table, method="label",
                                 api_name="/start_generation")
        assert started.startswith("started: 12 calls to farm:pair")
        status = finished(studio)
        assert status.summary["ok"] == 12
        bar, _ = client.predict(api_name="/generation_status")
        assert "one: " in bar and "two: " in bar
        by = studio.store._fetchall("SELECT answered_by, count(*) FROM generations GROUP BY 1 ORDER BY 1")
        assert sorted(by) == sorted([(first.base_url, len(first.requests)), (second.base_url, len(second.requests))])
        assert len(first.requests) > 0 and len(second.requests) > 0
        assert len(first.requests) + len(second.requests) == 12


def test_the_batch_section_submits_the_forms_job_and_collects_it(studio_with):  # noqa: F811
    from tests.batch_server import BatchServer
    studio, client, _ = studio_with([200])
    studio.store.add_tasks([{"instruction": f"Task {i}."} for i in range(3)])
    with BatchServer() as server:
        table, message = client.predict(base_url=server.base_url, model=MODEL, method="label",
                                        api_name="/submit_batch")
        assert message.startswith("batch 1 (3 calls of label) is submitted as batch_1")
        assert [dict(zip(table["headers"], r))["state"] for r in table["data"]] == ["submitted"]
        for _ in range(5):  # the scripted provider moves one step per poll
            table, message = client.predict(base_url=server.base_url, model=MODEL, api_name="/collect_batches")
            if "collected" in message:
                break
        assert message == "batch 1: collected, 3 ok, 0 failed, 0 back to pending"
        assert [dict(zip(table["headers"], r))["state"] for r in table["data"]] == ["collected"]
    assert studio.store.ledger_summary()["by_state"]["ok"] == 3
