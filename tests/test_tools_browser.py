"""Tool use in a real headless Chromium: a pasted tool set refused with its line and field, the bundled one loaded
on the Seeds tab, the tools method's note on what the 135M teacher can do on the Generate tab, and a tool-use
answer's calls as a checked table on the Review tab. Its screenshot, tests/artifacts/skills-tools.png, is the
README's picture (docs/skills-tools.png is a copy)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.toolsets import calls_text
from tests.ui_helpers import running_studio

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _tool_answer(store) -> int:
    """A tool-use row as the tools method stores it: one valid call and one that breaks its schema."""
    (task,) = store.add_tasks([{"instruction": "What's the weather in Lisbon and in Oslo, in kelvin?",
                                "source": "tools", "skill": "get_weather", "toolset_id": 1}])
    calls = [{"name": "get_weather", "arguments": {"city": "Lisbon", "unit": "celsius"}},
             {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "kelvin"}}]
    return store.record_generation({"task_id": task, "request_key": "tools-demo", "endpoint": "embedded",
                                    "model": "smollm2-135m-instruct", "params": {}, "sample_index": 0,
                                    "messages": [{"role": "user", "content": "What's the weather in Lisbon and in "
                                                                             "Oslo, in kelvin?"}],
                                    "response": calls_text("", calls), "status": "ok"})


def test_tools_on_seeds_generate_and_review_in_the_browser(browser, tmp_path):
    from playwright.sync_api import expect
    bad = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                         "properties": {"x": {"type": "strin"}}}}}]
    with running_studio(tmp_path / "ws") as (studio, url):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_text("Tools → tool-use tasks and calls").click()
        page.locator("#tools-text .cm-content").fill(json.dumps(bad))
        page.locator("#tools-import").click()
        expect(page.get_by_text("field 'tools[0].function.parameters.properties.x.type'").first).to_be_visible(
            timeout=30_000)
        page.locator("#tools-bundled").click()
        expect(page.locator("#tools-message")).to_contain_text("tool set 1 (simple): 3 tools", timeout=30_000)
        expect(page.locator("#tools-table")).to_contain_text("convert_currency")

        page.get_by_role("tab", name="Generate").click()
        page.locator("#gen-method input").click()
        page.get_by_role("option", name="tools", exact=True).click()
        expect(page.locator("#gen-tools-note")).to_contain_text("What the embedded 135M teacher can and cannot do")

        gid = _tool_answer(studio.store)
        page.get_by_role("tab", name="Review").click()
        page.locator("#review-gen-id textarea, #review-gen-id input").first.fill(str(gid))
        page.locator("#review-gen-id textarea, #review-gen-id input").first.press("Enter")
        calls = page.locator("#review-calls")
        expect(calls).to_contain_text("Lisbon", timeout=30_000)
        expect(calls).to_contain_text("arguments.unit: 'kelvin' is not one of ['celsius', 'fahrenheit']")
        expect(calls).to_contain_text("tool set 1 (simple)")
        for close in page.locator(".toast-close").all():  # the refused paste's warning would cover the picture
            close.click()
        calls.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "skills-tools.png"), full_page=True)
