"""The workspace: one DuckDB file, its schema and migrations, and every read and write of it.

This package is the only place that writes SQL. Callers get plain dicts, lists and DataFrames back.
One process owns a workspace for writing; a second one gets `WorkspaceInUse` naming the owner's PID.
Inside it, each thread reads on its own cursor without waiting; writes and transactions take one lock.

`Store` (core.py: opening, migrating, locking, each thread's cursor, transactions; schema.py: the tables and
their migrations) combines one mixin per area: records.py (tasks, generations, bulk inserts, training
snapshot, stats), labels.py (labelling, label batches and their undo), review_pages.py (Review table pages,
counts and matching ids), review_queue.py (one task at a time), runs.py (runs, evaluation, distillation),
filtering.py (what filters, ranking and stats read), elicitation.py (ledger, prices), batches.py (Batch API
batches), embeddings.py (embeddings and the rows a dedupe covers) and sources.py (documents, conversations, tool sets); review.py
holds the review SQL they share. Import from `curation.store`; a test that patches a helper patches it where it
is defined.
"""
from curation.store.core import DB_NAME, Store, _acquire_workspace_lock
from curation.store.review import (_REVIEW_FROM, _REVIEW_STATUS_SQL, REVIEW_SORTS, REVIEW_STATUSES, ReviewFilter,
                                   _escape_like)
from curation.store.review_queue import QueueAction
from curation.store.runs import RUN_FINAL, _decode_run
from curation.store.schema import MIGRATIONS

__all__ = ["DB_NAME", "MIGRATIONS", "QueueAction", "REVIEW_SORTS", "REVIEW_STATUSES", "RUN_FINAL", "ReviewFilter",
           "Store"]
