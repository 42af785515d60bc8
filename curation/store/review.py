"""A generation's review status, the review join and `ReviewFilter`: the SQL every area of the store shares."""
from __future__ import annotations

from dataclasses import dataclass

from curation.errors import StudioError

REVIEW_STATUSES = ("pending", "approved", "rejected", "failed")
# Review table orders; each sorts on generations' own columns, so paging stays on the narrow query.
REVIEW_SORTS = {"id": "g.id", "newest": "g.id DESC", "longest": "g.completion_tokens DESC NULLS LAST, g.id",
                "shortest": "g.completion_tokens ASC NULLS LAST, g.id", "slowest": "g.latency_s DESC NULLS LAST, g.id",
                "task": "g.task_id, g.id"}
_SORT_COLUMNS = "g.id, g.task_id, g.completion_tokens, g.latency_s"  # every column REVIEW_SORTS orders by

# A generation's review status: a failed teacher call is 'failed' whatever its label says.
_REVIEW_STATUS_SQL = "CASE WHEN g.status = 'error' THEN 'failed' ELSE coalesce(l.status, 'pending') END"
_REVIEW_FROM = "generations g JOIN tasks t ON t.id = g.task_id LEFT JOIN labels l ON l.generation_id = g.id"


@dataclass(frozen=True)
class ReviewFilter:
    """Which generations a Review page or a bulk action covers. Empty fields match everything."""

    status: str = ""
    search: str = ""

    def __post_init__(self):
        if self.status and self.status not in REVIEW_STATUSES:
            raise StudioError(f"status must be one of {', '.join(REVIEW_STATUSES)} (got {self.status!r})")


def _escape_like(text: str) -> str:
    # ILIKE's wildcards typed by a user are meant literally; DuckDB's default escape is none, so
    # we map them to the single-char wildcard, which still matches the literal character.
    return text.replace("%", "_")
