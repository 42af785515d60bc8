"""The `train` and `merge` subcommands of `python -m distill` (wired in distill/__main__.py).

  train --run-dir DIR [--resume]   the training child the studio (and the headless form) starts: trains
                                   the run dir prepared by `distill.rundir.prepare_run_dir`; exit 1 on failure.
                                   Runs unchanged under `torchrun ... -m distill train --run-dir DIR` and
                                   `accelerate launch ... -m distill train --run-dir DIR`.
  train --workspace DIR [options]  headless: snapshot the workspace's rows for --method, train in a child
                                   process (under --launcher if given), print progress, print the adapter
                                   path; exit 0 / 1 (2: bad usage). --resume RUN continues a stopped run.
  merge --run-dir DIR [--out DIR]  merge a completed run's adapter into its student: a safetensors folder
                                   plain transformers loads (default DIR/merged), with a model card.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from curation.errors import StudioError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# (flag, TrainConfig field or "dpo.x" / "kd.x", argparse kwargs)
_OPTIONS = (
    ("--method", "method", dict(choices=("sft", "dpo", "kd", "kd_logprobs", "grpo"), help="training method (default sft)")),
    ("--student", "student", dict(help="bundled name, local folder, .gguf file or cached hub id")),
    ("--max-steps", "max_steps", dict(type=int, help="optimizer steps (-1: use --epochs)")),
    ("--epochs", "epochs", dict(type=float, help="passes over the examples when --max-steps is -1")),
    ("--lr", "learning_rate", dict(type=float, help="learning rate")),
    ("--batch-size", "batch_size", dict(type=int, help="examples (dpo: pairs) per forward pass")),
    ("--grad-accum", "grad_accum", dict(type=int, help="forward passes per optimizer step")),
    ("--max-length", "max_length", dict(type=int, help="tokens kept per example")),
    ("--lora-r", "lora_r", dict(type=int, help="LoRA rank")),
    ("--lora-alpha", "lora_alpha", dict(type=int, help="LoRA alpha")),
    ("--lora-dropout", "lora_dropout", dict(type=float, help="dropout on the LoRA path")),
    ("--logging-steps", "logging_steps", dict(type=int, help="log the loss every N steps")),
    ("--target-modules", "target_modules", dict(help="'all-linear' or names such as q_proj,v_proj")),
    ("--seed", "seed", dict(type=int, help="seed of adapter init, data order, sampling")),
    ("--batching", "batching", dict(choices=("padding_free", "padded"), help="sft batches (default padding_free)")),
    ("--save-steps", "save_steps", dict(type=int, help="also checkpoint every N steps (0: only on stop)")),
    ("--eval-rows", "eval_rows", dict(type=int, help="held-out eval-split answers scored while training (0: off)")),
    ("--eval-steps", "eval_steps", dict(type=int, help="eval loss every N steps (0: about 5 times per run)")),
    ("--gradient-checkpointing", "gradient_checkpointing",
     dict(choices=("auto", "true", "false"), help="recompute activations to save memory (auto: CUDA only)")),
    ("--load-in-4bit", "load_in_4bit", dict(action="store_true", default=None, help="QLoRA (CUDA + bitsandbytes)")),
    ("--ignore-memory-estimate", "ignore_memory_estimate",
     dict(action="store_true", default=None, help="start even if the memory estimate says it will not fit")),
    ("--pairs", "dpo.pairs", dict(choices=("scores", "compare", "review", "revisions"),
                                  help="dpo: where pairs come from")),
    ("--min-score-gap", "dpo.min_score_gap", dict(type=float, help="dpo scores: minimum judge-score gap")),
    ("--dpo-beta", "dpo.beta", dict(type=float, help="dpo: beta")),
    ("--teacher", "kd.teacher", dict(help="kd: local teacher model sharing the student's tokenizer")),
    ("--kd-loss", "kd.loss", dict(choices=("forward_kl", "reverse_kl", "jsd"), help="kd: divergence")),
    ("--kd-beta", "kd.beta", dict(type=float, help="kd jsd: beta in (0, 1)")),
    ("--temperature", "kd.temperature", dict(type=float, help="kd: temperature")),
    ("--on-policy", "kd.on_policy", dict(type=float, help="kd: fraction of steps on student samples")),
    ("--max-new-tokens", "kd.max_new_tokens", dict(type=int, help="kd on-policy: sample length cap")),
    ("--cross-tokenizer", "kd.cross_tokenizer",
     dict(action="store_true", default=None, help="kd: teacher with another tokenizer (TRL GOLD, ULD loss)")),
    ("--reward", "grpo.reward", dict(choices=("checks", "judge", "both"), help="grpo: what rewards an answer")),
    ("--num-generations", "grpo.num_generations", dict(type=int, help="grpo: answers sampled per prompt")),
    ("--max-completion-length", "grpo.max_completion_length", dict(type=int, help="grpo: tokens per answer")),
    ("--grpo-temperature", "grpo.temperature", dict(type=float, help="grpo: sampling temperature")),
    ("--grpo-beta", "grpo.beta", dict(type=float, help="grpo: KL penalty (0: no reference model)")),
    ("--init-adapter", "grpo.init_adapter", dict(help="grpo: continue from this adapter folder (e.g. an SFT run's)")),
    ("--judge-base-url", "grpo.judge_base_url", dict(help="grpo judge reward: the judge endpoint's base URL")),
    ("--judge-model", "grpo.judge_model", dict(help="grpo judge reward: the judge's model name")),
)


def add_train_arguments(train: argparse.ArgumentParser) -> None:
    where = train.add_mutually_exclusive_group(required=True)
    where.add_argument("--run-dir", type=Path, help="train from a prepared run dir (the child process entry)")
    where.add_argument("--workspace", type=Path, help="headless: train on this workspace's rows")
    train.add_argument("--resume", nargs="?", const=-1, type=int, metavar="RUN",
                       help="with --run-dir: continue from its last checkpoint; with --workspace: resume run RUN")
    train.add_argument("--launcher", help="headless: run the child under this launcher, e.g. "
                                          "'torchrun --nproc_per_node 4' or 'accelerate launch --num_processes 4'")
    docs = train_config_docs()
    for flag, dest, kwargs in _OPTIONS:
        if "choices" not in kwargs and kwargs.get("action") != "store_true":
            kwargs = {"metavar": dest.split(".")[-1].upper(), **kwargs}
        if dest in docs:  # the help written on the TrainConfig field, with its default
            kwargs = {**kwargs, "help": docs[dest].replace("%", "%%")}
        train.add_argument(flag, dest=dest.replace(".", "__"), **kwargs)


def train_config_docs() -> dict[str, str]:
    """{"field" or "dpo.field" / "kd.field": its help and default}, from TrainConfig's field metadata."""
    from dataclasses import fields

    from distill.config import TrainConfig

    out, default = {}, TrainConfig()
    for prefix, obj in (("", default), ("dpo.", default.dpo), ("kd.", default.kd), ("grpo.", default.grpo)):
        for f in fields(obj):
            if f.metadata.get("help"):
                out[prefix + f.name] = f"{f.metadata['help']} (default: {getattr(obj, f.name)})"
    return out


