"""The evaluation's maths, as pure functions: pairwise win rate, mean score, ROUGE-L, per-token NLL, checks.

Nothing here reads the workspace or calls a model (an answer's NLL under the student is measured by
models.nll, in the scoring child). Every function is tested on hand-built inputs (tests/test_eval_metrics.py).

Checkable expectations (`tasks.expected`: "exact:…", "contains:…", "regex:…") are checked by curation.checks,
which training's GRPO reward reads too.
"""
from __future__ import annotations

import math

from curation.checks import EXPECTATION_KINDS, check_expectation, normalise, parse_expectation
from curation.errors import ConfigError
from evaluation import intervals

OUTCOMES = ("win", "loss", "tie")


def pass_rate(flags: list[bool | None]) -> tuple[float | None, int]:
    """(share of passed checks, number of checked answers); tasks without an expectation (None) are left out."""
    checked = [f for f in flags if f is not None]
    return (sum(checked) / len(checked) if checked else None), len(checked)


# ---- pairwise judgments -------------------------------------------------------------------------

def candidate_verdicts(judgments: list[dict], candidate: int, other: int) -> list[float | None]:
    """The candidate's share of each 'compare' verdict between two generations, in either order.

    A judgment row (see curation.methods.compare) has generation_id = the response shown as A,
    other_generation_id = the one shown as B, score = 1 if A won, 0 if B won, 0.5 for a tie, None when
    unreadable. Returned per verdict: 1 = candidate won, 0 = lost, 0.5 = tie, None = unreadable.
    """
    out = []
    for j in judgments:
        if (j.get("kind") or "score") != "compare":
            continue
        pair = (j["generation_id"], j["other_generation_id"])
        if pair == (candidate, other):
            out.append(None if j["score"] is None else float(j["score"]))
        elif pair == (other, candidate):
            out.append(None if j["score"] is None else 1.0 - float(j["score"]))
    return out


def pairwise_outcome(verdicts: list[float | None]) -> str | None:
    """One task's outcome for the candidate from its verdicts asked in both orders.

    Both orders (all readable verdicts, at least two) say the candidate won -> 'win'; all say it lost
    -> 'loss'; the orders disagree, or any says tie -> 'tie' (position bias cancelled, not guessed).
    Fewer than two readable verdicts -> None: the task is left out of the win rate.
    """
    readable = [v for v in verdicts if v is not None]
    if len(readable) < 2:
        return None
    if all(v == 1.0 for v in readable):
        return "win"
    if all(v == 0.0 for v in readable):
        return "loss"
    return "tie"


def win_rate(outcomes: list[str | None]) -> dict:
    """{wins, losses, ties, n, missing, win_rate}: win_rate = (wins + 0.5 * ties) / n over the n tasks
    with an outcome (None when n = 0); `missing` counts tasks without one."""
    counts = {o: sum(1 for x in outcomes if x == o) for o in OUTCOMES}
    n = sum(counts.values())
    return {"wins": counts["win"], "losses": counts["loss"], "ties": counts["tie"], "n": n,
            "missing": len(outcomes) - n,
            "win_rate": (counts["win"] + 0.5 * counts["tie"]) / n if n else None}


# ---- scores and overlap -------------------------------------------------------------------------

def mean_or_none(values) -> float | None:
    """Mean of the values that are not None (or NaN); None when there are none."""
    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(kept) / len(kept) if kept else None


_ROUGE = []


def rouge_l_text(candidate: str | None, reference: str | None) -> float:
    """ROUGE-L F1 of a candidate against a reference: Google's `rouge-score` (its tokenizer, Porter stemming)."""
    if not _ROUGE:
        from rouge_score import rouge_scorer

        _ROUGE.append(rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True))
    return _ROUGE[0].score(reference or "", candidate or "")["rougeL"].fmeasure


# ---- one eval's per-task details -> metrics and breakdowns ---------------------------------------
# A detail row (one eval task, one line of run_dir/eval.jsonl) has: task_id, skill, domain, answers,
# scores, pass and stopped ({system: value}; stopped = the answer ended its turn within max tokens),
# rouge_l and nll ({student: value}; nll = {"sum", "tokens"}), vs_base / vs_teacher ({"verdicts",
# "outcome", "identical"}), lost, deficit.

