"""The Curate tab without a browser: `python -m curation embed | dedupe | filter | rank | undo`.

Each command builds the stage's own config (DedupeConfig, a Filter, RankConfig) from flags generated from that
config's fields (curation.config_args), previews with --dry-run as the UI's Preview does, applies as one label
batch that `undo BATCH` reverts, and prints text or, with --json, one JSON object.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from curation import filter_kinds, filters, grounding, leakage, tool_filters
from curation.config_args import add_config_arguments, config_from_args
from curation.dedupe import METHODS, REPRESENTATIVE_RULES, TARGETS, DedupeConfig, apply_dedupe, plan_dedupe
from curation.embed import KINDS, embed_items, embedder_key
from curation.errors import StudioError
from curation.rank import RankConfig, approve_top, diversity_for_rows, pending_rows, rank_rows
from curation.store import ReviewFilter

FILTERS = {"length": filter_kinds.LengthFilter, "regex": filter_kinds.RegexFilter,
           "refusal": filter_kinds.RefusalFilter, "judge_score": filter_kinds.JudgeScoreFilter,
           "language": filter_kinds.LanguageFilter, "leakage": leakage.LeakageFilter,
           "unanswerable": grounding.UnanswerableFilter, "unfaithful": grounding.UnfaithfulFilter,
           "invalid_calls": tool_filters.InvalidCallsFilter}
_FILTER_CHOICES = {"unit": ("tokens", "chars"), "mode": ("exclude", "include"),
                   "target": ("response", "prompt", "both")}


def add_commands(sub) -> None:
    """Add embed, dedupe, filter, rank and undo to the CLI's subparsers."""
    p = sub.add_parser("embed", help="embed every task or response whose text is new or changed")
    p.add_argument("--kind", choices=KINDS, default="response", help="what to embed (default: response)")
    p.add_argument("--model", default=None, help="embedding model (default: the bundled all-MiniLM-L6-v2; "
                   "minilm-int8, static, static+minilm, or a sentence-transformers folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("dedupe", help="find near-duplicates and mark all but one of each cluster rejected",
                       description="Semantic dedupe embeds what is new first. --dry-run prints the clusters "
                                   "(each member's id, text and similarity to the kept row) and changes nothing.")
    p.set_defaults(config_fields=add_config_arguments(
        p, DedupeConfig, choices={"target": TARGETS, "method": METHODS, "representative": REPRESENTATIVE_RULES}))
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="embed and search on a Ray cluster: 'auto' (the one `ray start` began on this machine), "
                        "HOST:PORT of its head node, or 'local' (a Ray started for this command)")
    p.add_argument("--ray-search", choices=("approximate", "exact"), default="approximate",
                   help="with --ray-address: 'approximate' (default) runs the single-machine search on the cluster "
                        "(each row against the rows of its nearest k-means cells: the same pairs as without Ray); "
                        "'exact' finds every pair at or above the threshold, at close to all-pairs cost")
    p.add_argument("--snapshot-dir", default=None, metavar="DIR",
                   help="with --ray-address: where the Parquet snapshots go, kept after the run; every node must "
                        "reach it on a multi-node cluster (default: a folder under WORKSPACE/ray-snapshots, "
                        "removed when the run ends)")
    _common(p)

    p = sub.add_parser("filter", help="reject the rows a filter removes (--dry-run: only count and show them)")
    kinds = p.add_subparsers(dest="filter_kind", required=True)
    for kind, cls in FILTERS.items():
        k = kinds.add_parser(kind, help=(cls.__doc__ or kind).strip().splitlines()[0])
        k.set_defaults(config_fields=add_config_arguments(k, cls, skip=("eval_texts",), choices=_FILTER_CHOICES))
        k.add_argument("--search", default="", help="only rows whose task or response contains this text")
        _common(k)

    p = sub.add_parser("rank", help="rank pending rows by judge score, diversity; approve the top")
    p.set_defaults(config_fields=add_config_arguments(p, RankConfig))
    top = p.add_mutually_exclusive_group()
    top.add_argument("--top", type=int, help="approve the top K rows")
    top.add_argument("--top-percent", type=float, help="approve the top P percent of the rows")
    p.add_argument("--embedder", default=None, help="embedding model of the diversity score (default: bundled)")
    p.add_argument("--search", default="", help="only rows whose task or response contains this text")
    p.add_argument("--show", type=int, default=20, help="rows of the ranking to print (default: 20)")
    _common(p)

    p = sub.add_parser("undo", help="put the rows of a label batch (a dedupe, filter or rank) back")
    p.add_argument("batch", type=int, help="the batch id an apply printed")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_embed(store, args) -> int:
    result = embed_items(store, args.kind, args.model)
    return _out(args, result, f"embedded {result['encoded']} {args.kind}s with {result['model']} "
                              f"({result['reused']} already up to date)")


def _dedupe_plan(store, config: DedupeConfig, args):
    """The plan, made here or (--ray-address) with embedding and search on a Ray cluster; and the snapshot
    folder a Ray run kept (None: none, or removed when the run ended)."""
    if not args.ray_address:
        if config.method == "semantic":
            embed_items(store, config.item_kind, config.model)
        return plan_dedupe(store, config), None
    from curation import ray_dedupe  # Ray is imported only by a command that uses it

    with ray_dedupe.ray_connection(args.ray_address), ray_dedupe.run_snapshot(store, args.snapshot_dir) as folder:
        if config.method == "semantic":
            ray_dedupe.embed_on_ray(store, config.item_kind, config.model, folder)
        plan = ray_dedupe.plan_dedupe_on_ray(store, config, folder, search_mode=args.ray_search)
    return plan, args.snapshot_dir


