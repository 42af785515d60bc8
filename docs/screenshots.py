"""Makes the README's screenshots (docs/*.png), on purpose and only here; the tests write theirs to
tests/artifacts/.

    python docs/screenshots.py [--workspace DIR] [--tasks 12]

Without --workspace: a fresh temporary workspace, the first seed pack, and the embedded teacher (llama-server,
SmolLM2-135M-Instruct) answering --tasks of its tasks twice (a minute or two on 2 cores). With --workspace: that
workspace as it is (its latest training run fills the Train tab). Needs Debian's Chromium and Playwright.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"


def seed(workspace: Path, tasks: int) -> None:
    from curation import importing
    from curation.generate import run_method
    from curation.local_server import LocalTeacherServer
    from curation.methods import GenerateConfig
    from curation.store import Store
    from curation.teacher import TeacherConfig

    server = LocalTeacherServer(workspace / "logs")
    try:
        with Store(workspace) as store:
            importing.load_seed_pack(store, importing.seed_packs()[0])
            ids = [t["id"] for t in store.tasks()][:tasks]
            run_method(store, TeacherConfig(), GenerateConfig(task_ids=ids, n=2, max_tokens=96, temperature=0.7),
                       server.ensure_started())
    finally:
        server.stop()


def capture(workspace: Path) -> list[Path]:
    import app
    from playwright.sync_api import expect, sync_playwright

    from curation.local_server import free_port

    studio = app.Studio.open(workspace)
    port = free_port()
    demo = app.launch(studio, "127.0.0.1", port, block=False)
    shots = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Review").click()
            expect(page.locator("#review-info")).to_contain_text("matching", timeout=30_000)
            page.locator("#review-table [data-testid=cell-0-4]").click()
            shots.append(_shot(page, "review-tab.png"))
            page.get_by_role("tab", name="Queue").click()
            page.wait_for_timeout(1500)
            shots.append(_shot(page, "review-queue.png"))
            page.get_by_role("tab", name="Curate").click()
            page.locator("#dedupe-preview").click()
            expect(page.locator("#dedupe-count")).to_contain_text("would be marked", timeout=60_000)
            page.get_by_text("2-D map of the embeddings").click()
            page.locator("#dedupe-method").get_by_text("semantic").click()
            page.locator("#dedupe-preview").click()
            expect(page.locator("#dedupe-summary")).to_contain_text("cosine", timeout=120_000)
            page.locator("#dedupe-map-btn").click()
            expect(page.locator("#dedupe-map-note")).to_contain_text("coloured by", timeout=60_000)
            shots.append(_shot(page, "curate-tab.png"))
            if studio.store.runs("sft"):
                page.get_by_role("tab", name="Train").click()
                expect(page.locator("#train-message")).to_contain_text("run", timeout=30_000)
                page.wait_for_timeout(2000)
                shots.append(_shot(page, "train-tab.png"))
            browser.close()
    finally:
        demo.close()
        studio.close()
    return shots


def _shot(page, name: str) -> Path:
    path = DOCS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}", flush=True)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="an existing workspace to show (default: a fresh one)")
    parser.add_argument("--tasks", type=int, default=12, help="tasks the teacher answers in a fresh workspace")
    args = parser.parse_args(argv)
    if args.workspace:
        capture(args.workspace)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        seed(workspace, args.tasks)
        capture(workspace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
