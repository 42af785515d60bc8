"""The workspace: one DuckDB file, its schema and migrations, and every read and write of it.

This package is the only place that writes SQL. Callers get plain dicts, lists and DataFrames back.
One process owns a workspace for writing; a second one gets `WorkspaceInUse` naming the owner's PID.

`Store` (core.py: schema, migrations, opening, locking, transactions) combines one mixin per area:
records.py (tasks, generations, labels, training snapshot, stats), runs.py (runs, evaluation,
distillation), filtering.py (filters, ranking & stats), elicitation.py (ledger, prices),
embeddings.py (embeddings & dedupe) and review_queue.py; review.py holds the review SQL they share.
Import from `curation.store`; a test that patches a helper patches it where it is defined.
"""
from curation.store.core import DB_NAME, MIGRATIONS, Store, _acquire_workspace_lock
from curation.store.review import (_REVIEW_FROM, _REVIEW_STATUS_SQL, REVIEW_SORTS, REVIEW_STATUSES, ReviewFilter,
                                   _escape_like)
from curation.store.review_queue import QueueAction
from curation.store.runs import RUN_FINAL, _decode_run

__all__ = ["DB_NAME", "MIGRATIONS", "QueueAction", "REVIEW_SORTS", "REVIEW_STATUSES", "RUN_FINAL", "ReviewFilter",
           "Store"]
