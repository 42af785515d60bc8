"""Near-duplicate search on a Ray cluster, partitioned by k-means cell (as SemDeDup and NeMo Curator do).

Two modes, an execution choice (the same DedupeConfig either way):

- "approximate" (the default): `neighbour_graph`'s own inverted-file search, spread over the cluster. The driver
  trains the k-means centroids exactly as `neighbour_graph` does (same cells, sample, iterations and seed) and
  gives every row its CELLS_PROBED nearest cells; each row is compared with the rows living in those cells. So
  for the same vectors it finds the pairs `neighbour_graph` finds; below EXACT_SEARCH_MAX_ROWS rows, where
  `neighbour_graph` compares every pair, so does this mode (it runs the exact search).
- "exact": every pair at or above the threshold, whatever the centroids. For unit vectors angles obey the
  triangle inequality: if x . y >= t then angle(x, y) <= a = arccos(t); y lives in cell c whose members lie
  within r_c (the cell's radius) of its centroid mu_c, so angle(x, mu_c) <= a + r_c, and every point within
  that angle of mu_c is a query of cell c. Sentence vectors in 384 dimensions spread so that cells are wide and
  the bound prunes little: the work is close to all pairs (n^2 d), the price of exactness.

Where the data lives: the driver writes the vectors once to a Parquet snapshot sorted by cell, one row group
per cell, and keeps only the centroids, each row's cells and the pairs found. Each Ray task takes a group of
cells, reads its cells' members and the cells that can hold their queries from the snapshot (never from the
driver), and returns its pairs. Each row then keeps its k most similar partners, ties kept; the single-machine
search keeps the earlier of a tie instead, so the two can differ only where a row has more than k partners.
"""
from __future__ import annotations

import math
import uuid

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from curation import neighbours
from curation.neighbours import NEIGHBOURS_PER_ROW, NeighbourGraph

SEARCH_MODES = ("approximate", "exact")
# Exact mode's cells: about sqrt(n) balances the per-cell work (queries x members) against the number of cells.
EXACT_CELL_FACTOR = 1.0
EXACT_KMEANS_ITERATIONS = 10
EXACT_KMEANS_SAMPLE_PER_CELL = 64
# The search runs a hair below the threshold, as neighbour_graph does: cosines of identical texts come out a
# hair under 1.0 in float32.
SIMILARITY_SLACK = 1e-5
# arccos near 1.0 is steep: a float32 rounding of a cosine moves its angle by up to ~1e-3 rad; the bound is
# widened by more than that (a wider bound costs work, never correctness).
ANGLE_SLACK = 5e-3
# Cells per snapshot file (one row group each), cells per Ray task, and the most query rows a task holds at once.
CELLS_PER_FILE = 256
CELLS_PER_TASK = 16
CHUNK_ROWS = 16_384
LINK_ROWS = 1_000_000
TASKS_PER_TRIM = 32


def _fs(path: str):
    """(pyarrow filesystem, path inside it) of a local path or a URI (s3://..., gs://...)."""
    return pa.fs.FileSystem.from_uri(path) if "://" in path else (pa.fs.LocalFileSystem(), path)


def make_dir(path: str) -> None:
    """Create a local folder or a folder on a pyarrow filesystem URI."""
    fs, inner = _fs(path)
    fs.create_dir(inner, recursive=True)


def remove_dir(path: str) -> None:
    """Delete a local folder or a folder on a pyarrow filesystem URI, and everything in it."""
    fs, inner = _fs(path)
    if fs.get_file_info(inner).type != pa.fs.FileType.NotFound:
        fs.delete_dir(inner)


