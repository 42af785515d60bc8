"""Command line: `python -m distill <train|merge|eval> ...`.

train and merge are described in distill/cli.py:
  train --run-dir DIR [--resume]   the training child (also under torchrun / accelerate launch)
  train --workspace DIR [options]  headless: --method sft|dpo|kd|kd_logprobs, progress, adapter path
  merge --run-dir DIR [--out DIR]  merged safetensors model + model card
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from curation.errors import StudioError
from distill.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_merge_parser, add_train_arguments, merge_command, \
    train_command


def build_parser(eval_flags: bool = True) -> argparse.ArgumentParser:
    """eval_flags: build eval's EvalConfig flags, which imports the eval pipeline (~2 s): not for the training
    and merge children, which start from this parser too."""
    parser = argparse.ArgumentParser(prog="python -m distill", description="Distill Studio training side.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="LoRA training of the student: sft, dpo, kd or kd_logprobs",
                                description="LoRA training of a student model on a workspace's reviewed rows "
                                            "(sft, dpo, kd against a local teacher, kd from stored logprobs).")
    add_train_arguments(train)
    add_merge_parser(commands)
    _add_eval_parser(commands, eval_flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(eval_flags=argv[:1] == ["eval"]).parse_args(argv)
    if args.command == "eval":
        return _eval_command(args)
    if args.command == "merge":
        return merge_command(args)
    return train_command(args)


def _add_eval_parser(commands, eval_flags: bool = True) -> None:
    """`eval`: its flags are EvalConfig's fields (curation.config_args: the config's defaults, its field docs as
    help); the endpoints are given by URL and model."""
    ev = commands.add_parser(
        "eval", help="base vs distilled student vs teacher on the eval split",
        description="Evaluate a distilled student on the workspace's eval split: the teacher, the base student "
                    "and the distilled student answer; the judge compares and scores them; prints the eval's "
                    "metrics; the per-task report is the run dir's eval.jsonl.")
    if not eval_flags:
        return
    from curation.config_args import add_config_arguments
    from distill.evaluate import EvalConfig

    ev.add_argument("--workspace", type=Path, required=True, help="the workspace folder")
    ev.set_defaults(config_fields=add_config_arguments(ev, EvalConfig, skip=("teacher", "judge"),
                                                       aliases={"run_id": ["--run"]}))
    ev.add_argument("--base-url", default="", help="teacher endpoint (OpenAI-compatible; default: embedded server)")
    ev.add_argument("--model", default="", help="teacher model name at --base-url")
    ev.add_argument("--judge-base-url", default="", help="judge endpoint (default: the teacher)")
    ev.add_argument("--judge-model", default="", help="judge model name at --judge-base-url")


def _eval_command(args) -> int:
    # Set before anything imports huggingface_hub, which reads it once at import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import json

    from curation.errors import ConfigError, WorkspaceInUse
    from curation.local_server import LocalTeacherServer
    from curation.store import Store
    from curation.teacher import TeacherConfig
    from distill.evaluate import EvalConfig, run_eval

    if not args.adapter and args.run_id is None:
        print("error: name the distilled student: --adapter DIR or --run ID", file=sys.stderr)
        return EXIT_USAGE
    try:
        teacher = TeacherConfig.from_env(base_url=args.base_url, model=args.model)
        judge = (TeacherConfig(base_url=args.judge_base_url, model=args.judge_model)
                 if args.judge_base_url or args.judge_model else None)
        config = EvalConfig(**{name: getattr(args, name) for name in args.config_fields}, teacher=teacher,
                            judge=judge)
        store = Store(args.workspace)
    except (ConfigError, WorkspaceInUse) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    server = LocalTeacherServer(store.workspace / "logs")
    with store:
        try:
            needs_server = teacher.embedded or config.judge_teacher.embedded
            base_url = server.ensure_started() if needs_server else ""
            last = [None]

            def show(p):
                if (p.stage, p.done) != last[0]:
                    last[0] = (p.stage, p.done)
                    print(f"{p.stage}: {p.done}/{p.total}", file=sys.stderr, flush=True)

            metrics = run_eval(store, config, base_url, on_progress=show)
        except StudioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            server.stop()
    print(json.dumps(metrics, default=str), flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
