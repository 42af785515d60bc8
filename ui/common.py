"""Small pieces every tab uses: telling the user a refused input, progress bars, formatting."""
from __future__ import annotations

import functools
import html

import gradio as gr

from curation.errors import StudioError


def guarded(fn):
    """Run an event handler; a domain error (or a gr.Error the handler raised to refuse its input) is told to
    the user without touching the page: in a browser a warning toast, and every output keeps what it showed
    (a raised error would mark each output with an "Error" badge until closed); to an API client an error.
    Anything else is not swallowed."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (StudioError, gr.Error) as exc:
            message = exc.message if isinstance(exc, gr.Error) else str(exc)
            if from_browser():
                gr.Warning(message)
                return gr.skip()  # a single skip leaves every output as it is
            raise gr.Error(message) from exc
    return wrapper


def from_browser() -> bool:
    """Whether the event being handled came from a web browser (the studio's page), not an API client."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    agent = (request.headers.get("user-agent", "") if request is not None and request.headers is not None else "")
    return agent.startswith("Mozilla/")


def progress_html(done: int, total: int, detail: str = "", state: str = "") -> str:
    """A progress bar the browser draws itself; `detail` is plain text (escaped)."""
    pct = 0 if not total else min(100, round(100 * done / total))
    label = f"{done} / {total}" if total else "—"
    return (f'<div class="ds-progress" data-state="{html.escape(state)}">'
            f'<div class="ds-bar"><div class="ds-fill" style="width:{pct}%"></div></div>'
            f'<div class="ds-label">{html.escape(state)} {label} ({pct}%) {html.escape(detail)}</div></div>')


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


CSS = """
.ds-progress {margin: 4px 0;}
.ds-bar {height: 14px; background: var(--neutral-200, #e5e7eb); border-radius: 7px; overflow: hidden;}
.ds-fill {height: 100%; background: var(--color-accent, #f97316); transition: width .3s;}
.ds-label {font-size: 0.9em; margin-top: 2px;}
"""
