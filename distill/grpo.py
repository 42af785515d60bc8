"""grpo — reinforcement learning from the teacher's feedback (survey §3.2: RLAIF, UltraFeedback; GRPO as in
DeepSeekMath), with TRL's GRPOTrainer.

The student answers each train-split prompt `num_generations` times; each answer is rewarded, and the
student is pushed towards the answers that beat their group's mean. Rewards:
- checks: 1 when the answer meets the task's check (`exact:`, `contains:`, `regex:`, curation.checks), else 0;
  only tasks that carry a check are trained on.
- judge: the structured judge endpoint's 1-10 score of the answer, divided by 10 (every train task); a verdict
  that cannot be had (the endpoint failed, or it did not parse) gives no reward for that answer (None), and
  is counted in the log.
- both: checks where a task has one, the judge elsewhere.
Usually run after SFT: `init_adapter` continues from a trained adapter instead of a fresh LoRA.
The run is the same child process, log, Stop and Resume as every method (distill.train).
"""
from __future__ import annotations

import json
from pathlib import Path

from curation.checks import check_expectation
from curation.errors import StudioError

JUDGE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["score", "rationale"],
                "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                               "rationale": {"type": "string", "maxLength": 160}}}


# ---- rows ------------------------------------------------------------------------------------------
def prompt_rows(store, options) -> list[dict]:
    """Train-split tasks as GRPO prompts ({row_id, task_id, messages, expected}); StudioError when none fit."""
    from curation.methods.label import build_messages
    from distill.data import content_hash

    tasks = store.tasks(split="train")
    if options.reward == "checks":
        tasks = [t for t in tasks if t.get("expected")]
    if not tasks:
        raise StudioError("no train-split task carries a check to reward (exact:, contains:, regex:): add checks "
                          "(the Evaluate tab's checks, or an 'expected' column when importing), or train grpo "
                          "with reward 'judge'")
    rows = []
    for task in tasks:
        row = {"row_id": f"task:{task['id']}", "task_id": task["id"], "messages": build_messages(task),
               "expected": task.get("expected")}
        row["hash"] = content_hash(row, ("messages", "expected"))
        rows.append(row)
    return rows


# ---- rewards ---------------------------------------------------------------------------------------
def _text(completion) -> str:
    """The answer of a TRL completion: a list of chat messages (conversational) or a string."""
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if m.get("role") == "assistant")
    return str(completion or "")


def check_reward(completions, expected, **_) -> list[float | None]:
    """1.0 / 0.0 by the task's check; None (no reward from this function) for a task without one."""
    return [None if not want else float(bool(check_expectation(want, _text(c))))
            for c, want in zip(completions, expected)]


class JudgeReward:
    """The judge endpoint's score / 10 for each answer (structured output: the verdict always parses on
    endpoints that honour `response_format`); None where the call fails or the verdict cannot be read."""

    __name__ = "judge_reward"  # TRL names each reward function's log column by it

    def __init__(self, base_url: str, model: str, api_key: str = "", only_unchecked: bool = False,
                 timeout_s: float = 120.0):
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s,
                                    max_retries=2)
        self.model, self.only_unchecked = model, only_unchecked
        self.failed = 0

    def __call__(self, prompts, completions, expected, **_) -> list[float | None]:
        return [None if (self.only_unchecked and want) else self._score(prompt, _text(c))
                for prompt, c, want in zip(prompts, completions, expected)]

    def _score(self, prompt, answer: str) -> float | None:
        from curation.methods.base import render
        from curation.methods.judge import default_rubric

        task = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
        content = render("judge.j2", rubric=default_rubric(), instruction=task, input="", response=answer,
                         structured=True)
        try:
            reply = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": content}], temperature=0.0, max_tokens=200,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "score", "strict": True, "schema": JUDGE_SCHEMA}})
            return min(10, max(1, int(json.loads(reply.choices[0].message.content)["score"]))) / 10
        except Exception:  # noqa: BLE001 — any failed verdict is no reward for this answer, counted, never a crash
            self.failed += 1
            return None


def reward_functions(options, api_key: str = "") -> list:
    rewards = []
    if options.reward in ("checks", "both"):
        rewards.append(check_reward)
    if options.reward in ("judge", "both"):
        if not options.judge_base_url:
            raise StudioError("grpo with a judge reward needs the judge endpoint's base URL (grpo.judge_base_url)")
        rewards.append(JudgeReward(options.judge_base_url, options.judge_model, api_key,
                                   only_unchecked=options.reward == "both"))
    return rewards


# ---- the trainer -----------------------------------------------------------------------------------
def build_grpo_trainer(model_path: Path, rows: list[dict], config, run_dir: Path, callbacks, device: str):
    """TRL's GRPOTrainer on the student (a fresh LoRA, or the adapter `grpo.init_adapter` continues)."""
    import os

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from distill.data import prompt_and_full_ids
    from distill.loading import load_tokenizer, prepare_student

    options = config.grpo
    tokenizer = load_tokenizer(model_path, config.student)
    lengths = [len(prompt_and_full_ids(tokenizer, r["messages"] + [{"role": "assistant", "content": ""}])[0])
               + options.max_completion_length for r in rows]
    student = prepare_student(model_path, config, run_dir, device, lengths, liger=False)
    model, peft_config = student.model, student.peft_config
    if options.init_adapter:
        from peft import PeftModel

        model, peft_config = PeftModel.from_pretrained(model, options.init_adapter, is_trainable=True), None
    args = GRPOConfig(**student.args, num_generations=options.num_generations,
                      max_completion_length=options.max_completion_length, temperature=options.temperature,
                      beta=options.beta, log_completions=False)
    dataset = Dataset.from_list([{"prompt": r["messages"], "expected": r.get("expected") or ""} for r in rows])
    return GRPOTrainer(model=model, reward_funcs=reward_functions(options, os.environ.get("OPENAI_API_KEY", "")),
                       args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
                       callbacks=list(callbacks))
