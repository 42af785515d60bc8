"""The evaluation's maths on hand-built inputs: win rate in both orders with ties, ROUGE-L, NLL, checks."""
from __future__ import annotations

import math

import pytest

from curation.errors import ConfigError
from evaluation import metrics as em
from models.nll import answer_nll, token_nll


def compare(a, b, score):
    """A stored 'compare' judgment: `a` shown as Response A, `b` as B; score 1 = A won, 0 = B won, 0.5 tie."""
    return {"kind": "compare", "generation_id": a, "other_generation_id": b, "score": score}


# ---- pairwise win rate ---------------------------------------------------------------------------

def test_candidate_verdicts_read_both_orders_from_the_candidates_side():
    judgments = [compare(10, 20, 1.0),   # candidate 10 shown first and won
                 compare(20, 10, 1.0),   # candidate shown second; A (the other) won -> candidate lost
                 compare(20, 10, 0.5),   # tie
                 compare(20, 10, None),  # unreadable verdict
                 compare(10, 30, 0.0),   # another pair: ignored
                 {"kind": "score", "generation_id": 10, "other_generation_id": None, "score": 9.0}]
    assert em.candidate_verdicts(judgments, 10, 20) == [1.0, 0.0, 0.5, None]


@pytest.mark.parametrize("verdicts, outcome", [
    ([1.0, 1.0], "win"),       # both orders agree the candidate is better
    ([0.0, 0.0], "loss"),
    ([1.0, 0.0], "tie"),       # the orders disagree: position bias, not a preference
    ([0.5, 1.0], "tie"),       # one order says tie
    ([0.5, 0.5], "tie"),
    ([1.0, None], None),       # one order unreadable: no outcome, left out of n
    ([], None),
])
def test_pairwise_outcome(verdicts, outcome):
    assert em.pairwise_outcome(verdicts) == outcome


def test_win_rate_counts_ties_as_half_over_the_tasks_with_an_outcome():
    # Five tasks, each judged in both orders, candidate = generation 1, opponent = generation 2 (ids per task).
    per_task = [
        [compare(1, 2, 1.0), compare(2, 1, 0.0)],  # win: first order A=cand won, second order B=cand won
        [compare(1, 2, 1.0), compare(2, 1, 0.0)],  # win
        [compare(1, 2, 0.0), compare(2, 1, 1.0)],  # loss in both orders
        [compare(1, 2, 1.0), compare(2, 1, 1.0)],  # each order prefers the response shown first: tie
        [compare(1, 2, 1.0), compare(2, 1, None)],  # second verdict unreadable: missing
    ]
    outcomes = [em.pairwise_outcome(em.candidate_verdicts(js, 1, 2)) for js in per_task]
    assert outcomes == ["win", "win", "loss", "tie", None]
    result = em.win_rate(outcomes)
    assert result == {"wins": 2, "losses": 1, "ties": 1, "n": 4, "missing": 1, "win_rate": (2 + 0.5) / 4}
    assert em.win_rate([None, None])["win_rate"] is None and em.win_rate([])["n"] == 0


# ---- ROUGE-L, means ------------------------------------------------------------------------------

def test_rouge_l_of_texts_matches_a_hand_calculation():
    # the cat sat on the mat / the cat lay on a mat: LCS = the cat on mat = 4 of 6 and 6 -> P = R = F = 2/3
    assert em.rouge_l_text("The cat sat on the mat.", "the cat lay on a mat") == pytest.approx(4 / 6)
    # a b c d e vs a c e: LCS 3, P = 3/5, R = 3/3 -> F = 2 * 0.6 * 1 / 1.6 = 0.75
    assert em.rouge_l_text("a b c d e", "a, c, e") == pytest.approx(0.75)
    assert em.rouge_l_text("", "anything") == 0.0 and em.rouge_l_text(None, None) == 0.0
    assert em.rouge_l_text("Same words here", "same WORDS here!") == 1.0
    # rouge-score's Porter stemmer: dogs = dog, so LCS = the dog running (3 of 4) -> 0.75, not 0.5
    assert em.rouge_l_text("the dogs are running", "the dog is running") == pytest.approx(0.75)


