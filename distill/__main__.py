"""Command line: `python -m distill <train|merge> ...` (training only; evaluation is `python -m evaluation`).

train and merge are described in distill/cli.py:
  train --run-dir DIR [--resume]   the training child (also under torchrun / accelerate launch)
  train --workspace DIR [options]  headless: --method sft|dpo|kd|kd_logprobs, progress, adapter path
  merge --run-dir DIR [--out DIR]  merged safetensors model + model card
"""
from __future__ import annotations

import argparse
import sys

from distill.cli import EXIT_USAGE, add_merge_parser, add_train_arguments, merge_command, train_command

EVAL_MOVED = ("error: evaluation moved out of the training side: python -m evaluation --workspace DIR "
              "(--run ID | --adapter DIR) [options]; see python -m evaluation --help")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distill", description="Distill Studio training side.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="LoRA training of the student: sft, dpo, kd or kd_logprobs",
                                description="LoRA training of a student model on a workspace's reviewed rows "
                                            "(sft, dpo, kd against a local teacher, kd from stored logprobs).")
    add_train_arguments(train)
    add_merge_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["eval"]:  # the old spelling: say where it went rather than "invalid choice"
        print(EVAL_MOVED, file=sys.stderr)
        return EXIT_USAGE
    args = build_parser().parse_args(argv)
    if args.command == "merge":
        return merge_command(args)
    return train_command(args)


if __name__ == "__main__":
    sys.exit(main())
