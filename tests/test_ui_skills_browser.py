"""The survey's further skills in a real headless Chromium: documents and a conversation file imported on the Seeds
tab, a conversation read turn by turn and a grounded answer read beside its source chunk on the Review tab.
Screenshots go to tests/artifacts/ (the README's pictures of these skills are copies of them)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.ui_helpers import running_studio

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_documents_and_conversations_in_the_browser(browser, tmp_path):
    from playwright.sync_api import expect
    chats = tmp_path / "support chats.jsonl"
    chats.write_text(json.dumps({"conversations": [
        {"from": "human", "value": "How do I keep a sourdough starter alive?"},
        {"from": "gpt", "value": "Feed it flour and water once or twice a day at room temperature."},
        {"from": "human", "value": "And if I go on holiday for a week?"},
        {"from": "gpt", "value": "Keep it in the fridge: there it needs feeding only once a week."}]}) + "\n")
    with running_studio(tmp_path / "ws") as (studio, url):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_text("Documents → grounded questions and answers").click()
        page.locator("#docs-bundled").click()
        expect(page.locator("#docs-message")).to_contain_text("sourdough-starter.pdf: 2 chunks", timeout=30_000)
        expect(page.locator("#docs-table")).to_contain_text("water-cycle.md")
        page.get_by_text("Conversations (multi-turn)").click()
        page.locator("#conv-file input[type=file]").set_input_files(str(chats))
        page.locator("#conv-import").click()
        expect(page.locator("#conv-message")).to_contain_text("support chats.jsonl: 1 conversations added",
                                                              timeout=30_000)
        _shot(page, "skills-seeds.png")

        conversation = studio.store._fetchdicts("SELECT id FROM generations")[0]["id"]
        chunk = next(c for c in studio.store.chunks() if c["document"] == "sourdough-starter.pdf")
        (task,) = studio.store.add_tasks([{"instruction": "What does hooch on a starter mean?", "source": "document",
                                            "chunk_id": chunk["id"], "skill": "closed_book"}])
        grounded = studio.store.record_generation({  # a closed-book answer as the documents method stores it
            "task_id": task, "request_key": "k", "endpoint": "e", "model": "m", "params": {}, "sample_index": 0,
            "messages": [{"role": "user", "content": "What does hooch on a starter mean?"}], "status": "ok",
            "response": "It is alcohol made by hungry yeast: feed the starter sooner."})

        page.get_by_role("tab", name="Review").click()
        page.get_by_text("Conversation and source").click()
        page.locator("#review-gen-id textarea, #review-gen-id input").first.fill(str(conversation))
        page.locator("#review-gen-id textarea, #review-gen-id input").first.press("Enter")
        expect(page.locator("#review-chat")).to_contain_text("And if I go on holiday", timeout=30_000)
        expect(page.locator("#review-turns")).to_contain_text("Feed it flour and water")
        _shot(page, "skills-conversation.png")

        page.locator("#review-gen-id textarea, #review-gen-id input").first.fill(str(grounded))
        page.locator("#review-gen-id textarea, #review-gen-id input").first.press("Enter")
        expect(page.locator("#review-source")).to_contain_text("Source: sourdough-starter.pdf, chunk 1",
                                                               timeout=30_000)
        expect(page.locator("#review-source")).to_contain_text("called hooch")
        _shot(page, "skills-grounded.png")


def test_constitution_and_grpo_are_offered_in_the_browser(browser, tmp_path):
    """Generate offers the constitution method with its principles; Train offers grpo with its reward."""
    from playwright.sync_api import expect
    with running_studio(tmp_path / "ws") as (studio, url):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Generate").click()
        page.locator("#gen-method input").click()
        page.get_by_role("option", name="constitution", exact=True).click()
        expect(page.locator("#gen-principles textarea")).to_have_value(re.compile("Be honest"), timeout=30_000)
        _shot(page, "skills-constitution.png")
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-method").get_by_text("grpo", exact=True).click()
        expect(page.locator("#train-grpo-reward")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("reinforcement learning from feedback (GRPO")).to_be_visible()
        _shot(page, "skills-grpo.png")
