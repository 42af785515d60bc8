"""Evaluate tab: base vs distilled student vs teacher on the eval split — run, report, compare, play, close the loop.

Thin: every number comes from distill.evaluate / distill.eval_metrics; this module lays out, wires and plots.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr
import pandas as pd

from curation import io
from curation.teacher import TeacherConfig
from distill import eval_metrics as em
from distill.eval_jobs import EvalJobs
from distill.evaluate import (TRAINING_KINDS, EvalConfig, compare_runs, fmt_value, headline_rows, read_details,
                              resolve_adapter, set_expectation)
from distill.failures import FailureSeedConfig
from distill.playground import Playground
from ui.common import fmt_seconds, guarded, progress_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

VIEWER_COLUMNS = ["task_id", "skill", "domain", "deficit", "lost", "vs_teacher", "vs_base", "score_teacher",
                  "score_distilled", "score_base", "rouge_l_distilled", "instruction"]


# ---- choices and tables -------------------------------------------------------------------------

def training_choices(store) -> list[tuple[str, str]]:
    """(label, run id) of completed training runs, newest first."""
    out = []
    for r in store.runs():
        if r["kind"] in TRAINING_KINDS and r["status"] == "completed":
            m = r["metrics"] or {}
            out.append((f"run {r['id']} · {r['kind']} · {m.get('steps', '?')} steps · "
                        f"{str(r['started_at'])[:16]}", str(r["id"])))
    return out


def eval_choices(store) -> list[tuple[str, str]]:
    """(label, run id) of completed eval runs, newest first."""
    out = []
    for r in store.runs(kind="eval"):
        if r["status"] == "completed":
            m = r["metrics"]
            win = m.get("distilled_vs_base", {}).get("win_rate")
            out.append((f"eval {r['id']} · training run {m.get('training', {}).get('run_id') or '-'} · "
                        f"{m.get('tasks')} tasks · win vs base {_fmt(win)}", str(r["id"])))
    return out


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def headline_frame(metrics: dict) -> pd.DataFrame:
    return pd.DataFrame(headline_rows(metrics), columns=["measure", "base", "distilled", "change", "teacher"])


def viewer_frame(details: list[dict]) -> pd.DataFrame:
    """One row per eval task, the tasks the student lost most on top."""
    rows = [{"task_id": d["task_id"], "skill": d.get("skill"), "domain": d.get("domain"), "deficit": d["deficit"],
             "lost": d["lost"], "vs_teacher": d["vs_teacher"]["outcome"], "vs_base": d["vs_base"]["outcome"],
             "score_teacher": d["scores"]["teacher"], "score_distilled": d["scores"]["distilled"],
             "score_base": d["scores"]["base"], "rouge_l_distilled": d["rouge_l"]["distilled"],
             "instruction": d["instruction"][:120]} for d in details]
    frame = pd.DataFrame(rows, columns=VIEWER_COLUMNS)
    return frame.sort_values("deficit", ascending=False, kind="stable").reset_index(drop=True)


def task_markdown(detail: dict) -> str:
    """Verdicts, scores and checks of one eval task, as Markdown."""
    lines = [f"**Task {detail['task_id']}** ({detail.get('skill') or '-'} / {detail.get('domain') or '-'}): "
             f"{detail['instruction']}"]
    if detail.get("input"):
        lines.append(f"> {detail['input']}")
    for other in ("teacher", "base"):
        v = detail[f"vs_{other}"]
        how = "identical answers" if v.get("identical") else f"verdicts {v['verdicts']}"
        lines.append(f"- distilled vs {other}: **{v['outcome'] or 'no outcome'}** ({how})")
    for system in em.SYSTEMS:
        check = detail["pass"].get(system)
        lines.append(f"- {system}: score {_fmt(detail['scores'][system])}"
                     + (f", check {'passed' if check else 'failed'}" if check is not None else "")
                     + (f" — {detail['rationales'][system]}" if detail["rationales"].get(system) else ""))
    if detail.get("expected"):
        lines.append(f"- expectation: `{detail['expected']}`")
    return "\n".join(lines)


# ---- plots (matplotlib Figures without pyplot: no global state shared between sessions) ---------

def _nan(value) -> float:
    # A missing number is drawn as no bar (NaN), never as a bar of height 0.
    return float("nan") if value is None else float(value)


def _bars(ax, groups: list[dict], keys: list[str], labels: list[str], title: str, top: float | None) -> None:
    width = 0.8 / len(keys)
    x = list(range(len(groups)))
    for i, (key, label) in enumerate(zip(keys, labels)):
        ax.bar([p + (i - (len(keys) - 1) / 2) * width for p in x], [_nan(g[key]) for g in groups], width, label=label)
    ax.set_xticks(x, [g["group"] for g in groups], rotation=30, ha="right", fontsize=8)
    if top is not None:
        ax.set_ylim(0, top)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def breakdown_figure(details: list[dict], by: str) -> Figure:
    """Mean judge score, win rates and ROUGE-L per skill or domain (no bar where there is no number)."""
    groups = em.breakdown(details, by)
    from matplotlib.figure import Figure  # imported when drawn: it costs ~0.5 s at startup
    fig = Figure(figsize=(11, 3.4), tight_layout=True)
    _bars(fig.add_subplot(1, 3, 1), groups, [f"score_{s}" for s in em.SYSTEMS], list(em.SYSTEMS),
          f"mean judge score by {by}", 10)
    wins = fig.add_subplot(1, 3, 2)
    _bars(wins, groups, ["win_vs_base", "win_vs_teacher"], ["distilled vs base", "distilled vs teacher"],
          f"win rate by {by}", 1)
    wins.axhline(0.5, color="grey", lw=0.8, ls="--")
    _bars(fig.add_subplot(1, 3, 3), groups, [f"rouge_l_{s}" for s in em.STUDENTS], list(em.STUDENTS),
          f"ROUGE-L vs teacher by {by}", 1)
    return fig


def compare_figure(rows: list[dict]) -> Figure:
    """Judge scores and win rates of two or more eval runs side by side, labelled with their training rows."""
    groups = [{**r, "group": f"eval {r['eval_run']}: {r['training_rows'] or '?'} rows, "
                             f"{r['training_tokens'] or '?'} tokens"} for r in rows]
    from matplotlib.figure import Figure  # imported when drawn: it costs ~0.5 s at startup
    fig = Figure(figsize=(11, 3.4), tight_layout=True)
    _bars(fig.add_subplot(1, 3, 1), groups, ["score_base", "score_distilled", "score_teacher"],
          list(em.SYSTEMS), "mean judge score", 10)
    wins = fig.add_subplot(1, 3, 2)
    _bars(wins, groups, ["win_vs_base", "win_vs_teacher"], ["vs base", "vs teacher"], "distilled win rate", 1)
    wins.axhline(0.5, color="grey", lw=0.8, ls="--")
    _bars(fig.add_subplot(1, 3, 3), groups, ["nll_base", "nll_distilled"], list(em.STUDENTS),
          "NLL of teacher answers (nats/token)", None)
    return fig


# ---- the tab ------------------------------------------------------------------------------------

def _teacher(url: str, model: str) -> TeacherConfig:
    return TeacherConfig.from_env(base_url=url, model=model) if (url or model) else TeacherConfig()


def build(studio, jobs: EvalJobs | None = None, playground: Playground | None = None, loaders: list | None = None):
    """The Evaluate tab. `jobs` / `playground` may be shared objects owned by the studio; by default the
    tab makes its own (one per app, held by this tab's event handlers). `loaders` gets the (function, outputs)
    the page runs when it loads: the run lists, current at every load."""
    store = studio.store
    jobs = jobs or EvalJobs(store, studio.server, studio.students)
    playground = playground or Playground(studio.students)
    gr.Markdown("Evaluates a trained student on the **eval split** (tasks never trained on): the teacher, the base "
                "student and the distilled student answer; the judge compares distilled vs base and vs teacher in "
                "both orders (disagreeing orders count as a tie) and scores all three 1-10. Answers and verdicts "
                "are stored, so a stopped eval resumes. Every measure comes with a 95% bootstrap interval over the "
                "eval tasks, and the change from the base student is paired by task.\n\n"
                "*About the judge:* the embedded judge is the 135M teacher. Structured output makes it write a "
                "readable verdict nearly every time, but its verdicts are weak: check how often it gives the same "
                "verdict in both orders (the headline's position-bias line; about half means it follows the "
                "position), and set a stronger judge endpoint below before trusting a win rate.")
    with gr.Row():
        training_run = gr.Dropdown(choices=training_choices(store), label="Training run (completed)",
                                   elem_id="eval-training-run")
        student = gr.Textbox(label="Base student (empty: the training run's)", elem_id="eval-student")
        refresh = gr.Button("Refresh runs", size="sm", elem_id="eval-refresh")
    with gr.Row():
        max_tokens = gr.Number(value=256, precision=0, label="Max tokens per answer")
        temperature = gr.Number(value=0, label="Temperature (0 = greedy)")
        limit = gr.Number(value=0, precision=0, label="Limit eval tasks (0 = all)")
        seed = gr.Number(value=0, precision=0, label="Seed")
    with gr.Accordion("Teacher and judge endpoints (empty: the embedded teacher)", open=False):
        with gr.Row():
            teacher_url = gr.Textbox(label="Teacher base URL")
            teacher_model = gr.Textbox(label="Teacher model")
            judge_url = gr.Textbox(label="Judge base URL (empty: the teacher)")
            judge_model = gr.Textbox(label="Judge model")
    with gr.Row():
        start = gr.Button("Start evaluation", variant="primary", elem_id="eval-start")
        stop = gr.Button("Stop", variant="stop", elem_id="eval-stop")
    progress = gr.HTML(progress_html(0, 0, state="idle"), elem_id="eval-progress")
    message = gr.Markdown(elem_id="eval-message")
    seen = gr.State(None)
    timer = gr.Timer(1.0)

    gr.Markdown("### Report")
    with gr.Row():
        eval_run = gr.Dropdown(choices=eval_choices(store), label="Eval run", elem_id="eval-run")
        show = gr.Button("Show report", elem_id="eval-show")
    headline = gr.Dataframe(label="Headline: base vs distilled vs teacher", interactive=False, elem_id="eval-headline")
    with gr.Row():
        skill_plot = gr.Plot(label="By skill", elem_id="eval-by-skill")
        domain_plot = gr.Plot(label="By domain", elem_id="eval-by-domain")
    viewer = gr.Dataframe(label="Eval tasks, where the student lost most first (click a row)", interactive=False,
                          elem_id="eval-viewer")
    with gr.Row():
        task_id = gr.Number(label="Task", precision=0, elem_id="eval-task-id")
        show_task = gr.Button("Show answers", size="sm", elem_id="eval-show-task")
    task_info = gr.Markdown(elem_id="eval-task-info")
    with gr.Row():
        answer_teacher = gr.Textbox(label="Teacher", lines=8, interactive=False, elem_id="eval-answer-teacher")
        answer_distilled = gr.Textbox(label="Distilled student", lines=8, interactive=False,
                                      elem_id="eval-answer-distilled")
        answer_base = gr.Textbox(label="Base student", lines=8, interactive=False, elem_id="eval-answer-base")

    gr.Markdown("### Compare eval runs")
    with gr.Row():
        compare_pick = gr.Dropdown(choices=eval_choices(store), multiselect=True, label="Eval runs (two or more)",
                                   elem_id="eval-compare-pick")
        compare_btn = gr.Button("Compare", elem_id="eval-compare")
    compare_table = gr.Dataframe(interactive=False, elem_id="eval-compare-table")
    compare_plot = gr.Plot(elem_id="eval-compare-plot")

    gr.Markdown("### Playground (nothing is stored)")
    prompt = gr.Textbox(label="Prompt", lines=3, elem_id="eval-prompt")
    ask = gr.Button("Ask all three", elem_id="eval-ask")
    with gr.Row():
        play_base = gr.Textbox(label="Base student", lines=8, interactive=False)
        play_distilled = gr.Textbox(label="Distilled student", lines=8, interactive=False)
        play_teacher = gr.Textbox(label="Teacher", lines=8, interactive=False)

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
    loop_message = gr.Markdown(elem_id="eval-loop-message")

    # ---- handlers ----
    @guarded
    def do_start(run, stu, tokens, temp, lim, sd, t_url, t_model, j_url, j_model):
        if not run:
            raise gr.Error("pick a completed training run first (train one on the Train tab)")
        judge = _teacher(j_url, j_model) if (j_url or j_model) else None
        config = EvalConfig(student=stu, run_id=int(run), teacher=_teacher(t_url, t_model), judge=judge,
                            max_tokens=int(tokens), temperature=float(temp), limit=int(lim or 0), seed=int(sd or 0))
        n = jobs.start(config)
        return f"evaluating training run {run} on {n} eval tasks…"

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

    @guarded
    def do_compare(ids):
        if not ids or len(ids) < 2:
            raise gr.Error("pick two or more eval runs to compare")
        rows = compare_runs(store, [int(i) for i in ids])
        return pd.DataFrame(rows), compare_figure(rows)

    @guarded
    def do_ask(text, run, stu, tokens, temp, t_url, t_model):
        if not run:
            raise gr.Error("pick a training run: its adapter is the distilled student")
        teacher = _teacher(t_url, t_model)
        base, adapter = resolve_adapter(store, EvalConfig(student=stu, run_id=int(run), teacher=teacher))
        url = studio.server.ensure_started() if teacher.embedded else ""
        out = playground.ask(text, base, adapter, teacher, url, int(tokens), float(temp))
        return out["base"], out["distilled"], out["teacher"]

    @guarded
    def do_seeds(rid, n):
        if not rid:
            raise gr.Error("pick the eval run whose failures to turn into seeds")
        lost = jobs.start_seeds(int(rid), FailureSeedConfig(per_failure=int(n or 2)))
        return f"asking the teacher for new practice tasks for the {lost} tasks the student lost…"

    @guarded
    def do_expect(ids_text, text):
        n = set_expectation(store, io.parse_ids(ids_text, "task ids"), text)
        return f"expectation {'set' if (text or '').strip() else 'cleared'} on {n} tasks"

    settings = [training_run, student, max_tokens, temperature, limit, seed, teacher_url, teacher_model,
                judge_url, judge_model]
    start.click(do_start, settings, [message], api_name="start_eval")
    stop.click(do_stop, None, [message], api_name="stop_eval")
    timer.tick(poll, [seen], [progress, message, eval_run, seen], show_progress="hidden", api_name="eval_status")
    refresh.click(do_refresh, None, [training_run, eval_run, compare_pick], api_name="list_eval_runs")
    if loaders is not None:
        loaders.append((do_refresh, [training_run, eval_run, compare_pick], "eval_run_lists"))
    show.click(do_report, [eval_run], [headline, skill_plot, domain_plot, viewer], api_name="eval_report")
    eval_run.input(do_report, [eval_run], [headline, skill_plot, domain_plot, viewer], api_visibility="private")
    show_task.click(do_task, [eval_run, task_id], [task_info, answer_teacher, answer_distilled, answer_base],
                    api_name="eval_task_detail")
    viewer.select(on_select, [viewer], [task_id], api_visibility="private").then(
        do_task, [eval_run, task_id], [task_info, answer_teacher, answer_distilled, answer_base],
        api_visibility="private")
    compare_btn.click(do_compare, [compare_pick], [compare_table, compare_plot], api_name="compare_eval_runs")
    ask.click(do_ask, [prompt, training_run, student, max_tokens, temperature, teacher_url, teacher_model],
              [play_base, play_distilled, play_teacher], api_name="playground")
    seeds_btn.click(do_seeds, [eval_run, per_failure], [loop_message], api_name="failures_to_seeds")
    expect_btn.click(do_expect, [expect_ids, expect_text], [loop_message], api_name="set_expectation")
    return jobs


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
