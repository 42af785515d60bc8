"""Generate tab: every elicitation method of the survey (issue 3) on the engine in curation/.

Layout and wiring only. The form's fields are named after the config fields (TeacherConfig, the method's
config dataclass, Budget), so a config is built from the values its dataclass takes and checked by it;
the names are also the API's parameter names (gradio_client: predict(method="topics", topics=..., ...)).
"""
from __future__ import annotations

import dataclasses
import os

import gradio as gr

from curation import importing
from curation.generate import Budget, plan_calls, preview
from curation.methods import METHODS, SURVEY_DOMAINS, SURVEY_SKILLS, get_method
from curation.methods.evol import OPERATIONS
from curation.methods.judge import default_rubric
from curation.teacher import DEFAULT_CONCURRENCY, TeacherConfig
from ui import batches, ledger
from ui.common import fmt_seconds, guarded, progress_html
from ui.generate_tools import tools_group
from ui.teacher_farm import endpoint_detail, farm_of, farm_section

# Which option group each method shows. A group holds fields several methods share, so one field is
# one component (the config dataclasses say which fields each method takes).
GROUPS = {
    "tasks": ("label", "logprobs", "self", "self-instruct", "evol", "judge", "compare", "chat"),
    "samples": ("label", "logprobs", "self", "chat"),
    "answer": ("label", "logprobs", "self"),
    "chat": ("chat",),
    "documents": ("documents",),
    "tools": ("tools",),
    "logprobs": ("logprobs",),
    "expand": ("self-instruct",),
    "evol": ("evol",),
    "seed": ("self-instruct", "evol"),
    "topics": ("topics",),
    "novelty": ("self-instruct", "topics"),
    "judge": ("judge", "constitution"),
    "constitution": ("constitution",),
    "compare": ("compare",),
    "rubric": ("judge", "compare", "self"),
    "student": ("self",),
    "judge_endpoint": ("judge", "compare", "self"),
}
JUDGED = GROUPS["judge_endpoint"]  # methods whose teacher calls are verdicts: a separate judge may make them
TEACHER_FIELDS = ("base_url", "model", "api_key", "concurrency", "timeout_s", "max_retries")
PREVIEW_CALLS = 3


# ---- form values -> core objects ------------------------------------------------------------------

def split_list(text: str) -> list[str]:
    """Items of a comma- or line-separated list."""
    return [x.strip() for x in (text or "").replace("\n", ",").split(",") if x.strip()]


def teacher_config(form: dict, judge: bool = False) -> TeacherConfig:
    """The teacher of the form; with `judge`, the judge endpoint instead when its base URL is filled in
    (it shares the teacher's concurrency, timeout and retries)."""
    settings = {name: form[name] for name in TEACHER_FIELDS}
    if judge and (form.get("judge_base_url") or "").strip():
        settings.update(base_url=form["judge_base_url"], model=form.get("judge_model") or "",
                        api_key=form.get("judge_api_key") or "")
        return TeacherConfig(**settings)
    return TeacherConfig(**settings, farm=farm_of(form))


def method_config(method: str, form: dict):
    """The method's config from the form fields its dataclass takes (it checks their ranges)."""
    cls = get_method(method).config_cls
    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in form:
            continue
        value = form[field.name]
        if field.name in ("task_ids", "generation_ids", "chunk_ids"):
            value = importing.parse_ids(value)
        elif field.name == "topics":
            value = split_list(value)
        elif field.name == "threshold":
            value = value or None  # 0 / empty: the similarity measure's default
        values[field.name] = value
    return cls(**values)


def budget_of(form: dict) -> Budget | None:
    tokens, usd = form.get("budget_tokens") or None, form.get("budget_usd") or None
    return Budget(max_tokens=tokens, max_usd=usd) if tokens or usd else None


def sampling_defaults(method: str) -> tuple[float, int]:
    defaults = {f.name: f.default for f in dataclasses.fields(get_method(method).config_cls)}
    return defaults["temperature"], defaults["max_tokens"]


# ---- event handlers --------------------------------------------------------------------------------

@guarded
def start_job(studio, form: dict) -> str:
    method = form["method"]
    teacher = teacher_config(form, judge=method in JUDGED)
    planned = studio.generation.start(teacher, method_config(method, form), budget_of(form))
    where = "the embedded teacher" if teacher.embedded else teacher.base_url or teacher.endpoint_id
    return f"started: {planned} calls to {where} ({teacher.model_name}) · {method}"


