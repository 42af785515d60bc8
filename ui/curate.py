"""Curate tab: dedupe (ui.curate_dedupe), filters with preview, ranking with "approve the top K", stats.

Thin: the filters, scores and figures come from curation.filters / rank / stats; this module builds
their configs from the form, shows the results and keeps each section's last batch for Undo.
"""
from __future__ import annotations

from functools import partial

import gradio as gr
import numpy as np
import pandas as pd

from curation.embed import embedder_key
from curation.errors import StudioError
from curation.filter_kinds import (DEFAULT_REFUSALS, JudgeScoreFilter, LanguageFilter, LengthFilter, RefusalFilter,
                                   RegexFilter)
from curation.filters import apply_filter, preview_filter
from curation.grounding import UnanswerableFilter, UnfaithfulFilter
from curation.leakage import LeakageFilter
from curation.tool_filters import InvalidCallsFilter
from curation.rank import (RankConfig, approve_top, diversity_for_rows, ifd_pairs, pending_rows, rank_rows)
from curation.stats import stats_figures, workspace_stats
from curation.store import ReviewFilter
from models.resolve import BUNDLED_STUDENT
from models.scoring import score_in_child
from ui import curate_dedupe
from ui.common import guarded

FILTER_KINDS = ["length", "regex", "refusal", "judge_score", "language", "leakage", "unanswerable", "unfaithful",
                "invalid_calls"]
SAMPLE_COLUMNS = ["id", "status", "judge", "instruction", "response"]
RANK_COLUMNS = ["rank", "id", "score", "judge", "diversity", "difficulty", "instruction", "response"]
RANK_SHOWN = 200
STAT_PLOTS = ["status", "skill", "domain", "teacher", "judge_scores", "response_chars", "response_tokens"]


def build(studio):
    with gr.Tabs(elem_id="curate-tabs"):
        with gr.Tab("Dedupe", id="curate-dedupe"):
            curate_dedupe.build(studio)
        with gr.Tab("Filters", id="curate-filters"):
            _filters(studio)
        with gr.Tab("Ranking", id="curate-ranking"):
            _ranking(studio)
        with gr.Tab("Stats", id="curate-stats") as stats_tab:
            refresh, outputs = _stats(studio)
    stats_tab.select(refresh, None, outputs, api_visibility="private")


def _scope(search: str) -> ReviewFilter:
    return ReviewFilter(search=search or "")


# ---- filters ----------------------------------------------------------------------------------
def make_filter(store, kind, unit, min_length, max_length, pattern, mode, regex_target, ignore_case, phrases,
                empty, truncated, threshold, allowed, min_chars, n, containment, leakage_target, min_faithfulness=6):
    """The filter the form describes; each config checks its own values."""
    if kind == "length":
        # An empty box reads 0 in the browser: 0 means no bound there, so a minimum alone works.
        return LengthFilter(unit=unit, min_length=min_length or None, max_length=max_length or None)
    if kind == "regex":
        return RegexFilter(pattern=pattern or "", mode=mode, target=regex_target, ignore_case=bool(ignore_case))
    if kind == "refusal":
        return RefusalFilter(phrases=tuple((phrases or "").splitlines()), empty=bool(empty), truncated=bool(truncated))
    if kind == "judge_score":
        return JudgeScoreFilter(threshold=float(threshold))
    if kind == "language":
        return LanguageFilter(allowed=tuple(a for a in (allowed or "").split(",") if a.strip()),
                              min_chars=int(min_chars))
    if kind == "leakage":
        return LeakageFilter.from_store(store, n=int(n), threshold=float(containment), target=leakage_target)
    if kind == "unanswerable":
        return UnanswerableFilter()
    if kind == "unfaithful":
        return UnfaithfulFilter(min_score=float(min_faithfulness))
    if kind == "invalid_calls":
        return InvalidCallsFilter()
    raise StudioError(f"choose a filter: {', '.join(FILTER_KINDS)} (got {kind!r})")


def sample_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([[r["id"], r["status"], r.get("judge_score"), (r.get("instruction") or "")[:100],
                          (r.get("response") or "")[:240]] for r in rows], columns=SAMPLE_COLUMNS)


