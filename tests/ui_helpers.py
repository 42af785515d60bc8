"""Launching the real studio in-process on a free port, for gradio_client and browser tests."""
from __future__ import annotations

import contextlib
import time

from curation.local_server import free_port


@contextlib.contextmanager
def running_studio(workspace, teacher_url: str | None = None):
    """The studio on 127.0.0.1:<free port>; with `teacher_url`, the embedded teacher is that server."""
    from app import Studio, build_app
    from ui.common import CSS

    studio = Studio.open(workspace)
    if teacher_url:
        # Reuse the session's teacher server instead of starting a second llama.cpp process.
        studio.server.ensure_started = lambda: teacher_url
    demo = build_app(studio)
    demo.queue(default_concurrency_limit=8)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, css=CSS, quiet=True)
    try:
        yield studio, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        studio.close()


def wait_for(predicate, timeout=300.0, interval=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
