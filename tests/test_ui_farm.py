"""The teacher box's farm table through the Generate tab's HTTP API: two scripted endpoints share a job."""
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