def _filter_settings():
    """The settings of every filter, each group shown only when its filter is chosen."""
    kind = gr.Dropdown(FILTER_KINDS, value="length", label="Filter", elem_id="filter-kind")
    with gr.Row(visible=True) as length_box:
        unit = gr.Radio(["tokens", "chars"], value="tokens", label="Unit", elem_id="filter-unit")
        min_length = gr.Number(label="Remove shorter than", precision=0, minimum=0, elem_id="filter-min")
        max_length = gr.Number(label="Remove longer than", precision=0, minimum=0, elem_id="filter-max")
    with gr.Row(visible=False) as regex_box:
        pattern = gr.Textbox("", label="Regular expression", elem_id="filter-pattern")
        mode = gr.Radio(["exclude", "include"], value="exclude", label="Remove rows that (exclude: match; "
                        "include: do not match)", elem_id="filter-mode")
        regex_target = gr.Radio(["response", "prompt", "both"], value="response", label="Look in")
        ignore_case = gr.Checkbox(value=True, label="Ignore case")
    with gr.Row(visible=False) as refusal_box:
        phrases = gr.Textbox("\n".join(DEFAULT_REFUSALS), lines=4, label="Refusal phrases (one a line)")
        empty = gr.Checkbox(value=True, label="Empty responses")
        truncated = gr.Checkbox(value=True, label="Cut off at max tokens")
    with gr.Row(visible=False) as judge_box:
        threshold = gr.Number(5, label="Remove mean judge score below", elem_id="filter-threshold")
    with gr.Row(visible=False) as language_box:
        allowed = gr.Textbox("english", label="Keep languages (comma-separated English names)")
        min_chars = gr.Number(20, precision=0, minimum=0, label="Keep responses shorter than (chars)")
    with gr.Row(visible=False) as leakage_box:
        n = gr.Number(8, precision=0, minimum=1, maximum=64, label="Word n-gram size")
        containment = gr.Number(0.5, minimum=0.01, maximum=1, label="Remove at this share of an eval task's n-grams")
        leakage_target = gr.Radio(["prompt", "response", "both"], value="both", label="Look in")
    with gr.Row(visible=False) as unanswerable_box:
        gr.Markdown("Grounded answers (Generate → documents) whose question the chunk cannot answer: the "
                    "faithfulness judge said so, or the answer says the context does not say.")
    with gr.Row(visible=False) as unfaithful_box:
        min_faithfulness = gr.Number(6, minimum=1, maximum=10, label="Remove faithfulness scores below (1-10); "
                                     "answers judged unfaithful go too", elem_id="filter-min-faithfulness")
    with gr.Row(visible=False) as invalid_calls_box:
        gr.Markdown("Tool-use answers (Generate → tools) holding a call that breaks its function's JSON Schema, or "
                    "names no such function; the answer as kept is checked, so a call fixed in Review stays.")
    boxes = [length_box, regex_box, refusal_box, judge_box, language_box, leakage_box, unanswerable_box,
             unfaithful_box, invalid_calls_box]
    kind.change(lambda k: [gr.update(visible=k == name) for name in FILTER_KINDS], [kind], boxes,
                api_visibility="private")
    return [kind, unit, min_length, max_length, pattern, mode, regex_target, ignore_case, phrases, empty, truncated,
            threshold, allowed, min_chars, n, containment, leakage_target, min_faithfulness]


@guarded
def filter_preview(store, kind, unit, min_length, max_length, pattern, mode, regex_target, ignore_case, phrases,
                   empty, truncated, threshold, allowed, min_chars, n, containment, leakage_target, min_faithfulness,
                   search):
    flt = make_filter(store, kind, unit, min_length, max_length, pattern, mode, regex_target, ignore_case, phrases,
                      empty, truncated, threshold, allowed, min_chars, n, containment, leakage_target, min_faithfulness)
    p = preview_filter(store, flt, _scope(search))
    notes = "".join(f" · {k.replace('_', ' ')}: {v}" for k, v in p.notes.items())
    return (f"**{p.name}** removes **{p.removed_count} of {p.total}** rows: {p.description}{notes}",
            sample_frame(p.sample))


@guarded
def filter_apply(store, kind, unit, min_length, max_length, pattern, mode, regex_target, ignore_case, phrases,
                 empty, truncated, threshold, allowed, min_chars, n, containment, leakage_target, min_faithfulness,
                 search, stack):
    flt = make_filter(store, kind, unit, min_length, max_length, pattern, mode, regex_target, ignore_case, phrases,
                      empty, truncated, threshold, allowed, min_chars, n, containment, leakage_target, min_faithfulness)
    batch = apply_filter(store, flt, _scope(search))
    if batch is None:
        return f"{flt.reason}: nothing to reject", stack
    return (f"rejected {store.label_batch_count(batch)} rows with reason `{flt.reason}` (batch {batch})",
            stack + [batch])


