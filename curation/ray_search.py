"""Near-duplicate search as one Ray Data job, partitioned by k-means cell (as SemDeDup and NeMo Curator do), exact.

The driver trains spherical k-means centroids on a sample and ships the vectors once to every node's object
store. The job reads the points' Parquet snapshot, gives each point its cell (nearest centroid), groups the
points by cell and, per cell, compares its members with every point that can be within the threshold of one
of them (its own and the neighbouring cells' points), then writes the pairs found as Parquet.

Why this is exact: for unit vectors, angles obey the triangle inequality. If x . y >= t then angle(x, y) <= a =
arccos(t); y lives in cell c whose members lie within r_c (the cell's radius) of its centroid mu_c, so
angle(x, mu_c) <= a + r_c. Every point within that angle of mu_c is a query of cell c, so every pair at or above
t is computed, whatever the centroids (they only decide how much is pruned). Each row then keeps its k most
similar partners, ties kept, as `neighbour_graph`'s exact search does; so the graph equals an exact search's
whenever no row has more than k partners at or above t.

What it costs: sentence vectors in 384 dimensions spread so that cells are wide, and the bound then prunes
little: the work is close to all pairs (n^2 d), split by cell over the cluster. That is the price of
exactness; an approximate search (each row in its few nearest cells only) would scale further but could
miss pairs the single-machine search finds, or find ones it misses.
"""
from __future__ import annotations

import math
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from curation.neighbours import NEIGHBOURS_PER_ROW, NeighbourGraph

# Cells: about sqrt(n) balances the per-cell work (queries x members) against the number of tasks.
CELL_FACTOR = 1.0
KMEANS_ITERATIONS = 10
KMEANS_SAMPLE_PER_CELL = 64
# The search runs a hair below the threshold, as neighbour_graph does: cosines of identical texts come out a
# hair under 1.0 in float32.
SIMILARITY_SLACK = 1e-5
# arccos near 1.0 is steep: a float32 rounding of a cosine moves its angle by up to ~1e-3 rad; the bound is
# widened by more than that (a wider bound costs work, never correctness).
ANGLE_SLACK = 5e-3
QUERY_CHUNK = 8192


