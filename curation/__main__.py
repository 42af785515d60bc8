"""Headless curation: python -m curation --workspace DIR <command> ...

Commands: import, seed-pack, split, documents, conversations (what you bring); generate, judge, ledger,
retry-failed, prices (the teacher); embed, dedupe, filter, rank, undo (the Curate tab); review, export, stats.

Every command builds the same config objects as the UI and works on the same workspace file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from curation import curate_cli, elicit_cli, exporting, importing, sources_cli
from curation.errors import StudioError
from curation.split import hold_out
from curation.store import REVIEW_STATUSES, ReviewFilter, Store

DEFAULT_WORKSPACE = Path(__file__).resolve().parents[1] / "data"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m curation", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE,
                        help="workspace folder holding studio.duckdb (default: %(default)s)")
    parser.add_argument("--recover", action="store_true",
                        help="open a workspace whose write-ahead log cannot be replayed at its last checkpoint "
                             "(the log is kept aside; without this it is refused, saying what would be lost)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="import seed tasks from CSV, JSONL, JSON array or Parquet")
    p.add_argument("file", type=Path)
    p.add_argument("--skill", help="skill tag for rows that have none")
    p.add_argument("--domain", help="domain tag for rows that have none")
    p.add_argument("--keep-duplicates", action="store_true", help="also add tasks already in the workspace")

    p = sub.add_parser("seed-pack", help="load a bundled seed pack (omit NAME to list them)")
    p.add_argument("name", nargs="?")
    p.add_argument("--keep-duplicates", action="store_true", help="also add tasks already in the workspace")

    p = sub.add_parser("split", help="hold tasks out for evaluation: a stratified random split, or by id",
                       description="Eval-split tasks are never trained on or exported; the eval and the eval "
                                   "loss during training use them.")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--fraction", type=float, help="re-split every task: hold out this fraction, stratified by "
                                                    "skill and domain")
    how.add_argument("--eval", dest="to_eval", help="comma-separated task ids to move to the eval split")
    how.add_argument("--train", dest="to_train", help="comma-separated task ids to move back to train")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split (same seed, same split)")

    elicit_cli.add_commands(sub)  # generate (every method), judge, ledger, retry-failed, prices
    curate_cli.add_commands(sub)  # embed, dedupe, filter, rank, undo
    sources_cli.add_commands(sub)  # documents, conversations

    p = sub.add_parser("review", help="approve or reject generations matching a filter")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--approve-all", action="store_true", help="approve every generation matching the filter")
    action.add_argument("--reject-all", action="store_true", help="reject every generation matching the filter")
    p.add_argument("--status", choices=REVIEW_STATUSES, default=None, help="only rows with this status")
    p.add_argument("--search", default="", help="only rows whose task or response contains this text")

    p = sub.add_parser("export", help="export labelled generations as a training file")
    p.add_argument("out", type=Path)
    p.add_argument("--status", choices=["approved"], default="approved")
    p.add_argument("--format", choices=exporting.EXPORT_FORMATS, default="chat-jsonl")

    p = sub.add_parser("stats", help="counts by status")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Store(args.workspace, recover=args.recover) as store:
            return COMMANDS[args.command](store, args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_import(store, args) -> int:
    added = importing.import_file(store, args.file, skill=args.skill, domain=args.domain,
                                  keep_duplicates=args.keep_duplicates)
    print(added.message("imported") + f" from {args.file}")
    return 0


def cmd_seed_pack(store, args) -> int:
    if not args.name:
        print("\n".join(importing.seed_packs()))
        return 0
    added = importing.load_seed_pack(store, args.name, keep_duplicates=args.keep_duplicates)
    print(added.message("loaded") + f" from seed pack {args.name}")
    return 0


def cmd_split(store, args) -> int:
    if args.fraction is not None:
        held, total = hold_out(store, args.fraction, seed=args.seed)
        print(f"held out {len(held)} of {total} tasks for evaluation (seed {args.seed})")
        return 0
    text, split = (args.to_eval, "eval") if args.to_eval is not None else (args.to_train, "train")
    print(f"moved {store.set_split(importing.parse_ids(text, 'task ids'), split)} tasks to {split}")
    return 0


def cmd_review(store, args) -> int:
    flt = ReviewFilter(status=args.status or "", search=args.search)
    n = store.label_filter(flt, "approved" if args.approve_all else "rejected")
    print(f"{'approved' if args.approve_all else 'rejected'} {n} generations")
    return 0


def cmd_export(store, args) -> int:
    n = exporting.export_examples(store.approved_examples(), args.out, fmt=args.format)
    print(f"wrote {n} examples to {args.out}")
    return 0


def cmd_stats(store, args) -> int:
    stats = store.stats()
    if args.json:
        print(json.dumps(stats))
    else:
        for key, value in stats.items():
            print(f"{key}: {value}")
    return 0


COMMANDS = {"import": cmd_import, "seed-pack": cmd_seed_pack, "split": cmd_split, **elicit_cli.COMMANDS,
            **curate_cli.COMMANDS, **sources_cli.COMMANDS, "review": cmd_review, "export": cmd_export,
            "stats": cmd_stats}

if __name__ == "__main__":
    sys.exit(main())
