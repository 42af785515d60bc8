"""The clusters of a dedupe plan: kept as arrays, built into Cluster objects only when one is looked at.

A 1M-row workspace has ~200k clusters of ~600k rows; building a Member object for each of them was most of a
plan's time (39 s at 1M rows, each time the slider was let go), where the panel shows 1,000 clusters and opens
one at a time. `Clusters` is a sequence like the tuple it replaces: `len`, indexing, slicing and iteration (which
builds every cluster, for the CLI's JSON). What applying and the summary need comes from the arrays directly.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from curation.dedupe_groups import group_arrays
from curation.errors import StudioError


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


class Clusters(Sequence):
    """The clusters of a plan, largest first: `clusters[0]` is cluster 1."""

    def __init__(self, rows: pd.DataFrame, labels: np.ndarray, keep: np.ndarray, similarity: np.ndarray):
        """`rows` the compared rows (id, text, generation_ids, score), `labels` int[n] their clusters, `keep`
        int64[n] the row each row's cluster keeps, `similarity` float[n] each row's cosine to that row."""
        members, self._starts = group_arrays(labels)
        self._ids = rows["id"].to_numpy(dtype=np.int64)[members]  # only the rows in a cluster are kept
        self._texts = rows["text"].to_numpy(dtype=object)[members]
        self._gens = rows["generation_ids"].to_numpy(dtype=object)[members]
        self._scores = rows["score"].to_numpy(dtype=float)[members]
        self._similarity = np.round(np.minimum(np.asarray(similarity, np.float64)[members], 1.0), 4)
        self._weights = np.fromiter(map(len, self._gens), np.int64, len(self._gens))
        position = np.empty(len(rows), np.int64)
        position[members] = np.arange(len(members))
        self._kept = position[np.asarray(keep)[members[self._starts[:-1]]]]  # per cluster, its kept member
        totals = np.add.reduceat(self._weights, self._starts[:-1]) if len(self) else np.zeros(0, np.int64)
        self._marked = totals - self._weights[self._kept]

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i) + (len(self) if int(i) < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"cluster index {i} out of range (0 to {len(self) - 1})")
        span = range(self._starts[i], self._starts[i + 1])
        members = tuple(Member(id=int(self._ids[p]), text=self._texts[p], generation_ids=tuple(map(int, self._gens[p])),
                               score=None if np.isnan(self._scores[p]) else float(self._scores[p]),
                               length=len(self._texts[p]), similarity=float(self._similarity[p])) for p in span)
        return Cluster(i + 1, members, representative=int(self._ids[self._kept[i]]), rows_marked=int(self._marked[i]))

    @property
    def rows_marked(self) -> int:
        """Generations marked when every cluster keeps its rule's member."""
        return int(self._marked.sum())

    def duplicates(self, overrides: dict[int, int]) -> Iterator[tuple[int, int, list[int]]]:
        """(cluster index, kept member id, the generation ids of the others) for every cluster, keeping the member
        `overrides` names by cluster index where it names one (StudioError for an id not in that cluster)."""
        for i in range(len(self)):
            lo, hi = int(self._starts[i]), int(self._starts[i + 1])
            kept = self._kept[i]
            if i + 1 in overrides:
                kept = lo + int(np.flatnonzero(self._ids[lo:hi] == self[i].member(int(overrides[i + 1])).id)[0])
            yield i + 1, int(self._ids[kept]), [int(g) for p in range(lo, hi) if p != kept for g in self._gens[p]]

    def cluster_of(self) -> dict[int, int]:
        """{member id: cluster index} of every member."""
        index = np.repeat(np.arange(1, len(self) + 1), np.diff(self._starts))
        return dict(zip(self._ids.tolist(), index.tolist()))
