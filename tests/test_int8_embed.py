"""MiniLM quantised to int8 on OpenVINO (curation.int8_embed, model "minilm-int8"): built once into a workspace's
models folder from bundled calibration texts, vectors close to MiniLM's and stored under their own key, picklable
for Ray, and what embed_items and the dedupe use when a user names it."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from curation import int8_embed
from curation.dedupe import DedupeConfig, plan_dedupe
from curation.embed import DEFAULT_EMBEDDER, default_embedder_path, embed_items, embedder_key, load_embedder
from curation.int8_embed import INT8_EMBEDDER, Int8Embedder, calibration_texts, ensure_int8_model, int8_model_path
from tests.conftest import add_generation

SENTENCES = ["The capital of France is Paris.", "How do I reset my password?", "Write a haiku about autumn leaves.",
             "Explain why the sky is blue in two sentences.", "What is the boiling point of water at sea level?",
             "Give three tips for a job interview.", "Summarise the plot of Hamlet.", "ok"]


@pytest.fixture(scope="module")
def int8_models(tmp_path_factory):
    models = tmp_path_factory.mktemp("int8-models")
    ensure_int8_model(models, default_embedder_path())
    return models


def test_calibration_texts_are_the_bundled_seeds_and_documents_not_the_labelled_pairs():
    from bench.dedupe_threshold import load_pairs

    texts = calibration_texts()
    assert len(texts) > 80 and texts == calibration_texts()
    labelled = {t for p in load_pairs() for t in (p["a"], p["b"])}
    assert not labelled & set(texts)


def test_int8_vectors_are_close_to_minilm_and_keep_its_decisions(int8_models):
    int8 = load_embedder("minilm-int8", int8_models)
    assert isinstance(int8, Int8Embedder)
    minilm = load_embedder(None, int8_models)
    texts = SENTENCES + ["", "word " * 400, "Ünïcödé — 日本語のテキスト"] + SENTENCES[::-1]
    got, expected = int8.encode(texts), minilm.encode(texts)
    assert got.shape == expected.shape == (len(texts), 384) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # sentences barely move (0.997-0.999 here); a one-word text moves most ("ok": 0.95)
    assert np.einsum("ij,ij->i", got[:7], expected[:7]).min() > 0.99
    assert np.einsum("ij,ij->i", got, expected).min() > 0.85
    assert np.array_equal(got[:8], got[-8:][::-1])  # order and batch neighbours do not change a row
    paraphrases = int8.encode(["How can I change my password?", "Where is the Eiffel Tower?"])
    assert paraphrases[0] @ got[1] > 0.82 > paraphrases[1] @ got[1]
    assert int8.encode([]).shape == (0, 384)


def test_the_int8_embedder_survives_pickling_as_ray_ships_it(int8_models):
    embedder = load_embedder("int8", int8_models)
    again = pickle.loads(pickle.dumps(embedder))
    assert np.array_equal(again.encode(SENTENCES), embedder.encode(SENTENCES))


def test_built_once_and_a_failed_build_leaves_nothing(int8_models, tmp_path, monkeypatch):
    import nncf

    def refuse(*_, **__):
        raise RuntimeError("quantised again")

    monkeypatch.setattr(nncf, "quantize", refuse)
    assert ensure_int8_model(int8_models, default_embedder_path()) == int8_model_path(int8_models)
    with pytest.raises(RuntimeError, match="quantised again"):
        ensure_int8_model(tmp_path, default_embedder_path())
    assert not int8_model_path(tmp_path).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{INT8_EMBEDDER}")]
    assert int8_embed.first_use_note(tmp_path) and not int8_embed.first_use_note(int8_models)


def test_a_workspace_dedupes_with_int8_under_its_own_key(store, capfd):
    assert embedder_key("minilm-int8") == embedder_key("INT8") == INT8_EMBEDDER != DEFAULT_EMBEDDER
    task = store.add_tasks([{"instruction": "Say something"}])[0]
    texts = ["How do I reset my password?", "How can I reset my password?", "Write a haiku about autumn leaves."]
    gens = [add_generation(store, task, f"r{i}", response=text) for i, text in enumerate(texts)]
    assert embed_items(store, "response", "minilm-int8") == {"encoded": 3, "reused": 0, "model": INT8_EMBEDDER}
    assert int8_model_path(store.workspace / "models").exists()
    assert capfd.readouterr().out == ""  # built here, and NNCF's progress bars kept off stdout (the CLI's --json)
    ids, vectors = store.fresh_embeddings("response", INT8_EMBEDDER)
    assert ids.tolist() == gens and vectors.shape == (3, 384)
    assert store.fresh_embeddings("response", DEFAULT_EMBEDDER)[0].tolist() == []  # never mixed with MiniLM's
    plan = plan_dedupe(store, DedupeConfig(model="minilm-int8", threshold=0.82, representative="earliest"))
    assert [sorted(m.id for m in c.members) for c in plan.clusters] == [gens[:2]]