@guarded
def preview_job(studio, form: dict) -> tuple[list[dict], str]:
    method = form["method"]
    teacher, config = teacher_config(form, judge=method in JUDGED), method_config(method, form)
    calls = preview(studio.store, teacher, config, PREVIEW_CALLS)
    todo, stored = plan_calls(studio.store, teacher, config)
    staged = len(get_method(method).stages(config)) > 1
    later = " (later stages are planned from what the first one stores)" if staged else ""
    return calls, (f"the first {len(calls)} calls exactly as they would be sent; {len(todo)} to send, "
                   f"{stored} already stored{later}. Nothing was sent.")


def stop_job(studio) -> str:
    return "stopping after the calls in flight…" if studio.generation.stop() else "no job is running"


def job_status(studio) -> tuple[str, str]:
    status = studio.generation.status()
    p = status.progress
    if p is None:
        return progress_html(0, 0, state=status.state), ""
    cost = f" · ${p.cost_usd:.4f}" if p.cost_usd is not None else ""
    eta = ""
    if status.state == "running":
        eta = f" · ETA {fmt_seconds(p.eta_s)}" if p.eta_s is not None else " · ETA after the first answers"
    detail = (f"· {status.method} {p.stage} · {p.prompt_tokens + p.tokens} tokens{cost} · {p.failed} failed{eta}"
              + endpoint_detail(p.endpoints))
    return progress_html(p.done, p.total, detail, state=status.state), status_note(status)


def status_note(status) -> str:
    if status.state == "starting":
        return "starting the teacher…"
    if status.state == "restarting":
        return f"**the teacher server died; restarting it once and resuming.**\n```\n{status.error}\n```"
    note = summary_text(status.state, status.summary) if status.summary else ""
    if status.summary.get("server_restarted"):
        note = (f"**the teacher server died during this job; it was restarted once and the job resumed.**\n```\n"
                f"{status.summary['server_restarted']}\n```\n\n{note}")
    if status.state == "failed":
        note = f"**failed:** {status.error}" + (f"\n\n{note}" if note else "")
    return note


def summary_text(state: str, s: dict) -> str:
    """One line of a finished job's summary: counts, discards by reason, new tasks, tokens and cost."""
    stopped = f" ({s['stopped_reason']})" if s.get("stopped_reason") and state == "stopped" else ""
    parts = [f"{state}{stopped}: {s['ok']} ok, {s['failed']} failed, {s['skipped_cached']} already stored"]
    if s.get("pending"):
        parts.append(f"{s['pending']} not sent")
    if s.get("discarded"):
        parts.append("discarded: " + ", ".join(f"{reason} {n}" for reason, n in sorted(s["discarded"].items())))
    unreadable = (s.get("discarded") or {}).get("unparsable", 0)
    if s.get("method") in ("judge", "compare") and s.get("ok"):
        # The call succeeded (ledger: ok) but the verdict may not be readable: say how many are, and what to do.
        parts.append(f"the judge wrote {s['ok'] - unreadable} of {s['ok']} verdicts readably"
                     + (" — the raw text is kept; turn on structured output or use a stronger judge endpoint"
                        if unreadable else ""))
    if s.get("new_tasks"):
        parts.append(f"{s['new_tasks']} new tasks")
    for key in ("rejected_by_judge", "kept", "unjudged"):
        if key in s:
            parts.append(f"{key.replace('_', ' ')} {s[key]}")
    cost = f" · ${s['cost_usd']:.4f}" if s.get("cost_usd") is not None else ""
    parts.append(f"{s['total_tokens']} tokens ({s['completion_tokens']} out){cost}")
    parts.append(f"{s['elapsed_s']:.1f}s ({s['tokens_per_s']} tok/s out) · run {s['run_id']}")
    return " · ".join(parts)


def show_method(method: str, temperature=None, max_tokens=None):
    """Each group visible only for the methods that take its fields. Sampling follows the method's defaults
    while the user has not changed it (it still holds some method's default); a value the user typed is kept."""
    defaults = {name: sampling_defaults(name) for name in METHODS}
    new_temperature, new_max_tokens = defaults[method]
    if temperature is not None and temperature not in {t for t, _ in defaults.values()}:
        new_temperature = temperature
    if max_tokens is not None and max_tokens not in {m for _, m in defaults.values()}:
        new_max_tokens = max_tokens
    return (METHODS[method].description, *(gr.update(visible=method in GROUPS[name]) for name in GROUPS),
            new_temperature, new_max_tokens)