SYSTEMS = ("base", "distilled", "teacher")
STUDENTS = ("base", "distilled")


def deficit(row: dict) -> float:
    """How badly the distilled student did against the teacher on one task; higher = worse. Sorts the viewer.

    (teacher score - distilled score) / 9 (0 when either is unscored), plus the distilled student's
    share of lost verdicts against the teacher (0.5 when none is readable), plus 1 for a failed check.
    """
    scores = row.get("scores") or {}
    gap = ((scores["teacher"] - scores["distilled"]) / 9.0
           if scores.get("teacher") is not None and scores.get("distilled") is not None else 0.0)
    shares = [v for v in (row.get("vs_teacher") or {}).get("verdicts", []) if v is not None]
    lost_share = 1.0 - sum(shares) / len(shares) if shares else 0.5
    return gap + lost_share + (1.0 if (row.get("pass") or {}).get("distilled") is False else 0.0)


def is_lost(row: dict) -> bool:
    """The student lost the task: the judge found it worse than the teacher (both orders), or its check failed."""
    return ((row.get("vs_teacher") or {}).get("outcome") == "loss"
            or (row.get("pass") or {}).get("distilled") is False)


def per_token_nll(rows: list[dict], system: str) -> float | None:
    """Token-weighted mean NLL (nats per response token) of a student over the rows that have one."""
    total = sum((r.get("nll") or {}).get(system, {}).get("sum", 0.0) for r in rows if (r.get("nll") or {}).get(system))
    count = sum((r.get("nll") or {}).get(system, {}).get("tokens", 0) for r in rows if (r.get("nll") or {}).get(system))
    return total / count if count else None


def summarise(rows: list[dict]) -> dict:
    """The headline metrics of an eval from its detail rows (see the comment above), with 95% bootstrap
    intervals over tasks (`intervals`), the judge's parse rate and its agreement between the two orders."""
    out = {"tasks": len(rows), "lost": sum(1 for r in rows if is_lost(r))}
    for system in SYSTEMS:
        rate, checked = pass_rate([(r.get("pass") or {}).get(system) for r in rows])
        m = {"judge_score": mean_or_none((r.get("scores") or {}).get(system) for r in rows),
             "scored": sum(1 for r in rows if (r.get("scores") or {}).get(system) is not None),
             "pass_rate": rate, "checked": checked,
             "answered": sum(1 for r in rows if (r.get("answers") or {}).get(system) is not None),
             "stop_rate": mean_or_none(_flag(r, "stopped", system) for r in rows)}
        if system in STUDENTS:
            m["rouge_l"] = mean_or_none((r.get("rouge_l") or {}).get(system) for r in rows)
            m["nll"] = per_token_nll(rows, system)
        out[system] = m
    out["distilled_vs_base"] = win_rate([(r.get("vs_base") or {}).get("outcome") for r in rows])
    out["distilled_vs_teacher"] = win_rate([(r.get("vs_teacher") or {}).get("outcome") for r in rows])
    out["judge"] = judge_reliability(rows)
    out["intervals"] = student_intervals(rows)
    return out


def _flag(row: dict, key: str, system: str) -> float | None:
    value = (row.get(key) or {}).get(system)
    return None if value is None else float(value)


def _nll_part(row: dict, system: str, part: str):
    return ((row.get("nll") or {}).get(system) or {}).get(part)