def test_mean_or_none_skips_missing_values():
    assert em.mean_or_none([4.0, None, 8.0, float("nan")]) == 6.0
    assert em.mean_or_none([None]) is None


# ---- checkable expectations ----------------------------------------------------------------------

@pytest.mark.parametrize("expected, answer, passed", [
    ("exact:Paris", "  paris ", True),
    ("exact:Paris", "Paris.", True),                      # one trailing full stop is allowed
    ("exact:Paris", "It is Paris.", False),
    ("exact:New   York", "new york", True),                # whitespace normalised on both sides
    ("contains:2,400 dollars", "You have 2,400   Dollars in total.", True),
    ("contains:2,400 dollars", "You have 2400 dollars.", False),
    ("regex:\\b15:55\\b", "It arrives at 15:55.", True),
    ("regex:^yes$", "YES", True),                          # case-insensitive
    ("regex:\\b(positive)\\b", "Negative.", False),
    (None, "anything", None),                              # no expectation: not checked
])
def test_check_expectation(expected, answer, passed):
    assert em.check_expectation(expected, answer) is passed


@pytest.mark.parametrize("bad", ["Paris", "exact:", "fuzzy:Paris", "regex:(unclosed"])
def test_a_malformed_expectation_says_the_format(bad):
    with pytest.raises(ConfigError, match="exact:TEXT|does not compile"):
        em.parse_expectation(bad)


def test_pass_rate_leaves_unchecked_tasks_out():
    assert em.pass_rate([True, False, None, True]) == (pytest.approx(2 / 3), 3)
    assert em.pass_rate([None]) == (None, 0)


# ---- NLL -----------------------------------------------------------------------------------------

def test_token_nll_of_uniform_logits_is_log_vocab_and_skips_ignored_labels():
    import torch

    logits = torch.zeros(5, 4)  # uniform over a vocabulary of 4
    labels = torch.tensor([-100, -100, 1, 2, 3])  # positions 2..4 scored, predicted from 1..3
    total, count = token_nll(logits, labels)
    assert count == 3 and total == pytest.approx(3 * math.log(4))
    assert token_nll(logits, torch.full((5,), -100)) == (0.0, 0)


def test_answer_nll_scores_only_the_response_tokens(tiny_student):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_student))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_student)).eval()
    messages = [{"role": "user", "content": "What is 2+2?"}]
    answer = "2 + 2 = 4."
    total, count = answer_nll(model, tokenizer, messages, answer)

    # Directly: the whole chat, log_softmax of each next-token prediction, summed over the answer's tokens.
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=True,
                                         return_dict=True)["input_ids"]
    assert full[:len(prompt)] == prompt
    assert tokenizer.decode(full[len(prompt):]) == answer + "<|im_end|>\n"  # what the SFT loss covers too
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].double(), dim=-1)
    expected = -sum(float(logp[t - 1, full[t]]) for t in range(len(prompt), len(full)))
    assert count == len(full) - len(prompt)
    assert total == pytest.approx(expected, rel=1e-4)
    # A random tiny model is near-uniform: about log(vocab) nats per token, a sanity bound on the units.
    assert 0.5 * math.log(len(tokenizer)) < total / count < 2 * math.log(len(tokenizer))


# ---- summaries of detail rows --------------------------------------------------------------------

def row(task_id, skill, scores, vs_base, vs_teacher, passed=None, nll=None):
    return {"task_id": task_id, "skill": skill, "domain": "general",
            "answers": {"base": "b", "distilled": "d", "teacher": "t"},
            "scores": dict(zip(em.SYSTEMS, scores)), "rouge_l": {"base": 0.2, "distilled": 0.4},
            "nll": nll or {"base": {"sum": 20.0, "tokens": 10}, "distilled": {"sum": 10.0, "tokens": 10}},
            "pass": passed or {"base": None, "distilled": None, "teacher": None},
            "vs_base": {"verdicts": vs_base, "outcome": em.pairwise_outcome(vs_base)},
            "vs_teacher": {"verdicts": vs_teacher, "outcome": em.pairwise_outcome(vs_teacher)}}


