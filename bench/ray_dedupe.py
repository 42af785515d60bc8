"""Ray dedupe benchmark: the single-machine dedupe vs the same dedupe on a local 3-node Ray cluster, same rows.

    python bench/ray_dedupe.py [--rows 100000] [--threshold 0.82] [--no-exact] [--ray-search approximate|exact|both]

A real workspace of `--rows` responses (bench/dedupe.py's corpus with planted near-duplicates) gets its vectors
once, from a cheap real embedder (MiniLM's own word-piece vectors, IDF-weighted and averaged: 100k texts in
seconds, where MiniLM needs over ten minutes on 2 cores); both dedupes read those stored vectors. Timed: the
single-machine `plan_dedupe` (an approximate inverted-file search above 5,000 rows), an exact single-machine
reference (faiss flat search, unless --no-exact), and `plan_dedupe_on_ray` on a head and two worker nodes
started here (one CPU each; the cluster start is timed on its own) in each --ray-search mode asked for. Prints
ONE JSON line per mode with the times, their ratio, how far the clusters agree, and the driver's resident memory
(sampled every 20 ms) just before and at its peak during the Ray plan. On one 2-core machine Ray is overhead:
three nodes share two cores, so this measures the cost of the machinery (and, in exact mode, of exactness:
close to all pairs in 384 dimensions), not a speed-up; a speed-up needs nodes with cores of their own.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

TOKEN_MEAN = "minilm-token-mean"
"""The name the token-mean vectors are stored under in the workspace."""


class TokenMeanEmbedder:
    """The bundled MiniLM's input word-piece vectors, weighted by IDF over `corpus` and averaged: a static
    embedding of a real model, cheap enough to give 100k texts vectors in seconds. Near-duplicates (typos,
    word order, case) share most word pieces, so they land close; `encode` has the SentenceTransformer keywords
    that `embed_items` passes."""

    def __init__(self, corpus: list[str]):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        from curation.embed import default_embedder_path

        folder = default_embedder_path()
        self.table = load_file(str(folder / "model.safetensors"))["embeddings.word_embeddings.weight"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        ids = self._ids(corpus)
        seen = np.bincount(np.concatenate([np.unique(i) for i in ids]), minlength=len(self.table))
        self.idf = np.log(len(ids) / (1.0 + seen)).astype(np.float32)

    def _ids(self, texts) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts], add_special_tokens=False)]

    def encode(self, texts, **_) -> np.ndarray:
        from curation.embed import normalize_rows

        rows = [(self.table[i] * self.idf[i, None]).sum(axis=0) if i else np.zeros(self.table.shape[1])
                for i in self._ids(texts)]
        return normalize_rows(np.stack(rows).astype(np.float32))


def build_workspace(path: Path, texts: list[str]):
    """A closed workspace at `path` with one train task and one successful generation per text (generation
    ids 1..n in text order), every response embedded with `TokenMeanEmbedder` under TOKEN_MEAN."""
    from curation.embed import embed_items
    from curation.store import Store

    n = len(texts)
    with Store(path) as store:
        task_ids = store.bulk_add("tasks", pd.DataFrame({"instruction": [f"task {i}" for i in range(n)]}))
        store.bulk_add("generations", pd.DataFrame({
            "task_id": task_ids, "request_key": [f"k{i}" for i in range(n)], "endpoint": "bench", "model": "bench",
            "messages": "[]", "params": "{}", "sample_index": 0, "response": texts, "status": "ok"}))
        embed_items(store, "response", TOKEN_MEAN, batch_size=4096, embedder=TokenMeanEmbedder(texts))


def exact_search(vectors: np.ndarray, min_similarity: float, k: int | None = None):
    """An exact single-machine `neighbour_graph`: faiss flat search of each row's k+1 most similar rows (itself
    among them), as neighbour_graph does below its exact-search limit."""
    import faiss

    from curation.neighbours import NEIGHBOURS_PER_ROW, NeighbourGraph

    k = k or NEIGHBOURS_PER_ROW
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, cols = index.search(vectors, min(k + 1, n))
    rows = np.repeat(np.arange(n), cols.shape[1])
    cols, sims = cols.ravel(), sims.ravel()
    keep = (cols >= 0) & (cols != rows) & (sims >= min_similarity - 1e-5)
    lo, hi = np.minimum(rows, cols)[keep], np.maximum(rows, cols)[keep]
    key, first = np.unique(lo.astype(np.int64) * n + hi, return_index=True)
    pairs = np.stack([key // n, key % n], axis=1).astype(np.int64)
    return NeighbourGraph(n, pairs, np.minimum(sims[keep][first], 1.0).astype(np.float32))


def cluster_sets(plan) -> set[tuple[int, ...]]:
    """Each cluster as the tuple of its member ids."""
    return {tuple(m.id for m in c.members) for c in plan.clusters}


def same_cluster_pairs(plan) -> set[tuple[int, int]]:
    """Every pair of ids that share a cluster."""
    return {(a, b) for c in cluster_sets(plan) for i, a in enumerate(c) for b in c[i + 1:]}


def agreement(a, b) -> dict:
    """How far two plans' clusters agree: identical clusters, and same-cluster pairs in both / in either."""
    ca, cb, pa, pb = cluster_sets(a), cluster_sets(b), same_cluster_pairs(a), same_cluster_pairs(b)
    return {"clusters": [len(ca), len(cb)], "identical_clusters": len(ca & cb), "equal": ca == cb,
            "pairs": [len(pa), len(pb)], "pair_jaccard": round(len(pa & pb) / max(1, len(pa | pb)), 5)}


