"""The Evaluate tab's views: run choices, the headline and viewer tables, a task's answers, and the plots
(matplotlib Figures without pyplot: no global state shared between sessions). Pure: data in, views out."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from evaluation import metrics as em
from evaluation.plan import TRAINING_KINDS

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
             "score_teacher": d["scores"].get("teacher"), "score_distilled": d["scores"].get("distilled"),
             "score_base": d["scores"].get("base"), "rouge_l_distilled": d["rouge_l"]["distilled"],
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
        lines.append(f"- {system}: score {_fmt(detail['scores'].get(system))}"
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


# ---- the headline's cells: values with their intervals, rounded to what matters -------------------

def headline_rows(metrics: dict) -> list[dict]:
    """The report's headline table: one row per measure, a column per system and the change from the base
    student (paired by task); numbers rounded to what matters, with 95% bootstrap intervals in brackets."""
    def cell(system, key, percent=False):
        iv = ((metrics.get("intervals") or {}).get(system) or {}).get(key)
        return fmt_interval(iv, percent) if iv else fmt_value((metrics.get(system) or {}).get(key), percent)

    def change(key, percent=False, relative=False):
        iv = ((metrics.get("intervals") or {}).get("change") or {}).get(key)
        return fmt_interval(iv, percent or relative, signed=True) if iv else None

    intervals_ = metrics.get("intervals") or {}
    wb, wt = metrics.get("distilled_vs_base") or {}, metrics.get("distilled_vs_teacher") or {}
    judge, training = metrics.get("judge") or {}, metrics.get("training") or {}

    def win(iv, counts):
        text = fmt_interval(iv, True) if iv else fmt_value(counts.get("win_rate"), True)
        return f"{text} · {counts.get('wins', 0)} won, {counts.get('ties', 0)} tied, {counts.get('losses', 0)} lost"

    rows = [{"measure": "ends its answer by itself (within max tokens)", **{s: cell(s, "stop_rate", True)
                                                                          for s in em.SYSTEMS},
             "change": change("stop_rate", percent=True)},
            {"measure": "ROUGE-L vs the teacher's answer", **{s: cell(s, "rouge_l") for s in em.STUDENTS},
             "change": change("rouge_l")},
            {"measure": "NLL of the teacher's answer (nats/token; lower is better)",
             **{s: cell(s, "nll") for s in em.STUDENTS}, "change": change("nll", relative=True)},
            {"measure": "pass rate of checks", **{s: cell(s, "pass_rate", True) for s in em.SYSTEMS},
             "change": change("pass_rate", percent=True)},
            {"measure": "judge: win rate of distilled vs base (both orders; a tie counts half)",
             "distilled": win(intervals_.get("win_vs_base"), wb)},
            {"measure": "judge: win rate of distilled vs teacher",
             "distilled": win(intervals_.get("win_vs_teacher"), wt)},
            {"measure": "judge: mean score (1-10)", **{s: fmt_value(cell_raw(metrics, s, "judge_score"), digits=1)
                                                      for s in em.SYSTEMS}},
            {"measure": "judge: verdicts and scores it wrote readably",
             "distilled": (f"{fmt_value(judge.get('parse_rate'), True)} ({judge.get('readable')} of "
                           f"{judge.get('asked')})") if judge else None},
            {"measure": "judge: same verdict in both orders (position bias check)",
             "distilled": (f"{fmt_value(judge.get('order_agreement'), True)} of {judge.get('pairs')} pairs"
                           if judge else None)},
            {"measure": "training rows · tokens", "distilled": (f"{training.get('rows')} · {training.get('tokens')}"
                                                                if training else None)}]
    return [{"base": None, "distilled": None, "teacher": None, "change": None, **row} for row in rows]


def cell_raw(metrics: dict, system: str, key: str):
    return (metrics.get(system) or {}).get(key)


def fmt_value(value, percent: bool = False, signed: bool = False, digits: int = 3) -> str | None:
    """A measure rounded to what a reader can use: 62% or 0.413 (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    sign = "+" if signed and value > 0 else ""
    return f"{sign}{value * 100:.0f}%" if percent else f"{sign}{value:.{digits}f}"


def fmt_interval(iv: dict, percent: bool = False, signed: bool = False) -> str | None:
    """'62% [48%, 75%]' from {value, low, high}; just the value when there is no interval."""
    value = fmt_value(iv.get("value"), percent, signed)
    if value is None or iv.get("low") is None:
        return value
    return f"{value} [{fmt_value(iv['low'], percent, signed)}, {fmt_value(iv['high'], percent, signed)}]"
