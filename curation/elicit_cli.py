"""The elicitation commands of `python -m curation`: generate (any method, live or --batch), judge, ledger,
retry-failed, prices, batch-status, batch-collect, batch-cancel.

Thin: argparse options map one to one onto the method's config fields; the configs check the values.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from curation.batch import BatchLimits, advance, cancel, collect, open_batches, submit_batch, wait_and_collect
from curation.errors import ConfigError, StudioError
from curation.farm_config import load_farm
from curation.generate import Budget, Progress, preview, retry_failed, run_method
from curation.importing import parse_ids
from curation.jobs import run_on_teacher
from curation.local_server import LocalTeacherServer
from curation.methods import METHODS, get_method
from curation.teacher import DEFAULT_CONCURRENCY, TeacherConfig


def _ints(text: str) -> list[int]:
    try:
        return parse_ids(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


# (flags, argparse kwargs, the methods it applies to); dest = the config field it sets.
_METHOD_OPTIONS = [
    (("--task-ids",), dict(type=_ints, help="comma-separated task ids (default: all train tasks / the method's pool)"),
     "label logprobs self self-instruct evol judge compare chat"),
    (("--temperature",), dict(type=float, help="sampling temperature (method default)"), "*"),
    (("--max-tokens",), dict(type=int, help="max tokens per answer (method default)"), "*"),
    (("--n",), dict(type=int, help="samples (chat: conversations) per task (default 1)"), "label logprobs self chat"),
    (("--system-prompt",), dict(help="system prompt sent before each task"), "label logprobs self chat"),
    (("--teacher-only-system",), dict(action="store_true", default=None,
                                      help="use the system prompt for the teacher only, not in training data"),
     "label logprobs self"),
    (("--explain",), dict(action="store_true", default=None,
                          help="Orca-style: ask for step-by-step explanations"), "label logprobs self"),
    (("--with-eval",), dict(action="store_true", default=None,
                            help="without --task-ids: answer the eval-split tasks too (references for the eval "
                                 "loss; never trained on)"), "label logprobs"),
    (("--top-logprobs",), dict(type=int, help="alternatives kept per token (default 5)"), "logprobs"),
    (("--num-prompts",), dict(type=int, help="teacher calls to make (default 4)"), "self-instruct"),
    (("--k",), dict(type=int, help="demonstrations per call (default 3)"), "self-instruct"),
    (("--new-per-prompt",), dict(type=int, help="new tasks asked for per call (default 4)"), "self-instruct"),
    (("--similarity",), dict(choices=["rouge", "embedding"], help="novelty measure (default rouge)"),
     "self-instruct topics"),
    (("--threshold",), dict(type=float, help="discard new tasks at least this similar to an existing one "
                                            "(default 0.7 rouge, 0.9 embedding)"), "self-instruct topics"),
    (("--seed",), dict(type=int, help="seed of the demonstration / operation draws (default 0)"), "self-instruct evol"),
    (("--rounds",), dict(type=int, help="evolution rounds (default 1)"), "evol"),
    (("--operations",), dict(type=_words, help="comma-separated: add_constraints, deepen, concretize, "
                                              "increase_reasoning, breadth (default all)"), "evol"),
    (("--topics",), dict(type=_words, help="comma-separated topics (required for topics)"), "topics"),
    (("--skills",), dict(type=_words, help="comma-separated skills (default: the survey's seven)"), "topics"),
    (("--domains",), dict(type=_words, help="comma-separated domains (default: law, medicine, finance, science)"),
     "topics"),
    (("--per-call",), dict(type=int, help="tasks asked for per topic x skill x domain (default 5)"), "topics"),
    (("--generation-ids",), dict(type=_ints, help="comma-separated generation ids to judge or critique "
                                                  "(default: all)"), "judge constitution"),
    (("--principles",), dict(help="constitution: the principles, one a line (default: helpful, honest, harmless, "
                                  "concise)"), "constitution"),
    (("--rubric",), dict(help="the judge's rubric (default: templates/judge_rubric.j2)"), "judge compare self"),
    (("--pairs-per-task",), dict(type=int, help="pairs of responses compared per task (default 1)"), "compare"),
    (("--no-structured",), dict(action="store_false", dest="structured", default=None,
                                help="free text instead of JSON valid against a schema (verdicts, questions, "
                                     "tool requests): for an endpoint without response_format json_schema"),
     "judge compare documents tools"),
    (("--student",), dict(help="student model: folder, .gguf, cached hub id (default: bundled SmolLM2)"), "self"),
    (("--adapter",), dict(help="PEFT adapter folder applied to the student"), "self"),
    (("--keep-threshold",), dict(type=float, help="reject student answers the judge scores below this (default 7)"),
     "self"),
    (("--approve-kept",), dict(action="store_true", default=None, help="approve answers at or above the threshold"),
     "self"),
    (("--turns",), dict(type=int, help="assistant turns per conversation, 2-8 (default 3)"), "chat"),
    (("--persona",), dict(help="who the simulated user is, e.g. 'a student who asks for examples' (default: anyone)"),
     "chat"),
    (("--user-max-tokens",), dict(type=int, help="max tokens of each simulated user turn (default 96)"), "chat"),
    (("--chunk-ids",), dict(type=_ints, help="comma-separated chunk ids (default: every imported chunk)"), "documents"),
    (("--questions-per-chunk",), dict(type=int, help="questions asked about each chunk, 1-10 (default 3)"),
     "documents"),
    (("--mode",), dict(choices=["rag", "closed_book"], help="rag: the student answers from the chunk in its prompt; "
                                                           "closed_book: without it (default rag)"), "documents"),
    (("--no-faithfulness",), dict(action="store_false", dest="faithfulness", default=None,
                                  help="do not judge the answers' faithfulness to their chunk"), "documents"),
    (("--toolset",), dict(help="the tool set's id or name (default: the newest imported)"), "tools"),
    (("--requests-per-tool",), dict(type=int, help="user requests the teacher writes per tool, 0-10 (default 3; 0: "
                                                   "answer the tool set's stored tasks only)"), "tools"),
    (("--call-mode",), dict(choices=["auto", "api", "structured"],
                            help="api: the OpenAI tools API; structured: the tools in the prompt and calls held to "
                                 "their schemas (for endpoints whose template takes no tools); auto (default): "
                                 "structured on the embedded teacher, api elsewhere"), "tools"),
    (("--max-calls",), dict(type=int, help="calls a structured answer may hold, 1-5 (default 1)"), "tools"),
    (("--judge-max-tokens",), dict(type=int, help="max tokens of the judge's verdict (default 256)"), "self"),
]


def add_teacher_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", default="", help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL, "
                   "else the embedded llama.cpp teacher); the key comes from $OPENAI_API_KEY")
    p.add_argument("--model", default="", help="model name at --base-url (with --teacher-farm: the farm's model)")
    p.add_argument("--teacher-farm", metavar="FARM.json", help="several OpenAI-compatible endpoints behind one "
                   "teacher, from a JSON or YAML file (name, model, endpoints: base_url, concurrency, rpm, tpm, "
                   "api_key_env); instead of --base-url")
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                   help=f"calls in flight at once (default {DEFAULT_CONCURRENCY})")
    p.add_argument("--timeout", type=float, default=60.0, help="per-call timeout in seconds (default 60)")
    p.add_argument("--max-retries", type=int, default=3, help="retries of 408/409/429/5xx/connection errors (default 3)")
    p.add_argument("--budget-tokens", type=int, help="stop cleanly once the job used this many tokens")
    p.add_argument("--budget-usd", type=float, help="stop cleanly once the job cost this much (needs a price)")


def add_commands(sub) -> None:
    """Add generate, judge, ledger, retry-failed and prices to the CLI's subparsers."""
    methods = ", ".join(f"{name} ({m.description})" for name, m in METHODS.items())
    for name, fixed in (("generate", None), ("judge", "judge")):
        p = sub.add_parser(name, help="elicit knowledge from the teacher: " + ", ".join(METHODS) if not fixed
                           else "score responses 1-10 with the teacher as judge (generate --method judge)",
                           description=None if fixed else "Methods: " + methods)
        if fixed:
            p.set_defaults(method=fixed)
        else:
            p.add_argument("--method", choices=list(METHODS), default="label", help="elicitation method (default label)")
        p.add_argument("--preview", type=int, nargs="?", const=3, default=None, metavar="N",
                       help="print the exact messages of the first N calls (default 3) and send nothing")
        p.add_argument("--batch", action="store_true", help="submit the next stage's calls as one OpenAI Batch API "
                       "batch (half price, answered within 24 h) and return; batch-collect stores the results")
        p.add_argument("--batch-max-requests", type=int, default=BatchLimits.max_requests, metavar="N",
                       help="with --batch: requests per batch; more are split into several batches (default "
                       f"{BatchLimits.max_requests:,}, OpenAI's limit)")
        p.add_argument("--batch-max-bytes", type=int, default=BatchLimits.max_bytes, metavar="N",
                       help=f"with --batch: input file bytes per batch (default {BatchLimits.max_bytes:,}, OpenAI's "
                       "200 MB)")
        add_teacher_options(p)
        for flags, kwargs, applies in _METHOD_OPTIONS:
            if fixed and applies != "*" and fixed not in applies.split():
                continue
            p.add_argument(*flags, **kwargs, **({} if "default" in kwargs else {"default": None}))

    p = sub.add_parser("ledger", help="every planned teacher call with its state, attempts, error and cost")
    p.add_argument("--run", type=int, help="only calls of this run")
    p.add_argument("--state", choices=["pending", "ok", "failed", "retried", "batched"],
                   help="only calls in this state")
    p.add_argument("--method", choices=list(METHODS), help="only calls of this method")
    p.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    p.add_argument("--json", action="store_true", help="one JSON object: summary and rows")

    p = sub.add_parser("retry-failed", help="send failed calls again (the keys given, or all of this teacher's)")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key", action="append", dest="keys", help="request key of a failed call (repeatable)")
    keys.add_argument("--all", action="store_true", help="every failed call made to this teacher")
    add_teacher_options(p)

    _add_batch_commands(sub)

    p = sub.add_parser("prices", help="the per-model price table (USD per million tokens) used for cost and budgets")
    p.add_argument("--set", nargs=3, metavar=("MODEL", "INPUT_USD_PER_MTOK", "OUTPUT_USD_PER_MTOK"))
    p.add_argument("--delete", metavar="MODEL")


