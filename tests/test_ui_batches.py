"""The Generate tab's Batch API section on the scripted Batch API: cancel a batch through the HTTP API, and the
page's timer collecting a batch in a real headless Chromium while nobody clicks."""
from __future__ import annotations

import pytest

from tests.batch_server import BatchServer
from tests.test_ui_generate import MODEL, studio_with  # noqa: F401  (the fixture)
from tests.ui_helpers import running_studio


def states(table) -> list[str]:
    return [dict(zip(table["headers"], r))["state"] for r in table["data"]]


def test_cancel_keeps_what_the_batch_answered_and_the_timer_collects_it(studio_with):  # noqa: F811
    studio, client, _ = studio_with([200])
    studio.store.add_tasks([{"instruction": f"Task {i}."} for i in range(3)])
    with BatchServer(done_before_cancel=1) as server:
        form = {"base_url": server.base_url, "model": MODEL}
        client.predict(**form, method="label", api_name="/submit_batch")
        table, message = client.predict(**form, batch_id=1, api_name="/cancel_batch")
        assert message.startswith("batch 1: cancelling at the provider") and states(table) == ["cancelling"]
        for _ in range(3):  # what the page's timer calls every N seconds
            table, message = client.predict(**form, api_name="/batch_timer")
            if "collected" in message:
                break
        assert message == "batch 1: collected, 1 ok, 0 failed, 2 back to pending"
        assert states(table) == ["collected"]
        with pytest.raises(Exception, match="nothing to cancel"):
            client.predict(**form, batch_id=1, api_name="/cancel_batch")
    assert {k: v for k, v in studio.store.ledger_summary()["by_state"].items() if v} == {"ok": 1, "pending": 2}


def test_a_provider_that_does_not_answer_is_said_on_the_timer_not_raised(studio_with):  # noqa: F811
    studio, client, _ = studio_with([200])
    studio.store.add_tasks([{"instruction": "Task 0."}])
    with BatchServer() as server:
        form = {"base_url": server.base_url, "model": MODEL}
        client.predict(**form, method="label", api_name="/submit_batch")
    table, message = client.predict(**form, api_name="/batch_timer")  # the server is gone
    assert message.startswith("checking the open batches: batch 1: the Batch API at") and states(table) == [
        "submitted"]


@pytest.mark.browser
@pytest.mark.integration
def test_the_page_collects_an_ended_batch_by_itself(browser, tmp_path, monkeypatch):
    from playwright.sync_api import expect
    with BatchServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)  # the teacher box's defaults
        monkeypatch.setenv("OPENAI_MODEL", MODEL)
        with running_studio(tmp_path / "ws") as (studio, url):
            studio.store.add_tasks([{"instruction": f"Task {i}."} for i in range(2)])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.get_by_role("tab", name="Generate").click()
            page.get_by_text("OpenAI Batch API: half price").click()
            page.locator("#gen-batch-submit").click()
            expect(page.locator("#gen-batch-message")).to_contain_text("batch 1 (2 calls of label) is submitted",
                                                                        timeout=30_000)
            every = page.locator("#gen-batch-every input")
            every.fill("1")
            every.press("Tab")
            # nobody clicks Poll: the timer checks the batch each second until the provider ends it, then stores it
            expect(page.locator("#gen-batch-message")).to_contain_text("batch 1: collected, 2 ok", timeout=30_000)
            expect(page.locator("#gen-batches")).to_contain_text("collected")
            assert studio.store.ledger_summary()["by_state"]["ok"] == 2
