"""DPO: pairs from judge scores, pairwise verdicts and hand choices; TRL's DPOTrainer on a LoRA student."""
from __future__ import annotations

import pandas as pd
import pytest

from curation.errors import StudioError
from distill import snapshot
from distill.config import DPOOptions, TrainConfig
from distill.dpo import pairs_from_preferences, pairs_from_review, pairs_from_scores
from distill.runner import TrainingSlot
from distill.rundir import prepare_run_dir
from distill.train import train
from tests.train_helpers import HELD_OUT_EXAMPLE, add_answer, assert_adapter_trained, events, seed_pairs, snapshot_rows


def cand(gid, task, score=None, status="pending", reason=None):
    return {"id": gid, "task_id": task, "model": "t", "messages": [{"role": "user", "content": f"q{task}"}],
            "response": f"answer {gid}", "status": status, "reason": reason, "judge_score": score}


def judge(store, scores: dict[int, float]):
    store.bulk_add("judgments", pd.DataFrame({"generation_id": list(scores), "judge_model": "judge",
                                              "score": list(scores.values()), "kind": "score"}))


# ---- pairs -----------------------------------------------------------------------------------------
def test_score_pairs_take_best_vs_worst_per_task_above_the_gap():
    candidates = [cand(1, 1, 9), cand(2, 1, 5), cand(3, 1, 2),  # gap 7
                  cand(4, 2, 6), cand(5, 2, 5),  # gap 1: below the minimum
                  cand(6, 3, 10, status="rejected"), cand(7, 3, 8), cand(8, 3, 3),  # a rejected best is never chosen
                  cand(9, 4, 7), cand(10, 4, None)]  # one judged response: no pair
    pairs = pairs_from_scores(candidates, min_gap=2)
    assert [(p["chosen_id"], p["rejected_id"], p["margin"]) for p in pairs] == [(1, 3, 7.0), (7, 8, 5.0)]
    assert pairs[0]["row_id"] == "1>3" and pairs[0]["prompt"] == [{"role": "user", "content": "q1"}]
    assert pairs[0]["chosen"] == "answer 1" and pairs[0]["rejected"] == "answer 3"
    assert pairs_from_scores([cand(1, 1, 5), cand(2, 1, 5)], min_gap=0) == []  # equal scores are no preference


def test_review_pairs_are_approved_vs_hand_rejected_only():
    candidates = [cand(1, 1, status="approved"), cand(2, 1, status="rejected"),
                  cand(3, 1, status="rejected", reason="near-duplicate of 1"), cand(4, 2, status="approved")]
    assert [p["row_id"] for p in pairs_from_review(candidates)] == ["1>2"]


def test_compare_pairs_follow_the_combined_verdict_of_both_orders():
    candidates = [cand(1, 1), cand(2, 1), cand(3, 2), cand(4, 2)]
    judgments = [{"kind": "compare", "generation_id": 1, "other_generation_id": 2, "score": 0.0},  # 2 won as B
                 {"kind": "compare", "generation_id": 2, "other_generation_id": 1, "score": 1.0},  # 2 won as A
                 {"kind": "compare", "generation_id": 3, "other_generation_id": 4, "score": 1.0},
                 {"kind": "compare", "generation_id": 4, "other_generation_id": 3, "score": 1.0}]  # a tie overall
    pairs = pairs_from_preferences(judgments, candidates)
    assert [(p["chosen_id"], p["rejected_id"], p["margin"]) for p in pairs] == [(2, 1, 1.0)]


def test_no_pairs_is_refused_with_the_reason_and_nothing_starts(store):
    good, bad = seed_pairs(store)
    judge(store, {g: 6.0 for g in good} | {b: 5.0 for b in bad})
    slot = TrainingSlot(store, store.workspace)
    with pytest.raises(StudioError, match=r"largest score gap is 1 \(minimum gap 2\)\. Lower the minimum"):
        slot.start(TrainConfig(method="dpo", max_steps=2, dpo=DPOOptions(min_score_gap=2)))
    with pytest.raises(StudioError, match="reject the worse answer"):
        slot.start(TrainConfig(method="dpo", max_steps=2, dpo=DPOOptions(pairs="review")))
    assert store.runs() == []


def test_pairs_use_edited_answers_and_drop_teacher_only_system_prompts(store):
    [tid] = store.add_tasks([{"instruction": "Capital of France?"}])
    messages = [{"role": "system", "content": "SECRET teacher hint"}, {"role": "user", "content": "Capital of France?"}]
    best = add_answer(store, tid, "a", "", "Paris is it.", messages=messages, teacher_only_system=True)
    worst = add_answer(store, tid, "b", "", "Lyon.", messages=messages, teacher_only_system=True)
    store.set_label([best], "approved", edited_response="Paris.")
    judge(store, {best: 9.0, worst: 2.0})
    [pair] = snapshot.collect(store, TrainConfig(method="dpo"))
    assert pair["chosen"] == "Paris." and pair["rejected"] == "Lyon."
    assert pair["prompt"] == [{"role": "user", "content": "Capital of France?"}]


# ---- training --------------------------------------------------------------------------------------
def test_dpo_trains_a_lora_student_on_score_pairs(store, tiny_student):
    good, bad = seed_pairs(store)
    judge(store, {g: 9.0 for g in good} | {b: 3.0 for b in bad})
    config = TrainConfig(method="dpo", student=str(tiny_student), max_steps=3, batch_size=2, learning_rate=5e-3,
                         dpo=DPOOptions(beta=0.1))
    rows = snapshot.collect(store, config)
    run_dir = prepare_run_dir(rows, config, store.workspace / "runs", store.workspace / "models",
                              heldout=[HELD_OUT_EXAMPLE])
    assert run_dir.name.endswith("-dpo")
    metrics = train(run_dir)
    assert [r["row_id"] for r in snapshot_rows(run_dir)] == [f"{g}>{b}" for g, b in zip(good, bad)]
    steps = events(run_dir, "step")
    assert [e["step"] for e in steps] == [1, 2, 3]
    assert steps[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: the adapter starts as the reference
    assert all("rewards/margins" in e["metrics"] for e in steps) and steps[-1]["metrics"]["rewards/margins"] > 0
    assert metrics["method"] == "dpo" and metrics["steps"] == 3
    assert [e["step"] for e in events(run_dir, "eval")] == [1, 2, 3] and metrics["eval_loss"] > 0
    adapter = assert_adapter_trained(run_dir)
    assert "dpo" in (adapter / "README.md").read_text()
