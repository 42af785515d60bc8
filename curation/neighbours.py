"""Similar pairs among unit vectors: exact search for small inputs, an inverted-file search above.

Pure array code on float32[n, d] unit vectors, using faiss; `curation.dedupe` clusters the pairs.
"""
from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numba
import numpy as np
from threadpoolctl import threadpool_limits

from curation.leaders import group_by_row

# Neighbours kept per row: enough to join any cluster through its members, and it bounds memory
# when a low threshold makes whole topics "similar".
NEIGHBOURS_PER_ROW = 32
# Up to this many rows every pair is compared exactly; above it, an inverted-file search (k-means
# cells, each row compared with the rows of its nearest cells) keeps 100k rows in seconds.
EXACT_SEARCH_MAX_ROWS = 5_000
CELLS_PROBED = 24  # 8 lost ~1.5% of pairs at 100k rows; 24 finds as many as semhash at ~1.8x our time
# faiss's own IndexIVFFlat + range_search over the same cells and probes finds the same pairs, 4-5x slower on
# 2 cores (bench/neighbours.py), so this search stays ours.
CELL_FACTOR = 2.0
KMEANS_ITERATIONS = 4
KMEANS_SAMPLE_PER_CELL = 32
# Cells scanned between two trims of their pairs to k per row: bounds the memory of a low threshold
# (a million rows at 0.5 needed more than 24 GiB untrimmed).
CELLS_PER_TRIM = 128
# Cosines of identical texts come out a hair under 1.0 in float32.
SIMILARITY_SLACK = 1e-5


@dataclass(frozen=True)
class NeighbourGraph:
    """Similar pairs among n rows: pairs int64[m, 2] (i < j, unique) with cosine sims float32[m].

    Built once at the lowest threshold of interest; any higher threshold is a mask over it.
    """

    n: int
    pairs: np.ndarray
    sims: np.ndarray

    def pairs_at(self, threshold: float) -> np.ndarray:
        """int64[m', 2]: the pairs with sim >= threshold."""
        return self.pairs[self.sims >= threshold - SIMILARITY_SLACK]

    def at_least(self, threshold: float) -> "NeighbourGraph":
        """The graph of the pairs with sim >= threshold: what a search at `threshold` finds, since each row keeps
        its most similar rows whatever the threshold."""
        keep = self.sims >= threshold - SIMILARITY_SLACK
        return NeighbourGraph(self.n, self.pairs[keep], self.sims[keep])


class ReusedSearch:
    """`neighbour_graph` that keeps its last graph: asked again for the same vectors at the same or a higher
    threshold, it cuts that graph instead of searching. The dedupe panel's Preview searches once at the slider's
    lowest stop for its counts; the clusters at whatever stop the slider is let go then come from that graph in
    a second, not from a new search (minutes at a million rows). One per browser session (a gr.State); the
    graph it holds is about 20 bytes a pair."""

    def __init__(self):
        self.searches = 0
        """Searches actually run (a test reads it)."""
        self.on_progress = None
        """`on_progress(cells searched, cells)` of the search in progress; the UI sets its own bar before a call."""
        self._key: tuple | None = None
        self._floor = 1.0
        self._graph: NeighbourGraph | None = None
        self._lock = threading.Lock()  # the slider and Preview of one session may ask at once

    def __call__(self, vectors: np.ndarray, min_similarity: float) -> NeighbourGraph:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        key = (vectors.shape, hashlib.blake2b(vectors.data, digest_size=16).digest())
        with self._lock:
            return self._search(vectors, min_similarity, key)

    def _search(self, vectors, min_similarity, key) -> NeighbourGraph:
        if self._graph is None or key != self._key or min_similarity < self._floor:
            self._graph, self._key, self._floor = None, None, 1.0  # free the old graph before the new search
            self._graph = neighbour_graph(vectors, min_similarity, on_progress=self.on_progress)
            self._key, self._floor = key, float(min_similarity)
            self.searches += 1
        return self._graph.at_least(min_similarity)


