"""Shared fixtures: a real workspace per test, and one real embedded teacher server per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from curation.local_server import LocalTeacherServer
from curation.store import Store

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "ws") as s:
        yield s


@pytest.fixture(scope="session")
def teacher_url(tmp_path_factory):
    """The real llama.cpp server over the bundled SmolLM2 GGUF, shared by the whole session."""
    server = LocalTeacherServer(tmp_path_factory.mktemp("teacher-logs"))
    try:
        yield server.ensure_started()
    finally:
        server.stop()


def curation_cli(*args, check=True):
    """`python -m curation ARGS` as a subprocess from the repo root; fails the test on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", "curation", *map(str, args)], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def add_generation(store, task_id, key, response="an answer", status="ok", messages=None):
    """A stored teacher call, as the generation job would write it."""
    messages = messages or [{"role": "user", "content": f"task {task_id}"}]
    return store.record_generation({"task_id": task_id, "request_key": key, "endpoint": "test", "model": "test",
                                    "messages": messages, "params": {}, "sample_index": 0,
                                    "response": response if status == "ok" else None, "status": status,
                                    "error": None if status == "ok" else "scripted failure",
                                    "prompt_tokens": 5, "completion_tokens": 3})


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory):
    """A 2-layer llama with the bundled SmolLM2 tokenizer: trains in seconds on CPU."""
    from models.resolve import bundled_tokenizer_dir
    from tests.fixtures_models import make_tiny_student
    tokenizer_dir = bundled_tokenizer_dir(tmp_path_factory.mktemp("models"))
    return make_tiny_student(tmp_path_factory.mktemp("tiny-student"), tokenizer_dir)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium through Playwright; missing it fails where DISTILL_REQUIRE_BROWSER is set."""
    from pathlib import Path
    if not Path(CHROMIUM).exists():
        if os.environ.get("DISTILL_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (browser tests are required here)")
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()
