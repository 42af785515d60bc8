"""Launching the real studio in-process on a free port, for gradio_client and browser tests."""
from __future__ import annotations

import contextlib
import time

from curation.local_server import free_port


@contextlib.contextmanager
def running_studio(workspace, teacher_url: str | None = None, **launch_options):
    """The studio on 127.0.0.1:<free port>, launched as app.py does; with `teacher_url`, the embedded
    teacher is that already running server."""
    import app

    studio = app.Studio.open(workspace)
    if teacher_url:
        # Reuse the session's teacher server instead of starting a second llama.cpp process.
        studio.server.ensure_started = lambda: teacher_url
    port = free_port()
    demo = app.launch(studio, "127.0.0.1", port, block=False, **launch_options)
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