def cmd_dedupe(store, args) -> int:
    config = config_from_args(DedupeConfig, args, args.config_fields)
    plan, snapshot = _dedupe_plan(store, config, args)
    clusters = [{"cluster": c.index, "kept": c.representative, "rows_marked": c.rows_marked,
                 "members": [{"id": m.id, "text": m.text, "similarity": round(float(m.similarity), 4),
                              "kept": m.id == c.representative, "generations": list(m.generation_ids)}
                             for m in c.members]} for c in plan.clusters]
    out = {"config": vars(config), "items": plan.items_total, "rows": plan.rows_total,
           "rows_marked": plan.rows_marked, "clusters": clusters, "notes": list(plan.notes), "dry_run": args.dry_run}
    lines = [f"{len(clusters)} clusters; {plan.rows_marked} of {plan.rows_total} generations would be marked"]
    if args.ray_address:
        out["ray_search"], out["ray_snapshot"] = args.ray_search, snapshot
        lines.append(f"Ray snapshots kept in {snapshot} (--snapshot-dir)" if snapshot
                     else "Ray snapshots removed (pass --snapshot-dir DIR to keep them)")
    for c in clusters:
        lines.append(f"cluster {c['cluster']} (keeps {c['kept']}):")
        lines += [f"  {'*' if m['kept'] else ' '} {m['id']:>6}  {m['similarity']:.3f}  {_line(m['text'])}"
                  for m in c["members"]]
    if not args.dry_run:
        applied = apply_dedupe(store, plan)
        out.update(batch=applied.batch, marked=applied.marked, skipped=list(applied.skipped))
        lines.append(f"marked {applied.marked} generations rejected (batch {applied.batch}; "
                     f"undo with: python -m curation undo {applied.batch})" if applied.batch else "nothing to mark")
    return _out(args, out, "\n".join(lines))


def cmd_filter(store, args) -> int:
    cls = FILTERS[args.filter_kind]
    values = {name: getattr(args, name) for name in args.config_fields}
    flt = cls.from_store(store, **values) if cls is leakage.LeakageFilter else cls(**values)
    scope = ReviewFilter(search=args.search) if args.search else None
    preview = filters.preview_filter(store, flt, scope)
    out = {"filter": flt.name, "description": preview.description, "removed": preview.removed_count,
           "total": preview.total, "notes": preview.notes, "dry_run": args.dry_run,
           "sample": [{"id": r["id"], "response": r.get("response")} for r in preview.sample]}
    text = f"{flt.name}: {preview.removed_count} of {preview.total} rows removed ({preview.description})"
    if not args.dry_run:
        batch = filters.apply_filter(store, flt, scope)
        out["batch"] = batch
        text += f"; rejected them (batch {batch}; undo with: python -m curation undo {batch})" if batch else ""
    return _out(args, out, text)


def cmd_rank(store, args) -> int:
    config = config_from_args(RankConfig, args, args.config_fields)
    if config.difficulty > 0:
        raise StudioError("the difficulty score needs the student's IFD (a child process): use the Curate tab, "
                          "or rank by --judge and --diversity here")
    rows = pending_rows(store, ReviewFilter(search=args.search) if args.search else None)
    if not rows:
        raise StudioError("no pending rows to rank")
    div = diversity_for_rows(store, rows, embedder_key(args.embedder)) if config.diversity > 0 else None
    ranking = rank_rows(rows, config, div)
    by_id = {r["id"]: r for r in rows}
    shown = [{"rank": i + 1, "id": int(g), "score": _num(ranking.score[i]),
              **{k: _num(v[i]) for k, v in ranking.components.items()}, "response": by_id[int(g)].get("response")}
             for i, g in enumerate(ranking.ids[:args.show])]
    out = {"config": vars(config), "rows": len(rows), "scored": int(np.isfinite(ranking.score).sum()),
           "top": shown, "dry_run": args.dry_run}
    text = "\n".join([f"ranked {len(rows)} pending rows; {out['scored']} have a score"] +
                     [f"{r['rank']:>4} {r['id']:>6} {r['score'] if r['score'] is not None else '-':>8} "
                      f"{_line(r['response'] or '')}" for r in shown])
    if (args.top is not None or args.top_percent is not None) and not args.dry_run:
        batch = approve_top(store, ranking, k=args.top,
                            fraction=None if args.top_percent is None else args.top_percent / 100)
        out["batch"], out["approved"] = batch, store.label_batch_count(batch)
        text += (f"\napproved {out['approved']} rows (batch {batch}; undo with: python -m curation undo {batch})"
                 if batch else "\nno scored rows to approve")
    return _out(args, out, text)


def cmd_undo(store, args) -> int:
    n = store.undo_batch(args.batch)
    return _out(args, {"batch": args.batch, "restored": n}, f"undid batch {args.batch}: {n} rows back")


def _out(args, data: dict, text: str) -> int:
    print(json.dumps(data, default=str) if args.json else text)
    return 0


def _num(value) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def _line(text: str, width: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


COMMANDS = {"embed": cmd_embed, "dedupe": cmd_dedupe, "filter": cmd_filter, "rank": cmd_rank, "undo": cmd_undo}
