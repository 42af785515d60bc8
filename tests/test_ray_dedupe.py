"""Dedupe on a real local Ray cluster: a head and two worker nodes on this machine (each its own raylet and
worker processes, one CPU each), offline. On 20k rows of a real workspace the exact Ray search's clusters equal
the single-machine plan's with an exact search, and the approximate Ray search (the default) finds exactly the
pairs and clusters of the default single-machine search; embedding on Ray stores the vectors single-machine
embedding stores; the CLI twin prints the single-machine CLI's clusters and its apply is undone like any other;
a run's snapshots are removed when it ends, unless the user named the folder."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bench.dedupe import make_corpus
from bench.ray_dedupe import TOKEN_MEAN, build_workspace, cluster_sets, exact_search, local_cluster
from curation.dedupe import DedupeConfig, plan_dedupe, row_vectors
from curation.embed import DEFAULT_EMBEDDER, embed_items, load_embedder
from curation.neighbours import neighbour_graph
from curation.errors import StudioError
from curation.ray_dedupe import embed_on_ray, plan_dedupe_on_ray, ray_connection
from curation import ray_search
from curation.ray_search import ray_neighbour_graph
from curation.store import Store
from tests.conftest import curation_cli

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_address():
    """The address of a 3-node local Ray cluster, shut down after the module even when a test fails."""
    import ray

    cluster = local_cluster(300_000_000)
    try:
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def workspace_20k(tmp_path_factory):
    path = tmp_path_factory.mktemp("ray") / "ws"
    build_workspace(path, make_corpus(20_000, seed=3)[0])
    return path


def recording(search, found: list):
    """`search`, keeping each NeighbourGraph it returns in `found`."""
    def run(vectors, min_similarity):
        found.append(search(vectors, min_similarity))
        return found[-1]
    return run


def pair_set(graph, threshold) -> set[tuple[int, int]]:
    return set(map(tuple, graph.pairs_at(threshold).tolist()))


def test_exact_ray_clusters_on_20k_rows_equal_the_exact_single_machine_ones(ray_address, workspace_20k, tmp_path):
    config = DedupeConfig(model=TOKEN_MEAN, representative="earliest")
    graphs = {"exact": [], "single": []}
    with Store(workspace_20k) as store:
        with ray_connection(ray_address):
            on_ray = plan_dedupe_on_ray(store, config, str(tmp_path / "snap"), search_mode="exact")
        exact = plan_dedupe(store, config, search=recording(exact_search, graphs["exact"]))
        single = plan_dedupe(store, config, search=recording(neighbour_graph, graphs["single"]))
    assert on_ray.items_total == 20_000 and len(on_ray.clusters) > 3000
    assert cluster_sets(on_ray) == cluster_sets(exact)
    assert [c.representative for c in on_ray.clusters] == [c.representative for c in exact.clusters]
    assert on_ray.rows_marked == exact.rows_marked
    assert (tmp_path / "snap" / "clusters.parquet").exists()
    # Above 5,000 rows the default single-machine search is approximate: it finds a subset of the exact pairs,
    # and its clusters differ from Ray's only where it missed one.
    exact_pairs, single_pairs = (pair_set(graphs[g][0], config.threshold) for g in ("exact", "single"))
    assert single_pairs <= exact_pairs and len(single_pairs) >= 0.98 * len(exact_pairs)
    same = cluster_sets(single) & cluster_sets(on_ray)
    print(f"default single-machine search: {len(single_pairs)} of {len(exact_pairs)} pairs; "
          f"{len(same)} of {len(on_ray.clusters)} Ray clusters identical to its clusters")


def test_approximate_ray_search_on_20k_rows_finds_the_single_machine_pairs_and_clusters(ray_address, workspace_20k):
    config = DedupeConfig(model=TOKEN_MEAN, representative="earliest", threshold=0.8)
    with Store(workspace_20k) as store:
        vectors = row_vectors(store, config, store.dedupe_items(config.target))
        with ray_connection(ray_address):
            on_ray = plan_dedupe_on_ray(store, config)  # approximate is the default
            graph = ray_neighbour_graph(vectors, config.threshold, str(store.workspace / "snap"))
        single = plan_dedupe(store, config)
        snapshots = store.workspace / "ray-snapshots"
        assert not snapshots.exists() or not any(snapshots.iterdir())  # the unnamed snapshot folder is gone
    # Same centroids, same probes: the very pairs of neighbour_graph's inverted-file search (not the exact ones).
    expected = neighbour_graph(vectors, config.threshold)
    assert len(expected.pairs) > 5000 and pair_set(graph, 0.8) == pair_set(expected, 0.8)
    assert pair_set(graph, 0.8) != pair_set(exact_search(vectors, 0.8), 0.8)
    np.testing.assert_allclose(np.sort(graph.sims), np.sort(expected.sims), atol=1e-5)
    assert cluster_sets(on_ray) == cluster_sets(single) and on_ray.rows_marked == single.rows_marked


def test_ray_graph_equals_exact_search_where_cells_prune_and_the_per_row_cap_binds(ray_address, tmp_path, monkeypatch):
    # Low-dimensional points in tight bunches: the cell bound prunes most pairs, and many rows have more than
    # k=4 partners, so the cap across cells is exercised too, cut after every 2 tasks; and some zero rows.
    monkeypatch.setattr(ray_search, "TASKS_PER_TRIM", 2)
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(300, 8))
    vectors = centres[rng.integers(0, 300, 6000)] + rng.normal(scale=0.08, size=(6000, 8))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    vectors[::100] = 0  # zero rows (static+minilm gives them) are similar to nothing
    with ray_connection(ray_address):
        on_ray = ray_neighbour_graph(vectors, 0.97, str(tmp_path), k=4, mode="exact")
    exact = exact_search(vectors, 0.97, k=4)
    assert len(exact.pairs) > 10_000
    assert pair_set(on_ray, 0.97) == pair_set(exact, 0.97)
    np.testing.assert_allclose(np.sort(on_ray.sims), np.sort(exact.sims), atol=1e-5)


def test_embedding_on_ray_stores_the_single_machine_vectors(ray_address, tmp_path):
    texts = make_corpus(100, seed=5)[0]
    vectors = {}
    for name in ("single", "ray"):
        with Store(tmp_path / name) as store:
            task = store.add_tasks([{"instruction": "Say something"}])[0]
            store.bulk_add("generations", _generations(task, texts))
            if name == "single":
                assert embed_items(store, "response", embedder=load_embedder())["encoded"] == 100
            else:
                with ray_connection(ray_address):
                    snap = str(tmp_path / "snap")
                    assert embed_on_ray(store, "response", None, snap, actors=2) == {
                        "encoded": 100, "reused": 0, "model": DEFAULT_EMBEDDER}
                    assert embed_on_ray(store, "response", None, snap)["encoded"] == 0  # nothing new: no job
            vectors[name] = store.fresh_embeddings("response", DEFAULT_EMBEDDER)
    assert np.array_equal(vectors["ray"][0], vectors["single"][0])
    np.testing.assert_allclose(vectors["ray"][1], vectors["single"][1], atol=2e-5)


def _generations(task: int, texts: list[str]):
    import pandas as pd

    return pd.DataFrame({"task_id": task, "request_key": [f"k{i}" for i in range(len(texts))], "endpoint": "t",
                         "model": "t", "messages": "[]", "params": "{}", "sample_index": 0, "response": texts,
                         "status": "ok"})


def test_cli_on_ray_prints_the_single_machine_clusters_and_applies_as_one_undoable_batch(ray_address, tmp_path):
    # 3,000 rows: below 5,000 the single-machine search is exact, so the default plans must agree exactly.
    build_workspace(tmp_path / "ws", make_corpus(3_000, seed=7)[0])
    flags = ["--workspace", tmp_path / "ws", "dedupe", "--model", TOKEN_MEAN, "--threshold", "0.85", "--json"]
    single = json.loads(curation_cli(*flags, "--dry-run").stdout)
    on_ray = json.loads(curation_cli(*flags, "--dry-run", "--ray-address", ray_address,
                                     "--snapshot-dir", tmp_path / "snap").stdout)
    assert on_ray.pop("ray_snapshot") == str(tmp_path / "snap") and on_ray.pop("ray_search") == "approximate"
    assert len(single["clusters"]) > 100 and on_ray == single
    assert any((tmp_path / "snap").rglob("*.parquet"))  # a named snapshot folder is kept
    applied = json.loads(curation_cli(*flags, "--ray-address", ray_address).stdout)
    assert applied["ray_snapshot"] is None and list((tmp_path / "ws" / "ray-snapshots").iterdir()) == []
    assert applied["marked"] == single["rows_marked"] and applied["batch"]
    with Store(tmp_path / "ws") as store:
        assert store.stats()["by_status"]["rejected"] == single["rows_marked"]
    curation_cli("--workspace", tmp_path / "ws", "undo", applied["batch"])
    with Store(tmp_path / "ws") as store:
        assert store.stats()["by_status"]["rejected"] == 0


def test_a_failed_ray_run_removes_its_snapshots_and_a_named_folder_is_kept(ray_address, tmp_path):
    build_workspace(tmp_path / "ws", make_corpus(200, seed=9)[0])
    text = curation_cli("--workspace", tmp_path / "ws", "dedupe", "--model", TOKEN_MEAN, "--dry-run",
                        "--ray-address", ray_address, "--snapshot-dir", tmp_path / "kept").stdout
    assert f"Ray snapshots kept in {tmp_path / 'kept'}" in text and any((tmp_path / "kept").iterdir())
    with Store(tmp_path / "ws") as store, ray_connection(ray_address):
        # No vectors from this model: the plan fails after its snapshot folder was made, and the folder goes.
        with pytest.raises(StudioError, match="no up-to-date embedding"):
            plan_dedupe_on_ray(store, DedupeConfig(model="never-embedded"))
    assert list((tmp_path / "ws" / "ray-snapshots").iterdir()) == []


def test_an_address_where_no_ray_head_answers_fails_at_once_with_what_to_do(tmp_path):
    proc = curation_cli("--workspace", tmp_path / "ws", "dedupe", "--ray-address", "127.0.0.1:1", check=False)
    assert proc.returncode == 2 and "ray start --head" in proc.stderr
