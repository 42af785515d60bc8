"""Similar pairs among unit vectors: exact search for small inputs, an inverted-file search above.

Pure array code on float32[n, d] unit vectors, using faiss; `curation.dedupe` clusters the pairs.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

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
# Cosines of identical texts come out a hair under 1.0 in float32.
_SIMILARITY_SLACK = 1e-5


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
        return self.pairs[self.sims >= threshold - _SIMILARITY_SLACK]


def neighbour_graph(vectors: np.ndarray, min_similarity: float, k: int = NEIGHBOURS_PER_ROW) -> NeighbourGraph:
    """Pairs of rows of unit vectors float32[n, d] with cosine >= `min_similarity`, at most about `k`
    per row (the most similar). Exact below EXACT_SEARCH_MAX_ROWS rows, inverted-file search above."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    # A zero row is similar to nothing (cosine 0): it is left out of the search instead of crowding a cell.
    # The static+minilm model (curation.hybrid) gives one to every row without a static look-alike.
    live = np.flatnonzero(np.einsum("ij,ij->i", vectors, vectors) > 0)
    if len(live) < n:
        graph = neighbour_graph(vectors[live], min_similarity, k)
        return NeighbourGraph(n, live[graph.pairs].reshape(-1, 2), graph.sims)
    if n < 2:
        return NeighbourGraph(n, np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
    if n <= EXACT_SEARCH_MAX_ROWS:
        rows, cols, sims = _exact_neighbours(vectors, min_similarity, k)
    else:
        rows, cols, sims = _cell_neighbours(vectors, min_similarity, k)
    return _unique_pairs(n, rows, cols, sims)


def _exact_neighbours(vectors, min_similarity, k):
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, cols = index.search(vectors, min(k + 1, len(vectors)))
    rows = np.repeat(np.arange(len(vectors)), cols.shape[1])
    cols, sims = cols.ravel(), sims.ravel()
    keep = (cols >= 0) & (sims >= min_similarity - _SIMILARITY_SLACK)
    return rows[keep], cols[keep], sims[keep]


def _cell_neighbours(vectors, min_similarity, k):
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

        def scan(cell):
            members, queries = members_by_cell[cell], queries_by_cell[cell]
            sims = vectors[queries] @ vectors[members].T  # float32[|queries|, |members|]
            return _top_pairs(sims, queries, members, min_similarity, k)

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            found = list(pool.map(scan, [c for c in range(n_cells) if len(members_by_cell[c])]))
    return tuple(np.concatenate(parts) for parts in zip(*found))


def _rows_by_cell(cells: np.ndarray, n_cells: int, row_of=None) -> list[np.ndarray]:
    """For each cell, the rows assigned to it (`row_of` maps a position in `cells` to a row)."""
    order = np.argsort(cells, kind="stable")
    bounds = np.searchsorted(cells[order], np.arange(n_cells + 1))
    rows = row_of(order) if row_of else order
    return [rows[bounds[c]:bounds[c + 1]] for c in range(n_cells)]


def _top_pairs(sims, queries, members, min_similarity, k):
    """(query rows, member rows, sims) of the entries >= min_similarity, about k at most per query
    row (its k most similar; ties at the k-th value are all kept)."""
    hits = sims >= np.float32(min_similarity - _SIMILARITY_SLACK)
    crowded = np.flatnonzero(np.count_nonzero(hits, axis=1) > k)
    if len(crowded):  # few rows at useful thresholds: only they pay for finding their k-th value
        part = sims[crowded]
        kth = np.partition(part, part.shape[1] - k, axis=1)[:, part.shape[1] - k]
        hits[crowded] = part >= kth[:, None]
    rows, cols = np.nonzero(hits)
    return queries[rows], members[cols], sims[rows, cols]


def _unique_pairs(n, rows, cols, sims) -> NeighbourGraph:
    """Self pairs dropped, (i, j) and (j, i) merged into i < j."""
    keep = rows != cols
    lo, hi, sims = np.minimum(rows, cols)[keep], np.maximum(rows, cols)[keep], sims[keep]
    _, first = np.unique(lo.astype(np.int64) * n + hi, return_index=True)
    pairs = np.stack([lo[first], hi[first]], axis=1).astype(np.int64)
    return NeighbourGraph(n, pairs, np.minimum(sims[first], 1.0).astype(np.float32))
