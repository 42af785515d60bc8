"""The bundled MiniLM on ONNX Runtime (curation.onnx_embed): exported once into a workspace's models folder, the
same vectors as sentence-transformers (so they share its key), picklable for Ray, and what embed_items uses."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from curation import onnx_embed
from curation.embed import DEFAULT_EMBEDDER, default_embedder_path, embed_items, load_embedder
from curation.onnx_embed import OnnxEmbedder, ensure_onnx_model, onnx_model_path
from tests.conftest import add_generation

# Unsorted lengths, an empty text, one past the model's 256 tokens, other scripts, a duplicate: padding,
# truncation and the order of the answer all matter.
TEXTS = ["The capital of France is Paris.", "", "word " * 400, "Ünïcödé — 日本語のテキスト",
         "How do I reset my password?", "a\nb\tc", "The capital of France is Paris.", "ok"] * 3


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    models = tmp_path_factory.mktemp("onnx-models")
    ensure_onnx_model(models, default_embedder_path())
    return models


@pytest.fixture(scope="module")
def reference():
    return load_embedder()  # sentence-transformers on torch: what the vectors must equal


def test_onnx_vectors_equal_sentence_transformers(onnx_models, reference):
    embedder = load_embedder(None, onnx_models)
    assert isinstance(embedder, OnnxEmbedder)
    expected = reference.encode(TEXTS, convert_to_numpy=True)
    for batch_size in (1, 5, 64):
        got = embedder.encode(TEXTS, batch_size=batch_size)
        assert got.shape == expected.shape == (len(TEXTS), 384) and got.dtype == np.float32
        assert np.abs(got - expected).max() < 1e-5, batch_size
    assert embedder.encode([]).shape == (0, 384)


def test_the_embedder_survives_pickling_as_ray_ships_it(onnx_models):
    embedder = load_embedder(None, onnx_models)
    again = pickle.loads(pickle.dumps(embedder))
    assert np.array_equal(again.encode(TEXTS), embedder.encode(TEXTS))


def test_exported_once_and_a_failed_export_leaves_nothing(onnx_models, tmp_path, monkeypatch):
    def refuse(*_):
        raise RuntimeError("exported again")

    monkeypatch.setattr(onnx_embed, "_export", refuse)
    assert ensure_onnx_model(onnx_models, default_embedder_path()) == onnx_model_path(onnx_models)

    def half_written(_model, _sample, path):
        open(path, "wb").write(b"half a graph")
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(onnx_embed, "_export", half_written)
    with pytest.raises(RuntimeError, match="mid-export"):
        ensure_onnx_model(tmp_path, default_embedder_path())
    assert list((tmp_path / onnx_embed.ONNX_FOLDER).iterdir()) == []


def test_embed_items_runs_minilm_on_onnx_under_the_default_key(store, reference):
    task = store.add_tasks([{"instruction": "Say something"}])[0]
    texts = ["How do I reset my password?", "Write a haiku about autumn leaves.", "word " * 300]
    gens = [add_generation(store, task, f"r{i}", response=text) for i, text in enumerate(texts)]
    assert embed_items(store, "response") == {"encoded": 3, "reused": 0, "model": DEFAULT_EMBEDDER}
    assert onnx_model_path(store.workspace / "models").exists()
    ids, vectors = store.fresh_embeddings("response", DEFAULT_EMBEDDER)
    assert ids.tolist() == gens
    assert np.abs(vectors - reference.encode(texts, convert_to_numpy=True)).max() < 1e-5
