"""Stored embeddings (kept fresh by content hash) and the rows a dedupe covers (its labels: labels.py)."""
from __future__ import annotations

import pandas as pd

from curation.errors import StudioError
from curation.store.review import _REVIEW_FROM, _REVIEW_STATUS_SQL


class EmbeddingsMixin:
    """`Store` methods for embeddings and dedupe."""

    # ---- embeddings & dedupe ------------------------------------------------------------------
    # The text an item is embedded and deduplicated by: a task is its instruction plus its input; a
    # response is what would be trained on (the edit wins; a conversation's earlier turns too). Stored vectors carry md5 of that text, so
    # SQL alone tells which are stale without shipping every text to Python.
    _ITEM_TEXT_SQL = {
        "task": "SELECT t.id, t.instruction || CASE WHEN coalesce(t.input, '') = '' THEN '' "
                "ELSE chr(10) || chr(10) || t.input END AS text FROM tasks t",
        # A conversation is deduplicated as a whole: its turns (the edited ones; no system message) and its answer.
        "response": "SELECT g.id, CASE WHEN list_contains(json_extract_string(g.messages, '$[*].role'), 'assistant') "
                    "THEN array_to_string(list_transform(list_filter(json_extract(coalesce(l.edited_messages, "
                    "g.messages), '$[*]'), lambda m: m->>'role' <> 'system'), lambda m: m->>'content'), chr(10)) "
                    "|| chr(10) ELSE '' END "
                    "|| coalesce(l.edited_response, g.response) AS text FROM generations g "
                    "LEFT JOIN labels l ON l.generation_id = g.id WHERE g.status = 'ok' "
                    "AND coalesce(l.edited_response, g.response) IS NOT NULL",
    }
    # Highest 1-10 'score' judgment per generation: a dedupe keeps the best answer it has seen.
    _JUDGE_MAX_SQL = ("SELECT generation_id, max(score) AS score FROM judgments "
                      "WHERE coalesce(kind, 'score') = 'score' AND score IS NOT NULL GROUP BY generation_id")

    def _item_text_sql(self, kind: str) -> str:
        if kind not in self._ITEM_TEXT_SQL:
            raise StudioError(f"embedding kind must be task or response (got {kind!r})")
        return self._ITEM_TEXT_SQL[kind]

    def items_to_embed(self, kind: str, model: str) -> tuple[int, list[tuple[int, str, str]]]:
        """(how many items of `kind` exist, [(id, text, content hash)] of those whose vector under
        `model` is missing or was made from other text), ordered by id."""
        sql = self._item_text_sql(kind)
        with self._snapshot() as con:
            total = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
            stale = con.execute(
                f"SELECT i.id, i.text, md5(i.text) FROM ({sql}) i LEFT JOIN embeddings e ON e.item_kind = ? "
                "AND e.model = ? AND e.item_id = i.id WHERE e.content_hash IS DISTINCT FROM md5(i.text) "
                "ORDER BY i.id", [kind, model]).fetchall()
        return total, stale

    def put_embeddings(self, kind: str, model: str, ids: list[int], hashes: list[str], vectors) -> None:
        """Store float32[n, d] `vectors` for items `ids` (with the content hash each was made from),
        replacing older vectors of the same items and model, in one transaction."""
        # Local imports: only this section needs numpy/pyarrow, and an Arrow list column is the one
        # way to hand DuckDB 100k vectors without a Python object per float.
        import numpy as np
        import pyarrow as pa

        self._item_text_sql(kind)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        if n != len(ids) or n != len(hashes):
            raise StudioError(f"{n} vectors for {len(ids)} ids and {len(hashes)} hashes")
        if n == 0:
            return
        offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
        incoming = pa.table({"item_id": pa.array(np.asarray(ids, dtype=np.int64)),
                             "content_hash": pa.array(list(hashes), pa.string()),
                             "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel()))})
        # Registered outside the transaction: DuckDB refuses register() while a result is pending.
        with self._lock:
            con = self._cursor()
            con.register("_incoming_embeddings", incoming)
            try:
                with self.transaction():  # on the same cursor, which alone sees what it registered
                    con.execute("DELETE FROM embeddings WHERE item_kind = ? AND model = ? "
                                "AND item_id IN (SELECT item_id FROM _incoming_embeddings)", [kind, model])
                    con.execute("INSERT INTO embeddings (item_kind, item_id, model, content_hash, vector) "
                                "SELECT ?, item_id, ?, content_hash, vector FROM _incoming_embeddings", [kind, model])
            finally:
                con.unregister("_incoming_embeddings")

    def fresh_embeddings(self, kind: str, model: str):
        """(ids int64[n], vectors float32[n, d]) of the stored vectors whose item text is unchanged, by id."""
        import numpy as np

        sql = self._item_text_sql(kind)
        table = self._cursor().sql(
            f"SELECT e.item_id, e.vector FROM embeddings e JOIN ({sql}) i ON i.id = e.item_id "
            "AND e.content_hash = md5(i.text) WHERE e.item_kind = ? AND e.model = ? ORDER BY e.item_id",
            params=[kind, model]).to_arrow_table()
        ids = table.column("item_id").to_numpy().astype(np.int64)
        if not len(ids):
            return ids, np.zeros((0, 0), dtype=np.float32)
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        return ids, np.ascontiguousarray(flat.reshape(len(ids), -1), dtype=np.float32)

    def dedupe_items(self, target: str) -> pd.DataFrame:
        """The rows a dedupe covers, ordered by id; only train-split tasks, and only successful
        generations not already rejected (rejected rows are out of the dataset; failed ones have no text).

        target 'responses': id (generation), task_id, text, created_at, score (max judge score or NaN),
        status, tags, skill, domain, generation_ids ([id]).
        target 'tasks': id (task), text, created_at, score (max over its generations), skill, domain,
        generation_ids (its generations a dedupe would mark; may be empty).
        """
        live = "g.status = 'ok' AND coalesce(l.status, 'pending') <> 'rejected'"
        if target == "responses":
            return self._fetchdf(
                f"SELECT g.id, g.task_id, i.text, g.created_at, j.score, {_REVIEW_STATUS_SQL} AS status, l.tags, "
                f"t.skill, t.domain, [g.id] AS generation_ids FROM {_REVIEW_FROM} "
                f"JOIN ({self._ITEM_TEXT_SQL['response']}) i ON i.id = g.id "
                f"LEFT JOIN ({self._JUDGE_MAX_SQL}) j ON j.generation_id = g.id "
                f"WHERE {live} AND t.split = 'train' ORDER BY g.id")
        if target == "tasks":
            return self._fetchdf(
                f"SELECT t.id, any_value(i.text) AS text, any_value(t.created_at) AS created_at, "
                f"max(j.score) FILTER (WHERE {live}) AS score, any_value(t.skill) AS skill, "
                f"any_value(t.domain) AS domain, "
                f"coalesce(list(g.id ORDER BY g.id) FILTER (WHERE {live}), []) AS generation_ids "
                f"FROM tasks t JOIN ({self._ITEM_TEXT_SQL['task']}) i ON i.id = t.id "
                "LEFT JOIN generations g ON g.task_id = t.id LEFT JOIN labels l ON l.generation_id = g.id "
                f"LEFT JOIN ({self._JUDGE_MAX_SQL}) j ON j.generation_id = g.id "
                "WHERE t.split = 'train' GROUP BY t.id ORDER BY t.id")
        raise StudioError(f"dedupe target must be tasks or responses (got {target!r})")
