"""The "static+minilm" dedupe model: static vectors find the candidates, MiniLM decides.

The static embedder (curation.static_embed) is ~100x faster than MiniLM but separates paraphrases less well:
at its best threshold it finds 0.69 of the labelled paraphrases where MiniLM finds 0.84
(bench/dedupe_threshold.py). Here every row is encoded by the static model; a row with a static look-alike at
cosine >= CANDIDATE_THRESHOLD is a candidate and is also encoded by MiniLM; a row without one is nobody's
duplicate. The dedupe then compares candidates by their MiniLM vectors only, so thresholds keep MiniLM's scale
and the calibrated default (0.82) holds. It costs a MiniLM encode of the candidate rows: cheap where look-alikes
are rare, close to MiniLM's whole cost where most rows have one.

The MiniLM vectors are stored under MiniLM's own key, so a later full MiniLM dedupe reuses them. Pure array code
here; curation.embed.embed_hybrid fills a workspace, curation.dedupe reads it.
"""
from __future__ import annotations

import numpy as np

from curation.neighbours import neighbour_graph

HYBRID_EMBEDDER = "static+minilm"
# Static cosine at or above which two rows are both re-checked by MiniLM. Of the 38 labelled pairs MiniLM
# calls duplicates at 0.82, the static model puts 37 at 0.55 or above (the last at 0.46): recall within 0.03 of
# MiniLM's. 0.6 would lose three (recall 0.78).
CANDIDATE_THRESHOLD = 0.55


def is_hybrid(name: str | None) -> bool:
    return (name or "").strip().lower() == HYBRID_EMBEDDER


def candidate_rows(static_vectors: np.ndarray, threshold: float = CANDIDATE_THRESHOLD) -> np.ndarray:
    """int64[m] ascending: the rows of unit vectors float32[n, d] that have another row at cosine >= threshold."""
    return np.unique(neighbour_graph(static_vectors, threshold).pairs)


def hybrid_vectors(static: np.ndarray, fine: np.ndarray, threshold: float = CANDIDATE_THRESHOLD) -> np.ndarray:
    """float32[n, d_fine]: the fine unit vectors float32[n, d_fine] of the rows whose static unit vectors
    float32[n, d_static] have a look-alike at cosine >= threshold, zero rows (similar to nothing) for the others.
    What a dedupe compares: the workspace stores MiniLM vectors for the candidates only, the same thing."""
    out = np.zeros_like(np.asarray(fine, dtype=np.float32))
    rows = candidate_rows(static, threshold)
    out[rows] = fine[rows]
    return out


def fine_vectors(ids: np.ndarray, wanted: np.ndarray, vectors: np.ndarray, dim: int) -> np.ndarray:
    """float32[len(wanted), dim]: the row of `vectors` (float32[len(ids), dim], ids int64 ascending) for each
    wanted id, a zero row (similar to nothing) for an id without one."""
    out = np.zeros((len(wanted), dim), np.float32)
    if not len(ids):
        return out
    pos = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    found = ids[pos] == wanted
    out[found] = vectors[pos[found]]
    return out
