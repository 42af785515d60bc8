"""GRPO measurement: does online RL on the tasks' checks raise the student's reward, and what does a step cost?

    python bench/grpo.py [--student smollm2-135m-instruct] [--steps 40] [--tasks 64]

A fresh workspace of addition tasks ("What is 7 plus 12? Reply with the number only.", check
`regex:(?<![0-9])19(?![0-9])`: the sum appears as a number; `exact:` was tried first and the bundled 135M never
once answered with the bare number in 40 steps, so every group had equal rewards and nothing was learned), trained
headless by
`python -m distill train --method grpo` (TRL's GRPOTrainer: 4 answers per prompt, 2 prompts a step, 16 tokens
per answer, LoRA r 16). There is no second contender: ours is TRL's GRPOTrainer with the studio's run
machinery around it; the figure to read is the reward's change and the seconds per step. Prints ONE JSON line:
the mean reward of the first and last fifth of the steps, the share of steps whose group had any spread
(a group of equal rewards teaches nothing), and seconds per step.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    args = parser.parse_args(argv)
    from curation.store import Store

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        with Store(workspace) as store:
            pairs = [(rng.randint(1, 20), rng.randint(1, 20)) for _ in range(args.tasks)]
            store.add_tasks([{"instruction": f"What is {a} plus {b}? Reply with the number only.",
                              "expected": f"regex:(?<![0-9]){a + b}(?![0-9])"} for a, b in pairs])
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "distill", "train", "--workspace", str(workspace),
                                 "--student", args.student, "--method", "grpo", "--max-steps", str(args.steps),
                                 "--batch-size", "8", "--num-generations", "4", "--max-completion-length", "16",
                                 "--lr", str(args.lr), "--eval-rows", "0"], cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - started
        if result.returncode != 0:
            print(result.stdout[-2000:], result.stderr[-4000:], file=sys.stderr)
            return 1
        run_dir = next((workspace / "runs").iterdir())
        steps = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        steps = [e for e in steps if e.get("event") == "step"]
    rewards = [e["metrics"]["reward"] for e in steps]
    fifth = max(1, len(rewards) // 5)
    spread = [1 - e["metrics"].get("frac_reward_zero_std", 1.0) for e in steps]
    print(json.dumps({"bench": "grpo", "student": args.student, "steps": len(steps), "tasks": args.tasks,
                      "reward_first_fifth": round(sum(rewards[:fifth]) / fifth, 3),
                      "reward_last_fifth": round(sum(rewards[-fifth:]) / fifth, 3),
                      "groups_with_spread": round(sum(spread) / len(spread), 3),
                      "s_per_step": round(steps[-1]["elapsed_s"] / len(steps), 2), "wall_s": round(wall, 1),
                      "cores": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
