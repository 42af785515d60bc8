"""What the filters, ranking and stats read: candidate rows, judge scores, breakdowns."""
from __future__ import annotations

import pandas as pd

from curation.errors import StudioError
from curation.store.review import _REVIEW_FROM, _REVIEW_STATUS_SQL, ReviewFilter


class FilteringMixin:
    """`Store` methods the filters, ranking and stats read with."""

    # ---- filters, ranking & stats -------------------------------------------------------------
    # Mean of the 1-10 'score' judgments per generation; pairwise judgments are not scores.
    _JUDGE_MEAN_SQL = ("SELECT generation_id, avg(score) AS judge_score, count(*) AS judgments FROM judgments "
                       "WHERE coalesce(kind, 'score') = 'score' AND score IS NOT NULL GROUP BY generation_id")

    # The latest faithfulness verdict per generation (the documents method): its score and parsed verdict.
    _FAITHFULNESS_SQL = ("SELECT generation_id, score, rationale FROM judgments WHERE kind = 'faithfulness' "
                         "QUALIFY row_number() OVER (PARTITION BY generation_id ORDER BY id DESC) = 1")

    _BREAKDOWN_COLUMNS = {"skill": "t.skill", "domain": "t.domain", "teacher": "g.model"}

    def candidate_rows(self, flt: ReviewFilter | None = None,
                       statuses: tuple[str, ...] = ("pending", "approved")) -> list[dict]:
        """Successful generations whose review status is in `statuses` and that match `flt`, oldest first.

        Keys: id, task_id, instruction, input, skill, domain, split, chunk_id, model, status, response (the
        edited one wins), edited, finish_reason, completion_tokens, judge_score (mean, None when unjudged),
        judgments, faithfulness and faithfulness_verdict (the latest faithfulness judgment's score and JSON),
        tools (the JSON tool set a tool-use task was answered with, None for other rows).
        """
        ids_sql, params = self._review_ids_sql(flt or ReviewFilter())
        where = f" WHERE g.status = 'ok' AND list_contains(?, {_REVIEW_STATUS_SQL}) AND g.id IN ({ids_sql})"
        return self._fetchdicts(
            "SELECT g.id, g.task_id, t.instruction, t.input, t.skill, t.domain, t.split, t.chunk_id, g.model, "
            f"{_REVIEW_STATUS_SQL} AS status, coalesce(l.edited_response, g.response) AS response, "
            "l.edited_response IS NOT NULL AS edited, g.finish_reason, g.completion_tokens, "
            "js.judge_score, coalesce(js.judgments, 0) AS judgments, "
            "fj.score AS faithfulness, fj.rationale AS faithfulness_verdict, "
            "(SELECT ts.tools FROM toolsets ts WHERE ts.id = t.toolset_id) AS tools "
            f"FROM {_REVIEW_FROM} LEFT JOIN ({self._JUDGE_MEAN_SQL}) js ON js.generation_id = g.id "
            f"LEFT JOIN ({self._FAITHFULNESS_SQL}) fj ON fj.generation_id = g.id"
            f"{where} ORDER BY g.id", [list(statuses), *params])

    def eval_tasks(self) -> list[dict]:
        """Tasks of the eval split (id, instruction, input, expected): what training rows must not leak."""
        return self._fetchdicts("SELECT id, instruction, input, expected FROM tasks WHERE split = 'eval' ORDER BY id")

    def mean_judge_scores(self, gen_ids: list[int]) -> dict[int, float]:
        """Mean 'score' judgment per generation; unjudged generations are absent."""
        rows = self._fetchdicts(f"SELECT * FROM ({self._JUDGE_MEAN_SQL}) WHERE list_contains(?, generation_id)",
                                [[int(i) for i in gen_ids]])
        return {r["generation_id"]: float(r["judge_score"]) for r in rows}

    def status_counts_by(self, column: str) -> pd.DataFrame:
        """Generations per (key, review status) for column skill / domain / teacher; key NULL when untagged."""
        if column not in self._BREAKDOWN_COLUMNS:
            raise StudioError(f"count by one of {', '.join(self._BREAKDOWN_COLUMNS)} (got {column!r})")
        return self._fetchdf(f"SELECT {self._BREAKDOWN_COLUMNS[column]} AS key, {_REVIEW_STATUS_SQL} AS status, "
                             f"count(*) AS n FROM {_REVIEW_FROM} GROUP BY ALL ORDER BY ALL")

    def task_counts_by(self, column: str) -> pd.DataFrame:
        """Tasks per skill or domain (key NULL when untagged)."""
        if column not in ("skill", "domain"):
            raise StudioError(f"count tasks by skill or domain (got {column!r})")
        return self._fetchdf(f"SELECT {column} AS key, count(*) AS n FROM tasks GROUP BY ALL ORDER BY ALL")

    def response_measures(self) -> pd.DataFrame:
        """One row per successful generation: status, chars and tokens of the response, mean judge score.

        tokens is the teacher's completion_tokens, NULL for an edited response (the count no longer applies).
        """
        return self._fetchdf(
            f"SELECT {_REVIEW_STATUS_SQL} AS status, length(coalesce(l.edited_response, g.response, '')) AS chars, "
            "CASE WHEN l.edited_response IS NULL THEN g.completion_tokens END AS tokens, js.judge_score "
            f"FROM {_REVIEW_FROM} LEFT JOIN ({self._JUDGE_MEAN_SQL}) js ON js.generation_id = g.id "
            "WHERE g.status = 'ok'")