def write_points(vectors: np.ndarray, path: str) -> None:
    """Parquet of float32[n, d] unit vectors: one row per point (point int64, vector list<float32>)."""
    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
    table = pa.table({"point": pa.array(np.arange(n, dtype=np.int64)),
                      "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel()))})
    pq.write_table(table, path)


def train_centroids(vectors: np.ndarray, seed: int = 1234) -> np.ndarray:
    """float32[c, d] unit centroids of spherical k-means on a sample of the rows (about sqrt(n) cells)."""
    import faiss

    n, dim = vectors.shape
    n_cells = max(1, min(n, int(CELL_FACTOR * math.sqrt(n))))
    kmeans = faiss.Kmeans(dim, n_cells, niter=KMEANS_ITERATIONS, spherical=True, seed=seed,
                          max_points_per_centroid=KMEANS_SAMPLE_PER_CELL, min_points_per_centroid=1)
    kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
    centroids = kmeans.centroids.astype(np.float32)
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


def _angles(cosines: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(cosines, -1.0, 1.0))


def assign_cells(batch: dict, centroids: np.ndarray) -> dict:
    """Ray Data batch {point, vector} -> {point, cell}: each point's nearest centroid."""
    vectors = np.stack(batch["vector"]).astype(np.float32, copy=False)
    cosines = vectors @ centroids.T  # float32[b, c]
    cell = cosines.argmax(axis=1)
    return {"point": batch["point"], "cell": cell.astype(np.int64)}


def top_pairs(sims: np.ndarray, rows: np.ndarray, members: np.ndarray, min_similarity: float, k: int,
              allowed: np.ndarray):
    """(query rows, member rows, sims) of the entries of float32[q, m] `sims` (rows int[q] x members int[m])
    >= min_similarity in the rows `allowed` bool[q], at most k per row (its k most similar; ties at the k-th
    value all kept), self pairs dropped."""
    hits = (sims >= np.float32(min_similarity - SIMILARITY_SLACK)) & allowed[:, None]
    hits &= rows[:, None] != members[None, :]
    crowded = np.flatnonzero(np.count_nonzero(hits, axis=1) > k)
    if len(crowded):
        part = np.where(hits[crowded], sims[crowded], -np.inf)
        kth = np.partition(part, part.shape[1] - k, axis=1)[:, part.shape[1] - k]
        hits[crowded] &= part >= kth[:, None]
    r, c = np.nonzero(hits)
    return rows[r], members[c], sims[r, c]


def search_cell(group: pd.DataFrame, shared: list, min_similarity: float, k: int) -> pd.DataFrame:
    """Ray Data group of one cell's points {point, cell} -> the pairs {query, member, sim} of its members with
    every point inside the cell's bound (module docstring). `shared` is [ObjectRef of (vectors float32[n, d],
    centroids float32[c, d])], read once per node from the object store, never copied."""
    import ray

    vectors, centroids = ray.get(shared[0])
    cell = int(group["cell"].iloc[0])
    members = np.sort(group["point"].to_numpy(dtype=np.int64))
    member_vectors = np.ascontiguousarray(vectors[members].T)  # float32[d, m]
    radius = float(_angles(centroids[cell] @ member_vectors).max())
    bound = math.acos(max(-1.0, min(1.0, min_similarity - SIMILARITY_SLACK))) + radius + ANGLE_SLACK
    found = []
    for start in range(0, len(vectors), QUERY_CHUNK):
        block = vectors[start:start + QUERY_CHUNK]
        allowed = _angles(block @ centroids[cell]) <= bound
        rows = np.arange(start, start + len(block), dtype=np.int64)
        # When most points are queries (high dimensions, wide cells) the whole block is one plain matrix product,
        # masked; only when the bound prunes most of it are the queries gathered first.
        if allowed.sum() < len(block) // 2:
            block, rows, allowed = block[allowed], rows[allowed], allowed[allowed]
        if len(rows):
            found.append(top_pairs(block @ member_vectors, rows, members, min_similarity, k, allowed))
    if not found:
        return pd.DataFrame({"query": np.zeros(0, np.int64), "member": np.zeros(0, np.int64),
                             "sim": np.zeros(0, np.float32)})
    query, member, sims = (np.concatenate(parts) for parts in zip(*found))
    return pd.DataFrame({"query": query, "member": member, "sim": sims.astype(np.float32)})


def cap_per_row(query: np.ndarray, member: np.ndarray, sims: np.ndarray, k: int):
    """The pairs with at most k per query row across all cells (its k most similar, ties kept)."""
    if not len(query):
        return query, member, sims
    order = np.lexsort((-sims, query))  # by query row, most similar first
    query, member, sims = query[order], member[order], sims[order]
    starts = np.flatnonzero(np.r_[True, query[1:] != query[:-1]])
    sizes = np.diff(np.r_[starts, len(query)])
    kth = np.where(sizes > k, sims[starts + np.minimum(sizes, k) - 1], -np.inf)
    keep = sims >= np.repeat(kth, sizes)
    return query[keep], member[keep], sims[keep]


def unique_pairs(n: int, query: np.ndarray, member: np.ndarray, sims: np.ndarray) -> NeighbourGraph:
    """(i, j) and (j, i) merged into one pair i < j with the larger of their two float32 cosines."""
    lo, hi = np.minimum(query, member), np.maximum(query, member)
    key = lo.astype(np.int64) * n + hi
    order = np.lexsort((-sims, key))
    key, sims = key[order], sims[order]
    first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)
    pairs = np.stack([key[first] // n, key[first] % n], axis=1).astype(np.int64)
    return NeighbourGraph(n, pairs, np.minimum(sims[first], 1.0).astype(np.float32))


def ray_neighbour_graph(vectors: np.ndarray, min_similarity: float, snapshot_dir: str,
                        k: int = NEIGHBOURS_PER_ROW) -> NeighbourGraph:
    """`neighbour_graph` on the connected Ray cluster (ray.init first): the pairs of rows of unit vectors
    float32[n, d] with cosine >= min_similarity, at most about k per row, found exactly (module docstring).
    Writes points.parquet and pairs/ under a new folder in `snapshot_dir` (a path every node can reach)."""
    import ray

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    # A zero row is similar to nothing (cosine 0), as in neighbour_graph: left out rather than widening a cell.
    live = np.flatnonzero(np.einsum("ij,ij->i", vectors, vectors) > 0)
    if len(live) < n:
        graph = ray_neighbour_graph(vectors[live], min_similarity, snapshot_dir, k)
        return NeighbourGraph(n, live[graph.pairs].reshape(-1, 2), graph.sims)
    if n < 2:
        return NeighbourGraph(n, np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
    run = f"{snapshot_dir}/search-{uuid.uuid4().hex[:8]}"
    make_dir(run)
    write_points(vectors, f"{run}/points.parquet")
    centroids = train_centroids(vectors)
    # The search reads every vector by row number: one copy per node in the object store, shared by its tasks.
    shared = [ray.put((vectors, centroids))]
    (ray.data.read_parquet(f"{run}/points.parquet")
     .map_batches(assign_cells, fn_kwargs={"centroids": centroids}, batch_format="numpy")
     .groupby("cell")
     .map_groups(search_cell, fn_kwargs={"shared": shared, "min_similarity": float(min_similarity), "k": int(k)},
                 batch_format="pandas")
     .write_parquet(f"{run}/pairs"))
    found = pq.read_table(f"{run}/pairs") if _has_parquet(f"{run}/pairs") else None
    if found is None or found.num_rows == 0:
        return NeighbourGraph(n, np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
    query, member, sims = (found.column(c).to_numpy() for c in ("query", "member", "sim"))
    return unique_pairs(n, *cap_per_row(query, member, sims.astype(np.float32), k))


def make_dir(path: str) -> None:
    """Create a local folder or a folder on a pyarrow filesystem URI (s3://..., gs://...)."""
    fs, inner = pa.fs.FileSystem.from_uri(path) if "://" in path else (pa.fs.LocalFileSystem(), path)
    fs.create_dir(inner, recursive=True)


def _has_parquet(path: str) -> bool:
    fs, inner = pa.fs.FileSystem.from_uri(path) if "://" in path else (pa.fs.LocalFileSystem(), path)
    info = fs.get_file_info(pa.fs.FileSelector(inner, allow_not_found=True))
    return any(i.path.endswith(".parquet") for i in info)