def train_cells(vectors: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroids float32[c, d], probes int32[n, p], cosines float32[n, p]): spherical k-means cells and each row's
    p nearest cells, nearest first (its own cell is probes[:, 0]). "approximate": trained as `neighbour_graph`
    trains them, p = CELLS_PROBED; "exact": about sqrt(n) cells, p = 1."""
    n, dim = vectors.shape
    if mode == "approximate":
        n_cells, iterations, sample = (max(1, int(neighbours.CELL_FACTOR * np.sqrt(n))), neighbours.KMEANS_ITERATIONS,
                                       neighbours.KMEANS_SAMPLE_PER_CELL)
        probed = min(neighbours.CELLS_PROBED, n_cells)
    else:
        n_cells = max(1, min(n, int(EXACT_CELL_FACTOR * math.sqrt(n))))
        iterations, sample, probed = EXACT_KMEANS_ITERATIONS, EXACT_KMEANS_SAMPLE_PER_CELL, 1
    # As in neighbour_graph: one BLAS thread, so that the same vectors give the same centroids bit for bit.
    with threadpool_limits(limits=1, user_api="blas"):
        kmeans = faiss.Kmeans(dim, n_cells, niter=iterations, spherical=True, seed=1234,
                              max_points_per_centroid=sample, min_points_per_centroid=1)
        kmeans.train(vectors)
        cosines, probes = kmeans.index.search(vectors, probed)
    return kmeans.centroids.astype(np.float32), probes.astype(np.int32), cosines


def write_cells(vectors: np.ndarray, probes: np.ndarray, n_cells: int, folder: str) -> tuple[list[str], np.ndarray]:
    """The rows sorted by cell as Parquet under `folder`: one row group per non-empty cell, CELLS_PER_FILE cells a
    file, columns point int64, vector fixed_size_list<float32>[d], probes fixed_size_list<int32>[p]. Returns the
    file paths and int64[n_cells, 3] (file, row group, rows) of each cell (-1, -1, 0 for an empty one)."""
    order = np.argsort(probes[:, 0], kind="stable")
    bounds = np.searchsorted(probes[:, 0][order], np.arange(n_cells + 1))
    located = np.tile(np.array([-1, -1, 0], np.int64), (n_cells, 1))
    schema = pa.schema([("point", pa.int64()), ("vector", pa.list_(pa.float32(), vectors.shape[1])),
                        ("probes", pa.list_(pa.int32(), probes.shape[1]))])
    fs, inner = _fs(folder)
    files, writer, written = [], None, 0
    for cell in np.flatnonzero(np.diff(bounds)):
        if written % CELLS_PER_FILE == 0:  # a new file: row groups of a file are read by their index
            if writer is not None:
                writer.close()
            files.append(f"{folder}/cells-{len(files):05d}.parquet")
            writer = pq.ParquetWriter(f"{inner}/cells-{len(files) - 1:05d}.parquet", schema, filesystem=fs)
        rows = order[bounds[cell]:bounds[cell + 1]]
        located[cell] = (len(files) - 1, written % CELLS_PER_FILE, len(rows))
        writer.write_table(_cell_table(rows, vectors[rows], probes[rows]), row_group_size=len(rows))
        written += 1
    if writer is not None:
        writer.close()
    return files, located


def _cell_table(rows: np.ndarray, vectors: np.ndarray, probes: np.ndarray) -> pa.Table:
    dim, probed = vectors.shape[1], probes.shape[1]
    return pa.table({"point": pa.array(rows.astype(np.int64)),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
                     "probes": pa.FixedSizeListArray.from_arrays(pa.array(probes.astype(np.int32).ravel()), probed)})


def read_cells(files: list[str], located: np.ndarray, cells) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points int64[m], vectors float32[m, d], probes int32[m, p]) of the rows of `cells`, from the snapshot."""
    parts = []
    cells = np.asarray(sorted(int(c) for c in cells if located[c, 2] > 0), np.int64)
    for number in np.unique(located[cells, 0]):
        fs, inner = _fs(files[number])
        with fs.open_input_file(inner) as handle:
            groups = located[cells[located[cells, 0] == number], 1].tolist()
            parts.append(pq.ParquetFile(handle).read_row_groups(groups))
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int32)
    table = pa.concat_tables(parts).combine_chunks()
    vector, probe = table.column("vector").chunk(0), table.column("probes").chunk(0)
    return (table.column("point").to_numpy(), vector.values.to_numpy().reshape(len(vector), vector.type.list_size),
            probe.values.to_numpy().reshape(len(probe), probe.type.list_size))


def _angles(cosines: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(cosines, -1.0, 1.0))


