"""The workspace store on a real DuckDB file: schema, migration, labels that never lose the original."""
from __future__ import annotations

import duckdb
import pytest

from curation import store as store_mod
from curation.errors import StudioError
from curation.store import ReviewFilter, Store
from tests.conftest import add_generation


def test_new_workspace_gets_the_latest_schema(tmp_path):
    with Store(tmp_path) as s:
        assert s.schema_version == len(store_mod.MIGRATIONS)
        tables = {r[0] for r in s.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"tasks", "generations", "labels", "label_events", "judgments", "embeddings", "runs"} <= tables
    assert (tmp_path / "studio.duckdb").exists()


def test_a_version_1_workspace_is_migrated_keeping_its_rows(tmp_path):
    con = duckdb.connect(str(tmp_path / "studio.duckdb"))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT now())")
    con.execute(store_mod.MIGRATIONS[0])
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    con.execute("INSERT INTO tasks (instruction) VALUES ('kept across the migration')")
    con.close()
    with Store(tmp_path) as s:
        assert s.schema_version == len(store_mod.MIGRATIONS)
        assert s.tasks()[0]["instruction"] == "kept across the migration"
        assert "expected" in s.tasks()[0]


def test_edit_keeps_the_original_and_every_label_change(store):
    [task] = store.add_tasks([{"instruction": "Say hi."}])
    gid = add_generation(store, task, "k1", response="hi")
    store.set_label([gid], "rejected")
    store.edit_response(gid, "Hello there!")
    row = store.generation(gid)
    assert row["response"] == "hi" and row["edited_response"] == "Hello there!" and row["review_status"] == "approved"
    assert [h["status"] for h in store.label_history(gid)] == ["rejected", "approved"]
    store.set_label([gid], "approved")  # approving again keeps the edit
    assert store.generation(gid)["edited_response"] == "Hello there!"
    assert store.approved_examples()[0]["messages"][-1] == {"role": "assistant", "content": "Hello there!"}
    with pytest.raises(StudioError, match="cannot be empty"):
        store.edit_response(gid, "  ")


def test_failed_calls_cannot_be_approved_and_bulk_approve_skips_them(store):
    ids = store.add_tasks([{"instruction": "a"}, {"instruction": "b"}])
    ok = add_generation(store, ids[0], "ok")
    bad = add_generation(store, ids[1], "bad", status="error")
    with pytest.raises(StudioError, match="failed at the teacher"):
        store.set_label([bad], "approved")
    assert store.label_filter(ReviewFilter(), "approved") == 1
    assert store.generation(ok)["review_status"] == "approved"
    assert store.generation(bad)["review_status"] == "failed"


def test_undo_restores_the_state_before_a_batch(store):
    ids = store.add_tasks([{"instruction": f"t{i}"} for i in range(3)])
    gens = [add_generation(store, t, f"k{t}") for t in ids]
    store.set_label([gens[0]], "approved")
    store.set_label(gens, "rejected", reason="filter:test")
    batch = store.last_label_batch()
    assert store.generation(gens[1])["reason"] == "filter:test"
    assert store.undo_batch(batch) == 3
    assert [store.generation(g)["review_status"] for g in gens] == ["approved", "pending", "pending"]
    assert store.generation(gens[1])["reason"] is None


def test_undo_keeps_edits_tags_and_notes_and_leaves_other_rows_alone(store):
    ids = store.add_tasks([{"instruction": f"t{i}"} for i in range(3)])
    gens = [add_generation(store, t, f"k{t}") for t in ids]
    store.edit_response(gens[0], "a better answer")
    store.set_tags_note(gens[1], "math, hard", "check the units")
    store.set_label([gens[2]], "rejected", reason="by hand")
    batch = store.label_with_reasons({gens[0]: "dedupe:x", gens[1]: "dedupe:y"})
    assert store.undo_batch(batch) == 2
    first, second, third = (store.generation(g) for g in gens)
    assert (first["review_status"], first["edited_response"], first["reason"]) == ("approved", "a better answer", None)
    assert (second["review_status"], second["tags"], second["note"]) == ("pending", "math, hard", "check the units")
    assert (third["review_status"], third["reason"]) == ("rejected", "by hand")
    assert store.undo_batch(store.last_label_batch()) == 2  # the undo is a batch too: undoing it re-applies
    assert store.generation(gens[0])["reason"] == "dedupe:x" and store.generation(gens[1])["tags"] == "math, hard"