def add_merge_parser(commands) -> None:
    merge = commands.add_parser("merge", help="merge a run's LoRA adapter into its student (safetensors)",
                                description="Merge a completed run's adapter into the student weights: a folder "
                                            "plain transformers loads and vLLM serves, with a model card.")
    merge.add_argument("--run-dir", type=Path, required=True, help="the completed run's folder")
    merge.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/merged)")


def config_from_args(args):
    """The TrainConfig the flags describe (unset flags keep the defaults); ConfigError when out of range."""
    from distill.config import TrainConfig

    top, nested = {}, {"dpo": {}, "kd": {}, "grpo": {}}
    for _, dest, _ in _OPTIONS:
        value = getattr(args, dest.replace(".", "__"))
        if value is None:
            continue
        if "." in dest:
            group, name = dest.split(".")
            nested[group][name] = value
        else:
            top[dest] = value
    return TrainConfig(**top, **{k: v for k, v in nested.items() if v})


def command_for(config, workspace: Path | str) -> str:
    """The headless command that trains `config` on `workspace`: only the flags whose value differs from
    TrainConfig's default (the Train tab shows it, as LlamaBoard does, before a run)."""
    import shlex
    from dataclasses import asdict

    from distill.config import TrainConfig

    default, wanted = asdict(TrainConfig()), asdict(config)
    parts = ["python", "-m", "distill", "train", "--workspace", str(workspace)]
    for flag, dest, kwargs in _OPTIONS:
        group, _, name = dest.rpartition(".")
        value = wanted[group][name] if group else wanted[name]
        if value == (default[group][name] if group else default[name]):
            continue
        if kwargs.get("action") == "store_true":
            parts += [flag] if value else []
        elif dest == "gradient_checkpointing":
            parts += [flag, {None: "auto", True: "true", False: "false"}[value]]
        else:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def train_command(args) -> int:
    if args.run_dir is not None:
        return train_child(args.run_dir, resume=args.resume is not None)
    return train_headless(args)