def top_pairs(sims: np.ndarray, rows: np.ndarray, members: np.ndarray, min_similarity: float, k: int):
    """(query rows, member rows, sims) of the entries of float32[q, m] `sims` (rows int[q] x members int[m])
    >= min_similarity, at most k per row (its k most similar; ties at the k-th value all kept), self pairs
    dropped."""
    hits = sims >= np.float32(min_similarity - SIMILARITY_SLACK)
    hits &= rows[:, None] != members[None, :]
    crowded = np.flatnonzero(np.count_nonzero(hits, axis=1) > k)
    if len(crowded):
        part = np.where(hits[crowded], sims[crowded], -np.inf)
        kth = np.partition(part, part.shape[1] - k, axis=1)[:, part.shape[1] - k]
        hits[crowded] &= part >= kth[:, None]
    r, c = np.nonzero(hits)
    return rows[r], members[c], sims[r, c]


def search_group(snapshot: tuple, targets: list[int], sources: list[int], min_similarity: float, k: int):
    """Ray task: the pairs (query, member, sim) of the members of the cells `targets` with their queries, read from
    the snapshot (files, located, centroids, bounds) of `ray_neighbour_graph`. A query of target cell c is a row
    of the cells `sources` that probes c (approximate mode, bounds None) or lies within angle bounds[c] of
    centroid c (exact mode). At most k per query row."""
    files, located, centroids, bounds = snapshot
    members = {c: read_cells(files, located, [c]) for c in targets}
    found = []
    with threadpool_limits(limits=1, user_api="blas"):  # one CPU per task
        for chunk in _chunks(located, sources):
            points, vectors, probes = read_cells(files, located, chunk)
            for c in targets:
                allowed = ((probes == c).any(axis=1) if bounds is None
                           else _angles(vectors @ centroids[c]) <= bounds[c])
                if allowed.any():
                    sims = vectors[allowed] @ members[c][1].T  # float32[queries, members]
                    found.append(top_pairs(sims, points[allowed], members[c][0], min_similarity, k))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return cap_per_row(*(np.concatenate(parts) for parts in zip(*found)), k)


def _chunks(located: np.ndarray, cells: list[int]) -> list[list[int]]:
    """`cells` in runs of at most CHUNK_ROWS rows (a cell larger than that alone)."""
    runs, rows = [[]], 0
    for c in cells:
        if runs[-1] and rows + located[c, 2] > CHUNK_ROWS:
            runs.append([])
            rows = 0
        runs[-1].append(int(c))
        rows += int(located[c, 2])
    return [r for r in runs if r]


def cap_per_row(query: np.ndarray, member: np.ndarray, sims: np.ndarray, k: int):
    """The pairs with at most k per query row (its k most similar, ties kept)."""
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