def test_summarise_and_breakdown_of_crafted_rows():
    rows = [row(1, "code", (3, 6, 9), [1.0, 1.0], [0.0, 0.0],
                passed={"base": False, "distilled": True, "teacher": True},
                nll={"base": {"sum": 30.0, "tokens": 10}, "distilled": {"sum": 5.0, "tokens": 10}}),
            row(2, "code", (4, 4, 8), [1.0, 0.0], [0.5, 0.5]),
            row(3, "nlu", (5, None, 7), [0.0, 0.0], [1.0, 1.0],
                passed={"base": True, "distilled": False, "teacher": True},
                nll={"base": {"sum": 10.0, "tokens": 30}, "distilled": {"sum": 20.0, "tokens": 30}})]
    m = em.summarise(rows)
    assert m["tasks"] == 3 and m["lost"] == 2  # task 1 lost to the teacher, task 3 failed its check
    assert m["base"]["judge_score"] == 4 and m["distilled"]["judge_score"] == 5 and m["distilled"]["scored"] == 2
    assert m["teacher"]["judge_score"] == 8
    assert m["distilled_vs_base"] == {"wins": 1, "losses": 1, "ties": 1, "n": 3, "missing": 0, "win_rate": 0.5}
    assert m["distilled_vs_teacher"]["win_rate"] == pytest.approx(1.5 / 3)
    assert m["base"]["pass_rate"] == 0.5 and m["distilled"]["checked"] == 2
    # token-weighted: (30 + 20 + 10) / (10 + 10 + 30) for base
    assert m["base"]["nll"] == pytest.approx(60 / 50) and m["distilled"]["nll"] == pytest.approx(35 / 50)
    assert m["distilled"]["rouge_l"] == pytest.approx(0.4)

    groups = {g["group"]: g for g in em.breakdown(rows, "skill")}
    assert groups["code"]["tasks"] == 2 and groups["code"]["score_distilled"] == 5
    assert groups["code"]["win_vs_base"] == 0.75 and groups["nlu"]["win_vs_teacher"] == 1.0
    with pytest.raises(ConfigError):
        em.breakdown(rows, "teacher")


def test_deficit_orders_the_worst_losses_first():
    lost = row(1, "x", (9, 2, 9), [], [0.0, 0.0], passed={"base": None, "distilled": False, "teacher": True})
    tie = row(2, "x", (7, 7, 7), [], [1.0, 0.0])
    won = row(3, "x", (6, 9, 6), [], [1.0, 1.0])
    assert em.deficit(lost) == pytest.approx(7 / 9 + 1 + 1)
    assert em.deficit(lost) > em.deficit(tie) > em.deficit(won)
    assert em.is_lost(lost) and not em.is_lost(tie) and not em.is_lost(won)


# ---- intervals, stopping, the judge's reliability -----------------------------------------------

def test_bootstrap_intervals_contain_the_value_and_narrow_with_more_tasks():
    from evaluation import intervals

    few = intervals.mean([0, 1] * 5)
    many = intervals.mean([0, 1] * 200)
    assert few["value"] == many["value"] == 0.5 and few["n"] == 10 and many["n"] == 400
    assert few["low"] < 0.5 < few["high"] and many["low"] < 0.5 < many["high"]
    assert (many["high"] - many["low"]) < (few["high"] - few["low"]) / 3  # ~ 1/sqrt(40) as wide
    assert intervals.mean([1.0, 1.0, 1.0]) == {"value": 1.0, "low": 1.0, "high": 1.0, "n": 3}
    assert intervals.mean([None]) == {"value": None, "low": None, "high": None, "n": 0}
    assert intervals.mean([0.3])["low"] is None  # one task: a value but no interval
    # paired by task: every task 0.2 better is a certain +0.2, however different the tasks are
    paired = intervals.paired_difference([0.3, 0.9, 0.5, 0.7], [0.1, 0.7, 0.3, 0.5])
    assert paired["value"] == pytest.approx(0.2) and paired["low"] == pytest.approx(0.2)
    assert intervals.above(paired) and not intervals.above(intervals.mean([-1, 1, -1, 1]))
    # a ratio of sums weights tasks by their tokens: (10 + 30) / (10 + 10)
    assert intervals.ratio([10, 30, None], [10, 10, 5])["value"] == pytest.approx(2.0)
    change = intervals.paired_ratio_change([5, 5], [10, 10], [10, 10], [10, 10])
    assert change["value"] == pytest.approx(-0.5) and intervals.below(change)


