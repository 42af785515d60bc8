"""Neighbour search benchmark: our inverted file (curation.neighbours) vs faiss's IndexIVFFlat + range_search.

    python bench/neighbours.py [--sizes 100000,1000000] [--threshold 0.9] [--nprobe 8,16,24] [--caps 32,0]
                               [--models-dir DIR]

Both search the same unit vectors: the bench corpus of bench/dedupe.py encoded by the static embedder
(curation.static_embed, distilled into --models-dir the first time), with the same cells (about 2*sqrt(n)
k-means cells, same k-means settings) and the same number of cells probed, so they should find the same pairs;
the question is which is faster. Recall is measured against exact search (faiss IndexFlatIP range_search) for a
random sample of rows: the share of their true pairs (cosine >= threshold) that each search returns. With the
studio's cap of 32 neighbours per row the two keep different subsets of crowded rows, so `--caps 0` (no cap)
is the like-for-like recall. Prints ONE JSON line. Timings on a shared machine are noisy: the 1-minute load
average is reported next to them.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def faiss_ivf_neighbours(vectors, min_similarity, k, nprobe, chunk: int = 65_536):
    """The peer: faiss's own inverted file, IndexIVFFlat over the same ~2*sqrt(n) k-means cells as ours,
    `range_search` of every row in its `nprobe` nearest cells, then each row's k most similar kept.
    Returns (rows, cols, sims) like curation.neighbours._cell_neighbours."""
    import faiss

    from curation import neighbours as nb

    n, dim = vectors.shape
    n_cells = max(1, int(nb.CELL_FACTOR * np.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, n_cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter, index.cp.max_points_per_centroid, index.cp.seed = nb.KMEANS_ITERATIONS, nb.KMEANS_SAMPLE_PER_CELL, 1234
    index.cp.spherical = True
    index.train(vectors)
    index.add(vectors)
    index.nprobe = min(nprobe, n_cells)
    found = []
    for start in range(0, n, chunk):  # bounds the result buffers at low thresholds
        lims, sims, cols = index.range_search(vectors[start:start + chunk], float(min_similarity - 1e-5))
        rows = start + np.repeat(np.arange(len(lims) - 1), np.diff(lims).astype(np.int64))
        found.append(_cap_per_row(rows, cols, sims, k))
    return tuple(np.concatenate(parts) for parts in zip(*found))


def _cap_per_row(rows, cols, sims, k):
    """(rows, cols, sims) with at most about k entries per row (its k most similar; ties all kept); rows ascending."""
    if not len(rows):
        return rows, cols, sims
    counts = np.bincount(rows - rows[0])
    keep = np.ones(len(rows), bool)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for r in np.flatnonzero(counts > k).tolist():
        part = sims[starts[r]:starts[r + 1]]
        keep[starts[r]:starts[r + 1]] = part >= np.partition(part, len(part) - k)[len(part) - k]
    return rows[keep], cols[keep], sims[keep]


def exact_pairs(vectors: np.ndarray, sample: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Every pair (min, max) with cosine >= threshold that involves a row of `sample`."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    lims, _, cols = index.range_search(vectors[sample], threshold - 1e-5)
    rows = np.repeat(sample, np.diff(lims).astype(np.int64))
    return {(min(a, b), max(a, b)) for a, b in zip(rows.tolist(), cols.tolist()) if a != b}


def recall(graph, sample: np.ndarray, truth: set) -> float:
    """Share of the true pairs of the sampled rows that the graph holds."""
    in_sample = np.isin(graph.pairs, sample).any(axis=1)
    found = set(map(tuple, graph.pairs[in_sample].tolist()))
    return round(len(found & truth) / len(truth), 4) if truth else 1.0


def run(vectors, threshold, nprobes, caps, sample, truth) -> dict:
    from curation import neighbours as nb

    out = {}
    for cap in caps:
        k = cap or len(vectors)
        for nprobe in nprobes:
            for name in ("ours", "faiss_ivf"):
                nb.CELLS_PROBED = nprobe  # ours reads the module setting; the peer takes it as an argument
                start = time.perf_counter()
                found = (nb._cell_neighbours(vectors, threshold, k) if name == "ours"
                         else faiss_ivf_neighbours(vectors, threshold, k, nprobe))
                graph = nb._unique_pairs(len(vectors), *found)
                key = f"{name}_nprobe{nprobe}_cap{cap or 'none'}"
                out[key] = {"s": round(time.perf_counter() - start, 2), "recall": recall(graph, sample, truth),
                            "pairs": int(len(graph.pairs)), "load_avg_1m": round(os.getloadavg()[0], 2)}
                print(key, out[key], file=sys.stderr, flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--nprobe", default="8,16,24", help="cells probed, comma-separated")
    parser.add_argument("--caps", default="32,0", help="neighbours kept per row, comma-separated (0: no cap)")
    parser.add_argument("--sample", type=int, default=5000, help="rows whose pairs are checked by exact search")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "distill-studio" / "models")
    args = parser.parse_args(argv)
    from dedupe import make_corpus

    from curation.embed import load_embedder

    embedder = load_embedder("static", args.models_dir)
    nprobes, caps = [int(p) for p in args.nprobe.split(",")], [int(c) for c in args.caps.split(",")]
    line = {"bench": "neighbours", "encoder": "static (curation.static_embed)", "threshold": args.threshold,
            "faiss": importlib.metadata.version("faiss-cpu"), "cpus": os.cpu_count(), "sizes": []}
    for n in [int(s) for s in args.sizes.split(",")]:
        vectors = np.ascontiguousarray(embedder.encode(make_corpus(n)[0]), dtype=np.float32)
        sample = np.random.default_rng(0).choice(n, min(args.sample, n), replace=False)
        truth = exact_pairs(vectors, sample, args.threshold)
        line["sizes"].append({"rows": n, "true_pairs_of_sample": len(truth),
                              **run(vectors, args.threshold, nprobes, caps, sample, truth)})
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