def train_child(run_dir: Path, resume: bool = False) -> int:
    # Set before anything imports huggingface_hub, which reads it once at import.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from distill.train import train

    try:
        metrics = train(run_dir, resume=resume)
    except StudioError as exc:
        # A user-facing error needs no traceback; anything else propagates, prints one and exits 1.
        print(f"error: {exc}", flush=True)
        return EXIT_FAILED
    print(f"{'stopped' if metrics.get('stopped') else 'completed'}: {metrics}", flush=True)
    return EXIT_OK


def train_headless(args) -> int:
    from curation.errors import ConfigError, WorkspaceInUse
    from curation.store import Store

    try:
        config = None if args.resume is not None else config_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = Store(args.workspace)
    except WorkspaceInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with store:
        return run_and_follow(store, config, resume=args.resume, launcher=args.launcher)


def run_and_follow(store, config, resume: int | None = None, launcher: str | None = None) -> int:
    from distill.runner import TrainingSlot

    from distill import runlog

    slot = TrainingSlot(store, store.workspace, launcher=launcher)
    earlier = store.run(resume) if resume is not None else None
    # A resumed run appends to its log: print only what this session adds.
    skip = len(runlog.read_events(Path(earlier["run_dir"]))) if earlier and earlier.get("run_dir") else 0
    try:
        run_id = slot.resume(resume) if resume is not None else slot.start(config)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    run = store.run(run_id)
    print(f"run {run_id}: {'resuming' if resume is not None else 'training'} {run['kind']} of "
          f"{run['config'].get('student')} in {run['run_dir']}", flush=True)
    try:
        print_progress(slot, run_id, skip)
    except KeyboardInterrupt:
        # The child is in its own session, so Ctrl-C does not reach it: stop it explicitly.
        print("stopping (saving a checkpoint; Ctrl-C again to kill)...", file=sys.stderr, flush=True)
        slot.stop()
        try:
            slot.wait()
        except KeyboardInterrupt:
            slot.stop()
            slot.wait()
    final = slot.progress(run_id)
    if final["status"] == "stopped":
        print(f"run {run_id} stopped at step {final['steps']}; resume it with --resume {run_id}", file=sys.stderr)
        return EXIT_FAILED
    if final["status"] != "completed":
        print(f"run {run_id} {final['status']}: {final['error'] or ''}", file=sys.stderr)
        return EXIT_FAILED
    metrics = final["metrics"]
    print(f"done: {metrics.get('steps')} steps, train loss {metrics.get('train_loss'):.4f}, "
          f"{metrics.get('tokens_per_s')} tokens/s on {metrics.get('device')}, "
          f"peak memory {metrics.get('peak_memory_mb')} MB")
    print(f"adapter: {final['adapter_dir']}")
    return EXIT_OK


def print_progress(slot, run_id: int, skip: int = 0, poll_s: float = 1.0) -> None:
    from distill import runlog

    run_dir, printed = Path(slot.progress(run_id)["run_dir"]), skip
    while True:
        finished = slot.wait(poll_s)
        events = runlog.read_events(run_dir)
        for ev in events[printed:]:
            if ev["event"] == "step":
                eta = f"{ev['eta_s']:.0f}s" if ev.get("eta_s") is not None else "?"
                print(f"step {ev['step']}/{ev['max_steps']}  loss {ev['loss']:.4f}  tokens {ev['tokens']}  eta {eta}",
                      flush=True)
            elif ev["event"] == "memory":
                print(f"memory: ~{ev['estimate_mb']:.0f} MB estimated, {ev['available_mb']} MB available "
                      f"on {ev['device']}", flush=True)
            elif ev["event"] == "eval" and ev.get("eval_loss") is not None:
                print(f"step {ev['step']}  eval loss {ev['eval_loss']:.4f}  ({ev['rows']} held-out answers)",
                      flush=True)
            elif ev["event"] == "checkpoint":
                print(f"checkpoint: {ev['path']}", flush=True)
            elif ev["event"] == "note":
                print(ev["note"], flush=True)
        printed = len(events)
        if finished:
            return


def merge_command(args) -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from distill.export import merge

    try:
        out = merge(args.run_dir, args.out)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"merged: {out}", flush=True)
    return EXIT_OK
