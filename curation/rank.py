"""Ranking: scores per candidate row, their weighted combination, and "approve the top K" in one batch.

Every score is a pure function on arrays, NaN where a row has no value:
- judge: the mean 1-10 judge score;
- diversity: 1 − the cosine similarity to the nearest already-approved row (faiss inner-product search);
- difficulty: instruction-following difficulty (IFD, Li et al. 2023 "From Quantity to Quality"): the
  student's mean loss on the response given the instruction, divided by its mean loss on the response
  alone (the losses come from models.ifd, run in a child process by models.scoring). Near 1 the
  instruction barely helps (hard to follow); above 1 it hurts, and such rows are treated
  as misaligned rather than difficult (`difficulty_from_ifd`).
`combined` min-max normalises each score and takes the weighted mean of the scores a row has.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from curation.errors import ConfigError
from curation.store import ReviewFilter, Store

SCORES = ("judge", "diversity", "difficulty")


@dataclass(frozen=True)
class RankConfig:
    """Weights of each score in the combined ranking; each ≥ 0, at least one > 0."""

    judge: float = 1.0  # mean judge score (rows without a judgment rank on their other scores)
    diversity: float = 0.0  # distance to the nearest approved row; needs embeddings
    difficulty: float = 0.0  # IFD from the student model; needs a forward pass over the rows

    def __post_init__(self):
        for name in SCORES:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} weight must be a number ≥ 0 (got {value!r})")
        if not any(getattr(self, name) > 0 for name in SCORES):
            raise ConfigError("give at least one score a weight above 0, e.g. judge=1")

    @property
    def weights(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in SCORES}


@dataclass(frozen=True, eq=False)
class Ranking:
    """Rows best first. ids, score: shape (n,); components[name]: shape (n,), aligned with ids.

    score is NaN for a row with none of the weighted scores; such rows come last and are never approved.
    """

    ids: np.ndarray
    score: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)

    def top(self, k: int | None = None, fraction: float | None = None) -> np.ndarray:
        """Ids of the best `k` scored rows, or of the best `fraction` (0, 1] of the scored rows (rounded up)."""
        if (k is None) == (fraction is None):
            raise ConfigError("give either k (number of rows) or fraction (share of rows), not both")
        scored = int(np.isfinite(self.score).sum())
        if k is not None:
            if not isinstance(k, (int, np.integer)) or k < 1:
                raise ConfigError(f"k must be a whole number ≥ 1 (got {k!r})")
            count = min(int(k), scored)
        else:
            if not 0 < fraction <= 1:
                raise ConfigError(f"fraction must be in (0, 1], e.g. 0.1 for the top 10% (got {fraction!r})")
            count = math.ceil(fraction * scored - 1e-9)
        return self.ids[:count]


# ---- judge & diversity ------------------------------------------------------------------------
def judge_scores(rows: Sequence[dict]) -> np.ndarray:
    """(n,) mean judge score of each row (from `Store.candidate_rows`), NaN when unjudged."""
    return np.array([np.nan if r.get("judge_score") is None else float(r["judge_score"]) for r in rows],
                    dtype=np.float64)


def diversity_scores(candidates: np.ndarray, approved: np.ndarray) -> np.ndarray:
    """(n,) 1 − max cosine similarity of each candidate (n, d) to the approved rows (m, d); range [0, 2].

    With nothing approved every row is as new as can be: all ones. Zero vectors count as orthogonal.
    """
    import faiss

    candidates = _unit_rows(candidates)
    if len(candidates) == 0:
        return np.zeros(0)
    if approved is None or len(approved) == 0:
        return np.ones(len(candidates))
    approved = _unit_rows(approved)
    if approved.shape[1] != candidates.shape[1]:
        raise ConfigError(f"candidate vectors have {candidates.shape[1]} dims but approved ones "
                          f"{approved.shape[1]}; embed both with the same model")
    index = faiss.IndexFlatIP(approved.shape[1])
    index.add(approved)
    sims, _ = index.search(candidates, 1)
    return 1.0 - np.clip(sims[:, 0].astype(np.float64), -1.0, 1.0)


def diversity_for_rows(store: Store, rows: Sequence[dict], model: str) -> np.ndarray:
    """(n,) `diversity_scores` of candidate rows against the approved rows, from the stored response
    embeddings of `model`; NaN for a row without an up-to-date vector (embed the responses first)."""
    ids, vectors = store.fresh_embeddings("response", model)
    position = {int(i): k for k, i in enumerate(ids)}
    approved = [position[r["id"]] for r in store.candidate_rows(statuses=("approved",)) if r["id"] in position]
    have = [k for k, r in enumerate(rows) if r["id"] in position]
    scores = np.full(len(rows), np.nan)
    if have:
        scores[have] = diversity_scores(vectors[[position[rows[k]["id"]] for k in have]], vectors[approved])
    return scores


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12))


# ---- difficulty (IFD) -------------------------------------------------------------------------
def difficulty_from_ifd(ifd: np.ndarray) -> np.ndarray:
    """(n,) difficulty score: the IFD itself, but 0 where IFD > 1 (the instruction makes the response
    less likely: a mismatched pair, not a hard one); NaN stays NaN."""
    ifd = np.asarray(ifd, dtype=np.float64)
    return np.where(ifd > 1.0, 0.0, ifd)


def ifd_pairs(rows: Sequence[dict]) -> list[tuple[str, str]]:
    """(instruction + input, response) of candidate rows, for `models.ifd.ifd_scores`."""
    return [("\n\n".join(x for x in (r.get("instruction"), r.get("input")) if x), r.get("response") or "")
            for r in rows]


# ---- combination ------------------------------------------------------------------------------
def minmax(values: np.ndarray) -> np.ndarray:
    """(n,) values scaled to [0, 1] over the finite ones; NaN stays NaN; a constant score becomes 0.5."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.full(values.shape, np.nan)
    lo, hi = values[finite].min(), values[finite].max()
    if hi == lo:
        return np.where(finite, 0.5, np.nan)
    return np.where(finite, (values - lo) / (hi - lo), np.nan)


