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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distill", description="Distill Studio training side.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="LoRA training of the student: sft, dpo, kd or kd_logprobs",
                                description="LoRA training of a student model on a workspace's reviewed rows "
                                            "(sft, dpo, kd against a local teacher, kd from stored logprobs).")
    add_train_arguments(train)
    add_merge_parser(commands)
    _add_eval_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "eval":
        return _eval_command(args)
    if args.command == "merge":
        return merge_command(args)
    return train_command(args)


def _add_eval_parser(commands) -> None:
    ev = commands.add_parser(
        "eval", help="base vs distilled student vs teacher on the eval split",
        description="Evaluate a distilled student on the workspace's eval split: the teacher, the base student "
                    "and the distilled student answer; the judge compares them (both orders) and scores them; "
                    "ROUGE-L, NLL of the teacher's answers and checks are computed. Prints one JSON line of "
                    "metrics; the per-task report is the run dir's eval.jsonl.")
    ev.add_argument("--workspace", type=Path, required=True, help="workspace folder")
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--adapter", help="PEFT adapter folder of the distilled student")
    which.add_argument("--run", type=int, help="id of a completed training run whose adapter to evaluate")
    ev.add_argument("--student", default="", help="base model (default: the training run's, else the bundled one)")
    ev.add_argument("--limit", type=int, default=0, help="evaluate at most N eval tasks (0: all)")
    ev.add_argument("--seed", type=int, default=0, help="which tasks --limit draws")
    ev.add_argument("--max-tokens", type=int, default=256, help="answer length cap for every system")
    ev.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)")
    ev.add_argument("--judge-max-tokens", type=int, default=256, help="room for each verdict")
    ev.add_argument("--no-structured-judge", action="store_false", dest="structured_judge",
                    help="judge in free text: for an endpoint without response_format json_schema")
    ev.add_argument("--no-judge-scores", action="store_false", dest="judge_scores",
                    help="only the pairwise verdicts (win rates), no 1-10 score of each answer")
    ev.add_argument("--no-judge-vs-base", action="store_false", dest="judge_vs_base",
                    help="no verdicts of distilled vs base (no win rate over base)")
    ev.add_argument("--no-judge-vs-teacher", action="store_false", dest="judge_vs_teacher",
                    help="no verdicts of distilled vs teacher (no win rate over the teacher)")
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

    try:
        teacher = TeacherConfig.from_env(base_url=args.base_url, model=args.model)
        judge = (TeacherConfig(base_url=args.judge_base_url, model=args.judge_model)
                 if args.judge_base_url or args.judge_model else None)
        config = EvalConfig(student=args.student, adapter=args.adapter or "", run_id=args.run, teacher=teacher,
                            judge=judge, max_tokens=args.max_tokens, temperature=args.temperature,
                            judge_max_tokens=args.judge_max_tokens, structured_judge=args.structured_judge,
                            judge_scores=args.judge_scores, judge_vs_base=args.judge_vs_base,
                            judge_vs_teacher=args.judge_vs_teacher, limit=args.limit, seed=args.seed)
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
