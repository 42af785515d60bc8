"""Headless evaluation: `python -m evaluation --workspace DIR (--run ID | --adapter DIR) [options]`.

Evaluates a distilled student on the workspace's eval split: the teacher, the base student and the
distilled student answer; the judge compares and scores them. Progress goes to stderr, one JSON line of
metrics to stdout; the per-task report is the eval run dir's eval.jsonl. Exit 0 / 1 (the eval failed) /
2 (bad usage). The flags are EvalConfig's fields (curation.config_args: the config's defaults, its field
docs as help); the teacher and judge endpoints are given by URL and model. With --tools: the students' tool
calls on the held-out tool tasks instead (evaluation/tool_calls.py), one JSON report.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from curation.errors import StudioError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    from curation.config_args import add_config_arguments
    from evaluation.config import EvalConfig

    parser = argparse.ArgumentParser(
        prog="python -m evaluation", description="Evaluate a distilled student on the workspace's eval split: "
        "the teacher, the base student and the distilled student answer; the judge compares and scores them; "
        "prints the eval's metrics; the per-task report is the run dir's eval.jsonl.")
    parser.add_argument("--workspace", type=Path, required=True, help="the workspace folder")
    parser.set_defaults(config_fields=add_config_arguments(parser, EvalConfig, skip=("teacher", "judge"),
                                                           aliases={"run_id": ["--run"]}))
    parser.add_argument("--base-url", default="", help="teacher endpoint (OpenAI-compatible; default: embedded server)")
    parser.add_argument("--model", default="", help="teacher model name at --base-url")
    parser.add_argument("--judge-base-url", default="", help="judge endpoint (default: the teacher)")
    parser.add_argument("--judge-model", default="", help="judge model name at --judge-base-url")
    parser.add_argument("--tools", action="store_true",
                        help="instead: the students' tool calls on the held-out tool tasks (the tools method's), "
                             "checked against their schemas and matched with the teacher's calls; no judge")
    return parser


def main(argv: list[str] | None = None) -> int:
    # Set before anything imports huggingface_hub, which reads it once at import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    if not args.adapter and args.run_id is None:
        print("error: name the distilled student: --adapter DIR or --run ID", file=sys.stderr)
        return EXIT_USAGE
    from curation.store import Store

    try:
        config = config_from_args(args)
        store = Store(args.workspace)
    except StudioError as exc:  # a config out of range, a workspace in use or in need of recovery
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with store:
        try:
            if args.tools:
                from evaluation.tool_calls import run_tool_eval
                metrics = run_tool_eval(store, config)
            else:
                metrics = evaluate(store, config)
        except StudioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(json.dumps(metrics, default=str), flush=True)
    return EXIT_OK


def config_from_args(args):
    """The EvalConfig the flags describe; ConfigError when a field is out of range."""
    from curation.teacher import TeacherConfig
    from evaluation.config import EvalConfig

    teacher = TeacherConfig.from_env(base_url=args.base_url, model=args.model)
    judge = (TeacherConfig(base_url=args.judge_base_url, model=args.judge_model)
             if args.judge_base_url or args.judge_model else None)
    return EvalConfig(**{name: getattr(args, name) for name in args.config_fields}, teacher=teacher, judge=judge)


def evaluate(store, config) -> dict:
    """Run the eval, starting the embedded server only when the teacher or judge is it; progress to stderr."""
    from curation.local_server import LocalTeacherServer
    from evaluation.evaluate import run_eval

    server = LocalTeacherServer(store.workspace / "logs")
    last = [None]

    def show(p):
        if (p.stage, p.done) != last[0]:
            last[0] = (p.stage, p.done)
            print(f"{p.stage}: {p.done}/{p.total}", file=sys.stderr, flush=True)

    try:
        needs_server = config.teacher.embedded or config.judge_teacher.embedded
        return run_eval(store, config, server.ensure_started() if needs_server else "", on_progress=show)
    finally:
        server.stop()
