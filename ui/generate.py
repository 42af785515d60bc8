"""Generate tab: the teacher labels tasks in the background; the tab polls the job's progress."""
from __future__ import annotations

import os

import gradio as gr

from curation.generate import GenerateConfig
from curation.teacher import TeacherConfig
from ui.common import fmt_seconds, guarded, progress_html


def parse_ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise gr.Error(f"task ids must be comma-separated numbers (got {text!r})") from None


def build(studio):
    env_url = os.environ.get("OPENAI_BASE_URL", "")
    key_hint = "using $OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else "not needed for the embedded teacher"
    with gr.Accordion("Teacher", open=not env_url):
        gr.Markdown("Leave the base URL empty to use the embedded teacher (llama.cpp serving the bundled "
                    "SmolLM2-135M-Instruct on 127.0.0.1, started on first use). Any OpenAI-compatible endpoint works.")
        with gr.Row():
            base_url = gr.Textbox(label="Base URL", value=env_url, placeholder="e.g. https://api.openai.com/v1")
            model = gr.Textbox(label="Model", value=os.environ.get("OPENAI_MODEL", ""),
                               placeholder="e.g. gpt-4o-mini (empty: embedded)")
            # The key is typed here and used for this job only; it is never stored or sent back to the page.
            api_key = gr.Textbox(label="API key", type="password", value="", placeholder=key_hint)
        with gr.Row():
            concurrency = gr.Slider(1, 64, value=4, step=1, label="Concurrent calls")
            timeout = gr.Number(value=120, label="Per-call timeout (s)", minimum=1, maximum=600)
    with gr.Row():
        n = gr.Slider(1, 16, value=1, step=1, label="Samples per task")
        temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature")
        max_tokens = gr.Number(value=256, label="Max tokens", minimum=1, maximum=32768, precision=0)
    system_prompt = gr.Textbox(label="System prompt (optional)", lines=2)
    teacher_only = gr.Checkbox(label="System prompt for the teacher only (left out of training data)")
    task_ids = gr.Textbox(label="Task ids (comma-separated; empty = all train tasks)", elem_id="gen-task-ids")
    with gr.Row():
        start = gr.Button("Generate", variant="primary", elem_id="gen-start")
        stop = gr.Button("Stop", variant="stop", elem_id="gen-stop")
    progress = gr.HTML(progress_html(0, 0, state="idle"), elem_id="gen-progress")
    message = gr.Markdown(elem_id="gen-message")
    timer = gr.Timer(1.0)

    @guarded
    def do_start(url, mdl, key, conc, tmo, n_, temp, max_tok, system, t_only, ids):
        teacher = TeacherConfig(base_url=url, model=mdl, api_key=key, concurrency=int(conc), timeout_s=float(tmo))
        config = GenerateConfig(task_ids=parse_ids(ids or ""), n=int(n_), temperature=float(temp),
                                max_tokens=int(max_tok), system_prompt=system or "", teacher_only_system=bool(t_only))
        planned = studio.generation.start(teacher, config)
        where = "the embedded teacher" if teacher.embedded else teacher.base_url
        return f"started: {planned} calls to {where} ({teacher.model_name})"

    def poll():
        status = studio.generation.status()
        p = status.progress
        if p is None:
            return progress_html(0, 0, state=status.state), ""
        detail = f"· {p.tokens} tokens · {p.failed} failed · ETA {fmt_seconds(p.eta_s)}"
        note = ""
        if status.state == "failed":
            note = f"**failed:** {status.error}"
        elif status.state in ("completed", "stopped") and status.summary:
            s = status.summary
            note = (f"{status.state}: {s['ok']} ok, {s['failed']} failed, {s['skipped_cached']} already stored, "
                    f"{s['tokens']} tokens in {s['elapsed_s']:.1f}s ({s['tokens_per_s']} tok/s) · run {s['run_id']}")
        elif status.state == "starting":
            note = "starting the teacher…"
        return progress_html(p.done, p.total, detail, state=status.state), note

    def do_stop():
        return "stopping after the calls in flight…" if studio.generation.stop() else "no job is running"

    inputs = [base_url, model, api_key, concurrency, timeout, n, temperature, max_tokens, system_prompt,
              teacher_only, task_ids]
    start.click(do_start, inputs, [message], api_name="start_generation")
    stop.click(do_stop, None, [message], api_name="stop_generation")
    timer.tick(poll, None, [progress, message], show_progress="hidden", api_name="generation_status")
