"""Is a new task new enough? ROUGE-L (Self-Instruct's filter) or embedding cosine against a pool.

The maths are pure functions on token lists and vectors; `NoveltyFilter` holds the pool for one job.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from curation.errors import StudioError

_WORD = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens: what ROUGE-L compares."""
    return _WORD.findall((text or "").lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)·len(b)) time, O(len(b)) space)."""
    if not a or not b:
        return 0
    if len(b) > len(a):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: list[str], reference: list[str]) -> float:
    """ROUGE-L F1 of two token lists, in [0, 1]: 2PR/(P+R) with P = LCS/len(candidate), R = LCS/len(reference).
    Two empty lists score 0 (nothing in common to measure)."""
    lcs = lcs_length(candidate, reference)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(candidate), lcs / len(reference)
    return 2 * p * r / (p + r)


def _rouge_upper_bound(cand: Counter, ref: Counter, n_cand: int, n_ref: int) -> float:
    # The LCS cannot exceed the multiset overlap, so this bounds ROUGE-L from above for free.
    overlap = sum((cand & ref).values())
    return 0.0 if overlap == 0 else 2 * overlap / (n_cand + n_ref)


def max_cosine(vector: np.ndarray, pool: np.ndarray) -> float:
    """Largest cosine similarity between `vector` (dim,) and the rows of `pool` (n, dim); 0 for an empty pool."""
    if pool.size == 0:
        return 0.0
    v = vector / (np.linalg.norm(vector) or 1.0)
    rows = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    return float(np.max(rows @ v))


class NoveltyFilter:
    """A pool of task texts; `admit(text)` accepts a text below the similarity threshold and adds it."""

    def __init__(self, texts: list[str], similarity: str = "rouge", threshold: float = 0.7, embedder=None):
        if similarity not in ("rouge", "embedding"):
            raise StudioError(f"similarity must be 'rouge' or 'embedding' (got {similarity!r})")
        self.similarity, self.threshold = similarity, threshold
        self._texts = list(texts)
        self._tokens = [tokens(t) for t in self._texts]
        self._counts = [Counter(t) for t in self._tokens]
        self._embedder = None
        if similarity == "embedding":
            self._embedder = embedder or _load_embedder()
            self._vectors = self._encode(self._texts) if self._texts else None

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._embedder.encode(texts, normalize_embeddings=True), dtype=np.float32)

    def max_similarity(self, text: str) -> float:
        if self.similarity == "embedding":
            if self._vectors is None:
                return 0.0
            return max_cosine(self._encode([text])[0], self._vectors)
        cand = tokens(text)
        counts = Counter(cand)
        best = 0.0
        for ref, ref_counts in zip(self._tokens, self._counts):
            if _rouge_upper_bound(counts, ref_counts, len(cand), len(ref)) <= best:
                continue
            best = max(best, rouge_l(cand, ref))
        return best

    def admit(self, text: str) -> bool:
        """True (and the text joins the pool) when its similarity to every pooled text is below the threshold."""
        if self.max_similarity(text) >= self.threshold:
            return False
        self._texts.append(text)
        self._tokens.append(tokens(text))
        self._counts.append(Counter(self._tokens[-1]))
        if self._embedder is not None:
            vector = self._encode([text])
            self._vectors = vector if self._vectors is None else np.vstack([self._vectors, vector])
        return True


def _load_embedder():
    from curation.embed import load_embedder  # the one place that knows where the bundled model lives
    return load_embedder()
