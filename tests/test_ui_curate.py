"""The Curate tab through its HTTP API (gradio_client): dedupe, filters, ranking and stats on a real workspace."""
from __future__ import annotations

import pytest
from gradio_client import Client

from curation.store import ReviewFilter, Store
from tests.test_filters import add_scores, make_rows
from tests.ui_helpers import running_studio

PARIS = "Paris is the capital of France."


@pytest.fixture
def studio_with(tmp_path):
    """studio_with(specs) -> (studio, client, generation ids): a workspace holding one task and one
    generation per spec (see tests.test_filters.make_rows), served by the real app."""
    stack = []

    def start(specs):
        with Store(tmp_path / "ws") as store:
            ids = make_rows(store, specs)
        running = running_studio(tmp_path / "ws")
        studio, url = running.__enter__()
        stack.append(running)
        return studio, Client(url, verbose=False), ids

    yield start
    for running in stack:
        running.__exit__(None, None, None)


def statuses(studio, ids):
    return [studio.store.generation(i)["review_status"] for i in ids]


def test_dedupe_preview_keep_apply_and_undo_on_known_duplicates(studio_with):
    studio, client, ids = studio_with([{"response": PARIS}, {"response": PARIS}, {"response": "a unique answer"},
                                       {"response": PARIS}, {"response": "Hello there"}, {"response": "Hello there"},
                                       {"response": "  hello THERE! "}])
    add_scores(studio.store, {ids[1]: [9.0], ids[0]: [4.0]})

    count, summary, clusters, first, members, keep, _ = client.predict(
        "responses", "exact", "", "judge_score", 0.9, api_name="/dedupe_preview")
    assert count.startswith("### 3 generations would be marked")
    assert "**3 of 7 generations**" in summary and "2 clusters" in summary
    rows = clusters["data"]
    # largest first; the judge rule keeps the best-scored Paris; unjudged "Hello there" keeps the earliest
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [(1, 3, ids[1], "rule", 2), (2, 2, ids[4], "rule", 1)]
    assert first == 1 and "✔ kept" in members and PARIS in members

    normalised, *_ = client.predict("responses", "normalised", "", "judge_score", 0.9, api_name="/dedupe_preview")
    assert normalised.startswith("### 4 generations would be marked")  # "  hello THERE! " joins its cluster
    client.predict("responses", "exact", "", "judge_score", 0.9, api_name="/dedupe_preview")

    summary, clusters, _, keep, = client.predict(1, ids[3], api_name="/dedupe_keep")  # keep the last Paris by hand
    assert clusters["data"][0][2:4] == [ids[3], "you"] and "1 chosen by you" in summary
    with pytest.raises(Exception, match="not in the list of choices"):  # only members of the shown cluster
        client.predict(1, ids[4], api_name="/dedupe_keep")

    message, *_ = client.predict(api_name="/dedupe_apply")
    assert message.startswith("marked 3 generations rejected")
    assert statuses(studio, ids) == ["rejected", "rejected", "pending", "pending", "pending", "rejected", "pending"]
    reason = studio.store.generation(ids[0])["reason"]
    assert reason == f"dedupe:exact:cluster 1 of {ids[3]}"
    assert studio.store.generation(ids[0])["response"] == PARIS  # marked, never deleted

    count, *_ = client.predict("responses", "exact", "", "judge_score", 0.9, api_name="/dedupe_preview")
    assert count.startswith("### 0 generations")  # rejected rows are out of the comparison

    message = client.predict(api_name="/dedupe_undo")
    assert message == "undid batch 1: 3 generations back to their earlier status"
    assert set(statuses(studio, ids)) == {"pending"}


def test_filter_preview_apply_and_undo_counts(studio_with):
    studio, client, ids = studio_with([{"response": "TODO: write this"}, {"response": "a real answer"},
                                       {"response": "later, todo"}, {"response": "fine"}])
    studio.store.set_label([ids[3]], "rejected")  # filters never revive or count rejected rows
    no_bounds = dict(min_length=None, max_length=None)  # number fields without a value must be sent
    settings = dict(kind="regex", pattern=r"\btodo\b", mode="exclude", regex_target="response", ignore_case=True,
                    **no_bounds)

    summary, sample = client.predict(**settings, api_name="/filter_preview")
    assert "removes **2 of 3** rows" in summary
    assert [r[0] for r in sample["data"]] == [ids[0], ids[2]]
    assert statuses(studio, ids) == ["pending", "pending", "pending", "rejected"]  # a preview changes nothing

    summary = client.predict(**settings, api_name="/filter_apply")
    assert summary == "rejected 2 rows with reason `filter:regex` (batch 2)"
    assert statuses(studio, ids) == ["rejected", "pending", "rejected", "rejected"]
    assert studio.store.generation(ids[0])["reason"] == "filter:regex"

    summary = client.predict(api_name="/filter_undo")
    assert summary == "undid batch 2: 2 rows back to their earlier status"
    assert statuses(studio, ids) == ["pending", "pending", "pending", "rejected"]
    with pytest.raises(Exception, match="nothing to undo"):
        client.predict(api_name="/filter_undo")
    with pytest.raises(Exception, match="set min_length, max_length or both"):
        client.predict(kind="length", **no_bounds, api_name="/filter_preview")
    summary, sample = client.predict(kind="length", unit="chars", min_length=12, max_length=None,
                                     api_name="/filter_preview")
    # "later, todo" is 11 characters; "fine" is shorter but rejected already
    assert "removes **1 of 3** rows" in summary and [r[0] for r in sample["data"]] == [ids[2]]
    # the browser sends an empty "remove longer than" box as 0: a minimum alone still works
    summary, _ = client.predict(kind="length", unit="chars", min_length=12, max_length=0, api_name="/filter_preview")
    assert "removes **1 of 3** rows" in summary


