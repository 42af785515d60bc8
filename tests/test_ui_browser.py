"""The import-and-approve path in a real headless Chromium, driven by Playwright."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui_helpers import running_studio

# Screenshots go to the test artifacts folder (git-ignored), never over the README's tracked pictures.
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_import_generate_and_approve_in_the_browser(browser, tmp_path, teacher_url):
    from playwright.sync_api import expect
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "Name a colour.", "domain": "general"}\n'
                     '{"instruction": "Say hello in French."}\n{"prompt": "What is 1 + 1?"}\n')
    with running_studio(tmp_path / "ws", teacher_url) as (studio, url):
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.locator("#seed-file input[type=file]").set_input_files(str(seeds))
        page.locator("#seed-import").click()
        expect(page.locator("#seed-message")).to_contain_text("imported 3 tasks", timeout=30_000)

        page.get_by_role("tab", name="Generate").click()
        max_tokens = page.get_by_label("Max tokens")
        max_tokens.fill("24")
        max_tokens.press("Tab")
        page.locator("#gen-start").click()
        expect(page.locator("#gen-message")).to_contain_text("completed: 3 ok", timeout=180_000)

        page.get_by_role("tab", name="Review").click()
        expect(page.locator("#review-info")).to_contain_text("3 matching", timeout=30_000)
        page.locator("#review-table [data-testid=cell-0-3]").click()
        expect(page.locator("#review-detail-status textarea, #review-detail-status input")).to_have_value(
            "pending", timeout=30_000)
        page.locator("#review-approve").click()
        expect(page.locator("#review-message")).to_contain_text("approved", timeout=30_000)
        assert studio.store.stats()["by_status"]["approved"] == 1

        page.locator("#review-status input").click()
        page.get_by_role("option", name="pending").click()
        expect(page.locator("#review-info")).to_contain_text("2 matching", timeout=30_000)
        page.locator("#review-approve-all").click()  # asks first, with the count
        expect(page.locator("#review-confirm-text")).to_contain_text("Approve 2 generations", timeout=30_000)
        page.locator("#review-confirm").click()
        expect(page.locator("#review-message")).to_contain_text("approved 2 generations", timeout=30_000)
        assert studio.store.stats()["by_status"] == {"pending": 0, "approved": 3, "rejected": 0, "failed": 0}

        page.locator("#review-status input").click()
        page.get_by_role("option", name="all").click()
        expect(page.locator("#review-info")).to_contain_text("3 matching", timeout=30_000)
        page.locator("#review-table [data-testid=cell-0-3]").click()
        expect(page.locator("#review-detail-status textarea, #review-detail-status input")).to_have_value(
            "approved", timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "review-tab.png"), full_page=True)
        page.close()
