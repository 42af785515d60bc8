"""The fast dedupe path: the static embedder distilled from the bundled MiniLM (once per test session), the
static+minilm re-check, and the neighbour search's handling of rows without a vector — pure functions on tiny
hand-built vectors, then the static and static+minilm models deduping a real DuckDB workspace end to end."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from curation import static_embed
from curation.dedupe import DedupeConfig, apply_dedupe, plan_dedupe, preview_counts
from curation.embed import DEFAULT_EMBEDDER, default_embedder_path, embed_items, embedder_key, load_embedder
from curation.hybrid import CANDIDATE_THRESHOLD, fine_vectors, hybrid_vectors
from curation.neighbours import neighbour_graph
from curation.static_embed import STATIC_EMBEDDER, StaticEmbedder, ensure_static_model, static_model_dir
from tests.conftest import add_generation

PASSWORD = ["How do I reset my password?", "What are the steps to reset my password?"]
UNRELATED = ["Write a haiku about autumn leaves.", "Explain the difference between TCP and UDP.",
             "Give me a recipe for banana bread."]


@pytest.fixture(scope="session")
def static_models(tmp_path_factory):
    """A models folder holding the static model, distilled from the bundled MiniLM once for the whole session."""
    models = tmp_path_factory.mktemp("static-models")
    ensure_static_model(models, default_embedder_path())
    return models


def workspace_with_model(store, static_models):
    """The session's distilled model copied into the workspace's models folder, where the studio looks for it."""
    shutil.copytree(static_model_dir(static_models), static_model_dir(store.workspace / "models"))


def unit(rows) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ---- pure functions -------------------------------------------------------------------------------

def test_zero_rows_are_left_out_of_the_search_and_pairs_keep_their_row_numbers():
    vectors = np.zeros((5, 2), np.float32)
    vectors[1], vectors[3], vectors[4] = unit([[1, 0], [1, 0.01], [0, 1]])
    graph = neighbour_graph(vectors, 0.9)
    assert graph.n == 5
    assert graph.pairs.tolist() == [[1, 3]]
    assert graph.sims[0] == pytest.approx(1.0, abs=1e-3)
    assert len(neighbour_graph(np.zeros((4, 3), np.float32), 0.5).pairs) == 0


def test_hybrid_vectors_keep_the_fine_vectors_of_rows_with_a_static_look_alike_only():
    # static: rows 0 and 1 look alike (cos 0.8), row 2 looks like nothing; fine: 1 is 2's twin, 0 is apart
    static = unit([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1]])
    fine = unit([[1, 0], [0, 1], [0, 1]])
    out = hybrid_vectors(static, fine, threshold=0.75)
    assert out.tolist() == [[1, 0], [0, 1], [0, 0]]
    # so 1 and 2 are never paired although their fine vectors agree, and 0-1 is decided by the fine cosine (0)
    assert len(neighbour_graph(out, 0.5).pairs) == 0
    assert hybrid_vectors(static, fine, threshold=0.85).tolist() == [[0, 0], [0, 0], [0, 0]]


def test_fine_vectors_are_looked_up_by_id_with_zero_rows_for_missing_ids():
    ids = np.array([2, 5, 9])
    vectors = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    assert fine_vectors(ids, np.array([9, 3, 2, 10]), vectors, 2).tolist() == [[1, 1], [0, 0], [1, 0], [0, 0]]
    assert fine_vectors(np.zeros(0, np.int64), np.array([1]), np.zeros((0, 0)), 1).tolist() == [[0]]


# ---- the static model ------------------------------------------------------------------------------

def test_static_encode_matches_model2vec_and_gives_unknown_text_a_zero_vector(static_models):
    from model2vec import StaticModel

    folder = static_model_dir(static_models)
    texts = [*PASSWORD, *UNRELATED, "", "   "]
    ours = StaticEmbedder(folder).encode(texts)
    theirs = StaticModel.from_pretrained(str(folder)).encode(texts[:5])
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    assert ours.shape == (7, static_embed.PCA_DIMS)
    np.testing.assert_allclose(ours[:5], theirs, atol=1e-3)  # model2vec sums in float16
    assert not ours[5:].any()
    similar = ours @ ours.T
    assert similar[0, 1] > 0.8 > similar[0, 2:5].max()


def test_the_distilled_model_is_reused_not_distilled_again(static_models, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("distilled a second time")

    monkeypatch.setattr("model2vec.distill.distill", refuse)
    assert ensure_static_model(static_models, default_embedder_path()) == static_model_dir(static_models)
    assert embedder_key("static") == embedder_key(STATIC_EMBEDDER) == STATIC_EMBEDDER


def test_static_embedder_needs_a_models_folder():
    with pytest.raises(Exception, match="models folder"):
        load_embedder("static")


# ---- end to end on a real workspace ------------------------------------------------------------------

def add_responses(store, responses):
    task = store.add_tasks([{"instruction": "Say something"}])[0]
    return [add_generation(store, task, f"r{i}", response=text) for i, text in enumerate(responses)]


def test_static_model_dedupes_a_workspace_end_to_end(store, static_models):
    workspace_with_model(store, static_models)
    gens = add_responses(store, [*PASSWORD, *UNRELATED, PASSWORD[0]])
    result = embed_items(store, "response", "static")
    assert result == {"encoded": 6, "reused": 0, "model": STATIC_EMBEDDER}
    assert embed_items(store, "response", "static")["encoded"] == 0  # stored: nothing encoded twice
    config = DedupeConfig(model="static", threshold=0.8, representative="earliest")
    plan = plan_dedupe(store, config)
    assert [sorted(m.id for m in c.members) for c in plan.clusters] == [[gens[0], gens[1], gens[5]]]
    assert preview_counts(store, config, [0.8, 0.99])[0.8] == 2
    batch, marked, _ = apply_dedupe(store, plan)
    assert marked == 2 and store.undo_batch(batch) == 2


def test_static_plus_minilm_encodes_only_the_candidates_with_minilm(store, static_models):
    workspace_with_model(store, static_models)
    gens = add_responses(store, [*PASSWORD, *UNRELATED])
    result = embed_items(store, "response", "static+minilm")
    assert result["model"] == "static+minilm" and result["candidates"] == 2  # the two password answers
    minilm_ids, _ = store.fresh_embeddings("response", DEFAULT_EMBEDDER)
    assert sorted(minilm_ids.tolist()) == gens[:2]
    plan = plan_dedupe(store, DedupeConfig(model="static+minilm", representative="earliest"))
    assert [[m.id for m in c.members] for c in plan.clusters] == [gens[:2]]
    # the similarity shown is MiniLM's (the default threshold's scale), not the static model's
    minilm = load_embedder().encode(PASSWORD)
    minilm = minilm / np.linalg.norm(minilm, axis=1, keepdims=True)
    assert plan.clusters[0].members[1].similarity == pytest.approx(float(minilm[0] @ minilm[1]), abs=1e-3)
    assert CANDIDATE_THRESHOLD < plan.config.threshold
