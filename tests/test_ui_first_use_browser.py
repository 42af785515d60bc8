"""A first-time user's walk in a real headless Chromium: pages that fill on load, reloads that reattach to a
running job, validation errors that leave the page usable, review paging, labelling and bulk actions."""
from __future__ import annotations

import re

import pytest

from curation import importing
from curation.store import ReviewFilter, Store
from tests.conftest import add_generation
from tests.ui_helpers import running_studio, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ERROR_BADGE = ".error"  # gradio's status tracker marks an output whose event raised with this class


def _seeded(workspace, answers: int = 30) -> list[int]:
    """A workspace with one seed pack and `answers` pending generations (two Review pages)."""
    with Store(workspace) as store:
        importing.load_seed_pack(store, importing.seed_packs()[0])
        store.add_tasks([{"instruction": f"Extra question {i}."} for i in range(max(0, answers - store.count_tasks()))])
        tasks = [t["id"] for t in store.tasks()][:answers]
        return [add_generation(store, t, f"k{t}", response=f"Answer number {i} about things.")
                for i, t in enumerate(tasks)]


def _toast(page, text: str):
    from playwright.sync_api import expect
    expect(page.get_by_text(text).first).to_be_visible(timeout=30_000)


def test_load_errors_duplicates_and_review_as_a_new_user(browser, tmp_path):
    from playwright.sync_api import expect
    ids = _seeded(tmp_path / "ws")
    with running_studio(tmp_path / "ws") as (studio, url):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        # 2: the task table is filled on load, not "1 2 3" headers
        first_task = studio.store.tasks()[0]["instruction"][:30]
        expect(page.locator("#seed-tasks")).to_contain_text(first_task, timeout=30_000)

        # 3: a validation error says what is wrong and leaves the inputs and the table in place
        page.locator("#seed-add").click()
        _toast(page, "type an instruction first")
        expect(page.locator("#seed-tasks")).to_contain_text(first_task)
        expect(page.locator(f"#seed-tasks {ERROR_BADGE}, #seed-message {ERROR_BADGE}")).to_have_count(0)

        # 4: a pack loaded twice adds nothing and says so
        pack = page.locator("#seed-pack-load")
        page.get_by_label("Seed pack").click()
        page.get_by_role("option", name=importing.seed_packs()[0]).click()
        pack.click()
        expect(page.locator("#seed-message")).to_contain_text("already in the workspace", timeout=30_000)

        # 1: Train after a fresh load: the latest (no) run, an idle bar, no error toast
        page.get_by_role("tab", name="Train").click()
        expect(page.locator("#train-message")).to_contain_text("no training run yet", timeout=30_000)
        expect(page.get_by_text("no training run with id")).to_have_count(0)

        # Curate's length filter: a maximum below the minimum is refused in place
        page.get_by_role("tab", name="Curate").click()
        page.get_by_role("tab", name="Filters").click()
        page.locator("#filter-min input").fill("50")
        page.locator("#filter-max input").fill("10")
        page.locator("#filter-preview").click()
        _toast(page, "must not exceed")
        expect(page.locator(f"#filter-summary {ERROR_BADGE}, #filter-sample {ERROR_BADGE}")).to_have_count(0)
        expect(page.locator("#filter-min input")).to_have_value("50")

        # 5: Review, search from page 2 lands on page 1 of what matches
        page.get_by_role("tab", name="Review").click()
        info = page.locator("#review-info")
        expect(info).to_contain_text("page 1 of 2 · 30 matching generations (30 pending)", timeout=30_000)
        gen_box = page.locator("#review-gen-id textarea, #review-gen-id input").first
        expect(gen_box).to_have_value("")  # no row chosen yet: empty, not 0
        page.locator("#review-next").click()
        expect(info).to_contain_text("page 2 of 2", timeout=30_000)
        search = page.locator("#review-search textarea, #review-search input").first
        search.fill("number 1")
        search.press("Enter")
        expect(info).to_contain_text("page 1 of 1 · 11 matching", timeout=30_000)
        search.fill("")
        search.press("Enter")
        expect(info).to_contain_text("page 1 of 2", timeout=30_000)

        # the edit box holds the response; a label opens the next row
        page.locator("#review-table [data-testid=cell-0-4]").click()
        edit = page.locator("#review-edit textarea")
        expect(edit).to_have_value("Answer number 0 about things.", timeout=30_000)
        page.locator("#review-approve").click()
        expect(page.locator("#review-message")).to_contain_text(
            f"generation {ids[0]}: approved · next: generation {ids[1]}", timeout=30_000)
        expect(gen_box).to_have_value(str(ids[1]))
        expect(edit).to_have_value("Answer number 1 about things.")
        expect(info).to_contain_text("(1 approved, 29 pending)")

        # bulk approve asks first with the count, then can be undone
        page.locator("#review-approve-all").click()
        expect(page.locator("#review-confirm-text")).to_contain_text("Approve 29 generations", timeout=30_000)
        assert studio.store.stats()["by_status"]["approved"] == 1  # nothing yet
        page.locator("#review-confirm").click()
        expect(page.locator("#review-message")).to_contain_text("approved 29 generations", timeout=30_000)
        assert studio.store.stats()["by_status"]["approved"] == 30
        page.locator("#review-bulk-undo").click()
        expect(page.locator("#review-message")).to_contain_text("undone: 29 generations", timeout=30_000)
        assert studio.store.stats()["by_status"] == {"pending": 29, "approved": 1, "rejected": 0, "failed": 0}
        assert not errors, errors
        page.close()


def test_a_reload_mid_job_reattaches_generate_and_train(browser, tmp_path, teacher_url, tiny_student):
    from playwright.sync_api import expect

    from curation.methods import GenerateConfig
    from curation.teacher import TeacherConfig
    from distill.config import TrainConfig
    _seeded(tmp_path / "ws", answers=8)
    with running_studio(tmp_path / "ws", teacher_url) as (studio, url):
        studio.store.set_label(studio.store.matching_ids(ReviewFilter()), "approved")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Generate").click()
        studio.generation.start(TeacherConfig(), GenerateConfig(n=2, max_tokens=64, temperature=0.7))
        page.reload()
        page.get_by_role("tab", name="Generate").click()
        expect(page.locator("#gen-progress")).to_contain_text(re.compile("running"), timeout=30_000)
        studio.generation.stop()
        wait_for(lambda: studio.generation.status().state != "running", timeout=120, what="the job to stop")
        expect(page.locator("#gen-progress")).to_contain_text("stopped", timeout=30_000)
        expect(page.locator("#gen-progress")).not_to_contain_text("ETA")

        run_id = studio.training.start(TrainConfig(student=str(tiny_student), max_steps=400, batch_size=2,
                                                   lora_r=4, lora_alpha=8, max_length=64, eval_rows=0,
                                                   save_steps=0))
        page.reload()
        page.get_by_role("tab", name="Train").click()
        expect(page.locator("#train-run-id input")).to_have_value(str(run_id), timeout=30_000)
        expect(page.locator("#train-student textarea, #train-student input").first).to_have_value(str(tiny_student))
        expect(page.locator("#train-progress")).to_contain_text("running", timeout=60_000)
        studio.training.stop()
        studio.training.wait(timeout=300)
        expect(page.locator("#train-progress")).not_to_contain_text("ETA", timeout=30_000)
        page.close()
