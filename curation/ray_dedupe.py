"""Dedupe on a Ray cluster: the same `DedupeConfig`, embedding and near-duplicate search as Ray jobs.

The workspace stays the one DuckDB file on the machine that runs this (the driver). Each job reads a Parquet
snapshot of what it needs under a snapshot folder, and writes its result there as Parquet for the driver to
read back: the texts to embed -> their vectors (stored in the workspace as `embed_items` stores them); the
points to compare, sorted by k-means cell -> the pairs (curation.ray_search, "approximate" as the single-machine
search or "exact"). The plan is made by `plan_dedupe` itself with the Ray search in place of the single-machine
one, so the clusters, representatives, `apply_dedupe`, review and undo are the single-machine code paths.
A run's snapshot folder is removed when it ends unless the caller named one (`run_snapshot`).

On a real cluster the snapshot folder must be readable and writable by every node (a shared mount, or an
object store URI such as s3://bucket/prefix that pyarrow understands), and every node needs this project's
requirements installed; the code of `curation` and `models` is shipped to the nodes by Ray.
"""
from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import socket
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.dedupe import DedupeConfig, DedupePlan, plan_dedupe
from curation.embed import KINDS, embed_items, embedder_key, load_embedder, normalize_rows
from curation.errors import StudioError
from curation.hybrid import is_hybrid
from curation.ray_search import SEARCH_MODES, make_dir, ray_neighbour_graph, remove_dir

# Texts per Ray Data batch of the embedding job: large enough that each batch is mostly encoding.
EMBED_BATCH_ROWS = 1024


class RayClusterError(StudioError):
    """The Ray cluster cannot be reached or used."""


def default_snapshot_dir(store) -> str:
    """A new folder for this run's Parquet snapshots inside the workspace (fine for a cluster on this machine;
    a multi-node cluster needs a shared path instead)."""
    parent = Path(store.workspace) / "ray-snapshots"
    parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=parent)


@contextlib.contextmanager
def run_snapshot(store, snapshot_dir: str | None):
    """The snapshot folder of one run: `snapshot_dir` when given (kept after the run, for inspection or for a
    cluster's shared path), else a new one under the workspace that is removed when the run ends, whether it
    succeeded or failed (a 10M-row run leaves gigabytes of Parquet)."""
    if snapshot_dir:
        make_dir(snapshot_dir)
        yield snapshot_dir
        return
    folder = default_snapshot_dir(store)
    try:
        yield folder
    finally:
        remove_dir(folder)


@contextlib.contextmanager
def ray_connection(address: str | None):
    """Connected to the Ray cluster at `address` ('auto': the one started on this machine by `ray start`;
    'HOST:PORT' of a head node; None or 'local': a Ray started here for this run and stopped after it).
    A process already connected (ray.init) is used as it is and left connected."""
    # Ray must never phone home: the studio runs offline.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        yield
        return
    root = Path(__file__).resolve().parents[1]
    kwargs = {"runtime_env": {"py_modules": [str(root / "curation"), str(root / "models")],
                              "env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}},
              "log_to_driver": False}
    if address in (None, "", "local"):
        address, kwargs["include_dashboard"] = "local", False
    else:
        _check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayClusterError(f"cannot connect to the Ray cluster at {address!r} ({exc}): start one with "
                              "`ray start --head` and pass its address (or 'auto' on its head node)") from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail at once when nothing listens at a HOST:PORT address: ray.init would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # 'auto', or a ray:// client address: ray.init says what is wrong soon enough
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise RayClusterError(f"no Ray head node answers at {address} ({exc.strerror or exc}): start one there "
                              "with `ray start --head --port=6379`, or check the address `ray start` printed") from None


class _Encoder:
    """Ray Data actor: the embedder (shipped once through the object store) encoding batches of texts."""

    def __init__(self, shared: list):
        import ray
        import torch

        # One torch thread per CPU Ray gave this actor: actors sharing a node must not each take every core.
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
        self.embedder = ray.get(shared[0])

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch["text"]]
        vectors = normalize_rows(self.embedder.encode(texts, batch_size=64, convert_to_numpy=True,
                                                      show_progress_bar=False))
        return {"id": batch["id"], "content_hash": batch["content_hash"], "vector": list(vectors)}


