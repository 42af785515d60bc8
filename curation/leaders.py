"""Greedy leader clustering over a neighbour graph, compiled with numba.

The greedy pass is sequential (a row's fate depends on the better-ranked rows before it), so numpy cannot do it
in one call; in Python it cost 2.6 s per threshold at 100k rows with 12M pairs, and the dedupe panel's Preview
runs it at 51 thresholds (bench/RESULTS.md). Compiled, one pass over the adjacency is tens of milliseconds. The
adjacency is built once (a counting sort, also compiled) and every threshold masks it by similarity.
numba compiles for the CPU it runs on when first called (seconds) and caches the result in __pycache__ under that
CPU's name and features, so a cache written on another machine is never used (it compiles again).
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np


class Adjacency(NamedTuple):
    """Both directions of every pair, grouped by source row: row r's neighbours are
    dst[starts[r]:starts[r + 1]] (int64) with cosine sims[...] (float32); starts is int64[n + 1]."""

    starts: np.ndarray
    dst: np.ndarray
    sims: np.ndarray


@numba.njit(nogil=True, cache=True)
def group_by_row(n, rows):
    """(int64[n + 1] starts, int64[m] positions in `rows` grouped by row, each row's in input order): the entries
    of row r are order[starts[r]:starts[r + 1]]. A counting sort, O(n + m). curation.neighbours calls it from
    its own compiled code, whose numba cache does not notice a change here: change both files together."""
    starts = np.zeros(n + 1, np.int64)
    for r in rows:
        starts[r + 1] += 1
    for r in range(n):
        starts[r + 1] += starts[r]
    fill = starts[:-1].copy()
    order = np.empty(len(rows), np.int64)
    for e in range(len(rows)):
        order[fill[rows[e]]] = e
        fill[rows[e]] += 1
    return starts, order


def adjacency(n: int, pairs: np.ndarray, sims: np.ndarray | None = None) -> Adjacency:
    """The Adjacency of n rows linked by pairs int[m, 2] with similarities float32[m] (None: all 1)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    sims = np.ones(len(pairs), np.float32) if sims is None else np.asarray(sims, dtype=np.float32)
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    starts, order = group_by_row(n, src)
    return Adjacency(starts, dst[order], np.concatenate([sims, sims])[order])


@numba.njit(nogil=True, cache=True)
def _lead(order, starts, dst, sims, floor, label):
    """Fills label[n] (each row's leader); returns bool[n], True for the rows that lead (alone included)."""
    n = len(order)
    taken = np.zeros(n, np.bool_)
    leads = np.zeros(n, np.bool_)
    for r in order:
        if taken[r]:
            continue
        taken[r] = True
        leads[r] = True
        label[r] = r
        for e in range(starts[r], starts[r + 1]):
            j = dst[e]
            if sims[e] >= floor and not taken[j]:
                taken[j] = True
                label[j] = r
    return leads


def leader_labels_at(adj: Adjacency, rank: np.ndarray, floor: float) -> np.ndarray:
    """int64[n] label per row (its leader's index) over the pairs of `adj` with sim >= floor; rank int[n], 0 leads
    first (see curation.dedupe_groups.leader_labels for why leaders, not connected components)."""
    label = np.empty(len(rank), np.int64)
    _lead(np.argsort(np.asarray(rank), kind="stable").astype(np.int64), adj.starts, adj.dst, adj.sims,
          np.float32(floor), label)
    return label


@numba.njit(nogil=True, cache=True)
def _marked(order, starts, dst, sims, floors, total, kept):
    out = np.empty(len(floors), np.int64)
    label = np.empty(len(order), np.int64)
    for i in range(len(floors)):
        leads = _lead(order, starts, dst, sims, floors[i], label)
        out[i] = total - kept[leads].sum()
    return out


def marked_at(adj: Adjacency, rank: np.ndarray, floors: np.ndarray, total_weight: int,
              kept_weight: np.ndarray) -> np.ndarray:
    """int64[len(floors)]: for each similarity floor, the weight marked by leader clustering of the rows of `adj`
    (rank int[n]): `total_weight` less the `kept_weight` (int64[n]) of every row that leads a cluster or stands
    alone; a led row's whole weight is marked."""
    return _marked(np.argsort(np.asarray(rank), kind="stable").astype(np.int64), adj.starts, adj.dst, adj.sims,
                   np.asarray(floors, dtype=np.float32), np.int64(total_weight), np.asarray(kept_weight, np.int64))