# ---- layout ----------------------------------------------------------------------------------------

def _teacher_section() -> dict:
    env_url = os.environ.get("OPENAI_BASE_URL", "")
    key_hint = ("empty: uses $OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY")
                else "not needed for the embedded teacher")
    with gr.Accordion("Teacher", open=not env_url):
        gr.Markdown("Leave the base URL empty to use the embedded teacher (llama.cpp serving the bundled "
                    "SmolLM2-135M-Instruct on 127.0.0.1, started on first use). Any OpenAI-compatible endpoint works.")
        with gr.Row():
            base_url = gr.Textbox(label="Base URL", value=env_url, placeholder="e.g. https://api.openai.com/v1")
            model = gr.Textbox(label="Model", value=os.environ.get("OPENAI_MODEL", ""),
                               placeholder="e.g. gpt-4o-mini (empty: embedded)")
            # Typed here, used for the job and never sent back to the page (no output carries it).
            api_key = gr.Textbox(label="API key", type="password", value="", placeholder=key_hint)
        with gr.Row():
            concurrency = gr.Slider(1, 64, value=DEFAULT_CONCURRENCY, step=1, label="Concurrent calls")
            timeout_s = gr.Number(value=60, label="Per-call timeout (s)", minimum=1, maximum=600)
            max_retries = gr.Number(value=3, label="Max retries", minimum=0, maximum=10, precision=0)
        farm = farm_section()
    return dict(base_url=base_url, model=model, api_key=api_key, concurrency=concurrency, timeout_s=timeout_s,
                max_retries=max_retries, **farm)


def _judge_endpoint_section() -> tuple[gr.Accordion, dict]:
    with gr.Accordion("Judge endpoint (optional)", open=False, visible=False) as group:
        gr.Markdown("Verdicts go to this endpoint when its base URL is filled in; otherwise the teacher judges.")
        with gr.Row():
            judge_base_url = gr.Textbox(label="Judge base URL", value="", placeholder="empty: the teacher")
            judge_model = gr.Textbox(label="Judge model", value="")
            judge_api_key = gr.Textbox(label="Judge API key", type="password", value="")
    return group, dict(judge_base_url=judge_base_url, judge_model=judge_model, judge_api_key=judge_api_key)


def _task_groups(groups: dict) -> dict:
    with gr.Group(visible=True) as groups["tasks"]:
        task_ids = gr.Textbox(label="Task ids (comma-separated; empty = all train tasks, or the method's pool)",
                              value="", elem_id="gen-task-ids")
    with gr.Group(visible=True) as groups["samples"]:
        n = gr.Slider(1, 32, value=1, step=1, label="Samples per task (chat: conversations per task, up to 8)")
        system_prompt = gr.Textbox(label="System prompt (optional)", lines=2, value="")
    with gr.Group(visible=True) as groups["answer"]:
        with gr.Row():
            teacher_only = gr.Checkbox(label="System prompt for the teacher only (left out of training data)")
            explain = gr.Checkbox(label="Explain step by step (Orca-style traces)")
            with_eval = gr.Checkbox(label="Answer the eval split too (references for the eval loss; never trained on)",
                                    elem_id="gen-with-eval")
    with gr.Group(visible=False) as groups["logprobs"]:
        top_logprobs = gr.Slider(0, 20, value=5, step=1, label="Top logprobs kept per token")
    return dict(task_ids=task_ids, n=n, teacher_only_system=teacher_only, explain=explain, with_eval=with_eval,
                system_prompt=system_prompt, top_logprobs=top_logprobs, **_chat_group(groups),
                **_documents_group(groups), **tools_group(groups), **_constitution_group(groups))


def _constitution_group(groups: dict) -> dict:
    from curation.methods.constitution import default_principles

    with gr.Group(visible=False) as groups["constitution"]:
        gr.Markdown("The teacher critiques each answer against your principles (or says NO_CHANGE) and rewrites "
                    "the ones it criticised; a revision is a new answer of the same task (train it with sft), and "
                    "(revision, original) is a DPO pair (Train → dpo, pairs *revisions*). The embedded 135M teacher "
                    "critiques weakly and often rewrites into something no better: use a stronger endpoint.")
        principles = gr.Textbox(label="Principles (one a line)", value=default_principles(), lines=4,
                                elem_id="gen-principles")
    return dict(principles=principles)


