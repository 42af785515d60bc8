"""Workspace statistics: counts by status, skill, domain and teacher; histograms of judge scores and
response lengths; and matplotlib figures of them for the UI.

`workspace_stats` returns plain JSON-able data and is a superset of `Store.stats()` (same keys kept), so
`python -m curation stats --json` can print it. `stats_figures` only draws; it never reads the store.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from curation.store import REVIEW_STATUSES, Store

if TYPE_CHECKING:
    from matplotlib.figure import Figure

UNTAGGED = "(none)"
LENGTH_BINS = 20
STATUS_COLORS = {"pending": "#9aa5b1", "approved": "#2f9e44", "rejected": "#e03131", "failed": "#f08c00"}


def histogram(values: np.ndarray, edges: np.ndarray) -> dict:
    """{"edges": [k+1 floats], "counts": [k ints], "above": values beyond the last edge}; NaN ignored."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    counts, _ = np.histogram(values, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "above": int((values > edges[-1]).sum())}

def judge_edges(scores: np.ndarray) -> np.ndarray:
    """Unit bins 0..10 for the usual 1-10 scale; ten equal bins over the range otherwise."""
    scores = scores[np.isfinite(scores)]
    if scores.size == 0 or (scores.min() >= 0 and scores.max() <= 10):
        return np.arange(0.0, 11.0)
    return np.histogram_bin_edges(scores, bins=10)


def length_edges(lengths: np.ndarray, bins: int = LENGTH_BINS) -> np.ndarray:
    """Equal bins from 0 to the 99th percentile (a few huge responses would flatten the rest; the count
    beyond the last edge is reported as "above")."""
    lengths = lengths[np.isfinite(lengths)]
    top = max(float(np.ceil(np.percentile(lengths, 99))), 1.0) if lengths.size else 1.0
    width = np.ceil(top / bins)  # whole-number bins: lengths are counts
    return np.arange(0.0, np.ceil(top / width) * width + 1, width)


def status_table(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rows (key, status, n) -> {key: {status: n for every review status}}; a NULL key is "(none)"."""
    table: dict[str, dict[str, int]] = {}
    for key, status, n in frame[["key", "status", "n"]].itertuples(index=False):
        key = UNTAGGED if key is None or pd.isna(key) else str(key)
        table.setdefault(key, dict.fromkeys(REVIEW_STATUSES, 0))[status] = int(n)
    return table


def workspace_stats(store: Store) -> dict:
    """Store.stats() plus:

    by_skill / by_domain: {name: {"tasks": n, "pending": n, "approved": n, "rejected": n, "failed": n}}
    by_teacher: {model: {status: n}}
    judge_scores: histogram of mean judge scores of successful generations, plus "unjudged": n
    response_chars, response_tokens: histograms of successful responses (tokens skip edited ones)
    """
    stats = store.stats()
    for column in ("skill", "domain"):
        table = status_table(store.status_counts_by(column))
        for key, n in store.task_counts_by(column)[["key", "n"]].itertuples(index=False):
            key = UNTAGGED if key is None or pd.isna(key) else str(key)
            table.setdefault(key, dict.fromkeys(REVIEW_STATUSES, 0))["tasks"] = int(n)
        stats[f"by_{column}"] = {k: {"tasks": v.pop("tasks", 0), **v} for k, v in sorted(table.items())}
    stats["by_teacher"] = status_table(store.status_counts_by("teacher"))
    measures = store.response_measures()
    scores = measures["judge_score"].to_numpy(dtype=np.float64, na_value=np.nan)
    stats["judge_scores"] = {**histogram(scores, judge_edges(scores)), "unjudged": int(np.isnan(scores).sum())}
    for unit in ("chars", "tokens"):
        lengths = measures[unit].to_numpy(dtype=np.float64, na_value=np.nan)
        stats[f"response_{unit}"] = histogram(lengths, length_edges(lengths))
    return stats


# ---- figures ----------------------------------------------------------------------------------
def stats_figures(stats: dict) -> dict[str, Figure]:
    """Figures keyed status, skill, domain, teacher, judge_scores, response_chars, response_tokens."""
    figures = {"status": _bar_figure("Generations by status", stats["by_status"])}
    for key in ("skill", "domain", "teacher"):
        figures[key] = _stacked_figure(f"Generations by {key}", stats[f"by_{key}"])
    figures["judge_scores"] = _histogram_figure(
        f"Mean judge score ({stats['judge_scores']['unjudged']} unjudged)", stats["judge_scores"], "score")
    figures["response_chars"] = _histogram_figure("Response length", stats["response_chars"], "characters")
    figures["response_tokens"] = _histogram_figure("Response length", stats["response_tokens"], "tokens")
    return figures


def _new_axes(title: str):
    # Figure() rather than pyplot: no global figure registry, nothing to close, safe across UI threads.
    from matplotlib.figure import Figure  # imported when drawn: it costs ~0.5 s at startup
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    return fig, ax


def _bar_figure(title: str, counts: dict[str, int]) -> Figure:
    fig, ax = _new_axes(title)
    names = list(counts)
    ax.bar(names, [counts[n] for n in names], color=[STATUS_COLORS.get(n, "#4c6ef5") for n in names])
    ax.set_ylabel("generations")
    return fig


def _stacked_figure(title: str, table: dict[str, dict[str, int]]) -> Figure:
    fig, ax = _new_axes(title)
    names = list(table)
    left = np.zeros(len(names))
    for status in REVIEW_STATUSES:
        values = np.array([table[n].get(status, 0) for n in names], dtype=float)
        ax.barh(names, values, left=left, label=status, color=STATUS_COLORS[status])
        left += values
    if names:
        ax.legend(loc="lower right", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no generations yet", ha="center", va="center", transform=ax.transAxes)
    ax.invert_yaxis()
    ax.set_xlabel("generations")
    return fig


def _histogram_figure(title: str, hist: dict, unit: str) -> Figure:
    fig, ax = _new_axes(title)
    edges = np.asarray(hist["edges"])
    ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", color="#4c6ef5", edgecolor="white")
    label = unit + (f" ({hist['above']} beyond {edges[-1]:g})" if hist.get("above") else "")
    ax.set_xlabel(label)
    ax.set_ylabel("generations")
    return fig
