"""Exact, normalised and semantic (embedding) duplicates of tasks or responses, reviewed before marking.

The grouping is pure functions on texts and arrays (dedupe_groups.py). `plan_dedupe` turns a workspace
into clusters a person reviews (largest first, one representative kept per cluster by a rule they pick
and can change by hand); `apply_dedupe` marks the others rejected with a reason, as one label batch
that `store.undo_batch` reverts. Nothing is ever deleted.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from curation.dedupe_clusters import Clusters
from curation.dedupe_groups import (key_labels, marked_count, normalise, preference_rank, representatives,
                                    semantic_labels, semantic_marked)
from curation.embed import DEFAULT_EMBEDDER, embedder_key
from curation.errors import ConfigError, StudioError
from curation.hybrid import fine_vectors, is_hybrid
from curation.neighbours import neighbour_graph

TARGETS = ("tasks", "responses")
METHODS = ("exact", "normalised", "semantic")
REPRESENTATIVE_RULES = ("judge_score", "longest", "earliest")
MIN_THRESHOLD = 0.5


@dataclass(frozen=True)
class DedupeConfig:
    """What to deduplicate and how; the CLI, the UI and the tests build this same object."""

    target: str = "responses"
    """'responses': one row per generation; 'tasks': a duplicate task marks all its generations."""
    method: str = "semantic"
    """'exact' (same text), 'normalised' (same text ignoring case, whitespace and punctuation),
    'semantic' (embedding cosine similarity at or above `threshold`)."""
    threshold: float = 0.82
    """Semantic only: cosine similarity, 0.5 to 1.0; lower groups more rows. 0.82: best F0.5 on labelled pairs."""
    representative: str = "judge_score"
    """Which member of a cluster is kept: 'judge_score' (highest; earliest when no judgments),
    'longest' (most characters), 'earliest' (first created)."""
    model: str | None = None
    """Semantic only: the embedding model (None: the bundled all-MiniLM-L6-v2). "minilm-int8": MiniLM quantised to
    int8 on OpenVINO, ~2.5x faster, MiniLM's recall on the labelled pairs (curation.int8_embed). "static": a static
    model distilled from it, ~100x faster, lower recall (its own best threshold is about 0.81, bench/RESULTS.md).
    "static+minilm": static vectors pick the rows worth a MiniLM vector, MiniLM compares them (curation.hybrid)."""

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {', '.join(TARGETS)} (got {self.target!r})")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)} (got {self.method!r})")
        if not MIN_THRESHOLD <= float(self.threshold) <= 1.0:
            raise ConfigError(f"threshold must be in the range [{MIN_THRESHOLD}, 1.0] (got {self.threshold}); "
                              "0.82 is the calibrated default")
        if self.representative not in REPRESENTATIVE_RULES:
            raise ConfigError(f"representative must be one of {', '.join(REPRESENTATIVE_RULES)} "
                              f"(got {self.representative!r})")

    @property
    def item_kind(self) -> str:
        """The embeddings table's item kind for this target."""
        return "task" if self.target == "tasks" else "response"


# ---- plans over a workspace -----------------------------------------------------------------------

@dataclass(frozen=True)
class DedupePlan:
    """What a dedupe would do; nothing is written until `apply_dedupe`."""

    config: DedupeConfig
    clusters: Clusters
    """Largest first: a `Clusters`, which builds a cluster when it is looked at."""
    items_total: int
    """Tasks or responses compared."""
    rows_total: int
    """Generations those cover."""
    rows_marked: int
    """Generations that applying the plan as it stands would mark rejected."""
    notes: tuple[str, ...] = field(default=())
    label_mark: int = -1
    """The workspace's last label batch when the plan was made: rows labelled after it changed since."""

    def to_frame(self) -> pd.DataFrame:
        """One row per cluster member: cluster, id, kept, similarity, score, length, generations, text."""
        records = [{"cluster": c.index, "id": m.id, "kept": m.id == c.representative, "similarity": m.similarity,
                    "score": m.score, "length": m.length, "generations": len(m.generation_ids), "text": m.text}
                   for c in self.clusters for m in c.members]
        columns = ["cluster", "id", "kept", "similarity", "score", "length", "generations", "text"]
        return pd.DataFrame.from_records(records, columns=columns)


def _row_weights(rows: pd.DataFrame) -> np.ndarray:
    return rows["generation_ids"].map(len).to_numpy(dtype=np.int64)


def _labels_by_threshold(config: DedupeConfig, rows: pd.DataFrame, vectors: np.ndarray | None,
                         thresholds: list[float], rank: np.ndarray, search=None) -> dict[float, np.ndarray]:
    """int64[n] cluster labels of `rows` for each threshold (one neighbour search for all of them);
    `vectors` float32[n, d] are the rows' embeddings and `rank` int[n] their `preference_rank`, both
    needed by the semantic method only; `search` replaces the single-machine neighbour search."""
    if config.method != "semantic":
        keys = rows["text"].tolist() if config.method == "exact" else [normalise(t) for t in rows["text"]]
        labels = key_labels(keys)
        return {t: labels for t in thresholds}
    return semantic_labels(rows["text"].tolist(), vectors, thresholds, rank, search=search or neighbour_graph)


