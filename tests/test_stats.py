"""Workspace stats on crafted rows: counts by status / skill / domain / teacher, histograms, figures."""
from __future__ import annotations

import json

from curation.stats import stats_figures, workspace_stats
from tests.test_filters import add_scores, make_rows


def _crafted(store):
    ids = make_rows(store, [
        {"skill": "math", "domain": "school", "model": "big", "response": "12345", "completion_tokens": 2},
        {"skill": "math", "domain": "school", "model": "big", "response": "1234567890", "completion_tokens": 4},
        {"skill": "code", "model": "small", "response": "x" * 25, "completion_tokens": 9},
        {"skill": "code", "model": "small", "status": "error", "response": None},
        {"model": "small", "response": "abc", "completion_tokens": None}])
    store.set_label([ids[0]], "approved")
    store.set_label([ids[1]], "rejected")
    store.set_label([ids[2]], "approved", edited_response="y" * 7)  # the edit's length counts, not 25
    store.add_tasks([{"instruction": "no generations yet", "skill": "math"}])
    add_scores(store, {ids[0]: [9.0], ids[1]: [2.0, 3.0], ids[2]: [9.5]})
    return ids


def test_counts_by_status_skill_domain_and_teacher(store):
    _crafted(store)
    stats = workspace_stats(store)
    assert {k: stats[k] for k in store.stats()} == store.stats()  # a superset of Store.stats()
    assert stats["by_status"] == {"pending": 1, "approved": 2, "rejected": 1, "failed": 1}
    assert stats["by_skill"] == {
        "(none)": {"tasks": 1, "pending": 1, "approved": 0, "rejected": 0, "failed": 0},
        "code": {"tasks": 2, "pending": 0, "approved": 1, "rejected": 0, "failed": 1},
        "math": {"tasks": 3, "pending": 0, "approved": 1, "rejected": 1, "failed": 0}}
    assert stats["by_domain"]["school"] == {"tasks": 2, "pending": 0, "approved": 1, "rejected": 1, "failed": 0}
    assert stats["by_domain"]["(none)"]["tasks"] == 4
    assert stats["by_teacher"] == {"big": {"pending": 0, "approved": 1, "rejected": 1, "failed": 0},
                                   "small": {"pending": 1, "approved": 1, "rejected": 0, "failed": 1}}
    json.dumps(stats)  # the CLI prints it as is


def test_histograms_of_judge_scores_and_lengths(store):
    _crafted(store)
    stats = workspace_stats(store)
    judge = stats["judge_scores"]
    assert judge["edges"] == [float(e) for e in range(11)]
    assert judge["counts"] == [0, 0, 1, 0, 0, 0, 0, 0, 0, 2] and judge["unjudged"] == 1  # means 9, 2.5, 9.5
    chars = stats["response_chars"]  # successful responses: 5, 10, 7 (edited), 3
    assert sum(chars["counts"]) == 4 and chars["above"] == 0 and chars["edges"][0] == 0
    assert chars["edges"][-1] >= 10
    tokens = stats["response_tokens"]  # 2 and 4; the edited row and the row without a count are left out
    assert sum(tokens["counts"]) == 2 and tokens["edges"][:3] == [0.0, 1.0, 2.0]


def test_figures_draw_every_panel(store):
    _crafted(store)
    figures = stats_figures(workspace_stats(store))
    assert set(figures) == {"status", "skill", "domain", "teacher", "judge_scores", "response_chars",
                            "response_tokens"}
    status_bars = figures["status"].axes[0].patches
    assert [int(b.get_height()) for b in status_bars] == [1, 2, 1, 1]
    judge_bars = figures["judge_scores"].axes[0].patches
    assert sum(int(b.get_height()) for b in judge_bars) == 3


def test_an_empty_workspace_has_stats_and_figures(store):
    stats = workspace_stats(store)
    assert stats["generations"] == 0 and stats["by_skill"] == {} and sum(stats["judge_scores"]["counts"]) == 0
    assert len(stats_figures(stats)) == 7


def test_review_totals_per_status_agree_with_the_stats(store):
    from curation.store import ReviewFilter

    ids = _crafted(store)
    batch = store.label_batch([ids[4]], "rejected")
    store.undo_batch(batch)  # leaves an explicit 'pending' label behind
    by_status = workspace_stats(store)["by_status"]
    for status, count in by_status.items():
        page, total = store.review_page(ReviewFilter(status=status), page=1, page_size=10)
        assert total == count and page["id"].tolist() == store.matching_ids(ReviewFilter(status=status))
        assert set(page["status"]) <= {status}
