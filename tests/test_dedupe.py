"""Dedupe: pure grouping on hand-built inputs, real MiniLM paraphrases, incremental embedding,
representatives, apply/undo, preview counts and the 2-D map — on a real DuckDB workspace."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from curation import neighbours
from curation.cluster_map import cluster_map_figure, map_data, map_frame, projection_2d, rows_in_band
from curation.dedupe import DedupeConfig, apply_dedupe, plan_dedupe, preview_counts
from curation.dedupe_groups import exact_groups, leader_labels, near_duplicate_groups, normalise, normalised_groups
from curation.embed import DEFAULT_EMBEDDER, embed_items, load_embedder
from curation.errors import ConfigError, StudioError
from tests.conftest import add_generation

# MiniLM cosines (checked): password pair 0.94, "change my password" 0.86 / 0.79 to them, France pair
# 0.88, the router question 0.53-0.55 to the password ones, everything else below 0.25.
PASSWORD = ["How do I reset my password?", "What are the steps to reset my password?", "How can I change my password?"]
FRANCE = ["What is the capital of France?", "Name the capital city of France."]
ROUTER = "How do I reset my router?"
UNRELATED = ["Write a haiku about autumn leaves.", "Explain the difference between TCP and UDP.",
             "Give me a recipe for banana bread."]


class CountingEncoder:
    """The real MiniLM, counting how many texts it was asked to encode."""

    def __init__(self, model):
        self.model, self.encoded = model, 0

    def encode(self, texts, **kwargs):
        self.encoded += len(texts)
        return self.model.encode(texts, **kwargs)


@pytest.fixture(scope="module")
def minilm():
    return load_embedder()  # the bundled model, loaded once for the module


@pytest.fixture
def encoder(minilm):
    return CountingEncoder(minilm)


def unit(rows) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def add_tasks_with_answers(store, instructions, answers_per_task=1):
    """Tasks, each with `answers_per_task` generations; returns (task ids, {task id: [generation ids]})."""
    task_ids = store.add_tasks([{"instruction": text} for text in instructions])
    gens = {t: [add_generation(store, t, f"t{t}s{i}", response=f"answer {i} to task {t}")
                for i in range(answers_per_task)] for t in task_ids}
    return task_ids, gens


def add_responses(store, responses):
    """One task with one generation per response text; returns the generation ids in order."""
    task = store.add_tasks([{"instruction": "Say something"}])[0]
    return [add_generation(store, task, f"t{task}r{i}", response=text) for i, text in enumerate(responses)]


def add_scores(store, scores: dict[int, float]):
    store.bulk_add("judgments", pd.DataFrame({"generation_id": list(scores), "judge_model": "judge",
                                              "score": list(scores.values())}))


# ---- pure functions -------------------------------------------------------------------------------

def test_normalise_ignores_case_whitespace_and_punctuation():
    assert normalise("  Hello,  WORLD!\n") == "hello world"
    assert normalise("What's   the time?") == normalise("whats the TIME")
    assert normalise("¿Qué tal?") == "qué tal"
    assert normalise("hello world") != normalise("hello, word")


def test_exact_and_normalised_groups():
    texts = ["Reset my password.", "reset my password", "Reset my password.", "  RESET my   password!! ",
             "Reset my router.", "Reset my router."]
    assert exact_groups(texts) == [[0, 2], [4, 5]]
    # the largest group comes first
    assert normalised_groups(texts) == [[0, 1, 2, 3], [4, 5]]
    assert exact_groups(["a", "b"]) == [] and normalised_groups([]) == []


def test_leader_labels_never_chain_and_follow_the_rank():
    pairs = np.array([[5, 6], [1, 3], [3, 4], [0, 4]])  # the chain 0 - 4 - 3 - 1, and 5 - 6
    # by row order: 0 takes 4; 1 takes 3 (4 is taken); 5 takes 6. 1 is not a duplicate of 0.
    np.testing.assert_array_equal(leader_labels(8, pairs, np.arange(8)), [0, 1, 2, 1, 0, 5, 5, 7])
    # 3 ranked first takes both its partners; 0 is left alone with nothing untaken to pair with
    rank = np.array([5, 4, 6, 0, 1, 2, 3, 7])
    np.testing.assert_array_equal(leader_labels(8, pairs, rank), [0, 3, 2, 3, 3, 5, 5, 7])
    np.testing.assert_array_equal(leader_labels(3, np.zeros((0, 2), np.int64), np.arange(3)), [0, 1, 2])
    # a long path whose ids are scrambled splits into pieces of at most 3 (a leader and its 2 partners)
    order = np.random.default_rng(0).permutation(1000)
    labels = leader_labels(1000, np.stack([order[:-1], order[1:]], axis=1), np.arange(1000))
    sizes = np.bincount(labels)
    assert sizes.max() <= 3 and sizes.sum() == 1000


def test_near_duplicate_groups_on_hand_built_vectors():
    angle = np.deg2rad([0, 10, 20, 90, 180, 95])  # cos(10 deg) = 0.985, cos(20 deg) = 0.94
    vectors = unit(np.stack([np.cos(angle), np.sin(angle), np.zeros(6)], axis=1))
    # 0-1 and 1-2 are close but 0 and 2 only 0.94: with 0 kept, 2 is no duplicate of it and stays;
    # 3 and 5 are 5 degrees apart; 4 is the opposite of 0
    assert near_duplicate_groups(vectors, 0.98) == [[0, 1], [3, 5]]
    # keeping 1 first, both 0 and 2 are its near duplicates
    assert near_duplicate_groups(vectors, 0.98, rank=np.array([1, 0, 2, 3, 4, 5])) == [[0, 1, 2], [3, 5]]
    assert near_duplicate_groups(vectors, 0.999) == []
    assert near_duplicate_groups(vectors[:1], 0.9) == []


def test_cell_search_above_the_exact_limit_finds_what_exact_search_finds(monkeypatch):
    rng = np.random.default_rng(1)
    base = unit(rng.normal(size=(3000, 64)))
    copies = unit(base[:1000] + rng.normal(scale=0.04, size=(1000, 64)))  # cosine about 0.95 to their base
    vectors = np.concatenate([base, copies])
    exact = near_duplicate_groups(vectors, 0.9)
    monkeypatch.setattr(neighbours, "EXACT_SEARCH_MAX_ROWS", 100)
    approximate = near_duplicate_groups(vectors, 0.9)
    assert len(exact) == 1000 and all(len(g) == 2 for g in exact)
    found = {tuple(g) for g in approximate} & {tuple(g) for g in exact}
    assert len(found) >= 990, f"cell search found only {len(found)} of 1000 planted pairs"


def test_config_rejects_out_of_range_fields_with_a_fix():
    with pytest.raises(ConfigError, match=r"threshold must be in the range \[0.5, 1.0\]"):
        DedupeConfig(threshold=0.3)
    with pytest.raises(ConfigError, match="method must be one of exact, normalised, semantic"):
        DedupeConfig(method="fuzzy")
    with pytest.raises(ConfigError, match="representative"):
        DedupeConfig(representative="random")
    with pytest.raises(ConfigError, match="target"):
        DedupeConfig(target="judgments")


def test_projection_2d_finds_the_main_axes():
    rng = np.random.default_rng(0)
    x = np.zeros((500, 5), np.float32)
    x[:, 2] = rng.normal(scale=10, size=500)  # the widest spread
    x[:, 4] = rng.normal(scale=3, size=500)
    x[:, 0] = rng.normal(scale=0.1, size=500)
    points = projection_2d(x)
    assert points.shape == (500, 2)
    assert abs(np.corrcoef(points[:, 0], x[:, 2])[0, 1]) > 0.999
    assert abs(np.corrcoef(points[:, 1], x[:, 4])[0, 1]) > 0.99
    np.testing.assert_array_equal(projection_2d(x), points)  # same signs every time


def test_cluster_map_figure_colours_the_most_frequent_labels():
    points = np.random.default_rng(0).normal(size=(30, 2))
    labels = ["cluster 1"] * 12 + ["cluster 2"] * 6 + [f"c{i}" for i in range(12)]
    fig = cluster_map_figure(points, labels, "responses")
    assert isinstance(fig, Figure)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "cluster 1 (12)" in legend and "other (4)" in legend and len(legend) == 11
    with pytest.raises(StudioError):
        cluster_map_figure(points, labels[:3], "")


# ---- embedding ------------------------------------------------------------------------------------

def test_embedding_is_incremental(store, encoder):
    gens = add_responses(store, ["first answer", "second answer", "third answer"])
    assert embed_items(store, "response", embedder=encoder) == {"encoded": 3, "reused": 0, "model": DEFAULT_EMBEDDER}
    assert encoder.encoded == 3
    assert embed_items(store, "response", embedder=encoder)["encoded"] == 0
    assert encoder.encoded == 3

    store.edit_response(gens[1], "second answer, edited")
    counts = embed_items(store, "response", embedder=encoder)
    assert (counts["encoded"], counts["reused"], encoder.encoded) == (1, 2, 4)
    # the stored vector is the edited text's
    ids, vectors = store.fresh_embeddings("response", DEFAULT_EMBEDDER)
    assert ids.tolist() == gens and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    expected = encoder.model.encode(["second answer, edited"], normalize_embeddings=True)[0]
    np.testing.assert_allclose(vectors[1], expected, atol=1e-5)

    add_responses(store, ["a new one"])
    progress = []
    counts = embed_items(store, "response", embedder=encoder, batch_size=1, on_progress=lambda *p: progress.append(p))
    assert (counts["encoded"], counts["reused"], progress) == (1, 3, [(1, 1)])


def test_nothing_to_embed_does_not_load_a_model(store, encoder, monkeypatch):
    add_responses(store, ["only answer"])
    embed_items(store, "response", embedder=encoder)

    def refuse(*_):
        raise AssertionError("the embedder was loaded with nothing to encode")
    monkeypatch.setattr("curation.embed.load_embedder", refuse)
    assert embed_items(store, "response") == {"encoded": 0, "reused": 1, "model": DEFAULT_EMBEDDER}


def test_embedding_in_batches_reports_progress_per_batch(store, encoder):
    add_tasks_with_answers(store, [f"task number {i}" for i in range(5)], answers_per_task=0)
    progress = []
    embed_items(store, "task", embedder=encoder, batch_size=2, on_progress=lambda d, t: progress.append((d, t)))
    assert progress == [(2, 5), (4, 5), (5, 5)]


def test_a_model_that_is_not_local_fails_with_an_offline_message():
    with pytest.raises(StudioError, match="not available offline"):
        load_embedder("someone/not-a-cached-model")


# ---- plans on a workspace -------------------------------------------------------------------------

def test_semantic_task_clusters_group_paraphrases_and_not_unrelated_tasks(store, encoder):
    task_ids, _ = add_tasks_with_answers(store, PASSWORD + FRANCE + [ROUTER] + UNRELATED)
    embed_items(store, "task", embedder=encoder)
    plan = plan_dedupe(store, DedupeConfig(target="tasks", method="semantic", threshold=0.8,
                                           representative="earliest"))
    clusters = [[m.id for m in c.members] for c in plan.clusters]
    assert clusters == [task_ids[0:3], task_ids[3:5]]
    assert [c.representative for c in plan.clusters] == [task_ids[0], task_ids[3]]
    assert [c.index for c in plan.clusters] == [1, 2]
    assert plan.rows_marked == 3 and plan.items_total == 9 and plan.rows_total == 9
    # how close each member is to the kept one: 1.0 for itself, 0.94 and 0.86 for the paraphrases
    sims = [m.similarity for m in plan.clusters[0].members]
    assert sims[0] == pytest.approx(1.0) and 0.9 < sims[1] < 0.97 and 0.8 < sims[2] < 0.9
    assert all(m.similarity >= 0.8 for c in plan.clusters for m in c.members)  # each one close to the kept row
    frame = plan.to_frame()
    assert frame["cluster"].tolist() == [1, 1, 1, 2, 2] and frame["kept"].sum() == 2

    tight = plan_dedupe(store, DedupeConfig(target="tasks", threshold=0.9, representative="earliest"))
    assert [[m.id for m in c.members] for c in tight.clusters] == [task_ids[0:2]]


def test_plan_needs_embeddings_first(store):
    add_responses(store, ["one", "two"])
    with pytest.raises(StudioError, match="embed them first"):
        plan_dedupe(store, DedupeConfig(method="semantic"))


def test_exact_and_normalised_response_dedupe(store):
    gens = add_responses(store, ["The answer is 42.", "the answer is 42", "The answer is 42.", "Something else."])
    exact = plan_dedupe(store, DedupeConfig(method="exact", representative="earliest"))
    assert [[m.id for m in c.members] for c in exact.clusters] == [[gens[0], gens[2]]]
    normalised = plan_dedupe(store, DedupeConfig(method="normalised", representative="earliest"))
    assert [[m.id for m in c.members] for c in normalised.clusters] == [gens[:3]]
    assert normalised.rows_marked == 2


@pytest.mark.parametrize("rule, kept", [("judge_score", 1), ("longest", 2), ("earliest", 0)])
def test_each_representative_rule_keeps_its_member(store, rule, kept):
    gens = add_responses(store, ["Paris.", "paris", "PARIS!!!   ", "Lyon"])
    add_scores(store, {gens[0]: 5.0, gens[1]: 9.0, gens[3]: 10.0})
    add_scores(store, {gens[0]: 7.0})  # the highest of a generation's scores counts
    plan = plan_dedupe(store, DedupeConfig(method="normalised", representative=rule))
    assert plan.clusters[0].representative == gens[kept]
    assert plan.notes == ()


def test_judge_rule_without_judgments_keeps_the_earliest_and_says_so(store):
    gens = add_responses(store, ["same", "same", "same"])
    plan = plan_dedupe(store, DedupeConfig(method="exact", representative="judge_score"))
    assert plan.clusters[0].representative == gens[0]
    assert any("no judge scores" in note for note in plan.notes)


def test_apply_marks_duplicates_rejected_with_a_reason_and_undo_restores(store):
    gens = add_responses(store, ["A cat.", "a cat", "A dog.", "a dog!", "A bird."])
    store.set_label([gens[3]], "approved")
    plan = plan_dedupe(store, DedupeConfig(method="normalised", representative="earliest"))
    batch = apply_dedupe(store, plan).batch
    rows = {g: store.generation(g) for g in gens}
    assert [rows[g]["review_status"] for g in gens] == ["pending", "rejected", "pending", "rejected", "pending"]
    assert rows[gens[1]]["reason"] == f"dedupe:normalised:cluster 1 of {gens[0]}"
    assert rows[gens[3]]["reason"] == f"dedupe:normalised:cluster 2 of {gens[2]}"
    assert store.runs(kind="dedupe")[0]["metrics"]["batch_id"] == batch
    # a second plan no longer sees the rejected rows
    assert len(plan_dedupe(store, DedupeConfig(method="normalised")).clusters) == 0

    store.undo_batch(batch)
    assert [store.generation(g)["review_status"] for g in gens] == ["pending", "pending", "pending", "approved",
                                                                     "pending"]
    assert store.generation(gens[1])["reason"] is None


def test_a_plan_applied_later_leaves_rows_labelled_since_and_says_so(store):
    gens = add_responses(store, ["A cat.", "a cat", "A CAT", "A dog."])
    plan = plan_dedupe(store, DedupeConfig(method="normalised", representative="earliest"))
    store.set_label([gens[1]], "approved")  # the user approves a duplicate after previewing
    applied = apply_dedupe(store, plan)
    assert applied.skipped == (gens[1],) and applied.marked == 1
    assert [store.generation(g)["review_status"] for g in gens] == ["pending", "approved", "rejected", "pending"]
    assert store.runs(kind="dedupe")[0]["metrics"]["skipped_changed_since_plan"] == [gens[1]]


def test_apply_with_a_hand_picked_representative(store):
    gens = add_responses(store, ["Yes.", "yes", "YES"])
    plan = plan_dedupe(store, DedupeConfig(method="normalised", representative="earliest"))
    apply_dedupe(store, plan, overrides={1: gens[2]})
    assert [store.generation(g)["review_status"] for g in gens] == ["rejected", "rejected", "pending"]
    assert store.generation(gens[0])["reason"] == f"dedupe:normalised:cluster 1 of {gens[2]}"
    with pytest.raises(StudioError, match="not a member of cluster 1"):
        apply_dedupe(store, plan, overrides={1: 999})
    with pytest.raises(StudioError, match="no cluster 7"):
        apply_dedupe(store, plan, overrides={7: gens[0]})


def test_task_dedupe_marks_every_generation_of_the_duplicate_tasks(store, encoder):
    task_ids, gens = add_tasks_with_answers(store, PASSWORD[:2] + UNRELATED[:1], answers_per_task=2)
    add_scores(store, {gens[task_ids[1]][0]: 8.0, gens[task_ids[0]][1]: 6.0})
    embed_items(store, "task", embedder=encoder)
    plan = plan_dedupe(store, DedupeConfig(target="tasks", threshold=0.9, representative="judge_score"))
    assert plan.clusters[0].representative == task_ids[1]  # its best answer scored 8
    assert plan.rows_marked == 2 and plan.clusters[0].rows_marked_keeping(task_ids[0]) == 2
    batch = apply_dedupe(store, plan).batch
    for g in gens[task_ids[0]]:
        assert store.generation(g)["review_status"] == "rejected"
        assert store.generation(g)["reason"] == f"dedupe:semantic:cluster 1 of task {task_ids[1]}"
    assert all(store.generation(g)["review_status"] == "pending" for g in gens[task_ids[1]] + gens[task_ids[2]])
    store.undo_batch(batch)
    assert all(store.generation(g)["review_status"] == "pending" for gs in gens.values() for g in gs)


def test_preview_counts_fall_as_the_threshold_rises_and_match_the_plan(store, encoder):
    add_responses(store, PASSWORD + FRANCE + [ROUTER] + UNRELATED + [PASSWORD[0]])
    embed_items(store, "response", embedder=encoder)
    config = DedupeConfig(method="semantic", threshold=0.8)
    thresholds = [round(t, 2) for t in np.arange(0.5, 1.0001, 0.05)]
    counts = preview_counts(store, config, thresholds)
    values = [counts[t] for t in thresholds]
    assert values == sorted(values, reverse=True)
    # 0.5: password x4 (one exact copy) + router, France pair; 0.8: router drops out; 1.0: the exact copy
    assert (counts[0.5], counts[0.8], counts[0.9], counts[1.0]) == (5, 4, 2, 1)
    assert counts[0.8] == plan_dedupe(store, config).rows_marked
    exact = preview_counts(store, DedupeConfig(method="exact"), [0.6, 0.9])
    assert exact == {0.6: 1, 0.9: 1}


def test_map_data_colours_rows_by_cluster_and_status(store, encoder):
    gens = add_responses(store, PASSWORD + UNRELATED)
    store.set_label([gens[3]], "approved")
    embed_items(store, "response", embedder=encoder)
    config = DedupeConfig(threshold=0.8)
    plan = plan_dedupe(store, config)
    points, labels, ids = map_data(store, config, "cluster", plan)
    assert points.shape == (6, 2) and ids.tolist() == gens
    assert labels == ["cluster 1"] * 3 + ["no duplicate"] * 3
    assert map_data(store, config, "status")[1] == ["pending"] * 3 + ["approved"] + ["pending"] * 2
    assert isinstance(cluster_map_figure(points, labels, "responses"), Figure)
    with pytest.raises(StudioError, match="needs a dedupe plan"):
        map_data(store, config, "cluster")
    # the browser's interactive map: a row per point with its text for the hover, a band lists its rows
    frame = map_frame(store, config, "cluster", plan)
    assert frame["id"].tolist() == gens and frame["group"].tolist() == labels
    assert frame["text"].tolist() == [store.generation(g)["response"] for g in gens]
    band = rows_in_band(frame, [frame["x"].max(), frame["x"].min()])
    assert sorted(band["id"]) == gens
    narrow = rows_in_band(frame, [frame["x"].max() - 1e-6, frame["x"].max()])
    assert narrow["id"].tolist() == [int(frame.loc[frame["x"].idxmax(), "id"])]


def test_the_default_threshold_is_the_one_calibrated_on_labelled_paraphrases():
    from bench.dedupe_threshold import CURVE, best, curve
    stored = json.loads(CURVE.read_text())
    assert DedupeConfig().threshold == stored["best"]["threshold"] == best(stored["curve"])["threshold"]
    # the curve's arithmetic on a hand-checked case: two paraphrases (0.95, 0.7), one negative (0.8)
    rows = {r["threshold"]: r for r in curve(np.array([0.95, 0.7, 0.8]), np.array([True, True, False]))}
    assert (rows[0.9]["precision"], rows[0.9]["recall"]) == (1.0, 0.5)
    assert (rows[0.75]["precision"], rows[0.75]["recall"], rows[0.75]["false_pairs"]) == (0.5, 0.5, 1)
    assert (rows[0.7]["precision"], rows[0.7]["recall"]) == (0.6667, 1.0)


def test_clusters_built_when_looked_at_equal_the_groups_of_their_labels():
    """A plan keeps its clusters as arrays (a 1M-row plan built ~600k Member objects in 39 s); each cluster built on
    demand has the members, kept row and count the eager construction gave, and `duplicates` honours overrides."""
    from curation.dedupe_clusters import Clusters
    from curation.dedupe_groups import groups_from_labels, representatives

    rng = np.random.default_rng(3)
    labels, rank = rng.integers(0, 40, 200), rng.permutation(200)
    gens = [list(range(10 * r, 10 * r + 1 + r % 3)) for r in range(200)]
    rows = pd.DataFrame({"id": np.arange(200) + 1000, "text": [f"row {r}" for r in range(200)],
                         "generation_ids": gens, "score": np.where(np.arange(200) % 4, 7.0, np.nan)})
    keep = representatives(labels, rank)
    clusters = Clusters(rows, labels, keep, np.full(200, 0.9))
    groups = groups_from_labels(labels)
    assert len(clusters) == len(groups) and len(clusters[:3]) == 3 and clusters[-1].index == len(groups)
    for cluster, group in zip(clusters, groups):
        assert [m.id for m in cluster.members] == [1000 + r for r in group]
        assert cluster.representative == 1000 + keep[group[0]]
        assert cluster.rows_marked == sum(len(gens[r]) for r in group if r != keep[group[0]])
        assert {m.score for m in cluster.members} <= {7.0, None} and cluster.members[0].similarity == 0.9
    assert clusters.rows_marked == sum(c.rows_marked for c in clusters)
    assert clusters.cluster_of() == {m.id: c.index for c in clusters for m in c.members}
    other = clusters[0].members[-1].id if clusters[0].members[-1].id != clusters[0].representative else \
        clusters[0].members[0].id
    (first, kept, marked), *_ = clusters.duplicates({1: other})
    assert first == 1 and kept == other and sorted(marked) == sorted(
        g for m in clusters[0].members if m.id != other for g in m.generation_ids)
    with pytest.raises(StudioError, match="not a member of cluster 1"):
        next(clusters.duplicates({1: clusters[1].members[0].id}))