def neighbour_graph(vectors: np.ndarray, min_similarity: float, k: int = NEIGHBOURS_PER_ROW,
                    on_progress=None) -> NeighbourGraph:
    """Pairs of rows of unit vectors float32[n, d] with cosine >= `min_similarity`, at most about `k`
    per row (the most similar). Exact below EXACT_SEARCH_MAX_ROWS rows, inverted-file search above, which
    calls `on_progress(cells searched, cells)` as it goes (minutes at a million rows)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    # A zero row is similar to nothing (cosine 0): it is left out of the search instead of crowding a cell.
    # The static+minilm model (curation.hybrid) gives one to every row without a static look-alike.
    live = np.flatnonzero(np.einsum("ij,ij->i", vectors, vectors) > 0)
    if len(live) < n:
        graph = neighbour_graph(vectors[live], min_similarity, k, on_progress)
        return NeighbourGraph(n, live[graph.pairs].reshape(-1, 2), graph.sims)
    if n < 2:
        return NeighbourGraph(n, np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
    if n <= EXACT_SEARCH_MAX_ROWS:
        rows, cols, sims = _exact_neighbours(vectors, min_similarity, k)
    else:
        rows, cols, sims = _cell_neighbours(vectors, min_similarity, k, on_progress)
    return _unique_pairs(n, rows, cols, sims)


def _exact_neighbours(vectors, min_similarity, k):
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, cols = index.search(vectors, min(k + 1, len(vectors)))
    rows = np.repeat(np.arange(len(vectors)), cols.shape[1])
    cols, sims = cols.ravel(), sims.ravel()
    keep = (cols >= 0) & (sims >= min_similarity - SIMILARITY_SLACK)
    return rows[keep], cols[keep], sims[keep]


def _cell_neighbours(vectors, min_similarity, k, on_progress=None):
    """Inverted-file search done as one matrix product per cell: every row lives in its nearest
    k-means cell and is compared with the rows living in its CELLS_PROBED nearest cells.

    About 2*sqrt(n) cells balances finding the cells against scanning them. Near-duplicates sit in
    the same or an adjacent cell, so probing a few cells finds almost all of them. The centroids only
    need to spread the rows out, so k-means runs few iterations on a small sample.
    """
    n, dim = vectors.shape
    n_cells = max(1, int(CELL_FACTOR * np.sqrt(n)))
    # The matrices here are small (hundreds of rows a side): one BLAS thread per product is several
    # times faster than threads waking each other up, and the cells are spread over the cores.
    with threadpool_limits(limits=1, user_api="blas"):
        kmeans = faiss.Kmeans(dim, n_cells, niter=KMEANS_ITERATIONS, spherical=True, seed=1234,
                              max_points_per_centroid=KMEANS_SAMPLE_PER_CELL, min_points_per_centroid=1)
        kmeans.train(vectors)
        _, probes = kmeans.index.search(vectors, min(CELLS_PROBED, n_cells))  # int64[n, p], nearest first
        members_by_cell = _rows_by_cell(probes[:, 0], n_cells)
        queries_by_cell = _rows_by_cell(probes.ravel(), n_cells, row_of=lambda flat: flat // probes.shape[1])

        # A row that already holds k neighbours needs no entry below its k-th: the scans skip those.
        kth = np.full(n, -np.inf, np.float32)

        def scan(cell):
            members, queries = members_by_cell[cell], queries_by_cell[cell]
            sims = vectors[queries] @ vectors[members].T  # float32[|queries|, |members|]
            return _top_pairs(sims, queries, members, min_similarity, k, kth[queries])

        cells = [c for c in range(n_cells) if len(members_by_cell[c])]
        kept = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for at in range(0, len(cells), CELLS_PER_TRIM):
                found = list(pool.map(scan, cells[at:at + CELLS_PER_TRIM]))
                rows, cols, sims = (np.concatenate([mine, *parts]) for mine, *parts in zip(kept, *found))
                keep, kth[:] = _top_k(n, rows, sims, k)
                kept = rows[keep], cols[keep], sims[keep]
                if on_progress:
                    on_progress(min(at + CELLS_PER_TRIM, len(cells)), len(cells))
    return kept


@numba.njit(nogil=True, cache=True)
def _top_k(n, rows, sims, k):
    """(bool mask of the entries to keep, float32[n] each row's k-th similarity kept, -inf below k entries).

    Each row keeps only its k most similar entries (ties: the earlier), so a row has about k neighbours in all,
    not k per cell: at a low threshold a million rows would otherwise find billions of pairs. A row's k most
    similar at a lower threshold, cut at a higher one, are its k most similar there, so a graph built for the
    lowest threshold serves every higher one exactly (NeighbourGraph.at_least). Compiled: numpy's lexsort over
    a hundred million entries took minutes per cut at a million rows."""
    starts, by_row = group_by_row(n, rows)
    keep = np.ones(len(rows), np.bool_)
    kth = np.full(n, -np.inf, np.float32)
    for r in range(n):
        if starts[r + 1] - starts[r] >= k:
            entries = by_row[starts[r]:starts[r + 1]]
            ranked = np.argsort(-sims[entries], kind="mergesort")  # stable: ties by position
            for j in range(k, len(entries)):
                keep[entries[ranked[j]]] = False
            kth[r] = sims[entries[ranked[k - 1]]]
    return keep, kth


def _rows_by_cell(cells: np.ndarray, n_cells: int, row_of=None) -> list[np.ndarray]:
    """For each cell, the rows assigned to it (`row_of` maps a position in `cells` to a row)."""
    order = np.argsort(cells, kind="stable")
    bounds = np.searchsorted(cells[order], np.arange(n_cells + 1))
    rows = row_of(order) if row_of else order
    return [rows[bounds[c]:bounds[c + 1]] for c in range(n_cells)]


def _top_pairs(sims, queries, members, min_similarity, k, row_floor):
    """(query rows, member rows, sims) of the entries >= min_similarity and above the query row's floor
    (float32[|queries|]), a row never paired with itself, about k at most per query row (its k most similar;
    ties at the k-th value are all kept)."""
    return _select(sims, queries, members, np.float32(min_similarity - SIMILARITY_SLACK), row_floor, k)


@numba.njit(nogil=True, cache=True)
def _select(sims, queries, members, floor, row_floor, k):
    # Compiled: two passes over the product instead of numpy's seven (masks, counts, a partition of the crowded
    # rows, nonzero, gather), which cost twice the product itself.
    n_queries, n_members = sims.shape
    cut = np.full(n_queries, floor, np.float32)
    counts = np.zeros(n_queries, np.int64)
    found = np.empty(n_members, np.float32)
    for i in range(n_queries):
        c = 0
        for j in range(n_members):
            s = sims[i, j]
            if s >= floor and s > row_floor[i] and queries[i] != members[j]:
                found[c] = s
                c += 1
        if c > k:
            cut[i] = np.partition(found[:c], c - k)[c - k]  # the k-th largest
            c = int(np.sum(found[:c] >= cut[i]))
        counts[i] = c
    rows = np.empty(counts.sum(), np.int64)
    cols = np.empty(len(rows), np.int64)
    kept = np.empty(len(rows), np.float32)
    at = 0
    for i in range(n_queries):
        if counts[i] == 0:
            continue
        for j in range(n_members):
            s = sims[i, j]
            if s >= cut[i] and s > row_floor[i] and queries[i] != members[j]:
                rows[at], cols[at], kept[at] = queries[i], members[j], s
                at += 1
    return rows, cols, kept


def _unique_pairs(n, rows, cols, sims) -> NeighbourGraph:
    """Self pairs dropped, (i, j) and (j, i) merged into i < j."""
    keep = rows != cols
    lo, hi, sims = np.minimum(rows, cols)[keep], np.maximum(rows, cols)[keep], sims[keep]
    _, first = np.unique(lo.astype(np.int64) * n + hi, return_index=True)
    pairs = np.stack([lo[first], hi[first]], axis=1).astype(np.int64)
    return NeighbourGraph(n, pairs, np.minimum(sims[first], 1.0).astype(np.float32))
