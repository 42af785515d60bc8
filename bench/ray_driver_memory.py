"""The Ray dedupe driver's memory: peak resident memory of a fresh process that only plans a dedupe on Ray.

    python bench/ray_driver_memory.py --workspace /tmp/ws100k [--rows 100000] [--ray-search approximate|exact]

Builds the workspace (bench/ray_dedupe.py's corpus and token-mean vectors) when the folder does not exist yet,
else reuses it; then, in this process, starts a local 3-node cluster and runs `plan_dedupe_on_ray` once.
Prints ONE JSON line: the process's resident memory before the plan, its peak while planning (sampled every
20 ms) and ru_maxrss for the whole process. Run it against an older checkout (PYTHONPATH=that tree) for a
before/after; a checkout without search modes runs its only (exact) search.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def peak_rss(fn, *args, **kwargs):
    """(fn's result, {"before_mb", "peak_mb"}): this process's resident memory before fn and its highest sample
    (every 20 ms) while fn ran."""
    import threading

    import psutil  # comes with ray

    me, done, peak = psutil.Process(), threading.Event(), [0]
    before = me.memory_info().rss

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], me.memory_info().rss)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        result = fn(*args, **kwargs)
    finally:
        done.set()
        watcher.join()
    return result, {"before_mb": round(before / 2**20), "peak_mb": round(max(peak[0], before) / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threshold", type=float, default=0.82)
    parser.add_argument("--ray-search", choices=("approximate", "exact"), default="approximate")
    args = parser.parse_args()
    from bench.dedupe import make_corpus
    from bench.ray_dedupe import TOKEN_MEAN, build_workspace, local_cluster
    from curation.dedupe import DedupeConfig
    from curation.ray_dedupe import plan_dedupe_on_ray, ray_connection
    from curation.store import Store

    if not args.workspace.exists():
        build_workspace(args.workspace, make_corpus(args.rows, seed=0)[0])
    config = DedupeConfig(model=TOKEN_MEAN, threshold=args.threshold, representative="earliest")
    modes = "search_mode" in inspect.signature(plan_dedupe_on_ray).parameters
    extra = {"search_mode": args.ray_search} if modes else {}
    cluster = local_cluster(max(300_000_000, args.rows * 384 * 4 * 3))
    try:
        with Store(args.workspace) as store, ray_connection(cluster.address), tempfile.TemporaryDirectory() as tmp:
            plan, rss = peak_rss(plan_dedupe_on_ray, store, config, tmp, **extra)
    finally:
        cluster.shutdown()
    print(json.dumps({"rows": plan.items_total, "clusters": len(plan.clusters),
                      "ray_search": args.ray_search if modes else "exact (a checkout without modes)",
                      "driver_rss_mb": rss, "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                                  / 1024),
                      "load_1m": round(os.getloadavg()[0], 2), "code": str(Path(__file__).resolve().parents[1])}))


if __name__ == "__main__":
    main()