def row_vectors(store, config: DedupeConfig, rows: pd.DataFrame) -> np.ndarray:
    """float32[n, d] stored vectors of `rows`, in row order; fails when any is missing or stale."""
    if is_hybrid(config.model):  # MiniLM vectors for the rows embed_hybrid found a static look-alike for, zero rows
        ids, vectors = store.fresh_embeddings(config.item_kind, DEFAULT_EMBEDDER)  # for the rest
        return fine_vectors(ids, rows["id"].to_numpy(dtype=np.int64), vectors, vectors.shape[1] if len(ids) else 1)
    key = embedder_key(config.model)
    ids, vectors = store.fresh_embeddings(config.item_kind, key)
    wanted = rows["id"].to_numpy(dtype=np.int64)
    pos = np.minimum(np.searchsorted(ids, wanted), max(len(ids) - 1, 0))
    missing = int((ids[pos] != wanted).sum()) if len(ids) else len(wanted)
    if missing:
        raise StudioError(f"{missing} of {len(wanted)} {config.target} have no up-to-date embedding from "
                          f"{key}: embed them first (embed_items), then plan again")
    return vectors[pos]


def plan_dedupe(store, config: DedupeConfig, search=None) -> DedupePlan:
    """The clusters `config` finds in the workspace, largest first, each with the member its rule keeps.

    Covers train-split tasks and their successful, not yet rejected generations. Method 'semantic'
    needs up-to-date embeddings (`curation.embed.embed_items`) and raises StudioError otherwise.
    `search(vectors, min_similarity) -> NeighbourGraph` replaces the single-machine neighbour search
    (curation.ray_dedupe passes one that runs on a Ray cluster); the plan is built the same either way.
    """
    mark = store.last_label_batch()  # read before the rows: a label made while planning counts as a change
    mark = -1 if mark is None else int(mark)
    rows = store.dedupe_items(config.target)
    if rows.empty:
        nothing = np.zeros(0, np.int64)
        return DedupePlan(config, Clusters(rows, nothing, nothing, nothing), 0, 0, 0,
                          (f"no {config.target} to compare",), label_mark=mark)
    vectors = row_vectors(store, config, rows) if config.method == "semantic" else None
    rank, notes = preference_rank(rows, config.representative)
    labels = _labels_by_threshold(config, rows, vectors, [config.threshold], rank, search)[config.threshold]
    keep = representatives(labels, rank)
    weights = _row_weights(rows)
    # Cosine to the kept row shows the reviewer how close each member is (at least the threshold, until
    # they pick another row to keep by hand).
    similarity = (np.einsum("ij,ij->i", vectors, vectors[keep]) if vectors is not None
                  else np.ones(len(rows), np.float32))
    clusters = Clusters(rows, labels, keep, similarity)
    return DedupePlan(config, clusters, items_total=len(rows), rows_total=int(weights.sum()),
                      rows_marked=clusters.rows_marked, notes=tuple(notes), label_mark=mark)


def preview_counts(store, config: DedupeConfig, thresholds: list[float], search=None) -> dict[float, int]:
    """Generations `config` would mark at each threshold, from one neighbour search at the lowest
    threshold: a UI computes this once and moves its slider over the answer. For the exact and
    normalised methods every threshold gets the same count. `search` as in `plan_dedupe`: pass the same
    `curation.neighbours.ReusedSearch` to both and a plan at any of these thresholds searches no more."""
    thresholds = sorted({float(t) for t in thresholds})
    if not thresholds or thresholds[0] < MIN_THRESHOLD or thresholds[-1] > 1.0:
        raise StudioError(f"preview thresholds must lie in [{MIN_THRESHOLD}, 1.0] (got {thresholds})")
    rows = store.dedupe_items(config.target)
    if rows.empty:
        return {t: 0 for t in thresholds}
    rank, _ = preference_rank(rows, config.representative)
    weights = _row_weights(rows)
    if config.method == "semantic":
        return semantic_marked(rows["text"].tolist(), row_vectors(store, config, rows), thresholds, rank, weights,
                               search=search or neighbour_graph)
    labels = _labels_by_threshold(config, rows, None, thresholds[:1], rank)[thresholds[0]]
    return dict.fromkeys(thresholds, marked_count(labels, rank, weights))


def dedupe_reason(config: DedupeConfig, cluster_index: int, kept_id: int) -> str:
    """The label reason of a row marked as a duplicate: 'dedupe:<method>:cluster <k> of <kept id>'."""
    of = f"task {kept_id}" if config.target == "tasks" else str(kept_id)
    return f"dedupe:{config.method}:cluster {cluster_index} of {of}"


class Applied(NamedTuple):
    """What `apply_dedupe` did: the label batch (for `store.undo_batch`; None when nothing was marked), the
    generations it marked, and those it skipped because they were labelled after the plan was made."""

    batch: int | None
    marked: int
    skipped: tuple[int, ...]


def apply_dedupe(store, plan: DedupePlan, overrides: dict[int, int] | None = None) -> Applied:
    """Mark every generation of every non-kept member rejected, with `dedupe_reason`, as one label batch.

    `overrides` maps a cluster index to the member id to keep instead of the rule's choice. A plan is a
    picture of the rows when it was made: a row labelled since (approved, edited, rejected by hand) is left
    as the user set it and reported in `skipped`, never overwritten.
    """
    overrides = dict(overrides or {})
    unknown = sorted(i for i in overrides if not 1 <= i <= len(plan.clusters))
    if unknown:
        raise StudioError(f"no cluster {unknown[0]} in this plan (it has 1 to {len(plan.clusters)})")
    reasons = {}
    for index, kept, marked in plan.clusters.duplicates(overrides):
        reasons.update(dict.fromkeys(marked, dedupe_reason(plan.config, index, kept)))
    skipped = tuple(sorted(store.labelled_since(list(reasons), plan.label_mark)))
    for gen_id in skipped:
        del reasons[gen_id]
    batch = store.label_with_reasons(reasons, "rejected")
    run_id = store.start_run("dedupe", dataclasses.asdict(plan.config))
    store.update_run(run_id, status="completed", metrics={"batch_id": batch, "rows_marked": len(reasons),
                                                         "clusters": len(plan.clusters),
                                                         "skipped_changed_since_plan": list(skipped)})
    return Applied(batch, len(reasons), skipped)