def _chat_group(groups: dict) -> dict:
    with gr.Group(visible=False) as groups["chat"]:
        gr.Markdown("Each seed task opens a conversation: the teacher answers, a simulated user (the teacher with "
                    "the persona below) asks a follow-up, for N assistant turns. Training puts the loss on every "
                    "assistant turn. The embedded 135M teacher is a weak user simulator: it often has nothing to "
                    "add or repeats itself, and a conversation then ends where it got (kept, counted as "
                    "*user_simulator*); use a stronger endpoint for conversations worth training on.")
        with gr.Row():
            turns = gr.Slider(2, 8, value=3, step=1, label="Assistant turns per conversation")
            user_max_tokens = gr.Number(value=96, label="Max tokens per user turn", minimum=8, maximum=1024,
                                        precision=0)
        persona = gr.Textbox(label="Simulated user (persona, optional)", value="",
                             placeholder="e.g. a nurse who wants short practical answers")
    return dict(turns=turns, user_max_tokens=user_max_tokens, persona=persona)


def _documents_group(groups: dict) -> dict:
    with gr.Group(visible=False) as groups["documents"]:
        gr.Markdown("Questions about each chunk of the documents imported on the Seeds tab, answered by the teacher "
                    "from that chunk, then judged for faithfulness to it (the *unanswerable* and *unfaithful* "
                    "filters on the Curate tab read the verdicts). The embedded 135M teacher asks shallow questions "
                    "and its verdicts are near random; use a stronger teacher endpoint for real data.")
        with gr.Row():
            chunk_ids = gr.Textbox(label="Chunk ids (empty: every imported chunk)", value="")
            questions_per_chunk = gr.Slider(1, 10, value=3, step=1, label="Questions per chunk")
        with gr.Row():
            mode = gr.Radio([("answer from the chunk in the prompt (RAG)", "rag"),
                             ("closed book: the knowledge goes into the weights", "closed_book")],
                            value="rag", label="What the student learns")
            faithfulness = gr.Checkbox(value=True, label="Judge each answer's faithfulness to its chunk")
    return dict(chunk_ids=chunk_ids, questions_per_chunk=questions_per_chunk, mode=mode, faithfulness=faithfulness)


def _new_task_groups(groups: dict) -> dict:
    with gr.Group(visible=False) as groups["expand"]:
        with gr.Row():
            num_prompts = gr.Number(value=4, label="Teacher calls", minimum=1, maximum=10000, precision=0)
            k = gr.Slider(1, 16, value=3, step=1, label="Demonstrations per call (k)")
            new_per_prompt = gr.Slider(1, 20, value=4, step=1, label="New tasks asked per call")
    with gr.Group(visible=False) as groups["evol"]:
        with gr.Row():
            rounds = gr.Slider(1, 5, value=1, step=1, label="Evolution rounds")
            operations = gr.CheckboxGroup(list(OPERATIONS), value=list(OPERATIONS), label="Operations")
    with gr.Group(visible=False) as groups["seed"]:
        seed = gr.Number(value=0, label="Seed (which demonstrations / operations each call gets)", precision=0)
    with gr.Group(visible=False) as groups["topics"]:
        topics = gr.Textbox(label="Topics (comma- or line-separated)", lines=2, value="")
        with gr.Row():
            skills = gr.Dropdown(list(SURVEY_SKILLS), value=list(SURVEY_SKILLS), multiselect=True,
                                 allow_custom_value=True, label="Skills")
            domains = gr.Dropdown(list(SURVEY_DOMAINS), value=list(SURVEY_DOMAINS), multiselect=True,
                                  allow_custom_value=True, label="Domains")
            per_call = gr.Slider(1, 20, value=5, step=1, label="Tasks per topic × skill × domain")
    with gr.Group(visible=False) as groups["novelty"]:
        with gr.Row():
            similarity = gr.Radio(["rouge", "embedding"], value="rouge", label="Novelty measure")
            threshold = gr.Number(value=0, label="Discard at similarity ≥ (0 = default: 0.7 rouge, 0.9 embedding)",
                                  minimum=0, maximum=1)
    return dict(num_prompts=num_prompts, k=k, new_per_prompt=new_per_prompt, rounds=rounds, operations=operations,
                seed=seed, topics=topics, skills=skills, domains=domains, per_call=per_call, similarity=similarity,
                threshold=threshold)