def embed_on_ray(store, kind: str, model_name: str | None = None, snapshot_dir: str | None = None,
                 actors: int | None = None) -> dict:
    """`embed_items` with the encoding done by a Ray Data job on the connected cluster: every task or response
    whose text is new or changed is encoded and its vector stored in the workspace under
    `embedder_key(model_name)`, where the single-machine dedupe finds it too. `actors`: encoders (default:
    one per CPU of the cluster, less one for reading and writing). Returns {"encoded", "reused", "model"}.
    Model "static+minilm" is embedded on this machine by `embed_items` (its second model encodes only the rows
    the first picks); the search of its vectors still runs on Ray."""
    import ray

    if kind not in KINDS:
        raise StudioError(f"embedding kind must be task or response (got {kind!r})")
    if is_hybrid(model_name):  # two models, the second only for some rows: it runs here; the search on Ray
        return embed_items(store, kind, model_name)
    key = embedder_key(model_name)
    total, stale = store.items_to_embed(kind, key)
    if not stale:
        return {"encoded": 0, "reused": total, "model": key}
    actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    rows_per_file = min(EMBED_BATCH_ROWS, -(-len(stale) // (2 * actors)))
    with run_snapshot(store, snapshot_dir) as snapshot:
        run = _run_dir(snapshot, "embed")
        files = _write_texts(f"{run}/texts", stale, rows_per_file)
        # Loaded here and shipped as an object: the nodes need neither the model files nor the workspace.
        shared = [ray.put(load_embedder(model_name, Path(store.workspace) / "models"))]
        ray.data.read_parquet(f"{run}/texts", override_num_blocks=files).map_batches(
            _Encoder, fn_constructor_args=(shared,), batch_size=rows_per_file, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1).write_parquet(f"{run}/vectors")
        table = pq.read_table(f"{run}/vectors")
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    store.put_embeddings(kind, key, table.column("id").to_numpy().tolist(),
                         table.column("content_hash").to_pylist(), vectors)
    return {"encoded": len(stale), "reused": total - len(stale), "model": key}


def _write_texts(folder: str, stale: list[tuple[int, str, str]], rows_per_file: int) -> int:
    """(id, text, content hash) rows as Parquet files of `rows_per_file` rows (returns how many files): each
    is read as a block of its own, so every encoder gets work. Sorted by length first, as `embed_items` does:
    a batch pads less."""
    make_dir(folder)
    stale = sorted(stale, key=lambda item: len(item[1]))
    for number, start in enumerate(range(0, len(stale), rows_per_file)):
        part = stale[start:start + rows_per_file]
        pq.write_table(pa.table({"id": pa.array([i for i, _, _ in part], pa.int64()),
                                 "text": pa.array([t for _, t, _ in part], pa.string()),
                                 "content_hash": pa.array([h for _, _, h in part], pa.string())}),
                       f"{folder}/{number:06d}.parquet")
    return -(-len(stale) // rows_per_file)


def plan_dedupe_on_ray(store, config: DedupeConfig, snapshot_dir: str | None = None,
                       search_mode: str = "approximate") -> DedupePlan:
    """`plan_dedupe` with the neighbour search run on the connected Ray cluster (curation.ray_search):
    `search_mode` "approximate" is the single-machine search spread over the cluster (the same pairs for the same
    vectors), "exact" finds every pair at or above the threshold. With a `snapshot_dir` the plan's clusters
    are also written to <snapshot_dir>/clusters.parquet and the folder is kept; without one, the snapshots go to
    a folder that is removed when this returns or fails. The exact and normalised methods are a hash of each
    text: they run here, on the driver."""
    if search_mode not in SEARCH_MODES:
        raise StudioError(f"Ray search mode must be one of {', '.join(SEARCH_MODES)} (got {search_mode!r})")
    with run_snapshot(store, snapshot_dir) as snapshot:
        search = (functools.partial(ray_neighbour_graph, snapshot_dir=snapshot, mode=search_mode)
                  if config.method == "semantic" else None)
        plan = plan_dedupe(store, config, search=search)
        if snapshot_dir:
            frame = plan.to_frame()
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), f"{snapshot}/clusters.parquet")
    return plan


def _run_dir(snapshot_dir: str, name: str) -> str:
    path = f"{snapshot_dir}/{name}-{time.strftime('%H%M%S')}-{os.getpid()}"
    make_dir(path)
    return path