def test_rank_then_approve_top_k_and_top_percent_and_undo(studio_with):
    studio, client, ids = studio_with([{"response": f"answer {i}"} for i in range(5)])
    add_scores(studio.store, {ids[0]: [5.0], ids[1]: [9.0], ids[2]: [7.0, 8.0], ids[4]: [2.0]})  # ids[3] unjudged

    summary, table = client.predict(1.0, 0.0, 0.0, "", "", "", api_name="/rank")
    assert summary.startswith("ranked 5 pending rows; 4 have a score")
    assert [r[1] for r in table["data"]] == [ids[1], ids[2], ids[0], ids[4], ids[3]]
    assert table["data"][0][2] == 1.0 and table["data"][3][2] == 0.0  # min-max scaled

    message = client.predict("top K rows", 2, api_name="/approve_top")
    assert message.startswith("approved 2 rows")
    assert statuses(studio, ids) == ["pending", "approved", "approved", "pending", "pending"]
    with pytest.raises(Exception, match="rank first"):  # a used ranking is dropped: it is stale
        client.predict("top K rows", 2, api_name="/approve_top")

    client.predict(1.0, 0.0, 0.0, "", "", "", api_name="/rank")
    message = client.predict("top % of scored rows", 50, api_name="/approve_top")  # ceil(0.5 * 2 scored)
    assert message.startswith("approved 1 rows")
    assert studio.store.generation(ids[0])["review_status"] == "approved"

    client.predict(api_name="/rank_undo")
    client.predict(api_name="/rank_undo")
    assert set(statuses(studio, ids)) == {"pending"}
    with pytest.raises(Exception, match="no pending rows to rank"):
        client.predict(1.0, 0.0, 0.0, "", "", "no such words", api_name="/rank")


def test_stats_endpoint_returns_every_plot(studio_with):
    studio, client, ids = studio_with([{"response": "x" * n, "skill": "math", "completion_tokens": n}
                                       for n in (3, 30, 300)])
    studio.store.set_label([ids[0]], "approved")
    add_scores(studio.store, {ids[1]: [6.0]})
    summary, *plots = client.predict(api_name="/stats")
    assert summary.startswith("**3 tasks · 3 generations** (pending 2 · approved 1 · rejected 0 · failed 0)")
    assert len(plots) == 7
    for plot in plots:
        assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/png;base64,")


def test_review_search_from_page_two_shows_the_first_page_of_what_matches(studio_with):
    studio, client, ids = studio_with([{"response": f"answer {i}" + (" apple" if i < 10 else "")} for i in range(30)])
    table, info = client.predict("", "all", 2, api_name="/review_page")
    assert info == "page 2 of 2 · 30 matching generations (30 pending)" and len(table["data"]) == 5
    table, info = client.predict("apple", "all", 2, api_name="/review_page")  # the page box still says 2
    assert info == "page 1 of 1 · 10 matching generations (10 pending)" and len(table["data"]) == 10


def test_cluster_table_lists_the_largest_clusters_and_says_how_to_open_the_rest(store, monkeypatch):
    from curation.dedupe import DedupeConfig, plan_dedupe
    from ui import curate_dedupe

    make_rows(store, [{"response": PARIS}] * 3 + [{"response": "Hello there"}] * 2)
    plan = plan_dedupe(store, DedupeConfig(method="exact"))
    monkeypatch.setattr(curate_dedupe, "TABLE_CLUSTERS", 1)  # a 1M-row workspace has ~200k clusters
    frame = curate_dedupe.clusters_frame(plan, {})
    assert frame["cluster"].tolist() == [1] and frame["size"].tolist() == [3]
    summary = curate_dedupe.plan_summary(plan, {})
    assert "**3 of 5 generations**" in summary and "lists the 1 largest clusters" in summary and "1 to 2" in summary
