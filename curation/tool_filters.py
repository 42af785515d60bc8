"""A filter for tool-use answers (the tools method): calls that do not hold against their tool set's schemas.

It checks the answer as it would be trained on (an edit wins: a reviewer who fixed a call in the edit box keeps
the row), reading Store.candidate_rows' `tools`; rows of tasks without a tool set are never removed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Sequence

from curation.filters import Evaluation, Filter
from curation.toolsets import check_text


@dataclass(frozen=True)
class InvalidCallsFilter(Filter):
    """Removes tool-use answers holding a call that is invalid against its schema (unknown function, arguments
    that are not a JSON object or break the schema); with `text_answers`, answers that call nothing too."""

    text_answers: bool = False  # also remove tool-use answers that are text without a call
    name: ClassVar[str] = "invalid_calls"

    @property
    def description(self) -> str:
        return "tool-use answers with a call invalid against its schema" + (" or with no call" if self.text_answers else "")

    def removes(self, row: dict) -> bool:
        if not row.get("tools"):
            return False
        checked = check_text(json.loads(row["tools"]), row.get("response"))
        return any(not c["valid"] for c in checked) or (self.text_answers and not checked)

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        return Evaluation([self.removes(r) for r in rows], {"tool_use_rows": sum(bool(r.get("tools")) for r in rows)})