def combined(scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """(n,) weighted mean of the min-max normalised scores, each row over the scores it has.

    scores: name -> (n,) array, NaN = missing. weights: name -> weight ≥ 0; a name with weight 0 or not
    in weights is ignored. A row missing every weighted score gets NaN.
    """
    used = {k: float(w) for k, w in weights.items() if w}
    unknown = set(used) - set(scores)
    if unknown:
        raise ConfigError(f"no scores named {sorted(unknown)}; computed: {sorted(scores)}")
    if not used:
        raise ConfigError("give at least one score a weight above 0")
    if any(w < 0 or not math.isfinite(w) for w in used.values()):
        raise ConfigError(f"weights must be finite and ≥ 0 (got {used})")
    lengths = {len(scores[k]) for k in used}
    if len(lengths) != 1:
        raise ConfigError(f"scores have different lengths {sorted(lengths)}; compute them on the same rows")
    total = np.zeros(lengths.pop())
    weight_sum = np.zeros_like(total)
    for name, w in used.items():
        norm = minmax(scores[name])
        have = np.isfinite(norm)
        total += np.where(have, w * norm, 0.0)
        weight_sum += np.where(have, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight_sum > 0, total / weight_sum, np.nan)


def rank(ids: Sequence[int], scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> Ranking:
    """Order rows by their combined score, best first; ties by id; unscored rows last."""
    ids = np.asarray(ids, dtype=np.int64)
    score = combined(scores, weights)
    order = np.lexsort((ids, -np.nan_to_num(score, nan=-np.inf)))
    return Ranking(ids[order], score[order], {k: np.asarray(v, dtype=np.float64)[order] for k, v in scores.items()})


def rank_rows(rows: Sequence[dict], config: RankConfig, diversity: np.ndarray | None = None,
              ifd: np.ndarray | None = None) -> Ranking:
    """Rank candidate rows by `config`. diversity and ifd: (n,) arrays aligned with rows, needed only
    when their weight is above 0 (from `diversity_scores` and `ifd_scores`)."""
    scores = {"judge": judge_scores(rows)}
    for name, values, how in (("diversity", diversity, "compute embeddings for these rows first"),
                              ("difficulty", None if ifd is None else difficulty_from_ifd(ifd),
                               "compute IFD with the student model first")):
        if values is not None:
            if len(values) != len(rows):
                raise ConfigError(f"{name} has {len(values)} values for {len(rows)} rows; recompute it")
            scores[name] = np.asarray(values, dtype=np.float64)
        elif getattr(config, name) > 0:
            raise ConfigError(f"{name} has weight {getattr(config, name)} but no scores: {how}, or set it to 0")
    return rank([r["id"] for r in rows], scores, {k: w for k, w in config.weights.items() if k in scores})


def pending_rows(store: Store, review_filter: ReviewFilter | None = None) -> list[dict]:
    """The rows a ranking usually covers: successful generations still pending review."""
    return store.candidate_rows(review_filter, ("pending",))


def approve_top(store: Store, ranking: Ranking, k: int | None = None, fraction: float | None = None) -> int | None:
    """Approve the top `k` (or top `fraction`) scored rows of a ranking in one label batch.

    Returns the batch id for `store.undo_batch`, or None when no row had a score.
    """
    return store.label_batch([int(i) for i in ranking.top(k, fraction)], "approved", reason="rank:top")
