"""The review queue's keyboard shortcuts and the Curate tab in a real headless Chromium (Playwright)."""
from __future__ import annotations

from pathlib import Path

import pytest

from curation.store import Store
from tests.conftest import add_generation
from tests.ui_helpers import running_studio, wait_for

# Screenshots go to the test artifacts folder (git-ignored), never over the README's tracked pictures.
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def screenshot(page, tmp_path, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_queue_keyboard_shortcuts_label_undo_and_move_between_tasks(browser, tmp_path):
    from playwright.sync_api import expect
    with Store(tmp_path / "ws") as store:
        colour, sums = store.add_tasks([{"instruction": "Name a colour.", "skill": "nlu"},
                                        {"instruction": "What is 2 + 2?", "skill": "math"}])
        g1, g2, g3 = (add_generation(store, colour, f"c{i}", response=f"Colour answer {i}: blue") for i in range(3))
        g4, g5 = (add_generation(store, sums, f"s{i}", response=f"Sum answer {i}: 4") for i in range(2))

    with running_studio(tmp_path / "ws") as (studio, url):
        status = lambda gid: studio.store.generation(gid)["review_status"]  # noqa: E731
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.get_by_role("tab", name="Queue").click()
        expect(page.locator("#queue-info")).to_contain_text("task 1 of 2 tasks with pending responses", timeout=30_000)
        expect(page.locator("#queue-task")).to_contain_text("Name a colour.")
        expect(page.locator("#queue-legend")).to_contain_text("approve the focused response")
        focused = lambda n: page.locator(f'#queue-focus input[value="{n}"]')  # noqa: E731

        page.keyboard.press("a")  # approve #1; the focus moves on to the next pending response
        wait_for(lambda: status(g1) == "approved", timeout=30, what="a to approve")
        expect(focused(2)).to_have_attribute("aria-checked", "true", timeout=30_000)
        page.keyboard.press("r")
        wait_for(lambda: status(g2) == "rejected", timeout=30, what="r to reject")
        expect(page.locator("#queue-message")).to_contain_text(f"generation {g2}: rejected", timeout=30_000)
        page.keyboard.press("u")
        wait_for(lambda: status(g2) == "pending", timeout=30, what="u to undo")
        assert status(g1) == "approved"

        page.keyboard.press("3")
        expect(focused(3)).to_have_attribute("aria-checked", "true", timeout=30_000)
        page.keyboard.press("e")  # focuses the edit box of #3: letters typed there are text, not shortcuts
        expect(page.locator("#queue-edit-2 textarea")).to_be_focused(timeout=30_000)
        page.keyboard.type("a better answer, really")
        assert status(g3) == "pending"
        page.keyboard.press("Control+Enter")
        wait_for(lambda: status(g3) == "approved", timeout=30, what="ctrl+enter to save the edit")
        row = studio.store.generation(g3)
        assert (row["edited_response"], row["response"]) == ("a better answer, really", "Colour answer 2: blue")

        page.locator("#queue-tags-0 input, #queue-tags-0 textarea").fill("colour, short")
        page.locator("#queue-meta-0").click()
        expect(page.locator("#queue-message")).to_contain_text("tags and note saved", timeout=30_000)
        assert studio.store.task_candidates(colour)[0]["tags"] == "colour, short"
        page.locator("body").click(position={"x": 5, "y": 5})  # leave the text box so keys are shortcuts again

        page.keyboard.press("j")
        expect(page.locator("#queue-task")).to_contain_text("What is 2 + 2?", timeout=30_000)
        page.keyboard.press("a")
        wait_for(lambda: status(g4) == "approved", timeout=30, what="a on the second task")
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#queue-task")).to_contain_text("Name a colour.", timeout=30_000)
        screenshot(page, tmp_path, "review-queue.png")

        page.keyboard.press("u")  # undoes the last change, on the task it was made on
        wait_for(lambda: status(g4) == "pending", timeout=30, what="u to undo across tasks")
        expect(page.locator("#queue-task")).to_contain_text("What is 2 + 2?", timeout=30_000)
        assert [status(g) for g in (g1, g2, g3, g4, g5)] == ["approved", "pending", "approved", "pending", "pending"]
        page.keyboard.press("u")  # the tags, then the edit: the earlier text comes back, the original never left
        wait_for(lambda: studio.store.task_candidates(colour)[0]["tags"] is None, timeout=30, what="u to undo tags")
        page.keyboard.press("u")
        wait_for(lambda: status(g3) == "pending", timeout=30, what="u to undo the edit")
        row = studio.store.generation(g3)
        assert (row["edited_response"], row["response"]) == (None, "Colour answer 2: blue")
        expect(page.locator("#queue-edit-2 textarea")).to_have_value("", timeout=30_000)
        page.close()


def test_curate_tab_dedupes_with_embeddings_slider_and_map(browser, tmp_path):
    from playwright.sync_api import expect
    answers = ["Paris is the capital of France."] * 3 + ["The capital of France is Paris."] + \
        ["Water boils at 100 degrees Celsius at sea level.", "Photosynthesis turns light into chemical energy.",
         "A haiku has three lines of five, seven and five syllables.", "Hello there"]
    with Store(tmp_path / "ws") as store:
        tasks = store.add_tasks([{"instruction": f"Question {i}"} for i in range(len(answers))])
        ids = [add_generation(store, t, f"k{i}", response=a) for i, (t, a) in enumerate(zip(tasks, answers))]

    with running_studio(tmp_path / "ws") as (studio, url):
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.get_by_role("tab", name="Curate").click()
        page.locator("#dedupe-method").get_by_text("exact").click()
        page.locator("#dedupe-preview").click()
        expect(page.locator("#dedupe-count")).to_contain_text("2 generations would be marked", timeout=30_000)
        expect(page.locator("#dedupe-members")).to_contain_text("Cluster 1: 3 members")

        page.locator("#dedupe-method").get_by_text("semantic").click()
        page.locator("#dedupe-embed").click()
        expect(page.locator("#dedupe-message")).to_contain_text("embedded 8 responses", timeout=60_000)
        page.locator("#dedupe-preview").click()
        count = page.locator("#dedupe-count")
        # the calibrated default threshold (0.82, bench/dedupe_threshold.py)
        expect(count).to_contain_text("3 generations would be marked at similarity ≥ 0.82", timeout=30_000)
        slider = page.locator("#dedupe-threshold input[type=range]")
        slider.fill("1")  # each move reads the counts cached by the preview: only identical texts left
        expect(count).to_contain_text("2 generations would be marked at similarity ≥ 1", timeout=30_000)
        slider.fill("0.7")
        expect(count).to_contain_text("3 generations would be marked at similarity ≥ 0.7", timeout=30_000)

        page.locator("#dedupe-preview").click()
        expect(page.locator("#dedupe-summary")).to_contain_text("cosine ≥ 0.7", timeout=30_000)
        page.get_by_text("2-D map of the embeddings").click()
        page.locator("#dedupe-map-btn").click()
        expect(page.locator("#dedupe-map-note")).to_contain_text("8 responses coloured by cluster", timeout=30_000)
        expect(page.locator("#dedupe-map canvas, #dedupe-map svg").first).to_be_visible(timeout=30_000)
        screenshot(page, tmp_path, "curate-tab.png")
        page.locator("#dedupe-apply").click()
        expect(page.locator("#dedupe-message")).to_contain_text("marked 3 generations rejected", timeout=30_000)
        assert [studio.store.generation(i)["review_status"] for i in ids[:4]].count("rejected") == 3
        page.close()