@guarded
def undo_last(store, stack: list, what: str):
    """Undo this tab's last batch of a section (`what` names it in the message when there is none)."""
    if not stack:
        raise gr.Error(f"nothing to undo: {what} in this tab")
    n = store.undo_batch(stack[-1])
    return f"undid batch {stack[-1]}: {n} rows back to their earlier status", stack[:-1]


def _filters(studio):
    gr.Markdown("A filter marks the rows it removes **rejected** with reason `filter:<name>`; preview first. "
                "It looks at successful generations that are pending or approved.")
    settings = _filter_settings()
    search = gr.Textbox("", label="Only rows matching (keyword; empty: all)", elem_id="filter-search")
    with gr.Row():
        preview_btn = gr.Button("Preview", variant="primary", elem_id="filter-preview")
        apply_btn = gr.Button("Apply (reject these rows)", variant="stop", elem_id="filter-apply")
        undo_btn = gr.Button("Undo last", elem_id="filter-undo")
    summary = gr.Markdown(elem_id="filter-summary")
    sample = gr.Dataframe(pd.DataFrame(columns=SAMPLE_COLUMNS), interactive=False, wrap=True, max_height=400,
                          label="Rows it would remove (first 20)", elem_id="filter-sample",
                          column_widths=["7%", "9%", "7%", "30%", "47%"])
    batches = gr.State([])  # this tab's applied filters, for Undo last
    store = studio.store
    preview_btn.click(partial(filter_preview, store), [*settings, search], [summary, sample],
                      api_name="filter_preview")
    apply_btn.click(partial(filter_apply, store), [*settings, search, batches], [summary, batches],
                    api_name="filter_apply")
    undo_btn.click(partial(undo_last, store, what="no filter was applied"), [batches], [summary, batches],
                   api_name="filter_undo")


# ---- ranking ----------------------------------------------------------------------------------
def student_ifd(studio, spec: str, rows: list[dict], progress) -> np.ndarray:
    """IFD of each row under the student (the bundled one by default), computed in a child process (it needs
    the student's losses of given text, which no inference endpoint gives): slow, so only when asked."""
    progress(0, desc="loading the student (child process)")
    items = [{"instruction": i, "response": r} for i, r in ifd_pairs(rows)]
    values = score_in_child("ifd", items, spec or BUNDLED_STUDENT, studio.store.workspace / "models",
                            on_progress=lambda done, total: progress((done, total), desc="scoring difficulty",
                                                                     unit="rows"))
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def ranking_frame(ranking, rows: list[dict]) -> pd.DataFrame:
    """The best RANK_SHOWN rows: the combined score, then each score as computed (blank: none)."""
    by_id = {r["id"]: r for r in rows}
    missing = np.full(len(ranking.ids), np.nan)
    scores = [ranking.score, *(ranking.components.get(k, missing) for k in ("judge", "diversity", "difficulty"))]
    data = []
    for i, gid in enumerate(ranking.ids[:RANK_SHOWN]):
        row = by_id[int(gid)]
        values = [round(float(s[i]), 3) if np.isfinite(s[i]) else None for s in scores]
        data.append([i + 1, int(gid), *values, (row.get("instruction") or "")[:100], (row.get("response") or "")[:200]])
    return pd.DataFrame(data, columns=RANK_COLUMNS)


@guarded
def rank(studio, judge, diversity, difficulty, embedder, student, search, progress=gr.Progress()):
    config = RankConfig(judge=float(judge or 0), diversity=float(diversity or 0), difficulty=float(difficulty or 0))
    rows = pending_rows(studio.store, _scope(search))
    if not rows:
        raise StudioError("no pending rows to rank" + (f" matching {search!r}" if search else ""))
    div = diversity_for_rows(studio.store, rows, embedder_key(embedder)) if config.diversity > 0 else None
    ifd = student_ifd(studio, student, rows, progress) if config.difficulty > 0 else None
    ranking = rank_rows(rows, config, div, ifd)
    scored = int(np.isfinite(ranking.score).sum())
    text = (f"ranked {len(rows)} pending rows; {scored} have a score "
            "(unscored rows come last and are never approved)")
    if div is not None and np.isnan(div).any():
        text += f" · {int(np.isnan(div).sum())} rows have no response embedding: compute them in Dedupe"
    return text, ranking_frame(ranking, rows), ranking


