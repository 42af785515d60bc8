"""The compiled leader clustering and the reused neighbour graph behind the dedupe panel's Preview: equal to the
plain greedy pass and to counting labels, a low-threshold graph cut higher equals a search there, and one search
serves the slider's counts and the plans at every stop — on a real DuckDB workspace."""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest

from curation import neighbours
from curation.dedupe import DedupeConfig, plan_dedupe, preview_counts
from curation.dedupe_groups import marked_count, semantic_labels, semantic_marked
from curation.embed import embed_items
from curation.leaders import adjacency, leader_labels_at
from curation.neighbours import ReusedSearch, neighbour_graph
from tests.conftest import add_generation


def greedy(n, pairs, sims, rank, floor):
    """The leader pass written plainly: best rank first, an untaken row leads and takes its untaken partners."""
    partners = {r: [] for r in range(n)}
    for (a, b), s in zip(pairs.tolist(), sims.tolist()):
        if s >= floor:
            partners[a].append(b)
            partners[b].append(a)
    label, taken = list(range(n)), set()
    for r in sorted(range(n), key=lambda r: rank[r]):
        if r in taken:
            continue
        taken.add(r)
        for p in partners[r]:
            if p not in taken:
                taken.add(p)
                label[p] = r
    return label


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def crowded_vectors(bases=100, copies=60, dim=48, seed=3):
    """bases x copies rows: each base's copies sit at cosine ~0.9 to one another, far more than the 32
    neighbours a row keeps, so the per-row cut decides what the search returns."""
    rng = np.random.default_rng(seed)
    base = unit(rng.normal(size=(bases, dim)))
    return unit(np.repeat(base, copies, axis=0) + rng.normal(scale=0.045, size=(bases * copies, dim)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_leaders_equal_the_plain_greedy_pass(seed):
    rng = np.random.default_rng(seed)
    n = 300
    pairs = rng.integers(0, n, size=(1500, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    sims = rng.random(len(pairs)).astype(np.float32)
    rank = rng.permutation(n)
    adj = adjacency(n, pairs, sims)
    for floor in (0.0, 0.3, 0.7, 0.99):
        np.testing.assert_array_equal(leader_labels_at(adj, rank, floor), greedy(n, pairs, sims, rank, floor))


def test_marked_counts_equal_counting_the_labels():
    rng = np.random.default_rng(7)
    vectors = crowded_vectors(bases=20, copies=15)
    texts = [f"text {i}" for i in range(len(vectors))]
    for i in range(0, len(texts), 7):  # identical texts: one point in the search, several rows to mark
        texts[i] = texts[i + 1] if i + 1 < len(texts) else texts[i]
        vectors[i] = vectors[i + 1] if i + 1 < len(texts) else vectors[i]
    rank, weights = rng.permutation(len(texts)), rng.integers(0, 4, len(texts))
    thresholds = [0.5, 0.8, 0.85, 0.9, 0.95, 1.0]
    labels = semantic_labels(texts, vectors, thresholds, rank)
    marked = semantic_marked(texts, vectors, thresholds, rank, weights)
    assert marked == {t: marked_count(labels[t], rank, weights) for t in thresholds}
    assert marked[0.5] > marked[0.95] > 0


@pytest.mark.parametrize("exact", [True, False])
def test_a_graph_at_a_low_threshold_cut_higher_is_the_search_at_that_threshold(monkeypatch, exact):
    vectors = crowded_vectors()
    monkeypatch.setattr(neighbours, "EXACT_SEARCH_MAX_ROWS", 10_000 if exact else 100)
    calls = []
    low = neighbour_graph(vectors, 0.5, on_progress=lambda done, total: calls.append((done, total)))
    if not exact:  # the cell search says how far it is; the exact one is one call
        assert calls and calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(low.pairs) <= len(vectors) * 2 * neighbours.NEIGHBOURS_PER_ROW  # about k per row, not k per cell
    for threshold in (0.85, 0.9, 0.95):
        high = neighbour_graph(vectors, threshold)
        cut = low.at_least(threshold)
        assert len(high.pairs) > 0
        assert {tuple(p) for p in cut.pairs.tolist()} == {tuple(p) for p in high.pairs.tolist()}


class ClusterEncoder:
    """Texts "c<k> <i>" near a fixed direction per k (cosine ~0.9 to each other), everything else apart:
    a deterministic stand-in for MiniLM where the test needs exact cluster sizes, not language."""

    def encode(self, texts, **_):
        out = []
        for text in texts:
            head, _, tail = text.partition(" ")
            rng = np.random.default_rng(zlib.crc32(head.encode()))
            noise = np.random.default_rng(zlib.crc32(text.encode())).normal(scale=0.04, size=32)
            out.append(rng.normal(size=32) / np.sqrt(32) + noise)
        return unit(out)


def test_one_search_serves_the_slider_counts_and_the_plan_at_any_stop(store):
    task = store.add_tasks([{"instruction": "Say something"}])[0]
    texts = [f"c{k} {i}" for k in range(6) for i in range(k + 2)] + [f"alone{i} x" for i in range(10)]
    gens = [add_generation(store, task, f"r{i}", response=t) for i, t in enumerate(texts)]
    embed_items(store, "response", embedder=ClusterEncoder())
    config = DedupeConfig(threshold=0.8, representative="earliest")
    search = ReusedSearch()
    thresholds = [round(0.5 + i / 100, 2) for i in range(51)]
    counts = preview_counts(store, config, thresholds, search=search)
    assert counts[0.8] == sum(k + 1 for k in range(6))  # every cluster keeps one
    for t in (0.6, 0.8, 0.9, 0.99):
        plan = plan_dedupe(store, dataclasses.replace(config, threshold=t), search=search)
        assert plan.rows_marked == counts[t] == plan_dedupe(store, dataclasses.replace(config, threshold=t)).rows_marked
    assert search.searches == 1
    store.set_label(gens[:2], "rejected")  # the rows compared change: the graph is no longer theirs
    assert plan_dedupe(store, config, search=search).rows_marked == counts[0.8] - 1
    assert search.searches == 2