def local_cluster(object_store_bytes: int):
    """A head and two worker nodes on this machine, one CPU each; the caller shuts it down."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": object_store_bytes})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=object_store_bytes)
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threshold", type=float, default=0.82)
    parser.add_argument("--no-exact", action="store_true", help="skip the exact single-machine reference")
    parser.add_argument("--ray-search", choices=("approximate", "exact", "both"), default="both")
    args = parser.parse_args()
    from bench.dedupe import make_corpus
    from curation.dedupe import DedupeConfig, plan_dedupe
    from curation.store import Store

    texts, _ = make_corpus(args.rows, seed=0)
    config = DedupeConfig(model=TOKEN_MEAN, threshold=args.threshold, representative="earliest")
    modes = ("approximate", "exact") if args.ray_search == "both" else (args.ray_search,)
    with tempfile.TemporaryDirectory() as tmp:
        _, embed_s = timed(build_workspace, Path(tmp) / "ws", texts)
        with Store(Path(tmp) / "ws") as store:
            single, single_s = timed(plan_dedupe, store, config)
            exact, exact_s = (None, None) if args.no_exact else timed(plan_dedupe, store, config, search=exact_search)
            common = {"rows": args.rows, "threshold": args.threshold, "embed_and_store_s": embed_s,
                      "single_s": single_s, "exact_single_s": exact_s}
            for line in ray_runs(store, config, modes, f"{tmp}/snapshots", single, exact):
                line["ray_over_single"] = round(line["ray_s"] / single_s, 1)
                print(json.dumps({**common, **line}), flush=True)


def ray_runs(store, config, modes, snapshot_dir: str, single, exact):
    """One dict per mode: `plan_dedupe_on_ray` on a fresh local 3-node cluster, timed, its driver memory, and how
    its clusters agree with the single-machine ones."""
    from bench.ray_driver_memory import peak_rss
    from curation.ray_dedupe import plan_dedupe_on_ray, ray_connection

    for mode in modes:
        # Room for the Parquet blocks in each node's object store.
        cluster, start_s = timed(local_cluster, max(300_000_000, single.items_total * 384 * 4 * 3))
        try:
            with ray_connection(cluster.address):
                (on_ray, ray_s), rss = peak_rss(timed, plan_dedupe_on_ray, store, config, snapshot_dir, mode)
        finally:
            cluster.shutdown()
        yield {"ray_search": mode, "ray_cluster_start_s": start_s, "ray_s": ray_s,
               "driver_rss_mb": rss, "ray_vs_single": agreement(on_ray, single),
               "ray_vs_exact": agreement(on_ray, exact) if exact else None,
               "nodes": 3, "cpus_per_node": 1, "machine_cores": os.cpu_count(),
               "load_1m": round(os.getloadavg()[0], 2), "python": platform.python_version()}


if __name__ == "__main__":
    main()