def test_stop_rate_and_the_change_from_base_are_read_from_the_stopped_flags():
    rows = [row(i, "x", (5, 5, 5), [1.0, 1.0], [0.0, 0.0]) for i in range(4)]
    for r, (base, distilled) in zip(rows, [(False, True), (False, True), (False, False), (True, True)]):
        r["stopped"] = {"base": base, "distilled": distilled, "teacher": True}
    m = em.summarise(rows)
    assert m["base"]["stop_rate"] == 0.25 and m["distilled"]["stop_rate"] == 0.75 and m["teacher"]["stop_rate"] == 1
    iv = m["intervals"]
    assert iv["change"]["stop_rate"]["value"] == pytest.approx(0.5)
    assert iv["distilled"]["stop_rate"]["value"] == 0.75 and iv["change"]["stop_rate"]["n"] == 4
    # nll per token halves on every task (rows' default nll: base 20/10, distilled 10/10)
    assert iv["change"]["nll"]["value"] == pytest.approx(-0.5) and intervals_below(iv["change"]["nll"])
    assert iv["win_vs_base"]["value"] == 1.0  # every task a win in both orders


def intervals_below(interval):
    from evaluation import intervals

    return intervals.below(interval)


def test_judge_reliability_counts_parsed_verdicts_and_agreement_between_orders():
    agree = row(1, "x", (5, 6, None), [1.0, 1.0], [0.0, 0.0])  # both orders name the same answer
    flip = row(2, "x", (5, 6, 7), [1.0, 0.0], [None, 0.5])  # the verdict follows the position; one unreadable
    same = row(3, "x", (5, 5, 5), [0.5, 0.5], [], )
    same["vs_teacher"]["identical"] = True  # identical answers: nothing asked
    judge = em.summarise([agree, flip, same])["judge"]
    # asked: 4 + 4 + 2 verdicts and 3 + 3 + 3 scores; unreadable: one verdict and one score
    assert judge["asked"] == 19 and judge["readable"] == 17
    assert judge["parse_rate"] == pytest.approx(17 / 19)
    # pairs with both orders readable: agree/base, agree/teacher, flip/base, same/base -> 3 agree
    assert judge["pairs"] == 4 and judge["order_agreement"] == pytest.approx(3 / 4)


def test_judge_parse_rate_counts_only_what_was_asked_and_answered():
    # the judge compared with base only, no 1-10 scores: the unasked scores and vs-teacher verdicts do not count
    rows = [row(i, "x", (None, None, None), [1.0, 1.0], []) for i in range(1, 4)]
    for r in rows:
        r["scores"] = {}
    rows[2]["vs_base"]["verdicts"] = [1.0, None]
    rows[2]["vs_base"]["failed"] = 1  # that call got no answer (a timeout): not an unreadable verdict
    judge = em.judge_reliability(rows)
    assert (judge["asked"], judge["failed"], judge["readable"]) == (6, 1, 5)
    assert judge["parse_rate"] == 1.0
    rows[1]["vs_base"]["verdicts"] = [1.0, None]  # answered but unreadable
    assert em.judge_reliability(rows)["parse_rate"] == pytest.approx(4 / 5)
    nothing = row(1, "x", (None, None, None), [], [])
    nothing["scores"] = {}
    assert em.judge_reliability([nothing])["parse_rate"] is None
