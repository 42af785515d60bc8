"""Train benchmark: our sft against TRL's SFTTrainer in its three documented batchings, and a plain torch loop.

    OMP_WAIT_POLICY=PASSIVE python bench/train.py [--rows 32] [--batch 8] [--max-length 512]

Same model (the bundled SmolLM2-135M-Instruct, materialised under data/models/), same approved rows of
mixed lengths (a synthetic workspace: the bundled seed-pack questions with answers of 5 to ~350 words,
log-normal; every row fits max_length, so no contender truncates and all see the same tokens), same LoRA
(r 16, alpha 32, all-linear), seed and learning rate; each trains one epoch over the rows.

Contenders, each in its own fresh child process with the training child's environment
(`distill.runner.child_env`), fp32 without activation checkpointing (ours' CPU setting):
- trl_padded: `trl.SFTTrainer` on prompt-completion rows, default collator (each batch padded to its longest).
- trl_padding_free: `SFTConfig(padding_free=True)` (max_length=None: the rows already fit), TRL's default loss.
- trl_packed_bfd: `SFTConfig(packing=True, packing_strategy="bfd")` (padding-free by construction), with
  the batch size in packed sequences of max_length chosen so a step holds about as many tokens as the others'.
- ours: `distill.train.build_trainer` (`batching="padding_free"`, attention run per example).
- plain_loop: the CPU's practical limit for the same work: the same LoRA model, our attention and TRL's
  padding-free collator over the same batches, torch.optim.AdamW, no Trainer.

tokens/s counts real tokens only over the training wall time; peak memory is the peak RSS growth from just
before the model loaded. The parent prints ONE JSON line: every contender, the best TRL configuration by
tokens/s, and ours ÷ best TRL and ours ÷ plain loop for tokens/s, memory and mean loss.
Goal (issue 12): ours ahead of the best TRL configuration at <= 1.0x its memory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
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

CONTENDERS = ("trl_padded", "trl_padding_free", "trl_packed_bfd", "ours", "plain_loop")
MAX_ANSWER_WORDS = 340  # with the prompt, every row stays under 512 tokens


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
            length = min(int(rng.lognormvariate(4.3, 0.9)) + 4, MAX_ANSWER_WORDS)  # median ~75, a long tail
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
    """Train one contender for one epoch in this (fresh) process; returns its figures."""
    import resource

    import psutil
    import torch

    from distill.config import TrainConfig
    from models.resolve import resolve_student
    from distill.train import build_trainer

    torch.set_num_threads(os.cpu_count() or 1)
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    model_path = resolve_student("smollm2-135m-instruct", ROOT / "data" / "models")
    config = TrainConfig(student=str(model_path), max_steps=-1, epochs=1, batch_size=args.batch,
                         max_length=args.max_length, learning_rate=2e-4, lora_r=16, lora_alpha=32, seed=0,
                         batching="padded" if name == "trl_padded" else "padding_free")
    baseline = psutil.Process().memory_info().rss
    if name == "plain_loop":
        figures = _plain_loop(model_path, rows, config)
    else:
        with tempfile.TemporaryDirectory() as out:
            if name == "ours":
                trainer = build_trainer(model_path, rows, config, Path(out), device="cpu")
            else:
                trainer = _trl(name, model_path, rows, config, Path(out), args.packed_batch)
            result = trainer.train()
        history = [h for h in trainer.state.log_history if "loss" in h]
        figures = {"tokens": int(history[-1]["num_tokens"]), "seconds": result.metrics["train_runtime"],
                   "mean_loss": result.metrics["train_loss"], "steps": trainer.state.global_step}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {**figures, "seconds": round(figures["seconds"], 2),
            "tokens_per_s": round(figures["tokens"] / figures["seconds"], 2),
            "peak_memory_mb": round((peak - baseline) / 2 ** 20, 1), "mean_loss": round(figures["mean_loss"], 4)}


def _trl(name, model_path, rows, config, out, packed_batch):
    """The peer: TRL's documented SFT on prompt-completion rows, in the batching `name` says."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from distill.train import to_prompt_completion

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    batching = {"trl_padded": {"max_length": config.max_length},
                # TRL refuses max_length with padding-free and no packing; the rows fit, so None truncates nothing.
                "trl_padding_free": {"padding_free": True, "max_length": None},
                "trl_packed_bfd": {"packing": True, "packing_strategy": "bfd", "max_length": config.max_length,
                                   "per_device_train_batch_size": packed_batch}}[name]
    settings = {"per_device_train_batch_size": config.batch_size, **batching}
    args = SFTConfig(output_dir=str(out), num_train_epochs=1, learning_rate=config.learning_rate,
                     seed=config.seed, data_seed=config.seed, logging_steps=1, save_strategy="no", report_to="none",
                     use_cpu=True, disable_tqdm=True,
                     # TRL's SFTConfig turns on bf16 autocast and activation checkpointing by default, even on
                     # CPU; ours trains fp32 without checkpointing on CPU. Every contender runs ours' setting,
                     # so that the batching is the only difference.
                     bf16=False, activation_checkpointing=False, **settings)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_module_list(), task_type="CAUSAL_LM")
    dataset = Dataset.from_list([to_prompt_completion(r) for r in rows])
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)


