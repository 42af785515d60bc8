"""Filters: pure predicates over candidate rows; each says what it removes and how many.

A row is a dict from `Store.candidate_rows` (the response is the edited text when there is one). A
filter is a frozen dataclass config: `removes(row)` decides one row, `evaluate(rows)` a whole list and
also reports side counts (rows kept because they have no judgment, …). Filters compose with `AnyOf`.
This module holds what every filter shares and how one is applied; the kinds are in filter_kinds.py
(length, regex, refusal, judge score, language) and leakage.py (n-gram overlap with the eval split).

`preview_filter` changes nothing. `apply_filter` rejects the rows a filter removes with the reason
`filter:<name>` in one label batch; `store.undo_batch(batch_id)` puts them back. Only successful
generations that are pending or approved are candidates: a filter never revives a rejected row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

from curation.errors import ConfigError
from curation.store import ReviewFilter, Store

CANDIDATE_STATUSES = ("pending", "approved")


@dataclass(frozen=True)
class Evaluation:
    """Which rows a filter removes (parallel to the rows) and side counts worth showing the user."""

    mask: list[bool]
    notes: dict[str, int] = field(default_factory=dict)


class Filter:
    """Base of every filter: subclasses set `name` and implement `removes` and `description`."""

    name: ClassVar[str] = "filter"

    @property
    def description(self) -> str:
        raise NotImplementedError

    def removes(self, row: dict) -> bool:
        raise NotImplementedError

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        return Evaluation([self.removes(r) for r in rows])

    @property
    def reason(self) -> str:
        return f"filter:{self.name}"


# The text a filter looks at: the response, the prompt (instruction + input) or both.
def row_text(row: dict, target: str) -> str:
    prompt = "\n".join(t for t in (row.get("instruction"), row.get("input")) if t)
    if target == "prompt":
        return prompt
    if target == "response":
        return row.get("response") or ""
    return prompt + "\n" + (row.get("response") or "")


TARGETS = ("response", "prompt", "both")
TARGET_WORDS = {"response": "response", "prompt": "instruction", "both": "instruction + response"}


# ---- composition ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnyOf(Filter):
    """Removes a row when any of `filters` does; notes count each filter's removals."""

    filters: tuple[Filter, ...]

    def __post_init__(self):
        if not self.filters:
            raise ConfigError("combine at least one filter")
        object.__setattr__(self, "filters", tuple(self.filters))

    @property
    def name(self) -> str:  # type: ignore[override]
        return "+".join(f.name for f in self.filters)

    @property
    def description(self) -> str:
        return "; or ".join(f.description for f in self.filters)

    def removes(self, row: dict) -> bool:
        return any(f.removes(row) for f in self.filters)

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        mask, notes = [False] * len(rows), {}
        for f in self.filters:
            result = evaluate_filter(f, rows)
            mask = [a or b for a, b in zip(mask, result.mask)]
            notes[f"{f.name}:removed"] = sum(result.mask)
            notes.update({f"{f.name}:{k}": v for k, v in result.notes.items()})
        return Evaluation(mask, notes)


def evaluate_filter(flt: Filter, rows: Sequence[dict]) -> Evaluation:
    result = flt.evaluate(rows)
    if len(result.mask) != len(rows):  # a broken custom filter must not label the wrong rows
        raise RuntimeError(f"filter {flt.name} returned {len(result.mask)} decisions for {len(rows)} rows")
    return result


# ---- preview and apply ------------------------------------------------------------------------
@dataclass(frozen=True)
class FilterPreview:
    name: str
    description: str
    removed_count: int
    total: int  # candidate rows the filter looked at
    sample: list[dict]  # the first removed rows (id, instruction, response, status, …), oldest first
    notes: dict[str, int]  # side counts, e.g. {"unjudged_kept": 3}


def preview_filter(store: Store, flt: Filter, review_filter: ReviewFilter | None = None,
                   sample_size: int = 20) -> FilterPreview:
    """What `apply_filter` would remove, without changing anything."""
    rows = store.candidate_rows(review_filter, CANDIDATE_STATUSES)
    result = evaluate_filter(flt, rows)
    removed = [r for r, hit in zip(rows, result.mask) if hit]
    return FilterPreview(flt.name, flt.description, len(removed), len(rows), removed[:sample_size], result.notes)


def apply_filter(store: Store, flt: Filter, review_filter: ReviewFilter | None = None) -> int | None:
    """Reject every row the filter removes (reason 'filter:<name>', for `AnyOf` 'filter:a+b') in one
    label batch; returns the batch id to pass to `store.undo_batch`, or None when nothing was removed."""
    rows = store.candidate_rows(review_filter, CANDIDATE_STATUSES)
    result = evaluate_filter(flt, rows)
    ids = [r["id"] for r, hit in zip(rows, result.mask) if hit]
    return store.label_batch(ids, "rejected", reason=flt.reason)
