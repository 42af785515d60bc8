"""Exact, normalised and semantic (embedding) duplicates of tasks or responses, reviewed before marking.

The grouping is pure functions on texts and arrays. `plan_dedupe` turns a workspace into clusters a
person reviews (largest first, one representative kept per cluster by a rule they pick and can change
by hand); `apply_dedupe` marks the others rejected with a reason, as one label batch that
`store.undo_batch` reverts. Nothing is ever deleted.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from curation.embed import embedder_key
from curation.errors import ConfigError, StudioError
from curation.neighbours import NeighbourGraph, neighbour_graph

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
    """Semantic only: the embedding model (None: the bundled all-MiniLM-L6-v2)."""

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


# ---- pure grouping --------------------------------------------------------------------------------

@functools.cache
def _punctuation_table() -> dict[int, None]:
    # Every Unicode punctuation code point (category P*), built once: str.translate is then a single
    # C pass per text, which matters at 100k responses.
    return {c: None for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith("P")}


_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Text as compared by the 'normalised' method: NFKC, case-folded, punctuation removed,
    whitespace runs as one space, trimmed. "  Hello,  WORLD!" -> "hello world"."""
    text = unicodedata.normalize("NFKC", text or "").casefold().translate(_punctuation_table())
    return _SPACES.sub(" ", text).strip()


def groups_from_labels(labels: np.ndarray) -> list[list[int]]:
    """Rows sharing a label (int[n]), as lists of row indices ascending; only groups of 2 or more,
    largest first, ties by smallest index."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    groups = [g.tolist() for g in np.split(order, starts[1:]) if len(g) > 1]
    groups.sort(key=lambda g: (-len(g), g[0]))
    return groups


def _key_labels(keys: list[str]) -> np.ndarray:
    """int64[n]: rows with equal keys share a label."""
    return pd.factorize(pd.Series(keys, dtype=object))[0].astype(np.int64)


def exact_groups(texts: list[str]) -> list[list[int]]:
    """Indices of identical texts, grouped (see `groups_from_labels` for the order)."""
    return groups_from_labels(_key_labels(list(texts)))


def normalised_groups(texts: list[str]) -> list[list[int]]:
    """Indices of texts equal after `normalise` (case, whitespace, punctuation), grouped."""
    return groups_from_labels(_key_labels([normalise(t) for t in texts]))


def leader_labels(n: int, pairs: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Greedy clustering of n rows linked by int[m, 2] pairs: int64[n] label per row (its leader's index).

    Rows are visited best `rank` (int[n], 0 = keep first) first; a row no cluster has taken yet leads a
    new one and takes every untaken row it is paired with. So each member is a near duplicate of its
    cluster's leader, the row the cluster keeps. Joining pairs transitively instead (union-find) chains
    a ~ b ~ c into one cluster and would mark c although c is not close to the kept a.
    """
    label = np.arange(n, dtype=np.int64)
    if len(pairs) == 0:
        return label
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    starts = np.searchsorted(src, np.arange(n + 1))
    linked = np.unique(src)  # only rows with a pair can lead or join; the rest stay alone
    taken = np.zeros(n, dtype=bool)
    for leader in linked[np.argsort(np.asarray(rank)[linked], kind="stable")].tolist():
        if taken[leader]:
            continue
        taken[leader] = True
        members = dst[starts[leader]:starts[leader + 1]]
        members = members[~taken[members]]
        taken[members] = True
        label[members] = leader
    return label


def _graph_labels(graph: NeighbourGraph, threshold: float, rank: np.ndarray) -> np.ndarray:
    """int64[n] cluster label per row (`leader_labels`) over the pairs with sim >= threshold."""
    return leader_labels(graph.n, graph.pairs_at(threshold), rank)


def semantic_labels(texts: list[str], vectors: np.ndarray, thresholds: list[float],
                    rank: np.ndarray | None = None) -> dict[float, np.ndarray]:
    """For each threshold, int64[n] cluster labels of n texts with unit vectors float32[n, d]: identical
    texts always together; the others join the best-ranked row (rank int[n], default: row order) they
    have cosine >= threshold with (`leader_labels`). One neighbour search serves all thresholds (it
    runs at the lowest)."""
    # Identical texts are one point: fewer rows to search, and no block of copies can crowd out a
    # row's real neighbours. A point ranks as its best copy.
    _, first, point = np.unique(_key_labels(list(texts)), return_index=True, return_inverse=True)
    rank = np.arange(len(point)) if rank is None else np.asarray(rank, dtype=np.int64)
    point_rank = np.full(len(first), np.iinfo(np.int64).max)
    np.minimum.at(point_rank, point, rank)
    graph = neighbour_graph(np.asarray(vectors)[first], min(thresholds))
    return {t: _graph_labels(graph, t, point_rank)[point] for t in thresholds}