def test_labels_with_reasons_over_labelled_rows_keep_their_edits_and_insert_the_rest(store):
    ids = store.add_tasks([{"instruction": f"t{i}"} for i in range(3)])
    gens = [add_generation(store, t, f"k{t}") for t in ids]
    store.edit_response(gens[0], "a better answer")
    store.set_tags_note(gens[1], "math", None)
    store.label_with_reasons({g: f"dedupe:{g}" for g in gens})
    rows = [store.generation(g) for g in gens]
    assert [(r["review_status"], r["reason"]) for r in rows] == [("rejected", f"dedupe:{g}") for g in gens]
    assert rows[0]["edited_response"] == "a better answer" and rows[1]["tags"] == "math"
    assert store._fetchone("SELECT count(*) FROM labels")[0] == 3


def test_paging_search_and_status_filter_run_in_the_database(store):
    ids = store.add_tasks([{"instruction": f"task number {i}"} for i in range(60)])
    for t in ids:
        add_generation(store, t, f"k{t}", response="apples" if t % 3 == 0 else "pears")
    page, total = store.review_page(ReviewFilter(), page=3, page_size=25)
    assert total == 60 and len(page) == 10 and page["id"].iloc[0] == 51
    page, total = store.review_page(ReviewFilter(search="APPLE"), page=1, page_size=25)
    assert total == 20 and set(page["response"]) == {"apples"}
    store.label_filter(ReviewFilter(search="apples"), "approved")
    assert store.review_page(ReviewFilter(status="pending"))[1] == 40
    assert store.review_page(ReviewFilter(search="100%"))[1] == 0  # wildcards typed by a user are literal-ish
    with pytest.raises(StudioError, match="status must be one of"):
        ReviewFilter(status="bogus")


def test_keyword_pages_find_the_word_in_instruction_input_response_and_edit_like_the_full_join(store):
    tasks = store.add_tasks([{"instruction": "About a ZEBRA"}, {"instruction": "plain", "input": "zebras run"},
                             {"instruction": "plain"}, {"instruction": "plain"}, {"instruction": "plain"}])
    gens = [add_generation(store, t, f"k{t}", response=r) for t, r in
            zip(tasks, ["x", "y", "a zebra crossing", "nothing", "nothing"])]
    store.set_label([gens[3]], "approved", edited_response="now with a Zebra")
    store.set_label([gens[0]], "rejected")
    for flt in [ReviewFilter(search="zebra"), ReviewFilter(search="zebra", status="pending"),
                ReviewFilter(search="zebra", status="approved"), ReviewFilter(search="nothing")]:
        expected = store.matching_ids(flt)  # the reference: ILIKE over the whole review join
        page, total = store.review_page(flt, page_size=2, sort="newest")
        assert total == len(expected) and page["id"].tolist() == sorted(expected, reverse=True)[:2], flt
    assert store.matching_ids(ReviewFilter(search="zebra")) == gens[:4]
    assert store.review_page(ReviewFilter(search="zebra"), page=9, page_size=2)[1] == 4  # past the end: still counted


def test_runs_survive_reopening_and_dead_runs_are_marked_interrupted(tmp_path):
    with Store(tmp_path) as s:
        done = s.start_run("generate", {"n": 1})
        s.update_run(done, status="completed", metrics={"ok": 1})
        s.start_run("sft", {"student": "x"}, run_dir="/tmp/run")
    with Store(tmp_path) as s:
        assert s.mark_interrupted_runs() == [2]
        runs = {r["id"]: r for r in s.runs()}
    assert runs[1]["status"] == "completed" and runs[1]["metrics"] == {"ok": 1}
    assert runs[2]["status"] == "interrupted" and runs[2]["finished_at"] is not None


def test_review_page_sorts_in_the_database_and_keeps_the_order_across_pages(store):
    ids = store.add_tasks([{"instruction": f"t{i}"} for i in range(30)])
    for i, t in enumerate(ids):
        store.record_generation({"task_id": t, "request_key": f"s{t}", "endpoint": "e", "model": "m",
                                 "messages": [{"role": "user", "content": "q"}], "params": {}, "sample_index": 0,
                                 "response": "r", "status": "ok", "completion_tokens": (i * 7) % 30})
    first, total = store.review_page(ReviewFilter(), page=1, page_size=10, sort="longest")
    second, _ = store.review_page(ReviewFilter(), page=2, page_size=10, sort="longest")
    tokens = [*first["tokens"], *second["tokens"]]
    assert total == 30 and tokens == sorted(tokens, reverse=True) and tokens[0] == 29
    newest, _ = store.review_page(ReviewFilter(), page=1, page_size=5, sort="newest")
    assert list(newest["id"]) == [30, 29, 28, 27, 26]
    with pytest.raises(StudioError, match="sort must be one of"):
        store.review_page(ReviewFilter(), sort="instruction; DROP TABLE tasks")
