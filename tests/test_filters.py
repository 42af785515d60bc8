"""Filters on crafted rows in a real workspace: what each removes, preview = apply, undo, 10k-row bulk."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from curation.errors import ConfigError
from curation.filter_kinds import (JudgeScoreFilter, LanguageFilter, LengthFilter, RefusalFilter, RegexFilter,
                                   response_length)
from curation.filters import AnyOf, apply_filter, preview_filter
from curation.leakage import LeakageFilter, build_ngram_index, max_containment, ngrams
from curation.store import ReviewFilter


def make_rows(store, specs: list[dict]) -> list[int]:
    """One task + one generation per spec (keys: response, instruction, finish_reason, completion_tokens,
    split, skill, domain, model, status); returns the generation ids in order."""
    tasks = pd.DataFrame({"instruction": [s.get("instruction", f"task {i}") for i, s in enumerate(specs)],
                          "split": [s.get("split", "train") for s in specs],
                          "skill": [s.get("skill") for s in specs], "domain": [s.get("domain") for s in specs]})
    task_ids = store.bulk_add("tasks", tasks)
    offset = store.stats()["generations"]
    gens = pd.DataFrame({
        "task_id": task_ids, "request_key": [f"r{offset + i}" for i in range(len(specs))],
        "endpoint": "test", "model": [s.get("model", "teacher-a") for s in specs],
        "messages": "[]", "params": "{}", "sample_index": 0,
        "response": [s.get("response", "a fine answer") for s in specs],
        "finish_reason": [s.get("finish_reason", "stop") for s in specs],
        "completion_tokens": pd.array([s.get("completion_tokens") for s in specs], dtype="Int64"),
        "status": [s.get("status", "ok") for s in specs]})
    return store.bulk_add("generations", gens)


def add_scores(store, scores: dict[int, list[float]]):
    pairs = [(g, s) for g, values in scores.items() for s in values]
    store.bulk_add("judgments", pd.DataFrame({"generation_id": [g for g, _ in pairs], "judge_model": "judge",
                                              "score": [s for _, s in pairs]}))


def removed_ids(store, flt, review_filter=None):
    preview = preview_filter(store, flt, review_filter, sample_size=1000)
    return [r["id"] for r in preview.sample]


def test_length_in_tokens_uses_stored_counts_then_a_whitespace_estimate(store):
    ids = make_rows(store, [{"response": "x", "completion_tokens": 3},
                            {"response": "x", "completion_tokens": 50},
                            {"response": "one two three four five six", "completion_tokens": None},
                            {"response": "one two three four five six seven eight nine ten"},
                            {"response": "tiny", "completion_tokens": 30}])
    store.set_label([ids[4]], "approved", edited_response="now only three words")
    assert removed_ids(store, LengthFilter(unit="tokens", min_length=5, max_length=9)) == [ids[0], ids[1], ids[3],
                                                                                           ids[4]]
    # the edit wins: "tiny" (4 chars) was edited into 20 chars
    assert removed_ids(store, LengthFilter(unit="chars", min_length=5, max_length=30)) == [ids[0], ids[1], ids[3]]
    assert response_length({"response": "a b", "completion_tokens": 7, "edited": True}, "tokens") == 2
    with pytest.raises(ConfigError, match="min_length .* must not exceed"):
        LengthFilter(min_length=10, max_length=5)
    with pytest.raises(ConfigError, match="set min_length, max_length"):
        LengthFilter()


def test_regex_include_exclude_and_a_bad_pattern_is_named(store):
    ids = make_rows(store, [{"response": "def f(): return 1", "instruction": "Write Python"},
                            {"response": "The answer is 42."},
                            {"response": "TODO: fill in"}])
    assert removed_ids(store, RegexFilter(r"\btodo\b")) == [ids[2]]
    assert removed_ids(store, RegexFilter(r"\btodo\b", ignore_case=False)) == []
    assert removed_ids(store, RegexFilter(r"\d+", mode="include")) == [ids[2]]
    assert removed_ids(store, RegexFilter("python", target="prompt")) == [ids[0]]
    with pytest.raises(ConfigError, match=r"regex '\(unclosed' is invalid.*escape special characters"):
        RegexFilter("(unclosed")


def test_refusals_boilerplate_empty_and_truncated(store):
    ids = make_rows(store, [{"response": "As an AI language model, I have no opinions."},
                            {"response": "Sorry \u2014 I can\u2019t help with that request."},
                            {"response": "   \n "},
                            {"response": "The first three primes are 2, 3 and", "finish_reason": "length"},
                            {"response": "Paris is the capital of France."},
                            {"response": "A helpful answer about AI language models."}])
    preview = preview_filter(store, RefusalFilter())
    assert [r["id"] for r in preview.sample] == ids[:4]
    assert preview.notes == {"boilerplate": 2, "empty": 1, "truncated": 1}
    assert removed_ids(store, RefusalFilter(truncated=False, empty=False)) == ids[:2]
    assert removed_ids(store, RefusalFilter(phrases=("paris",), empty=False, truncated=False)) == [ids[4]]


def test_judge_score_below_threshold_keeps_and_counts_unjudged_rows(store):
    ids = make_rows(store, [{}, {}, {}, {}])
    add_scores(store, {ids[0]: [3.0], ids[1]: [8.0], ids[2]: [4.0, 7.0]})  # mean 5.5 for the third
    preview = preview_filter(store, JudgeScoreFilter(threshold=5.0))
    assert [r["id"] for r in preview.sample] == [ids[0]]
    assert preview.notes == {"unjudged_kept": 1} and preview.total == 4
    with pytest.raises(ConfigError, match="threshold must be a number"):
        JudgeScoreFilter(threshold=float("nan"))


def test_language_keeps_allowed_languages_and_short_texts(store):
    ids = make_rows(store, [
        {"response": "The weather today is sunny and warm, perfect for a walk in the park."},
        {"response": "Le temps est ensoleillé aujourd'hui, parfait pour une promenade dans le parc."},
        {"response": "Das Wetter ist heute sonnig und warm, perfekt für einen Spaziergang im Park."},
        {"response": "Oui."}])
    detect = ("english", "french", "german", "spanish")
    preview = preview_filter(store, LanguageFilter(allowed=("english",), detect=detect))
    assert [r["id"] for r in preview.sample] == ids[1:3] and preview.notes == {"undetected_kept": 1}
    assert removed_ids(store, LanguageFilter(allowed=("English", "french"), detect=detect)) == [ids[2]]
    with pytest.raises(ConfigError, match="unknown language 'klingon'"):
        LanguageFilter(allowed=("klingon",))


def test_leakage_removes_train_rows_that_copy_an_eval_task(store):
    eval_task = "Explain why the sky is blue during the day and turns red at sunset, in simple words."
    ids = make_rows(store, [
        {"instruction": eval_task, "split": "eval"},
        {"instruction": "Quick question. " + eval_task.lower() + " Thanks!"},
        {"instruction": "Explain why the sea is salty.", "response": "Rivers carry salts. " + eval_task},
        {"instruction": "Explain why the sky is blue.", "response": "Rayleigh scattering."}])
    flt = LeakageFilter.from_store(store, n=8, threshold=0.5)
    assert flt.eval_texts == (eval_task,)
    assert removed_ids(store, flt) == ids[1:3]  # the eval row itself is never removed
    assert removed_ids(store, LeakageFilter.from_store(store, target="prompt")) == [ids[1]]
    assert removed_ids(store, LeakageFilter(eval_texts=())) == []


def test_ngram_containment_is_the_share_of_the_eval_item_found():
    index = build_ngram_index(["a b c d e", "x y"], n=3)
    assert ngrams(["a", "b", "c", "d"], 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert max_containment("zz a b c d", index) == (2 / 3, 0)
    assert max_containment("say x y now", index) == (1.0, 1)  # shorter than n: matched whole
    assert max_containment("nothing here", index) == (0.0, None)


def test_preview_changes_nothing_and_matches_apply_then_undo_restores(store):
    ids = make_rows(store, [{"response": "As an AI language model, no."}, {"response": ""},
                            {"response": "Good answer."}, {"response": "As an AI language model, maybe."}])
    store.set_label([ids[0]], "approved")
    store.set_label([ids[3]], "rejected", reason="by hand")
    preview = preview_filter(store, RefusalFilter())
    assert (preview.removed_count, preview.total) == (2, 3)  # the rejected row is no candidate
    assert store.stats()["by_status"] == {"pending": 2, "approved": 1, "rejected": 1, "failed": 0}
    batch = apply_filter(store, RefusalFilter())
    rows = [store.generation(g) for g in ids[:2]]
    assert [(r["review_status"], r["reason"]) for r in rows] == [("rejected", "filter:refusal")] * 2
    assert apply_filter(store, RefusalFilter()) is None  # nothing left to remove
    store.undo_batch(batch)
    assert [store.generation(g)["review_status"] for g in ids] == ["approved", "pending", "pending", "rejected"]
    assert store.generation(ids[3])["reason"] == "by hand"


def test_combined_filters_report_each_and_respect_the_review_filter(store):
    ids = make_rows(store, [{"response": "As an AI language model, no."}, {"response": "x" * 500},
                            {"response": "fine"}, {"response": "As an AI language model, again."}])
    both = AnyOf((RefusalFilter(), LengthFilter(unit="chars", max_length=100)))
    preview = preview_filter(store, both)
    assert preview.name == "refusal+length" and preview.removed_count == 3
    assert preview.notes == {"refusal:removed": 2, "refusal:boilerplate": 2, "length:removed": 1}
    assert removed_ids(store, both, ReviewFilter(search="again")) == [ids[3]]
    batch = apply_filter(store, both)
    both_reason = "filter:refusal+length"
    assert [store.generation(g)["reason"] for g in ids] == [both_reason, both_reason, None, both_reason]
    store.undo_batch(batch)
    assert store.stats()["by_status"]["pending"] == 4


def test_bulk_filter_and_approve_over_10k_rows(store):
    n = 10_000
    started = time.perf_counter()
    ids = make_rows(store, [{"response": "As an AI language model, I refuse." if i % 4 == 0 else f"answer {i}",
                             "completion_tokens": 5} for i in range(n)])
    assert len(ids) == n
    assert preview_filter(store, RefusalFilter()).removed_count == n // 4
    apply_filter(store, RefusalFilter())
    approved = store.label_filter(ReviewFilter(status="pending", search="answer 1"), "approved")
    expected = sum(1 for i in range(n) if i % 4 and str(i).startswith("1"))
    assert approved == expected
    assert store.stats()["by_status"] == {"pending": n - n // 4 - expected, "approved": expected,
                                          "rejected": n // 4, "failed": 0}
    assert time.perf_counter() - started < 15
