"""Command line: `python -m distill train ...`.

Two forms of the same subcommand:
  train --run-dir DIR     the training child the studio (and the headless form) starts: trains from the
                          run dir prepared by `distill.train.prepare_run_dir`; exit 1 on failure.
  train --workspace DIR   headless: snapshot the workspace's approved examples, train in a child
                          process, print progress, print the adapter path; exit 0 / 1 (2: bad usage).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from curation.errors import StudioError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distill", description="Distill Studio training side.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="LoRA SFT of the student on the approved examples",
                                description="LoRA SFT of a student model on a workspace's approved examples.")
    where = train.add_mutually_exclusive_group(required=True)
    where.add_argument("--run-dir", type=Path, help="train from a prepared run dir (the child process entry)")
    where.add_argument("--workspace", type=Path, help="headless: train on this workspace's approved examples")
    train.add_argument("--student", help="bundled name, local folder, .gguf file or cached hub id")
    train.add_argument("--max-steps", type=int, help="optimizer steps (-1: use --epochs)")
    train.add_argument("--epochs", type=float, help="passes over the examples when --max-steps is -1")
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--batch-size", type=int, help="examples per step")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_dir is not None:
        return _train_child(args.run_dir)
    return _train_headless(args)


def _train_child(run_dir: Path) -> int:
    # Set before anything imports huggingface_hub, which reads it once at import.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from distill.train import train

    try:
        metrics = train(run_dir)
    except StudioError as exc:
        # A user-facing error needs no traceback; anything else propagates, prints one and exits 1.
        print(f"error: {exc}", flush=True)
        return EXIT_FAILED
    print(f"completed: {metrics}", flush=True)
    return EXIT_OK


def _train_headless(args) -> int:
    from curation.errors import ConfigError, WorkspaceInUse
    from curation.store import Store
    from distill.train import TrainConfig

    overrides = {key: value for key, value in (
        ("student", args.student), ("max_steps", args.max_steps), ("epochs", args.epochs),
        ("learning_rate", args.lr), ("batch_size", args.batch_size)) if value is not None}
    try:
        config = TrainConfig(**overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = Store(args.workspace)
    except WorkspaceInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with store:
        return _run_and_follow(store, config)


def _run_and_follow(store, config) -> int:
    from distill.runner import TrainingSlot

    slot = TrainingSlot(store, store.workspace)
    try:
        run_id = slot.start(config)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"run {run_id}: training {config.student} in {slot.progress(run_id)['run_dir']}", flush=True)
    try:
        _print_progress(slot, run_id)
    except KeyboardInterrupt:
        # The child is in its own session, so Ctrl-C does not reach it: stop it explicitly.
        print("stopping...", file=sys.stderr, flush=True)
        slot.stop()
        slot.wait()
    final = slot.progress(run_id)
    if final["status"] != "completed":
        print(f"run {run_id} {final['status']}: {final['error'] or ''}", file=sys.stderr)
        return EXIT_FAILED
    metrics = final["metrics"]
    print(f"done: {metrics.get('steps')} steps, train loss {metrics.get('train_loss'):.4f}, "
          f"{metrics.get('tokens_per_s')} tokens/s on {metrics.get('device')}")
    print(f"adapter: {final['adapter_dir']}")
    return EXIT_OK


def _print_progress(slot, run_id: int, poll_s: float = 1.0) -> None:
    from distill import runlog

    run_dir, printed = Path(slot.progress(run_id)["run_dir"]), 0
    while True:
        finished = slot.wait(poll_s)
        steps = [e for e in runlog.read_events(run_dir) if e["event"] == "step"]
        for ev in steps[printed:]:
            eta = f"{ev['eta_s']:.0f}s" if ev.get("eta_s") is not None else "?"
            print(f"step {ev['step']}/{ev['max_steps']}  loss {ev['loss']:.4f}  tokens {ev['tokens']}  eta {eta}",
                  flush=True)
        printed = len(steps)
        if finished:
            return


if __name__ == "__main__":
    sys.exit(main())