def _feedback_groups(groups: dict) -> dict:
    with gr.Group(visible=False) as groups["judge"]:
        generation_ids = gr.Textbox(label="Generation ids (judge: empty = those of the tasks above, or all; "
                                    "constitution: empty = every unrejected train answer)", value="")
    with gr.Group(visible=False) as groups["compare"]:
        pairs_per_task = gr.Slider(1, 45, value=1, step=1, label="Pairs compared per task (each in both orders)")
    with gr.Group(visible=False) as groups["rubric"]:
        rubric = gr.Textbox(label="Judge rubric", value=default_rubric(), lines=5, elem_id="gen-rubric")
    with gr.Group(visible=False) as groups["student"]:
        with gr.Row():
            student = gr.Textbox(label="Student model (empty: bundled SmolLM2; a folder, .gguf or cached hub id)",
                                 value="")
            adapter = gr.Textbox(label="PEFT adapter folder (optional)", value="")
        with gr.Row():
            keep_threshold = gr.Slider(1, 10, value=7, step=0.5, label="Reject answers scored below")
            approve_kept = gr.Checkbox(label="Approve the answers kept")
            judge_max_tokens = gr.Number(value=256, label="Tokens per verdict", minimum=1, maximum=32768, precision=0)
    return dict(generation_ids=generation_ids, pairs_per_task=pairs_per_task, rubric=rubric, student=student,
                adapter=adapter, keep_threshold=keep_threshold, approve_kept=approve_kept,
                judge_max_tokens=judge_max_tokens)


def _method_section(groups: dict) -> tuple[gr.Dropdown, gr.Markdown, dict]:
    with gr.Row():
        method = gr.Dropdown(list(METHODS), value="label", label="Method", scale=1, elem_id="gen-method")
        description = gr.Markdown(METHODS["label"].description)
    temperature, max_tokens = sampling_defaults("label")
    with gr.Row():
        temperature = gr.Slider(0, 2, value=temperature, step=0.05, label="Temperature")
        max_tokens = gr.Number(value=max_tokens, label="Max tokens", minimum=1, maximum=32768, precision=0)
    options = {"temperature": temperature, "max_tokens": max_tokens, **_task_groups(groups),
               **_new_task_groups(groups), **_feedback_groups(groups)}
    return method, description, options


def _budget_section() -> dict:
    with gr.Row():
        budget_tokens = gr.Number(value=0, label="Token budget (0 = no cap)", minimum=0, precision=0)
        budget_usd = gr.Number(value=0, label="USD budget (0 = no cap; needs a price for the model)", minimum=0)
    return dict(budget_tokens=budget_tokens, budget_usd=budget_usd)


def build(studio):
    groups: dict = {}
    teacher = _teacher_section()
    method, description, options = _method_section(groups)
    groups["judge_endpoint"], judge = _judge_endpoint_section()
    budget = _budget_section()
    with gr.Row():
        preview_btn = gr.Button("Preview", elem_id="gen-preview")
        start = gr.Button("Generate", variant="primary", elem_id="gen-start")
        stop = gr.Button("Stop", variant="stop", elem_id="gen-stop")
    progress = gr.HTML(progress_html(0, 0, state="idle"), elem_id="gen-progress")
    message = gr.Markdown(elem_id="gen-message")
    with gr.Accordion("Preview: the exact messages of the first calls", open=True):
        preview_note = gr.Markdown(elem_id="gen-preview-note")
        preview_out = gr.JSON(label="Calls", open=True, max_height=600, elem_id="gen-preview-calls")
    timer = gr.Timer(1.0)

    form = {"method": method, **teacher, **judge, **budget, **options}
    method.change(show_method, [method, options["temperature"], options["max_tokens"]],
                  [description, *(groups[name] for name in GROUPS), options["temperature"], options["max_tokens"]],
                  api_visibility="private")
    preview_btn.click(lambda **f: preview_job(studio, f), inputs_kwargs=form, outputs=[preview_out, preview_note],
                      api_name="preview_generation")
    start.click(lambda **f: start_job(studio, f), inputs_kwargs=form, outputs=[message], api_name="start_generation")
    stop.click(lambda: stop_job(studio), None, [message], api_name="stop_generation")
    timer.tick(lambda: job_status(studio), None, [progress, message], show_progress="hidden",
               api_name="generation_status")
    batches.build(studio, form, teacher_config, method_config)
    ledger.build(studio, {**teacher, **judge}, teacher_config, timer)
