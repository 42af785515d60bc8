"""The store shared between threads (the UI's request threads, a job's worker threads) on a real DuckDB file:
reads never wait for a writer, every thread sees what was committed, and concurrent writers lose nothing."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from curation.errors import StudioError
from curation.store import ReviewFilter, Store
from tests.conftest import add_generation


def _hold_transaction_open(store, opened: threading.Event, release: threading.Event, errors: list):
    try:
        with store.transaction() as con:
            con.execute("INSERT INTO tasks (instruction) VALUES ('written while the reader reads')")
            opened.set()
            release.wait(20)
    except BaseException as exc:  # reported by the test, not lost in the thread
        errors.append(exc)
        opened.set()


def test_a_read_does_not_wait_for_a_writer_and_then_sees_its_commit(store):
    store.add_tasks([{"instruction": "committed before"}])
    opened, release, errors = threading.Event(), threading.Event(), []
    writer = threading.Thread(target=_hold_transaction_open, args=(store, opened, release, errors))
    writer.start()
    with ThreadPoolExecutor(max_workers=1) as reader:  # one thread, so the same cursor before and after
        try:
            assert opened.wait(10) and not errors
            during = reader.submit(store.stats).result(timeout=5)  # it used to wait for the writer's lock
            assert during["tasks"] == 1  # the open transaction is not seen
        finally:
            release.set()
            writer.join(20)
        assert not errors
        assert reader.submit(store.count_tasks).result(timeout=5) == 2
        assert [t["instruction"] for t in reader.submit(store.tasks).result(timeout=5)] == [
            "committed before", "written while the reader reads"]


def test_a_thread_inside_its_transaction_reads_what_it_wrote(store):
    with store.transaction() as con:
        con.execute("INSERT INTO tasks (instruction) VALUES ('not yet committed')")
        assert store.count_tasks() == 1
        assert store.stats()["tasks"] == 1  # a snapshot read joins the open transaction
        other = ThreadPoolExecutor(max_workers=1)
        assert other.submit(store.count_tasks).result(timeout=5) == 0
    assert other.submit(store.count_tasks).result(timeout=5) == 1
    other.shutdown()


def test_eight_threads_writing_at_once_lose_no_row(store):
    # Each writes its own rows and also the same two rows as all the others (a label on one shared answer,
    # the usage of one run): without the write lock DuckDB fails one of two such transactions with a conflict.
    per_thread, threads = 25, 8
    [shared_task] = store.add_tasks([{"instruction": "labelled by everyone"}])
    shared = add_generation(store, shared_task, "shared")
    run = store.start_run("generate", {})
    start = threading.Barrier(threads)

    def write(worker: int) -> None:
        start.wait(10)
        for i in range(per_thread):
            [task] = store.add_tasks([{"instruction": f"worker {worker} task {i}"}])
            gen = add_generation(store, task, f"w{worker}-{i}")
            store.set_label([gen], "approved" if i % 2 else "rejected", reason=f"worker {worker}")
            store.set_label([shared], "approved" if i % 2 else "rejected", reason=f"worker {worker}")
            store.set_run_usage(run, worker, i, None)
            store.review_page(ReviewFilter(), page=1)  # reads interleaved with the others' writes

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(write, w) for w in range(threads)]:
            future.result(timeout=120)
    total = per_thread * threads
    stats = store.stats()
    assert stats["tasks"] == total + 1 and stats["generations"] == total + 1
    assert stats["by_status"]["approved"] + stats["by_status"]["rejected"] == total + 1
    assert len(store.label_history(shared)) == total
    assert store.last_label_batch() == 2 * total  # one batch per set_label, none lost or merged


def test_cursors_of_ended_threads_are_closed_and_close_ends_every_cursor(tmp_path):
    s = Store(tmp_path / "ws")
    for _ in range(20):  # e.g. one thread per job
        worker = threading.Thread(target=s.count_tasks)
        worker.start()
        worker.join()
    s.count_tasks()
    assert len(s._cursors) <= 2  # this thread's and at most the last worker's
    s.close()
    with pytest.raises(StudioError, match="is closed"):
        s.count_tasks()
    with Store(tmp_path / "ws") as again:  # the file and its lock were released
        assert again.count_tasks() == 0