def task_plan(probes: np.ndarray, cosines: np.ndarray, centroids: np.ndarray, min_similarity: float, mode: str):
    """([(target cells, source cells)] one per Ray task, bounds float32[c] or None). Targets: the non-empty cells,
    CELLS_PER_TASK a task, neighbouring cells together (so their sources overlap). Sources: the cells that can hold
    a query of a target: approximate, the own cells of the rows that probe it; exact, the cells whose members
    can lie within its bound (module docstring), each cell's radius the largest angle of a member to its
    centroid."""
    n_cells = len(centroids)
    home = probes[:, 0]
    targets = np.unique(home)
    order = _neighbourly_order(centroids[targets])
    groups = [targets[order[i:i + CELLS_PER_TASK]] for i in range(0, len(targets), CELLS_PER_TASK)]
    group_of = np.full(n_cells, -1, np.int64)
    for number, group in enumerate(groups):
        group_of[group] = number
    if mode == "approximate":
        bounds = None
        links = _links(group_of, probes, n_cells)
        sources = [links[links // n_cells == g] % n_cells for g in range(len(groups))]
    else:
        radius = np.zeros(n_cells, np.float64)
        np.maximum.at(radius, home, _angles(cosines[:, 0]))
        bounds = (math.acos(max(-1.0, min(1.0, min_similarity - SIMILARITY_SLACK))) + radius + ANGLE_SLACK)
        between = _angles(centroids @ centroids.T)  # float32[c, c]
        reach = between <= bounds[:, None] + radius[None, :] + ANGLE_SLACK
        reach[:, np.setdiff1d(np.arange(n_cells), targets)] = False
        sources = [np.flatnonzero(reach[group].any(axis=0)) for group in groups]
        bounds = bounds.astype(np.float32)
    return [(g.tolist(), s.tolist()) for g, s in zip(groups, sources)], bounds


def _links(group_of: np.ndarray, probes: np.ndarray, n_cells: int) -> np.ndarray:
    """The distinct (task g, source cell s) as g * n_cells + s: row r links the tasks of the cells it probes to its
    own cell. A million rows at a time: at 10M rows all at once would be 2 GB of int64."""
    parts = [np.unique(group_of[probes[i:i + LINK_ROWS]] * n_cells + probes[i:i + LINK_ROWS, :1])
             for i in range(0, len(probes), LINK_ROWS)]
    links = np.unique(np.concatenate(parts))
    return links[links >= 0]


def _neighbourly_order(centroids: np.ndarray) -> np.ndarray:
    """An order of the cells in which cells near one another come together: by nearest of a few coarse centroids."""
    groups = len(centroids) // CELLS_PER_TASK
    if groups < 2:
        return np.arange(len(centroids))
    coarse = faiss.Kmeans(centroids.shape[1], groups, niter=10, spherical=True, seed=1234, min_points_per_centroid=1)
    coarse.train(np.ascontiguousarray(centroids))
    _, label = coarse.index.search(np.ascontiguousarray(centroids), 1)
    return np.argsort(label[:, 0], kind="stable")


def ray_neighbour_graph(vectors: np.ndarray, min_similarity: float, snapshot_dir: str,
                        k: int = NEIGHBOURS_PER_ROW, mode: str = "approximate") -> NeighbourGraph:
    """`neighbour_graph` on the connected Ray cluster (ray.init first): the pairs of rows of unit vectors
    float32[n, d] with cosine >= min_similarity, at most about k per row, found by `mode` (module docstring).
    Writes the cell snapshot under a new folder in `snapshot_dir` (a path every node can reach)."""
    import ray

    if mode not in SEARCH_MODES:
        raise ValueError(f"search mode must be one of {', '.join(SEARCH_MODES)} (got {mode!r})")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    # A zero row is similar to nothing (cosine 0), as in neighbour_graph: left out rather than widening a cell.
    live = np.flatnonzero(np.einsum("ij,ij->i", vectors, vectors) > 0)
    if len(live) < n:
        graph = ray_neighbour_graph(vectors[live], min_similarity, snapshot_dir, k, mode)
        return NeighbourGraph(n, live[graph.pairs].reshape(-1, 2), graph.sims)
    if n < 2:
        return NeighbourGraph(n, np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
    if n <= neighbours.EXACT_SEARCH_MAX_ROWS:
        mode = "exact"  # as neighbour_graph: at this size every pair is compared
    run = f"{snapshot_dir}/search-{uuid.uuid4().hex[:8]}"
    make_dir(run)
    centroids, probes, cosines = train_cells(vectors, mode)
    files, located = write_cells(vectors, probes, len(centroids), run)
    tasks, bounds = task_plan(probes, cosines, centroids, min_similarity, mode)
    search = ray.remote(num_cpus=1)(search_group)
    shared = ray.put((files, located, centroids, bounds))  # small: the snapshot's map, never the vectors
    refs = [search.remote(shared, targets, sources, float(min_similarity), int(k))
            for targets, sources in tasks]
    return unique_pairs(n, *_gather(refs, k))


def _gather(refs: list, k: int):
    """The tasks' pairs as they finish, cut to k per query row (ties kept) every TASKS_PER_TRIM tasks: a row probes
    cells of up to CELLS_PROBED tasks, each returning up to k partners, so at a low threshold the driver would
    otherwise hold many times k per row. Cutting a part never drops what the cut of the whole keeps: a row's
    k-th value in a part is at most its k-th value in the whole."""
    import ray

    kept = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=min(len(pending), TASKS_PER_TRIM))
        parts = zip(kept, *ray.get(done))
        kept = cap_per_row(*(np.concatenate(p) for p in parts), k)
    return kept[0], kept[1], kept[2].astype(np.float32)
