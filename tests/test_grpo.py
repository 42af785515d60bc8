"""GRPO from the teacher's feedback (issue 16.5): rewards from the tasks' checks or a judge endpoint, TRL's
GRPOTrainer on the tiny student, the same run dir, log, Stop and Resume as every method."""
from __future__ import annotations

import json

import pytest

from curation.errors import ConfigError, StudioError
from distill.config import TrainConfig
from distill.grpo import JudgeReward, check_reward, prompt_rows, reward_functions
from tests.fault_server import FaultServer
from tests.test_train import run_cli


def test_check_reward_reads_the_tasks_checks_and_skips_tasks_without_one():
    completions = [[{"role": "assistant", "content": "It is Paris."}], [{"role": "assistant", "content": "Lyon"}],
                   [{"role": "assistant", "content": "4."}], "no check here"]
    assert check_reward(completions, ["contains:paris", "contains:paris", "exact:4", ""]) == [1.0, 0.0, 1.0, None]


def test_grpo_options_name_the_bad_field():
    with pytest.raises(ConfigError, match="grpo.num_generations"):
        TrainConfig(method="grpo", grpo={"num_generations": 1})
    with pytest.raises(ConfigError, match="multiple of grpo.num_generations"):
        TrainConfig(method="grpo", batch_size=3)
    with pytest.raises(ConfigError, match="grpo.reward"):
        TrainConfig(method="grpo", grpo={"reward": "vibes"})


def test_prompts_are_the_checked_train_tasks_and_none_says_what_to_do(store):
    from distill.config import GRPOOptions
    with pytest.raises(StudioError, match="no train-split task carries a check"):
        prompt_rows(store, GRPOOptions())
    checked, plain = store.add_tasks([{"instruction": "Capital of France?", "expected": "contains:paris"},
                                      {"instruction": "Write a haiku."}])
    rows = prompt_rows(store, GRPOOptions())
    assert [r["task_id"] for r in rows] == [checked]
    assert rows[0]["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert [r["task_id"] for r in prompt_rows(store, GRPOOptions(reward="judge"))] == [checked, plain]


def test_the_judge_reward_asks_for_a_structured_score_and_a_failed_verdict_is_no_reward():
    with FaultServer([{"text": json.dumps({"score": 8, "rationale": "right"})}, 500]) as server:
        judge = JudgeReward(server.base_url, "judge", timeout_s=5)
        judge.client = judge.client.with_options(max_retries=0)
        prompts = [[{"role": "user", "content": "Capital of France?"}]] * 2
        rewards = judge(prompts, ["Paris.", "Paris."], ["", ""])
        body = server.requests[0]["body"]
    assert rewards == [0.8, None] and judge.failed == 1
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["score", "rationale"]
    assert "Capital of France?" in body["messages"][0]["content"] and "Paris." in body["messages"][0]["content"]


def test_both_uses_the_judge_only_where_a_task_has_no_check():
    from distill.config import GRPOOptions
    with pytest.raises(StudioError, match="judge endpoint's base URL"):
        reward_functions(GRPOOptions(reward="judge"))
    checks, judge = reward_functions(GRPOOptions(reward="both", judge_base_url="http://127.0.0.1:9/v1"))
    assert judge([["p"]], ["x"], ["contains:x"]) == [None]  # a checked task is rewarded by its check only


def test_headless_grpo_trains_the_tiny_student_on_checked_tasks(tmp_path, tiny_student):
    from curation.store import Store
    with Store(tmp_path / "ws") as store:
        store.add_tasks([{"instruction": f"Say the word {w}.", "expected": f"contains:{w}"}
                         for w in ("apple", "river", "stone", "cloud")])
    result = run_cli("train", "--workspace", str(tmp_path / "ws"), "--student", str(tiny_student), "--method", "grpo",
                     "--max-steps", "2", "--batch-size", "4", "--num-generations", "4",
                     "--max-completion-length", "8", "--lr", "1e-3")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    assert "step 2/2" in result.stdout
    with Store(tmp_path / "ws") as store:
        run = store.runs(kind="grpo")[0]
    assert run["status"] == "completed"
    events = [json.loads(line) for line in open(f"{run['run_dir']}/log.jsonl")]
    steps = [e for e in events if e.get("event") == "step"]
    # every step logs TRL's reward of its sampled answers, per reward function
    assert len(steps) == 2 and all("rewards/check_reward/mean" in e["metrics"] for e in steps)