def _plain_loop(model_path, rows, config) -> dict:
    """One epoch of LoRA training without a Trainer: the same tokens, batches of the same rows, our attention."""
    import time

    import torch
    from peft import get_peft_model
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from distill.attention import use_segments
    from distill.data import tokenize_example
    from distill.loading import load_student, load_tokenizer, lora_config

    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(model_path, config.student)
    examples = [tokenize_example(tokenizer, r["messages"], config.max_length) for r in rows]
    examples = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples if e is not None]
    model = load_student(model_path, config, "cpu")
    use_segments(model)
    model = get_peft_model(model, lora_config(config))
    model.train()
    collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(config.seed)).tolist()
    tokens, losses, started = 0, [], time.perf_counter()
    for i in range(0, len(order), config.batch_size):
        batch = collate([examples[j] for j in order[i:i + config.batch_size]])
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["input_ids"].numel())
        losses.append(float(loss))
    return {"tokens": tokens, "seconds": time.perf_counter() - started, "mean_loss": sum(losses) / len(losses),
            "steps": len(losses)}


def token_lengths(rows: list[dict], max_length: int) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ROOT / "data" / "models" / "smollm2-135m-instruct"))
    return [min(len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]), max_length)
            for r in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=CONTENDERS)
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--packed-batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.contender:
        print(json.dumps(contender(args.contender, args.rows_file, args)), flush=True)
        return 0

    from models.resolve import resolve_student
    from distill.runner import child_env

    resolve_student("smollm2-135m-instruct", ROOT / "data" / "models")  # materialise once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        rows = build_workspace(Path(tmp) / "ws", args.rows, args.seed)
        lengths = token_lengths(rows, 10 ** 6)
        if max(lengths) > args.max_length:
            raise SystemExit(f"a row has {max(lengths)} tokens > max_length {args.max_length}: raise --max-length")
        # Packed sequences of max_length per step holding about as many tokens as `batch` rows.
        packed_batch = max(1, round(args.batch * statistics.mean(lengths) / args.max_length))
        rows_file = Path(tmp) / "rows.jsonl"
        rows_file.write_text("\n".join(json.dumps(r) for r in rows))
        figures = {}
        for name in args.only:
            cmd = [sys.executable, __file__, "--contender", name, "--rows-file", str(rows_file),
                   "--batch", str(args.batch), "--max-length", str(args.max_length),
                   "--packed-batch", str(packed_batch)]
            # The training child's environment (allocator and OpenMP settings) for every contender.
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=child_env())
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            figures[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name}: {figures[name]}", file=sys.stderr, flush=True)
    line = {
        "bench": "train", "model": "SmolLM2-135M-Instruct (bundled, fp32)", "device": "cpu",
        "cpu": platform.processor() or platform.machine(), "threads": os.cpu_count(),
        "rows": args.rows, "batch": args.batch, "packed_batch": packed_batch, "max_length": args.max_length,
        "epochs": 1, "lora": {"r": 16, "alpha": 32, "target": "all-linear"},
        "row_tokens": {"min": min(lengths), "median": sorted(lengths)[len(lengths) // 2], "max": max(lengths),
                       "mean": round(statistics.mean(lengths), 1)},
        **figures, **ratios(figures),
    }
    print(json.dumps(line), flush=True)
    return 0


def ratios(figures: dict) -> dict:
    """ours ÷ the best TRL configuration (by tokens/s) and ours ÷ the plain loop."""
    out = {}
    ours = figures.get("ours")
    trl = {k: v for k, v in figures.items() if k.startswith("trl_")}
    if ours and trl:
        best = max(trl, key=lambda k: trl[k]["tokens_per_s"])
        peer = trl[best]
        out["best_trl"] = best
        out["ours_vs_best_trl"] = {
            "tokens_per_s": round(ours["tokens_per_s"] / peer["tokens_per_s"], 3),
            "peak_memory": round(ours["peak_memory_mb"] / peer["peak_memory_mb"], 3),
            "mean_loss": round(ours["mean_loss"] / peer["mean_loss"], 4)}
        out["goal_met"] = bool(out["ours_vs_best_trl"]["tokens_per_s"] > 1.0
                               and out["ours_vs_best_trl"]["peak_memory"] <= 1.0)
    if ours and figures.get("plain_loop"):
        plain = figures["plain_loop"]
        out["ours_vs_plain_loop"] = {
            "tokens_per_s": round(ours["tokens_per_s"] / plain["tokens_per_s"], 3),
            "peak_memory": round(ours["peak_memory_mb"] / plain["peak_memory_mb"], 3)}
    return out


if __name__ == "__main__":
    sys.exit(main())