def _add_batch_commands(sub) -> None:
    """batch-status, batch-collect and batch-cancel (generate --batch submits)."""
    for name, text in (("batch-status", "poll this teacher's Batch API batches (resuming any submission a restart "
                                        "cut short)"),
                       ("batch-collect", "store the results of this teacher's ended batches (--wait: poll until)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--id", type=int, help="only this batch (default: every open batch of this teacher)")
        add_teacher_options(p)
        if name == "batch-collect":
            p.add_argument("--wait", action="store_true", help="poll until the provider ends each batch, then collect")
            p.add_argument("--poll-s", type=float, default=30.0, help="seconds between polls with --wait (default 30)")
            p.add_argument("--timeout-s", type=float, help="give up waiting after this long (default: never)")

    p = sub.add_parser("batch-cancel", help="cancel an open batch: what it answered is stored, the rest of its calls "
                       "go back to pending (--wait: poll until the provider has cancelled it, then collect)")
    p.add_argument("id", type=int, help="the batch id (batch-status lists them)")
    p.add_argument("--wait", action="store_true", help="poll until the provider has cancelled it, then collect")
    p.add_argument("--poll-s", type=float, default=30.0, help="seconds between polls with --wait (default 30)")
    p.add_argument("--timeout-s", type=float, help="give up waiting after this long (default: never)")
    add_teacher_options(p)


def _teacher(args) -> TeacherConfig:
    farm = load_farm(args.teacher_farm) if getattr(args, "teacher_farm", None) else None
    return TeacherConfig.from_env(base_url=args.base_url, model=args.model, concurrency=args.concurrency,
                                  timeout_s=args.timeout, max_retries=args.max_retries, farm=farm)


def _budget(args) -> Budget | None:
    if args.budget_tokens is None and args.budget_usd is None:
        return None
    return Budget(max_tokens=args.budget_tokens, max_usd=args.budget_usd)


def build_config(method_name: str, args):
    """The method's config from the options given; an option the method does not take is an error."""
    method = get_method(method_name)
    fields = {f.name for f in dataclasses.fields(method.config_cls)}
    values = {}
    for flags, kwargs, _ in _METHOD_OPTIONS:
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest not in fields:
            raise StudioError(f"{flags[0]} does not apply to method {method_name}")
        values[dest] = value
    return method.config_cls(**values)


def _with_teacher(store, teacher: TeacherConfig, work):
    """work(base_url, watch) against the teacher; the embedded server is restarted once if it dies."""
    server = None
    if teacher.embedded:
        server = LocalTeacherServer(store.workspace / "logs")
        print("starting the embedded teacher (llama.cpp's llama-server, SmolLM2-135M-Instruct)...", file=sys.stderr)
    try:
        return run_on_teacher(server, teacher, work, on_restart=lambda died: print(
            f"{died}\nrestarting the teacher server once and resuming...", file=sys.stderr))
    finally:
        if server:
            server.stop()


def cmd_generate(store, args) -> int:
    teacher, config, budget = _teacher(args), build_config(args.method, args), _budget(args)
    if args.preview is not None:
        for call in preview(store, teacher, config, limit=max(1, args.preview)):
            print(json.dumps(call, ensure_ascii=False))
        return 0
    if args.batch:
        if budget is not None:
            raise StudioError("a budget stops a live job between calls; a batch is priced before it is submitted: "
                              "leave --budget-* out of --batch")
        limits = BatchLimits(args.batch_max_requests, args.batch_max_bytes)
        for row in submit_batch(store, teacher, config, limits=limits):
            print(json.dumps(_batch_row(row)))
        return 0
    store.mark_interrupted_runs()  # we own the workspace: a run still 'running' belonged to a dead process
    summary = _with_teacher(store, teacher, lambda url, watch: run_method(
        store, teacher, config, url, on_progress=print_progress, budget=budget, watch=watch))
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


def cmd_retry_failed(store, args) -> int:
    teacher = _teacher(args)
    store.mark_interrupted_runs()
    summary = _with_teacher(store, teacher, lambda url, watch: retry_failed(
        store, teacher, url, None if args.all else args.keys, on_progress=print_progress, budget=_budget(args),
        watch=watch))
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


def _batch_ids(store, args, teacher) -> list[int]:
    ids = [args.id] if args.id is not None else open_batches(store, teacher)
    if not ids:
        print(f"no open batches for {teacher.endpoint_id}", file=sys.stderr)
    return ids


def _batch_row(row: dict) -> dict:
    keys = ("id", "state", "remote_id", "request_count", "remote_status", "request_counts", "error")
    return {k: row[k] for k in keys if k in row}


def cmd_batch_status(store, args) -> int:
    teacher = _teacher(args)
    for batch_id in _batch_ids(store, args, teacher):
        print(json.dumps(_batch_row(advance(store, teacher, batch_id))))
    return 0


def cmd_batch_collect(store, args) -> int:
    teacher, code = _teacher(args), 0
    for batch_id in _batch_ids(store, args, teacher):
        summary = (wait_and_collect(store, teacher, batch_id, args.poll_s, args.timeout_s) if args.wait
                   else collect(store, teacher, batch_id))
        print(json.dumps(summary))
        code = max(code, 0 if summary["collected"] and not summary.get("failed") else 1)
    return code


def cmd_batch_cancel(store, args) -> int:
    teacher = _teacher(args)
    summary = cancel(store, teacher, args.id)
    if args.wait and not summary["collected"]:
        summary = wait_and_collect(store, teacher, args.id, args.poll_s, args.timeout_s)
    print(json.dumps(summary))
    return 0 if summary["collected"] else 1


def cmd_ledger(store, args) -> int:
    frame, total = store.ledger_page(run_id=args.run, state=args.state or "", method=args.method or "",
                                     page_size=max(1, min(args.limit, 500)))
    summary = store.ledger_summary(args.run)
    if args.json:
        rows = json.loads(frame.to_json(orient="records", date_format="iso"))
        print(json.dumps({"total": total, **summary, "rows": rows}))
        return 0
    print(f"{total} calls · " + ", ".join(f"{n} {s}" for s, n in summary["by_state"].items())
          + f" · {summary['prompt_tokens']} prompt + {summary['completion_tokens']} completion tokens"
          + (f" · ${summary['cost_usd']:.4f}" if summary["cost_usd"] is not None else ""))
    if len(frame):
        print(frame[["request_key", "run_id", "method", "state", "attempts", "completion_tokens", "error"]]
              .assign(request_key=frame["request_key"].str[:12]).to_string(index=False))
    return 0


def cmd_prices(store, args) -> int:
    if args.set:
        model, inp, out = args.set
        try:
            store.set_price(model, float(inp), float(out))
        except ValueError:
            raise StudioError(f"prices must be numbers (got {inp!r}, {out!r})") from None
    if args.delete and not store.delete_price(args.delete):
        raise StudioError(f"no price for model {args.delete!r}")
    print(store.prices().drop(columns=["updated_at"]).to_string(index=False))
    return 0


def print_progress(p: Progress):
    eta = f"{p.eta_s:.0f}s" if p.eta_s is not None else "?"
    cost = f", ${p.cost_usd:.4f}" if p.cost_usd else ""
    members = " · " + ", ".join(f"{name} {c['ok']} ok{' (' + c['state'] + ')' if c['state'] != 'up' else ''}"
                                for name, c in p.endpoints.items()) if p.endpoints else ""
    print(f"\r{p.stage} {p.done}/{p.total} calls, {p.failed} failed, {p.tokens} tokens{cost}, eta {eta}{members}   ",
          end="" if p.done < p.total else "\n", file=sys.stderr, flush=True)


COMMANDS = {"generate": cmd_generate, "judge": cmd_generate, "ledger": cmd_ledger,
            "retry-failed": cmd_retry_failed, "prices": cmd_prices, "batch-status": cmd_batch_status,
            "batch-collect": cmd_batch_collect, "batch-cancel": cmd_batch_cancel}