@guarded
def approve_ranked(store, how, amount, ranking, stack):
    if ranking is None:
        raise gr.Error("rank first")
    if how == "top K rows":
        batch = approve_top(store, ranking, k=int(amount or 0))
    else:
        batch = approve_top(store, ranking, fraction=float(amount or 0) / 100)
    if batch is None:
        return "no scored rows to approve", None, stack
    # The ranking is dropped: its rows are no longer all pending, and diversity has moved.
    return (f"approved {store.label_batch_count(batch)} rows (batch {batch}); rank again for the rest",
            None, stack + [batch])


def _ranking(studio):
    gr.Markdown("Ranks the **pending** rows by a weighted mix of min-max scaled scores: judge score, diversity "
                "(distance to the nearest approved row; needs response embeddings, see Dedupe) and difficulty (IFD "
                "under the student: loads it and scores every row, slow on CPU).")
    with gr.Row():
        w_judge = gr.Number(1.0, minimum=0, label="Judge weight", elem_id="rank-judge")
        w_div = gr.Number(0.0, minimum=0, label="Diversity weight", elem_id="rank-diversity")
        w_diff = gr.Number(0.0, minimum=0, label="Difficulty weight (IFD)", elem_id="rank-difficulty")
    with gr.Row():
        embedder = gr.Textbox("", label="Embedding model for diversity (empty: bundled)", elem_id="rank-embedder")
        student = gr.Textbox(BUNDLED_STUDENT, label="Student for difficulty", elem_id="rank-student")
        search = gr.Textbox("", label="Only rows matching (keyword)", elem_id="rank-search")
    rank_btn = gr.Button("Rank", variant="primary", elem_id="rank-run")
    summary = gr.Markdown(elem_id="rank-summary")
    table = gr.Dataframe(pd.DataFrame(columns=RANK_COLUMNS), interactive=False, wrap=True, max_height=420,
                         label=f"Ranked rows (best {RANK_SHOWN})", elem_id="rank-table",
                         column_widths=["5%", "6%", "7%", "7%", "9%", "9%", "24%", "33%"])
    with gr.Row():
        how = gr.Radio(["top K rows", "top % of scored rows"], value="top K rows", label="Approve", elem_id="rank-how")
        amount = gr.Number(10, minimum=0, label="K or %", elem_id="rank-amount")
        approve_btn = gr.Button("Approve the top", variant="primary", elem_id="rank-approve")
        undo_btn = gr.Button("Undo", elem_id="rank-undo")
    message = gr.Markdown(elem_id="rank-message")
    ranking_state, batches = gr.State(None), gr.State([])
    rank_btn.click(partial(rank, studio), [w_judge, w_div, w_diff, embedder, student, search],
                   [summary, table, ranking_state], api_name="rank")
    approve_btn.click(partial(approve_ranked, studio.store), [how, amount, ranking_state, batches],
                      [message, ranking_state, batches], api_name="approve_top")
    undo_btn.click(partial(undo_last, studio.store, what="no rows were approved from a ranking"), [batches],
                   [message, batches], api_name="rank_undo")


# ---- stats ------------------------------------------------------------------------------------
def stats_markdown(stats: dict) -> str:
    counts = " · ".join(f"{k} {v}" for k, v in stats["by_status"].items())
    return (f"**{stats['tasks']} tasks · {stats['generations']} generations** ({counts}) · "
            f"{stats['prompt_tokens']} prompt + {stats['completion_tokens']} completion tokens")


def _stats(studio):
    refresh_btn = gr.Button("Refresh", elem_id="stats-refresh")
    summary = gr.Markdown(elem_id="stats-summary")
    plots = []
    for start in range(0, len(STAT_PLOTS), 2):
        with gr.Row():
            plots += [gr.Plot(label=name.replace("_", " "), elem_id=f"stats-{name}", format="png")
                      for name in STAT_PLOTS[start:start + 2]]

    def refresh():
        stats = workspace_stats(studio.store)
        figures = stats_figures(stats)
        return [stats_markdown(stats), *(figures[name] for name in STAT_PLOTS)]

    refresh_btn.click(refresh, None, [summary, *plots], api_name="stats")
    return refresh, [summary, *plots]
