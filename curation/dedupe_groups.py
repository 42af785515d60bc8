"""Duplicate grouping as pure functions on texts and arrays: exact, normalised and semantic (cosine over
unit vectors) groups, greedy leader clustering, and which row each cluster keeps. No workspace here:
curation/dedupe.py plans and applies a dedupe over one with these.
"""
from __future__ import annotations

import functools
import re
import sys
import unicodedata

import numpy as np
import pandas as pd

from curation.leaders import adjacency, leader_labels_at, marked_at
from curation.neighbours import SIMILARITY_SLACK, neighbour_graph


@functools.cache
def _punctuation_table() -> dict[int, None]:
    # Every Unicode punctuation code point (category P*), built once: str.translate is then a single
    # C pass per text, which matters at 100k responses.
    return {c: None for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith("P")}


_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Text as compared by the 'normalised' method: NFKC, case-folded, punctuation removed,
    whitespace runs as one space, trimmed. "  Hello,  WORLD!" -> "hello world"."""
    text = unicodedata.normalize("NFKC", text or "").casefold().translate(_punctuation_table())
    return _SPACES.sub(" ", text).strip()


def group_arrays(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows int64[m], starts int64[k + 1]): the rows sharing a label (int[n]) in groups of 2 or more, group g being
    rows[starts[g]:starts[g + 1]], ascending; largest group first, ties by smallest row."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    first = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]) if len(labels) else np.zeros(0, int)
    sizes = np.diff(np.r_[first, len(labels)])
    multi = sizes > 1
    first, sizes = first[multi], sizes[multi]
    ranked = np.lexsort((order[first], -sizes))
    first, sizes = first[ranked], sizes[ranked]
    starts = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    rows = order[np.repeat(first - starts[:-1], sizes) + np.arange(starts[-1])]
    return rows.astype(np.int64), starts


def groups_from_labels(labels: np.ndarray) -> list[list[int]]:
    """Rows sharing a label (int[n]), as lists of row indices ascending; only groups of 2 or more,
    largest first, ties by smallest index."""
    rows, starts = group_arrays(labels)
    return [rows[a:b].tolist() for a, b in zip(starts[:-1].tolist(), starts[1:].tolist())]


def key_labels(keys: list[str]) -> np.ndarray:
    """int64[n]: rows with equal keys share a label."""
    return pd.factorize(pd.Series(keys, dtype=object))[0].astype(np.int64)


def exact_groups(texts: list[str]) -> list[list[int]]:
    """Indices of identical texts, grouped (see `groups_from_labels` for the order)."""
    return groups_from_labels(key_labels(list(texts)))


def normalised_groups(texts: list[str]) -> list[list[int]]:
    """Indices of texts equal after `normalise` (case, whitespace, punctuation), grouped."""
    return groups_from_labels(key_labels([normalise(t) for t in texts]))


def leader_labels(n: int, pairs: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Greedy clustering of n rows linked by int[m, 2] pairs: int64[n] label per row (its leader's index).

    Rows are visited best `rank` (int[n], 0 = keep first) first; a row no cluster has taken yet leads a
    new one and takes every untaken row it is paired with. So each member is a near duplicate of its
    cluster's leader, the row the cluster keeps. Joining pairs transitively instead (union-find) chains
    a ~ b ~ c into one cluster and would mark c although c is not close to the kept a.
    """
    return leader_labels_at(adjacency(n, pairs), rank, 0.0)