def near_duplicate_groups(vectors: np.ndarray, threshold: float, rank: np.ndarray | None = None) -> list[list[int]]:
    """Rows of unit vectors float32[n, d] grouped around a leader they have cosine >= threshold with
    (`leader_labels`; rank int[n], default: row order), as in `groups_from_labels`. Uses a faiss index,
    never all pairs in Python."""
    rank = np.arange(len(vectors)) if rank is None else rank
    return groups_from_labels(_graph_labels(neighbour_graph(vectors, threshold), threshold, rank))


# ---- representatives ------------------------------------------------------------------------------

def preference_rank(rows: pd.DataFrame, rule: str) -> tuple[np.ndarray, list[str]]:
    """int64[n]: 0 for the row a cluster should keep first, ties broken by earliest; plus notes for
    the user (e.g. that the judge rule fell back to earliest). `rows` has created_at, id, text, score."""
    n = len(rows)
    earliest = np.empty(n, np.int64)
    earliest[np.lexsort((rows["id"].to_numpy(), rows["created_at"].to_numpy()))] = np.arange(n)
    notes = []
    if rule == "longest":
        order = np.lexsort((earliest, -rows["text"].str.len().to_numpy()))
    elif rule == "judge_score" and rows["score"].notna().any():
        score = rows["score"].to_numpy(dtype=float)
        order = np.lexsort((earliest, -np.nan_to_num(score, nan=-np.inf)))
    else:
        if rule == "judge_score":
            notes.append("no judge scores yet: each cluster keeps its earliest row")
        order = np.argsort(earliest)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank, notes


def _kept_rows(labels: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct labels ascending, the row each one keeps: its lowest rank)."""
    if len(labels) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((rank, labels))
    sorted_labels = labels[order]
    first = np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]
    return sorted_labels[first], order[first]


def representatives(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """int64[n]: for each row, the row its cluster keeps (the lowest `rank` int[n] among rows sharing
    its label in labels int[n])."""
    distinct, kept = _kept_rows(labels, rank)
    return kept[np.searchsorted(distinct, labels)]


def marked_count(labels: np.ndarray, rank: np.ndarray, weights: np.ndarray) -> int:
    """How many generations would be marked: the weights int[n] (generations per row) of every row
    its cluster does not keep."""
    _, kept = _kept_rows(labels, rank)
    return int(weights.sum() - weights[kept].sum())


# ---- plans over a workspace -----------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """One compared row: a generation (target responses) or a task (target tasks)."""

    id: int
    text: str
    generation_ids: tuple[int, ...]
    """The generations marked when this member is not kept (a task's may be empty)."""
    score: float | None
    """Highest judge score (for a task: over its generations); None when unjudged."""
    length: int
    similarity: float
    """Cosine similarity to the member the rule keeps (1.0 for the exact and normalised methods)."""


@dataclass(frozen=True)
class Cluster:
    """Rows found to be duplicates of one another; one of them is kept."""

    index: int
    """1 for the largest cluster; the key of `apply_dedupe` overrides and the <k> of the reason."""
    members: tuple[Member, ...]
    """By id."""
    representative: int
    """Id of the member the rule keeps."""
    rows_marked: int
    """Generations marked when the representative is kept."""

    def member(self, member_id: int) -> Member:
        for m in self.members:
            if m.id == member_id:
                return m
        raise StudioError(f"{member_id} is not a member of cluster {self.index} "
                          f"(members: {', '.join(str(m.id) for m in self.members)})")

    def rows_marked_keeping(self, member_id: int) -> int:
        """Generations marked if `member_id` is kept instead (a hand-picked representative)."""
        kept = self.member(member_id)
        return sum(len(m.generation_ids) for m in self.members if m is not kept)


@dataclass(frozen=True)
class DedupePlan:
    """What a dedupe would do; nothing is written until `apply_dedupe`."""

    config: DedupeConfig
    clusters: tuple[Cluster, ...]
    """Largest first."""
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
                         thresholds: list[float], rank: np.ndarray) -> dict[float, np.ndarray]:
    """int64[n] cluster labels of `rows` for each threshold (one neighbour search for all of them);
    `vectors` float32[n, d] are the rows' embeddings and `rank` int[n] their `preference_rank`, both
    needed by the semantic method only."""
    if config.method != "semantic":
        keys = rows["text"].tolist() if config.method == "exact" else [normalise(t) for t in rows["text"]]
        labels = _key_labels(keys)
        return {t: labels for t in thresholds}
    return semantic_labels(rows["text"].tolist(), vectors, thresholds, rank)


def row_vectors(store, config: DedupeConfig, rows: pd.DataFrame) -> np.ndarray:
    """float32[n, d] stored vectors of `rows`, in row order; fails when any is missing or stale."""
    key = embedder_key(config.model)
    ids, vectors = store.fresh_embeddings(config.item_kind, key)
    wanted = rows["id"].to_numpy(dtype=np.int64)
    pos = np.minimum(np.searchsorted(ids, wanted), max(len(ids) - 1, 0))
    missing = int((ids[pos] != wanted).sum()) if len(ids) else len(wanted)
    if missing:
        raise StudioError(f"{missing} of {len(wanted)} {config.target} have no up-to-date embedding from "
                          f"{key}: embed them first (embed_items), then plan again")
    return vectors[pos]


