"""Train benchmark: TRL's SFTTrainer with its default (padded) batches vs our sft (padding-free batches).

    OMP_WAIT_POLICY=PASSIVE python bench/train.py [--rows 32] [--batch 8] [--steps 4] [--max-length 512]

Same model (the bundled SmolLM2-135M-Instruct, materialised under data/models/), same approved rows of
mixed lengths (a synthetic workspace: the bundled seed-pack questions with answers of 5 to ~600 tokens,
log-normal), same LoRA settings (r 16, alpha 32, all-linear), same seed, batch, steps and learning rate.
The peer is `trl.SFTTrainer` on the prompt-completion rows with its default collator (pads each batch
to its longest row); ours is `distill.train.build_trainer` (our tokenization, `batching="padding_free"`).
Both see the same examples in the same order, so the losses must agree.

tokens/s counts real tokens only (the attention mask for the padded batches, the packed length for
ours) over `trainer.train()` wall time. Peak memory: each contender trains in its own fresh child
process with the training child's environment (`distill.runner.child_env`), so neither inherits the
other's allocations, and reports its peak RSS growth from just before the model loaded (ru_maxrss);
both run fp32 without activation checkpointing (ours' CPU setting; TRL's defaults would turn both on).
The parent prints ONE JSON line with both and the ratios.
Goal: ours >= 1.3x tokens/s at <= 1.0x memory with an equal loss.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

GOAL_SPEEDUP = 1.3


def seed_questions() -> list[str]:
    questions = []
    for path in sorted((ROOT / "data" / "seeds").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            questions.append(row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else ""))
    return questions


def build_workspace(folder: Path, n_rows: int, seed: int) -> list[dict]:
    """A workspace with n_rows approved answers of mixed lengths; returns its training snapshot."""
    from curation.store import Store
    from distill import snapshot
    from distill.config import TrainConfig

    rng = random.Random(seed)
    questions = seed_questions()
    words = " ".join(questions).replace("\n", " ").split()
    with Store(folder) as store:
        task_ids = store.add_tasks([{"instruction": rng.choice(questions)} for _ in range(n_rows)])
        ids = []
        for tid in task_ids:
            length = min(int(rng.lognormvariate(4.3, 0.9)) + 4, 450)  # words: median ~75, a long tail
            start = rng.randrange(len(words))
            answer = " ".join(words[(start + i) % len(words)] for i in range(length))
            task = store.tasks([tid])[0]
            ids.append(store.record_generation({
                "task_id": tid, "request_key": f"bench-{tid}", "endpoint": "bench", "model": "bench-teacher",
                "messages": [{"role": "user", "content": task["instruction"]}], "params": {}, "sample_index": 0,
                "response": answer, "status": "ok"}))
        store.set_label(ids, "approved")
        return snapshot.collect(store, TrainConfig())


def contender(name: str, rows_path: Path, args) -> dict:
    """Train one contender in this (fresh) process; returns its figures."""
    import resource

    import psutil
    import torch
    from datasets import Dataset

    from distill.config import TrainConfig
    from distill.models import resolve_student
    from distill.train import build_trainer, to_prompt_completion

    torch.set_num_threads(os.cpu_count() or 1)
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    model_path = resolve_student("smollm2-135m-instruct", ROOT / "data" / "models")
    config = TrainConfig(student=str(model_path), max_steps=args.steps, batch_size=args.batch,
                         max_length=args.max_length, learning_rate=2e-4, lora_r=16, lora_alpha=32, seed=0,
                         batching="padding_free" if name == "ours" else "padded")
    baseline = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory() as out:
        if name == "ours":
            trainer = build_trainer(model_path, rows, config, Path(out), device="cpu")
        else:
            trainer = _trl_default(model_path, rows, config, Path(out), Dataset, to_prompt_completion)
        result = trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    history = [h for h in trainer.state.log_history if "loss" in h]
    runtime = result.metrics["train_runtime"]
    tokens = int(history[-1]["num_tokens"])
    return {"tokens": tokens, "seconds": round(runtime, 2), "tokens_per_s": round(tokens / runtime, 2),
            "peak_memory_mb": round((peak - baseline) / 2 ** 20, 1), "final_loss": round(history[-1]["loss"], 4),
            "mean_loss": round(result.metrics["train_loss"], 4), "steps": trainer.state.global_step}


def _trl_default(model_path, rows, config, out, Dataset, to_prompt_completion):
    """The peer: TRL's documented SFT on prompt-completion rows, default collator (padded batches)."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    args = SFTConfig(output_dir=str(out), max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
                     learning_rate=config.learning_rate, max_length=config.max_length, seed=config.seed,
                     data_seed=config.seed, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                     disable_tqdm=True, completion_only_loss=True,
                     # TRL's SFTConfig turns on bf16 autocast and activation checkpointing by default, even on
                     # CPU; ours trains fp32 without checkpointing on CPU. Both contenders run ours' setting,
                     # so that the batching is the only difference.
                     bf16=False, activation_checkpointing=False)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_module_list(), task_type="CAUSAL_LM")
    dataset = Dataset.from_list([to_prompt_completion(r) for r in rows])
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)


def token_lengths(rows: list[dict], max_length: int) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ROOT / "data" / "models" / "smollm2-135m-instruct"))
    return [min(len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]), max_length)
            for r in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--contender", choices=("trl", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.contender:
        print(json.dumps(contender(args.contender, args.rows_file, args)), flush=True)
        return 0

    from distill.models import resolve_student
    from distill.runner import child_env

    resolve_student("smollm2-135m-instruct", ROOT / "data" / "models")  # materialise once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        rows = build_workspace(Path(tmp) / "ws", args.rows, args.seed)
        rows_file = Path(tmp) / "rows.jsonl"
        rows_file.write_text("\n".join(json.dumps(r) for r in rows))
        figures = {}
        for name in ("trl", "ours"):
            cmd = [sys.executable, __file__, "--contender", name, "--rows-file", str(rows_file),
                   "--batch", str(args.batch), "--steps", str(args.steps), "--max-length", str(args.max_length)]
            # The training child's environment (allocator and OpenMP settings) for both contenders.
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=child_env())
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            figures[name] = json.loads(done.stdout.strip().splitlines()[-1])
    lengths = token_lengths(rows, args.max_length)
    trl, ours = figures["trl"], figures["ours"]
    speedup = round(ours["tokens_per_s"] / trl["tokens_per_s"], 3)
    memory_ratio = round(ours["peak_memory_mb"] / trl["peak_memory_mb"], 3)
    line = {
        "bench": "train", "model": "SmolLM2-135M-Instruct (bundled, fp32)", "device": "cpu",
        "cpu": platform.processor() or platform.machine(), "threads": os.cpu_count(),
        "rows": args.rows, "batch": args.batch, "steps": args.steps, "max_length": args.max_length,
        "lora": {"r": 16, "alpha": 32, "target": "all-linear"},
        "row_tokens": {"min": min(lengths), "median": sorted(lengths)[len(lengths) // 2], "max": max(lengths),
                       "mean": round(sum(lengths) / len(lengths), 1)},
        "trl_padded": trl, "ours_padding_free": ours,
        "tokens_per_s_ratio": speedup, "peak_memory_ratio": memory_ratio,
        "final_loss_ratio": round(ours["final_loss"] / trl["final_loss"], 4),
        "mean_loss_abs_diff": round(abs(ours["mean_loss"] - trl["mean_loss"]), 5),
        "goal_met": bool(speedup >= GOAL_SPEEDUP and memory_ratio <= 1.0
                         and math.isclose(ours["mean_loss"], trl["mean_loss"], rel_tol=1e-3)),
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
