"""Filters for answers grounded in the user's documents (the documents method): questions the chunk cannot
answer, and answers the faithfulness judge found unsupported by it. Both read the latest 'faithfulness'
judgment of a row (Store.candidate_rows: `faithfulness`, its 1-10 score, and `faithfulness_verdict`); rows
without one are kept and counted, never removed on a guess.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import ClassVar, Sequence

from curation.errors import ConfigError
from curation.filters import Evaluation, Filter

# What the documents method's prompts tell the teacher to say when the chunk holds no answer.
NO_ANSWER = re.compile(r"\b(?:the context does not say|(?:context|passage|text) does not (?:say|contain|mention)|"
                       r"i do not know|i don't know|not (?:stated|mentioned) in the (?:context|passage))\b",
                       re.IGNORECASE)


def verdict_of(row: dict) -> dict | None:
    raw = row.get("faithfulness_verdict")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


@dataclass(frozen=True)
class UnanswerableFilter(Filter):
    """Removes grounded answers to questions their chunk cannot answer: the faithfulness judge said the
    question is not answerable from the chunk, or the answer itself says the context does not say."""

    judged: bool = True  # use the faithfulness judge's 'answerable' verdict
    said: bool = True  # use the answer's own words ("the context does not say", "I do not know")
    name: ClassVar[str] = "unanswerable"

    def __post_init__(self):
        if not (self.judged or self.said):
            raise ConfigError("unanswerable: turn on judged or said (or both)")

    @property
    def description(self) -> str:
        return "grounded answers whose question the chunk cannot answer"

    def removes(self, row: dict) -> bool:
        verdict = verdict_of(row)
        if self.judged and verdict is not None and verdict.get("answerable") is False:
            return True
        return bool(self.said and row.get("chunk_id") and NO_ANSWER.search(row.get("response") or ""))

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        grounded = [r for r in rows if r.get("chunk_id")]
        unjudged = sum(verdict_of(r) is None for r in grounded)
        return Evaluation([self.removes(r) for r in rows], {"grounded_rows": len(grounded), "unjudged_kept": unjudged})


@dataclass(frozen=True)
class UnfaithfulFilter(Filter):
    """Removes grounded answers the faithfulness judge scored below `min_score` (1-10) or called unfaithful."""

    min_score: float = 6.0  # remove answers scored below this; 1 keeps every score and uses the verdict only
    name: ClassVar[str] = "unfaithful"

    def __post_init__(self):
        if not isinstance(self.min_score, (int, float)) or not math.isfinite(self.min_score) \
                or not 1 <= self.min_score <= 10:
            raise ConfigError(f"unfaithful: min_score must be between 1 and 10 (got {self.min_score!r})")

    @property
    def description(self) -> str:
        return f"grounded answers judged unfaithful to their chunk or scored below {self.min_score:g}"

    def removes(self, row: dict) -> bool:
        verdict = verdict_of(row)
        if verdict is None:
            return False
        return verdict.get("faithful") is False or float(row.get("faithfulness") or 10) < self.min_score

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        grounded = [r for r in rows if r.get("chunk_id")]
        unjudged = sum(verdict_of(r) is None for r in grounded)
        return Evaluation([self.removes(r) for r in rows], {"grounded_rows": len(grounded), "unjudged_kept": unjudged})
