"""DPO on preference pairs (survey 3.2, rank optimisation): the pairs, and TRL's DPOTrainer on a LoRA student.

Pairs come from one of three sources (`DPOOptions.pairs`), each a pure function over rows the store gives:
  scores   per task, the best-judged response (not rejected in review) vs the worst-judged one, when
           the judge's 1-10 scores differ by at least `min_score_gap`
  compare  the judge's pairwise verdicts (`curation.methods.compare.preferences`, both orders combined);
           ties are no pair
  review   the user's own choices: each approved response of a task vs each response of the same task
           rejected by hand (rejections a filter or dedupe made carry a reason and are not "worse")
  revisions the constitution method's revised answer vs the original it revised (unless either was rejected
           in review: a rejected revision is no "better", a rejected original is still the worse one)
The reference model is the student with its adapter disabled (TRL does this when given a peft config),
so DPO costs no second copy of the weights.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from distill.config import DPOOptions, TrainConfig


def _pair(chosen: dict, rejected: dict, source: str, margin: float) -> dict:
    return {"row_id": f"{chosen['id']}>{rejected['id']}", "task_id": chosen["task_id"], "chosen_id": chosen["id"],
            "rejected_id": rejected["id"], "teacher": chosen.get("model"), "prompt": chosen["messages"],
            "chosen": chosen["response"], "rejected": rejected["response"], "source": source,
            "margin": round(float(margin), 4)}


def _by_task(candidates: list[dict]) -> dict[int, list[dict]]:
    out = defaultdict(list)
    for c in candidates:
        out[c["task_id"]].append(c)
    return out


def pairs_from_scores(candidates: list[dict], min_gap: float) -> list[dict]:
    """One pair per task: best-scored (not rejected) vs worst-scored, if the gap is > 0 and ≥ min_gap.

    candidates: `Store.preference_candidates()` rows (id, task_id, messages, response, status,
    judge_score). Ties on the score go to the older response, so the result is deterministic.
    """
    pairs = []
    for _, rows in sorted(_by_task(candidates).items()):
        scored = [r for r in rows if r.get("judge_score") is not None]
        eligible = [r for r in scored if r["status"] != "rejected"]
        if len(scored) < 2 or not eligible:
            continue
        chosen = max(eligible, key=lambda r: (r["judge_score"], -r["id"]))
        rejected = min((r for r in scored if r["id"] != chosen["id"]), key=lambda r: (r["judge_score"], r["id"]))
        gap = chosen["judge_score"] - rejected["judge_score"]
        if gap > 0 and gap >= min_gap:
            pairs.append(_pair(chosen, rejected, "scores", gap))
    return pairs


def pairs_from_preferences(judgments: list[dict], candidates: list[dict]) -> list[dict]:
    """A pair per compared couple with a winner (p_chosen > 0.5), both still train-split rows and the
    winner not rejected in review. judgments: 'compare' rows (`Store.judgments_of(kind="compare")`)."""
    from curation.methods.compare import preferences

    by_id = {c["id"]: c for c in candidates}
    pairs = []
    for pref in preferences(judgments):
        chosen, rejected = by_id.get(pref["chosen"]), by_id.get(pref["rejected"])
        if chosen is None or rejected is None or pref["p_chosen"] <= 0.5 or chosen["status"] == "rejected":
            continue
        pairs.append(_pair(chosen, rejected, "compare", pref["p_chosen"]))
    return pairs


def pairs_from_review(candidates: list[dict]) -> list[dict]:
    """Every (approved, hand-rejected) couple of responses of the same task."""
    pairs = []
    for _, rows in sorted(_by_task(candidates).items()):
        approved = [r for r in rows if r["status"] == "approved"]
        rejected = [r for r in rows if r["status"] == "rejected" and not r.get("reason")]
        pairs += [_pair(a, r, "review", 1.0) for a in approved for r in rejected]
    return pairs


def pairs_from_revisions(links: list[dict], candidates: list[dict]) -> list[dict]:
    """(revised, original) pairs; links: `Store.revision_links()`, both rows still train-split candidates and the
    revision not rejected in review."""
    by_id = {c["id"]: c for c in candidates}
    pairs = []
    for link in links:
        chosen, rejected = by_id.get(link["revised_id"]), by_id.get(link["original_id"])
        if chosen is not None and rejected is not None and chosen["status"] != "rejected":
            pairs.append(_pair(chosen, rejected, "revisions", 1.0))
    return pairs


def why_no_pairs(options: DPOOptions, candidates: list[dict]) -> str:
    """The refusal when a source gives no pair: what was found and what to do."""
    head = "no preference pairs to train DPO on: "
    if options.pairs == "scores":
        judged = [rows for rows in _by_task(candidates).values()
                  if sum(r.get("judge_score") is not None for r in rows) >= 2]
        if not judged:
            return head + ("no task has two or more judged responses. Generate several answers per task "
                           "(samples > 1) and score them with the judge method, or use pairs='compare' / 'review'")
        gaps = [max(s) - min(s) for s in ([r["judge_score"] for r in rows if r.get("judge_score") is not None]
                                          for rows in judged)]
        return head + (f"{len(judged)} tasks have two or more judged responses, but the largest score gap is "
                       f"{max(gaps):g} (minimum gap {options.min_score_gap:g}). Lower the minimum score gap or "
                       "judge more answers")
    if options.pairs == "revisions":
        return head + ("no revised answer among the train-split responses. Run the constitution method on answers "
                       "(Generate → constitution) first")
    if options.pairs == "compare":
        return head + ("no pairwise verdict with a winner among the train-split responses. Run the compare "
                       "method on tasks with two or more answers, or use pairs='scores' / 'review'")
    return head + ("no task has both an approved response and one you rejected by hand. On the Review tab, "
                   "reject the worse answer of a task whose better answer you approved")


def build_dpo_trainer(model_path: Path, rows: list[dict], config: TrainConfig, run_dir: Path, callbacks, device: str):
    """TRL's DPOTrainer with a fresh LoRA adapter; reference = the student with the adapter disabled."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from distill.data import prompt_and_full_ids
    from distill.loading import load_tokenizer, prepare_student

    tokenizer = load_tokenizer(model_path, config.student)
    records = [{"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]
    lengths = [max(len(prompt_and_full_ids(tokenizer, rec["prompt"] + rec[side])[1]) for side in ("chosen", "rejected"))
               for rec in records]
    student = prepare_student(model_path, config, run_dir, device, lengths)
    args = DPOConfig(**student.args, beta=config.dpo.beta, max_length=config.max_length)
    return DPOTrainer(model=student.model, args=args, train_dataset=Dataset.from_list(records),
                      processing_class=tokenizer, peft_config=student.peft_config, callbacks=list(callbacks))