def plan_dedupe(store, config: DedupeConfig) -> DedupePlan:
    """The clusters `config` finds in the workspace, largest first, each with the member its rule keeps.

    Covers train-split tasks and their successful, not yet rejected generations. Method 'semantic'
    needs up-to-date embeddings (`curation.embed.embed_items`) and raises StudioError otherwise.
    """
    mark = store.last_label_batch()  # read before the rows: a label made while planning counts as a change
    mark = -1 if mark is None else int(mark)
    rows = store.dedupe_items(config.target)
    if rows.empty:
        return DedupePlan(config, (), 0, 0, 0, (f"no {config.target} to compare",), label_mark=mark)
    vectors = row_vectors(store, config, rows) if config.method == "semantic" else None
    rank, notes = preference_rank(rows, config.representative)
    labels = _labels_by_threshold(config, rows, vectors, [config.threshold], rank)[config.threshold]
    keep = representatives(labels, rank)
    weights = _row_weights(rows)
    # Cosine to the kept row shows the reviewer how close each member is (at least the threshold, until
    # they pick another row to keep by hand).
    similarity = (np.einsum("ij,ij->i", vectors, vectors[keep]) if vectors is not None
                  else np.ones(len(rows), np.float32))
    groups = groups_from_labels(labels)
    members = _members(rows, groups, similarity)
    clusters = tuple(
        Cluster(i + 1, tuple(members[r] for r in group), representative=members[int(keep[group[0]])].id,
                rows_marked=int(weights[group].sum() - weights[keep[group[0]]]))
        for i, group in enumerate(groups))
    return DedupePlan(config, clusters, items_total=len(rows), rows_total=int(weights.sum()),
                      rows_marked=sum(c.rows_marked for c in clusters), notes=tuple(notes), label_mark=mark)


def _members(rows: pd.DataFrame, groups: list[list[int]], similarity: np.ndarray) -> dict[int, Member]:
    """Member objects for the rows in `groups`, by row index (plain lists: pandas per-row access
    would cost a minute at 100k rows)."""
    ids, texts, gens = rows["id"].tolist(), rows["text"].tolist(), rows["generation_ids"].tolist()
    scores = rows["score"].to_numpy(dtype=float)
    return {r: Member(id=int(ids[r]), text=texts[r], generation_ids=tuple(int(g) for g in gens[r]),
                      score=None if np.isnan(scores[r]) else float(scores[r]), length=len(texts[r]),
                      similarity=round(min(float(similarity[r]), 1.0), 4))
            for group in groups for r in group}


def preview_counts(store, config: DedupeConfig, thresholds: list[float]) -> dict[float, int]:
    """Generations `config` would mark at each threshold, from one neighbour search at the lowest
    threshold: a UI computes this once and moves its slider over the answer. For the exact and
    normalised methods every threshold gets the same count."""
    thresholds = sorted({float(t) for t in thresholds})
    if not thresholds or thresholds[0] < MIN_THRESHOLD or thresholds[-1] > 1.0:
        raise StudioError(f"preview thresholds must lie in [{MIN_THRESHOLD}, 1.0] (got {thresholds})")
    rows = store.dedupe_items(config.target)
    if rows.empty:
        return {t: 0 for t in thresholds}
    rank, _ = preference_rank(rows, config.representative)
    weights = _row_weights(rows)
    vectors = row_vectors(store, config, rows) if config.method == "semantic" else None
    return {t: marked_count(labels, rank, weights)
            for t, labels in _labels_by_threshold(config, rows, vectors, thresholds, rank).items()}


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
    by_index = {c.index: c for c in plan.clusters}
    unknown = sorted(set(overrides) - set(by_index))
    if unknown:
        raise StudioError(f"no cluster {unknown[0]} in this plan (it has 1 to {len(plan.clusters)})")
    reasons = {}
    for cluster in plan.clusters:
        kept = cluster.member(int(overrides.get(cluster.index, cluster.representative))).id
        reason = dedupe_reason(plan.config, cluster.index, kept)
        for m in cluster.members:
            if m.id != kept:
                reasons.update(dict.fromkeys(m.generation_ids, reason))
    skipped = tuple(sorted(store.labelled_since(list(reasons), plan.label_mark)))
    for gen_id in skipped:
        del reasons[gen_id]
    batch = store.label_with_reasons(reasons, "rejected")
    run_id = store.start_run("dedupe", dataclasses.asdict(plan.config))
    store.update_run(run_id, status="completed", metrics={"batch_id": batch, "rows_marked": len(reasons),
                                                         "clusters": len(plan.clusters),
                                                         "skipped_changed_since_plan": list(skipped)})
    return Applied(batch, len(reasons), skipped)