def _points(texts: list[str], rank: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Identical texts as one point: (int64[p] a row of each point, int64[n] each row's point, int64[p] each
    point's rank: its best copy's)."""
    _, first, point = np.unique(key_labels(list(texts)), return_index=True, return_inverse=True)
    rank = np.arange(len(point)) if rank is None else np.asarray(rank, dtype=np.int64)
    point_rank = np.full(len(first), np.iinfo(np.int64).max)
    np.minimum.at(point_rank, point, rank)
    return first, point, point_rank


def semantic_labels(texts: list[str], vectors: np.ndarray, thresholds: list[float],
                    rank: np.ndarray | None = None, search=neighbour_graph) -> dict[float, np.ndarray]:
    """For each threshold, int64[n] cluster labels of n texts with unit vectors float32[n, d]: identical
    texts always together; the others join the best-ranked row (rank int[n], default: row order) they
    have cosine >= threshold with (`leader_labels`). One neighbour search serves all thresholds (it
    runs at the lowest); `search(vectors, min_similarity) -> NeighbourGraph` is that search (on a Ray
    cluster: curation.ray_search)."""
    # Identical texts are one point: fewer rows to search, and no block of copies can crowd out a
    # row's real neighbours. A point ranks as its best copy.
    first, point, point_rank = _points(texts, rank)
    graph = search(np.asarray(vectors)[first], min(thresholds))
    adj = adjacency(graph.n, graph.pairs, graph.sims)
    return {t: leader_labels_at(adj, point_rank, t - SIMILARITY_SLACK)[point] for t in thresholds}


def semantic_marked(texts: list[str], vectors: np.ndarray, thresholds: list[float], rank: np.ndarray,
                    weights: np.ndarray, search=neighbour_graph) -> dict[float, int]:
    """For each threshold, the weight (weights int[n], e.g. generations per row) `semantic_labels` would mark:
    every row but the best-ranked (rank int[n]) of each cluster. Equal to `marked_count` over those labels, at a
    compiled pass per threshold instead of a label array and a sort: the dedupe panel's 51 slider stops."""
    first, point, point_rank = _points(texts, rank)
    weights = np.asarray(weights, dtype=np.int64)
    best = np.lexsort((np.asarray(rank), point))  # rows by point, best copy first
    starts = np.flatnonzero(np.r_[True, point[best][1:] != point[best][:-1]])
    kept_weight = weights[best[starts]]  # the weight each point keeps when it leads: its best copy's
    graph = search(np.asarray(vectors)[first], min(thresholds))
    adj = adjacency(graph.n, graph.pairs, graph.sims)
    counts = marked_at(adj, point_rank, [t - SIMILARITY_SLACK for t in thresholds], int(weights.sum()), kept_weight)
    return dict(zip(thresholds, counts.tolist()))


def near_duplicate_groups(vectors: np.ndarray, threshold: float, rank: np.ndarray | None = None) -> list[list[int]]:
    """Rows of unit vectors float32[n, d] grouped around a leader they have cosine >= threshold with
    (`leader_labels`; rank int[n], default: row order), as in `groups_from_labels`. Uses a faiss index,
    never all pairs in Python."""
    rank = np.arange(len(vectors)) if rank is None else rank
    graph = neighbour_graph(vectors, threshold)
    return groups_from_labels(leader_labels_at(adjacency(graph.n, graph.pairs, graph.sims), rank,
                                               threshold - SIMILARITY_SLACK))


# ---- representatives ------------------------------------------------------------------------------

def preference_rank(rows: pd.DataFrame, rule: str) -> tuple[np.ndarray, list[str]]:
    """int64[n]: 0 for the row a cluster should keep first, ties broken by earliest; plus notes for
    the user (e.g. that the judge rule fell back to earliest). `rows` has created_at, id, text, score."""
    n = len(rows)
    earliest = np.empty(n, np.int64)
    earliest[np.lexsort((rows["id"].to_numpy(), rows["created_at"].to_numpy()))] = np.arange(n)
    notes = []
    if rule == "longest":
        order = np.lexsort((earliest, -rows["text"].str.len().to_numpy()))
    elif rule == "judge_score" and rows["score"].notna().any():
        score = rows["score"].to_numpy(dtype=float)
        order = np.lexsort((earliest, -np.nan_to_num(score, nan=-np.inf)))
    else:
        if rule == "judge_score":
            notes.append("no judge scores yet: each cluster keeps its earliest row")
        order = np.argsort(earliest)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank, notes


def _kept_rows(labels: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct labels ascending, the row each one keeps: its lowest rank)."""
    if len(labels) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((rank, labels))
    sorted_labels = labels[order]
    first = np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]
    return sorted_labels[first], order[first]


def representatives(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """int64[n]: for each row, the row its cluster keeps (the lowest `rank` int[n] among rows sharing
    its label in labels int[n])."""
    distinct, kept = _kept_rows(labels, rank)
    return kept[np.searchsorted(distinct, labels)]


def marked_count(labels: np.ndarray, rank: np.ndarray, weights: np.ndarray) -> int:
    """How many generations would be marked: the weights int[n] (generations per row) of every row
    its cluster does not keep."""
    _, kept = _kept_rows(labels, rank)
    return int(weights.sum() - weights[kept].sum())
