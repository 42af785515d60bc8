"""Evaluate tab: base vs distilled student vs teacher on the eval split — run, report, compare, play, close the loop.

Thin: every number comes from the evaluation package (evaluation.metrics), every table and plot from ui.eval_views;
this module lays out and wires.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd

from curation import importing
from curation.teacher import TeacherConfig
from evaluation.config import EvalConfig
from evaluation.failures import FailureSeedConfig
from evaluation.jobs import EvalJobs
from evaluation.plan import resolve_adapter, set_expectation
from evaluation.playground import Playground
from evaluation.report import compare_runs, read_details
from ui.common import fmt_seconds, guarded, progress_html
from ui.eval_views import (breakdown_figure, compare_figure, eval_choices, fmt_value, headline_frame,  # noqa: F401
                           task_markdown, training_choices, viewer_frame)

# ---- the tab ------------------------------------------------------------------------------------

def _teacher(url: str, model: str) -> TeacherConfig:
    return TeacherConfig.from_env(base_url=url, model=model) if (url or model) else TeacherConfig()


INTRO = ("Evaluates a trained student on the **eval split** (tasks never trained on): the teacher, the base student "
         "and the distilled student answer; the judge compares distilled vs base and vs teacher in both orders "
         "(disagreeing orders count as a tie) and scores all three 1-10. Answers and verdicts are stored, so a "
         "stopped eval resumes. Every measure comes with a 95% bootstrap interval over the eval tasks, and the "
         "change from the base student is paired by task.\n\n"
         "*About the judge:* the embedded judge is the 135M teacher. Structured output makes it write a readable "
         "verdict nearly every time, but its verdicts are weak: check how often it gives the same verdict in both "
         "orders (the headline's position-bias line; about half means it follows the position), and set a "
         "stronger judge endpoint below before trusting a win rate.")
D = EvalConfig(run_id=0)  # the controls start at the config's own defaults (a run id is required, any will do)


def build(studio, jobs: EvalJobs | None = None, playground: Playground | None = None, loaders: list | None = None):
    """The Evaluate tab. `jobs` / `playground` may be shared objects owned by the studio; by default the
    tab makes its own (one per app, held by this tab's event handlers). `loaders` gets the (function, outputs)
    the page runs when it loads: the run lists, current at every load."""
    store = studio.store
    jobs = jobs or EvalJobs(store, studio.server, studio.students)
    playground = playground or Playground(studio.students)
    gr.Markdown(INTRO)
    run = _run_section(store)
    report = _report_section(store)
    _wire_run(store, jobs, run, report, loaders)
    _wire_report(store, report)
    _compare_section(store, report)
    _playground_section(studio, playground, run)
    _loop_section(store, jobs, report)
    return jobs


def _run_section(store) -> SimpleNamespace:
    ui = SimpleNamespace()
    with gr.Row():
        ui.training_run = gr.Dropdown(choices=training_choices(store), label="Training run (completed)",
                                      elem_id="eval-training-run")
        ui.student = gr.Textbox(value=D.student, label="Base student (empty: the training run's)",
                                elem_id="eval-student")
        ui.refresh = gr.Button("Refresh runs", size="sm", elem_id="eval-refresh")
    with gr.Row():
        ui.max_tokens = gr.Number(value=D.max_tokens, precision=0, label="Max tokens per answer")
        ui.temperature = gr.Number(value=D.temperature, label="Temperature (0 = greedy)")
        ui.limit = gr.Number(value=D.limit, precision=0, label="Limit eval tasks (0 = all)")
        ui.seed = gr.Number(value=D.seed, precision=0, label="Seed")
    with gr.Accordion("Teacher and judge (empty endpoints: the embedded teacher)", open=False):
        with gr.Row():
            ui.teacher_url = gr.Textbox(label="Teacher base URL")
            ui.teacher_model = gr.Textbox(label="Teacher model")
            ui.judge_url = gr.Textbox(label="Judge base URL (empty: the teacher)")
            ui.judge_model = gr.Textbox(label="Judge model")
        with gr.Row():
            ui.judge_vs_base = gr.Checkbox(value=D.judge_vs_base, label="Judge distilled vs base (2 calls a task)",
                                           elem_id="eval-judge-vs-base")
            ui.judge_vs_teacher = gr.Checkbox(value=D.judge_vs_teacher, elem_id="eval-judge-vs-teacher",
                                              label="Judge distilled vs teacher (2 calls a task)")
            ui.judge_scores = gr.Checkbox(value=D.judge_scores, label="Score each answer 1-10 (3 calls a task)",
                                          elem_id="eval-judge-scores")
            ui.structured = gr.Checkbox(value=D.structured_judge, label="Structured judge (JSON schema output)")
            ui.judge_max_tokens = gr.Number(value=D.judge_max_tokens, precision=0, label="Judge max tokens")
    with gr.Row():
        ui.start = gr.Button("Start evaluation", variant="primary", elem_id="eval-start")
        ui.stop = gr.Button("Stop", variant="stop", elem_id="eval-stop")
    ui.progress = gr.HTML(progress_html(0, 0, state="idle"), elem_id="eval-progress")
    ui.message = gr.Markdown(elem_id="eval-message")
    ui.seen, ui.timer = gr.State(None), gr.Timer(1.0)
    # the API's positional order: the original ten, then the judge switches
    ui.settings = [ui.training_run, ui.student, ui.max_tokens, ui.temperature, ui.limit, ui.seed, ui.teacher_url,
                   ui.teacher_model, ui.judge_url, ui.judge_model, ui.judge_vs_base, ui.judge_vs_teacher,
                   ui.judge_scores, ui.structured, ui.judge_max_tokens]
    return ui


def eval_config(run, stu, tokens, temp, lim, sd, t_url, t_model, j_url, j_model, vs_base=D.judge_vs_base,
                vs_teacher=D.judge_vs_teacher, scores=D.judge_scores, structured=D.structured_judge,
                judge_tokens=D.judge_max_tokens) -> EvalConfig:
    """The Start form's values as the EvalConfig the CLI builds too (the config checks each value)."""
    if not run:
        raise gr.Error("pick a completed training run first (train one on the Train tab)")
    judge = _teacher(j_url, j_model) if (j_url or j_model) else None
    return EvalConfig(student=stu, run_id=int(run), teacher=_teacher(t_url, t_model), judge=judge,
                      max_tokens=int(tokens), temperature=float(temp), limit=int(lim or 0), seed=int(sd or 0),
                      judge_vs_base=bool(vs_base), judge_vs_teacher=bool(vs_teacher), judge_scores=bool(scores),
                      structured_judge=bool(structured), judge_max_tokens=int(judge_tokens or D.judge_max_tokens))


def _wire_run(store, jobs, ui, report, loaders):
    @guarded
    def do_start(*values):
        return f"evaluating training run {values[0]} on {jobs.start(eval_config(*values))} eval tasks…"

    def poll(last):
        st = jobs.status()
        p = st.progress
        bar = progress_html(p.done if p else 0, p.total if p else 0,
                            f"· {p.stage} · {fmt_seconds(p.elapsed_s)}"
                            + (f" · ETA ~{fmt_seconds(p.eta_s)}" if st.state == "running" and p.eta_s else "")
                            if p else "", state=st.state)
        marker = (st.kind, st.started_at, st.state)
        if st.state not in ("completed", "failed", "stopped") or marker == last:
            return bar, gr.skip(), gr.skip(), last
        # A job just ended: say how, and offer its eval run in the report's dropdown (once per job).
        choices = eval_choices(store)
        new = str(st.result["eval_run_id"]) if st.kind == "eval" and st.state == "completed" else None
        return bar, _job_note(st), gr.update(choices=choices, **({"value": new} if new else {})), marker

    def do_stop():
        return "stopping after the current answer…" if jobs.stop() else "no evaluation is running"

    def do_refresh():
        evals = eval_choices(store)
        return (gr.update(choices=training_choices(store)), gr.update(choices=evals), gr.update(choices=evals))

    ui.start.click(do_start, ui.settings, [ui.message], api_name="start_eval")
    ui.stop.click(do_stop, None, [ui.message], api_name="stop_eval")
    ui.timer.tick(poll, [ui.seen], [ui.progress, ui.message, report.eval_run, ui.seen], show_progress="hidden",
                  api_name="eval_status")
    lists = [ui.training_run, report.eval_run, report.compare_pick]
    ui.refresh.click(do_refresh, None, lists, api_name="list_eval_runs")
    if loaders is not None:
        loaders.append((do_refresh, lists, "eval_run_lists"))


def _report_section(store) -> SimpleNamespace:
    ui = SimpleNamespace()
    gr.Markdown("### Report")
    with gr.Row():
        ui.eval_run = gr.Dropdown(choices=eval_choices(store), label="Eval run", elem_id="eval-run")
        ui.show = gr.Button("Show report", elem_id="eval-show")
    ui.headline = gr.Dataframe(label="Headline: base vs distilled vs teacher", interactive=False,
                               elem_id="eval-headline")
    with gr.Row():
        ui.skill_plot = gr.Plot(label="By skill", elem_id="eval-by-skill")
        ui.domain_plot = gr.Plot(label="By domain", elem_id="eval-by-domain")
    ui.viewer = gr.Dataframe(label="Eval tasks, where the student lost most first (click a row)", interactive=False,
                             elem_id="eval-viewer")
    with gr.Row():
        ui.task_id = gr.Number(label="Task", precision=0, elem_id="eval-task-id")
        ui.show_task = gr.Button("Show answers", size="sm", elem_id="eval-show-task")
    ui.task_info = gr.Markdown(elem_id="eval-task-info")
    with gr.Row():
        ui.answer_teacher = gr.Textbox(label="Teacher", lines=8, interactive=False, elem_id="eval-answer-teacher")
        ui.answer_distilled = gr.Textbox(label="Distilled student", lines=8, interactive=False,
                                         elem_id="eval-answer-distilled")
        ui.answer_base = gr.Textbox(label="Base student", lines=8, interactive=False, elem_id="eval-answer-base")
    gr.Markdown("### Compare eval runs")
    with gr.Row():
        ui.compare_pick = gr.Dropdown(choices=eval_choices(store), multiselect=True,
                                      label="Eval runs (two or more)", elem_id="eval-compare-pick")
        ui.compare_btn = gr.Button("Compare", elem_id="eval-compare")
    return ui


def _wire_report(store, ui):
    @guarded
    def do_report(rid):
        if not rid:
            raise gr.Error("pick an eval run")
        details = read_details(store, int(rid))
        metrics = store.run(int(rid))["metrics"]
        return (headline_frame(metrics), breakdown_figure(details, "skill"), breakdown_figure(details, "domain"),
                viewer_frame(details))

    @guarded
    def do_task(rid, tid):
        if not rid or tid is None:
            raise gr.Error("pick an eval run and a task")
        detail = next((d for d in read_details(store, int(rid)) if d["task_id"] == int(tid)), None)
        if detail is None:
            raise gr.Error(f"task {int(tid)} is not in eval run {rid}")
        a = detail["answers"]
        return task_markdown(detail), a["teacher"] or "", a["distilled"] or "", a["base"] or ""

    def on_select(frame, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return int(frame.iloc[row]["task_id"])

    shown = [ui.headline, ui.skill_plot, ui.domain_plot, ui.viewer]
    answers = [ui.task_info, ui.answer_teacher, ui.answer_distilled, ui.answer_base]
    ui.show.click(do_report, [ui.eval_run], shown, api_name="eval_report")
    ui.eval_run.input(do_report, [ui.eval_run], shown, api_visibility="private")
    ui.show_task.click(do_task, [ui.eval_run, ui.task_id], answers, api_name="eval_task_detail")
    ui.viewer.select(on_select, [ui.viewer], [ui.task_id], api_visibility="private").then(
        do_task, [ui.eval_run, ui.task_id], answers, api_visibility="private")


def _compare_section(store, report):
    table = gr.Dataframe(interactive=False, elem_id="eval-compare-table")
    plot = gr.Plot(elem_id="eval-compare-plot")

    @guarded
    def do_compare(ids):
        if not ids or len(ids) < 2:
            raise gr.Error("pick two or more eval runs to compare")
        rows = compare_runs(store, [int(i) for i in ids])
        return pd.DataFrame(rows), compare_figure(rows)

    report.compare_btn.click(do_compare, [report.compare_pick], [table, plot], api_name="compare_eval_runs")


def _playground_section(studio, playground, run):
    gr.Markdown("### Playground (nothing is stored)")
    prompt = gr.Textbox(label="Prompt", lines=3, elem_id="eval-prompt")
    ask = gr.Button("Ask all three", elem_id="eval-ask")
    with gr.Row():
        outputs = [gr.Textbox(label=name, lines=8, interactive=False)
                   for name in ("Base student", "Distilled student", "Teacher")]

    @guarded
    def do_ask(text, training_run, stu, tokens, temp, t_url, t_model):
        if not training_run:
            raise gr.Error("pick a training run: its adapter is the distilled student")
        teacher = _teacher(t_url, t_model)
        base, adapter = resolve_adapter(studio.store, EvalConfig(student=stu, run_id=int(training_run),
                                                                 teacher=teacher))
        url = studio.server.ensure_started() if teacher.embedded else ""
        out = playground.ask(text, base, adapter, teacher, url, int(tokens), float(temp))
        return out["base"], out["distilled"], out["teacher"]

    ask.click(do_ask, [prompt, run.training_run, run.student, run.max_tokens, run.temperature, run.teacher_url,
                       run.teacher_model], outputs, api_name="playground")


def _loop_section(store, jobs, report):
    gr.Markdown("### Close the loop")
    with gr.Row():
        per_failure = gr.Number(value=2, precision=0, label="New tasks per lost task")
        seeds_btn = gr.Button("Turn failures into seeds", elem_id="eval-seeds")
    with gr.Accordion("Checkable expectations", open=False):
        gr.Markdown("`exact:TEXT`, `contains:TEXT` or `regex:PATTERN`, compared case- and whitespace-insensitively; "
                    "empty clears. The eval reports the pass rate of tasks that carry one.")
        with gr.Row():
            expect_ids = gr.Textbox(label="Task ids (comma-separated)")
            expect_text = gr.Textbox(label="Expectation", placeholder="regex:\\b15:55\\b")
            expect_btn = gr.Button("Set expectation", elem_id="eval-set-expectation")
    message = gr.Markdown(elem_id="eval-loop-message")

    @guarded
    def do_seeds(rid, n):
        if not rid:
            raise gr.Error("pick the eval run whose failures to turn into seeds")
        lost = jobs.start_seeds(int(rid), FailureSeedConfig(per_failure=int(n or 2)))
        return f"asking the teacher for new practice tasks for the {lost} tasks the student lost…"

    @guarded
    def do_expect(ids_text, text):
        n = set_expectation(store, importing.parse_ids(ids_text, "task ids"), text)
        return f"expectation {'set' if (text or '').strip() else 'cleared'} on {n} tasks"

    seeds_btn.click(do_seeds, [report.eval_run, per_failure], [message], api_name="failures_to_seeds")
    expect_btn.click(do_expect, [expect_ids, expect_text], [message], api_name="set_expectation")


def _job_note(st) -> str:
    if st.state == "failed":
        return f"{'evaluation' if st.kind == 'eval' else 'seeding'} failed: {st.error}"
    if st.kind == "seeds":
        ids = st.result or []
        return (f"{len(ids)} new train tasks from the student's failures (source student_failure): "
                f"{', '.join(map(str, ids[:20]))}" + (" …" if len(ids) > 20 else "") if ids else
                "no new tasks: the teacher's suggestions were unreadable or too close to existing tasks")
    if st.state == "stopped":
        return "evaluation stopped; start it again to resume from what is stored"
    m = st.result
    judge = m.get("judge") or {}
    return (f"eval run {m['eval_run_id']} completed: distilled vs base win rate "
            f"{fmt_value(m['distilled_vs_base']['win_rate'], True)}, vs teacher "
            f"{fmt_value(m['distilled_vs_teacher']['win_rate'], True)}; the judge wrote "
            f"{fmt_value(judge.get('parse_rate'), True)} of its verdicts and scores readably")


__all__ = ["build", "training_choices", "eval_choices", "headline_frame", "viewer_frame", "breakdown_figure",
           "compare_figure", "task_markdown"]