def student_intervals(rows: list[dict]) -> dict:
    """Each student measure with its 95% interval, and distilled minus base paired by task.

    {base | distilled | change: {stop_rate, rouge_l, nll, pass_rate}, win_vs_base, win_vs_teacher}; nll in
    `change` is the relative change of the per-token NLL (-0.2 = 20% lower); a win rate counts a tie as half.
    """
    def per(system, measure):
        if measure == "nll":
            return intervals.ratio([_nll_part(r, system, "sum") for r in rows],
                                   [_nll_part(r, system, "tokens") for r in rows])
        key = {"stop_rate": "stopped", "pass_rate": "pass"}.get(measure, measure)
        return intervals.mean(_flag(r, key, system) for r in rows)

    def change(measure):
        if measure == "nll":
            return intervals.paired_ratio_change(
                *[[_nll_part(r, s, part) for r in rows] for s in ("distilled", "base") for part in ("sum", "tokens")])
        key = {"stop_rate": "stopped", "pass_rate": "pass"}.get(measure, measure)
        return intervals.paired_difference([_flag(r, key, "distilled") for r in rows],
                                           [_flag(r, key, "base") for r in rows])

    measures = ("stop_rate", "rouge_l", "nll", "pass_rate")
    out = {s: {m: per(s, m) for m in measures} for s in STUDENTS}
    out["teacher"] = {m: per("teacher", m) for m in ("stop_rate", "pass_rate")}
    out["change"] = {m: change(m) for m in measures}
    share = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    for other in ("base", "teacher"):
        out[f"win_vs_{other}"] = intervals.mean(share.get((r.get(f"vs_{other}") or {}).get("outcome"))
                                                for r in rows)
    return out


def judge_reliability(rows: list[dict]) -> dict:
    """How far the judge can be read: {parse_rate, verdicts, scores, order_agreement, pairs}.

    parse_rate: readable share of the verdicts and scores the judge answered (identical answers are not
    asked; a call that got no answer at all — a timeout, a server error — is counted in `failed`, not here);
    order_agreement: share of pairs with both orders readable whose two verdicts agree (A-B and B-A name
    the same answer, or both say tie) — a judge that follows the position agrees about half the time.
    """
    verdicts = [v for r in rows for other in ("base", "teacher")
                if not (r.get(f"vs_{other}") or {}).get("identical")
                for v in (r.get(f"vs_{other}") or {}).get("verdicts", [])]
    failed = sum((r.get(f"vs_{other}") or {}).get("failed", 0) for r in rows for other in ("base", "teacher"))
    answered = [score for r in rows for s, score in (r.get("scores") or {}).items()
                if (r.get("answers") or {}).get(s) is not None]
    asked = len(verdicts) + len(answered)
    readable = sum(v is not None for v in verdicts) + sum(s is not None for s in answered)
    pairs = [v for r in rows for other in ("base", "teacher")
             if not (r.get(f"vs_{other}") or {}).get("identical")
             and len(v := (r.get(f"vs_{other}") or {}).get("verdicts", [])) == 2 and None not in v]
    return {"parse_rate": readable / (asked - failed) if asked > failed else None, "asked": asked,
            "failed": failed, "readable": readable,
            "order_agreement": (sum(a == b for a, b in pairs) / len(pairs)) if pairs else None, "pairs": len(pairs)}


def breakdown(rows: list[dict], by: str) -> list[dict]:
    """summarise() per value of `by` ('skill' or 'domain'; untagged rows under '(none)'), flattened to one
    dict per group: group, tasks, score_<system>, rouge_l_<student>, win_vs_base, win_vs_teacher."""
    if by not in ("skill", "domain"):
        raise ConfigError(f"break down by skill or domain (got {by!r})")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r.get(by) or "(none)", []).append(r)
    out = []
    for group, members in sorted(groups.items()):
        m = summarise(members)
        flat = {"group": group, "tasks": m["tasks"]}
        flat.update({f"score_{s}": m[s]["judge_score"] for s in SYSTEMS})
        flat.update({f"rouge_l_{s}": m[s]["rouge_l"] for s in STUDENTS})
        flat["win_vs_base"] = m["distilled_vs_base"]["win_rate"]
        flat["win_vs_teacher"] = m["distilled_vs_teacher"]["win_rate"]
        out.append(flat)
    return out


__all__ = ["EXPECTATION_KINDS", "normalise", "parse_expectation", "check_expectation", "pass_rate",
           "candidate_verdicts", "pairwise_outcome", "win_rate", "mean_or_none", "rouge_l_text", "SYSTEMS",
           "STUDENTS", "deficit", "is_lost", "per_token_nll", "summarise", "breakdown", "student_intervals",
           "judge_reliability"]
