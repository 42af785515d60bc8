"""Quality benchmark: the whole loop, headless, on the embedded defaults; does the student get better?

    python bench/quality.py [--workdir DIR] [--n 1] [--epochs 1] [--judge-base-url URL --judge-model M]

Seed packs + bench/quality_tasks.py -> hold out 40 eval tasks -> the embedded teacher (SmolLM2-135M-Instruct on
llama-server) answers every train task n times -> train the default student (Gemma 3 270M base, LoRA SFT) twice:
on *everything* the teacher said, and on a *curated* subset (refusal/empty/truncated filter, semantic dedupe,
then the top-judged half) -> evaluate base vs each distilled student on the held-out tasks (the studio's own
eval: answers on the student's llama-server, NLL in a child; the curated student judged against base in both
orders, --judge-everything judges the everything student too). Prints ONE JSON line
starting {"bench": "quality"} with, per student, each measure and its 95% bootstrap interval, the change
from the base student paired by task, and a "goals" map computed from those figures. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STUDENT = "gemma-3-270m"
EVAL_TASKS = 40
TEACHER_SYSTEM = "Answer briefly and directly, in at most three sentences."
STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {text}", file=sys.stderr, flush=True)


def build_workspace(store, eval_tasks: int, seed: int) -> dict:
    from bench.quality_tasks import tasks
    from curation import importing, split

    for name in importing.seed_packs():
        importing.load_seed_pack(store, name)
    store.add_tasks(tasks())  # with their checks ('expected'), for the pass rate
    held, _ = split.hold_out(store, eval_tasks / len(store.tasks()), seed)
    return {"tasks": len(store.tasks()), "eval_tasks": len(store.tasks(split="eval"))}


def label(store, teacher, url, n: int, max_tokens: int, system: str) -> dict:
    from curation.generate import run_method
    from curation.methods import GenerateConfig

    config = GenerateConfig(n=n, max_tokens=max_tokens, temperature=0.7, system_prompt=system,
                            teacher_only_system=bool(system))
    summary = run_method(store, teacher, config, url)
    gens = store.candidate_rows(None, ("pending",))  # with finish_reason: 'stop' = the answer ended by itself
    ended = sum(1 for g in gens if g.get("finish_reason") == "stop")
    return {"answers": len(gens), "ended_naturally": ended, "ended_share": round(ended / max(len(gens), 1), 3),
            "failed": summary.get("failed", 0)}


def train(store, workspace: Path, config) -> int:
    from distill.runner import TrainingSlot

    slot = TrainingSlot(store, workspace)
    run_id = slot.start(config)
    while not slot.wait(30):
        p = slot.progress(run_id)
        say(f"  training run {run_id}: step {p['steps']}/{p['max_steps']} · {p['tokens']} tokens")
    p = slot.progress(run_id)
    if p["status"] != "completed":
        raise SystemExit(f"training run {run_id} ended {p['status']}: {p['error']}\n{p['log_tail']}")
    return run_id


def curate(store, teacher, url) -> dict:
    """Filter, dedupe, judge and approve the top half of the pending rows; what each step removed."""
    from curation.dedupe import DedupeConfig, apply_dedupe, plan_dedupe
    from curation.embed import embed_items
    from curation.filter_kinds import RefusalFilter
    from curation.filters import apply_filter
    from curation.generate import run_method
    from curation.methods import JudgeConfig
    from curation.rank import RankConfig, approve_top, pending_rows, rank_rows

    before = len(pending_rows(store))
    apply_filter(store, RefusalFilter())
    after_filter = len(pending_rows(store))
    config = DedupeConfig()
    embed_items(store, config.item_kind, config.model)
    plan = plan_dedupe(store, config)
    apply_dedupe(store, plan)
    after_dedupe = len(pending_rows(store))
    judged = run_method(store, teacher, JudgeConfig(generation_ids=[r["id"] for r in pending_rows(store)]), url)
    ranking = rank_rows(pending_rows(store), RankConfig(judge=1.0))
    keep = min(before // 2, after_dedupe)
    approve_top(store, ranking, k=keep)
    unparsable = (judged.get("discarded") or {}).get("unparsable", 0)
    return {"rows": before, "removed_by_filter": before - after_filter,
            "removed_by_dedupe": after_filter - after_dedupe, "judged": judged.get("ok", 0),
            "judge_unparsable": unparsable, "approved": keep}


def evaluate(store, teacher, judge, url, run_id: int, max_tokens: int, judged: bool = True) -> dict:
    from evaluation.config import EvalConfig
    from evaluation.evaluate import run_eval

    def progress(p):
        say(f"  eval of run {run_id}: {p.stage} {p.done}/{p.total}")

    # Only the verdicts the goals need (distilled vs base, both orders): on the embedded judge the 1-10 scores and
    # the verdicts vs the teacher would add five calls a task to four, and judging is most of an eval's time.
    config = EvalConfig(run_id=run_id, teacher=teacher, judge=judge, max_tokens=max_tokens, judge_scores=False,
                        judge_vs_base=judged, judge_vs_teacher=False)
    return run_eval(store, config, url, on_progress=_every(20, progress))


def _every(seconds: float, fn):
    last = [0.0]

    def call(p):
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            fn(p)
    return call


def rounded(value, digits: int = 4):
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def student_report(metrics: dict) -> dict:
    """What the JSON line keeps of one eval: measures with intervals, changes, win rate, judge reliability."""
    iv = metrics["intervals"]
    return {"eval_run_id": metrics["eval_run_id"], "tasks": metrics["tasks"],
            "base": iv["base"], "distilled": iv["distilled"], "teacher": iv["teacher"], "change": iv["change"],
            "win_vs_base": iv["win_vs_base"], "win_counts_vs_base": metrics["distilled_vs_base"],
            "judge": metrics["judge"]}


def goals(report: dict, strong_judge: bool) -> dict:
    """The issue's goals, each computed from the curated student's figures."""
    from evaluation import intervals

    change, judge = report["change"], report["judge"]
    out = {"stop_rate_up_40_points": (change["stop_rate"]["value"] or 0) >= 0.40,
           "nll_down_20_percent": change["nll"]["value"] is not None and change["nll"]["value"] <= -0.20,
           "rouge_l_up_interval_above_zero": intervals.above(change["rouge_l"]),
           "judge_parse_rate_98": (judge["parse_rate"] or 0) >= 0.98}
    if strong_judge:
        win = report["win_vs_base"]
        out["judge_win_rate_70_interval_above_50"] = (win["value"] or 0) >= 0.70 and intervals.above(win, 0.5)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the workspace here (default: a temporary folder)")
    parser.add_argument("--n", type=int, default=1, help="teacher answers per train task")
    parser.add_argument("--teacher-max-tokens", type=int, default=384)
    parser.add_argument("--teacher-system", default=TEACHER_SYSTEM,
                        help="teacher-only system prompt (steers the teacher, left out of the training data)")
    parser.add_argument("--eval-max-tokens", type=int, default=256)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--eval-tasks", type=int, default=EVAL_TASKS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge-base-url", default="", help="a judge endpoint stronger than the student")
    parser.add_argument("--judge-model", default="")
    parser.add_argument("--judge-everything", action="store_true",
                        help="also judge the everything student against base (the goals read only the curated one; "
                             "on the embedded judge this adds ~80 verdicts)")
    args = parser.parse_args(argv)

    from curation.local_server import LocalTeacherServer
    from curation.store import Store
    from curation.teacher import TeacherConfig
    from distill.config import TrainConfig

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    timings: dict[str, float] = {}
    workspace = Path(tmp.name if tmp else args.workdir) / "workspace"
    teacher = TeacherConfig()
    judge = TeacherConfig(base_url=args.judge_base_url, model=args.judge_model) if args.judge_base_url else None
    server = LocalTeacherServer(workspace / "logs")
    line = {"bench": "quality", "teacher": "SmolLM2-135M-Instruct (embedded, llama-server)",
            "student": "Gemma 3 270M base (gemma-3-270m, LoRA SFT)",
            "judge": args.judge_model or args.judge_base_url or "the embedded teacher (135M)",
            "cpu": platform.processor() or platform.machine(), "threads": os.cpu_count()}
    try:
        with Store(workspace) as store:
            line["workspace"] = build_workspace(store, args.eval_tasks, args.seed)
            say(f"workspace: {line['workspace']}")
            url = server.ensure_started()
            clock = time.monotonic()
            line["teacher_answers"] = label(store, teacher, url, args.n, args.teacher_max_tokens, args.teacher_system)
            say(f"teacher answers: {line['teacher_answers']}")
            timings["label"], clock = time.monotonic() - clock, time.monotonic()
            config = TrainConfig(student=STUDENT, max_steps=-1, epochs=args.epochs, batch_size=8, learning_rate=2e-4,
                                 lora_r=16, lora_alpha=32, max_length=512, eval_rows=0, seed=args.seed)
            pending = [r["id"] for r in store.candidate_rows(None, ("pending",))]
            batch = store.label_batch(pending, "approved", reason="bench:everything")
            say(f"training on everything: {len(pending)} rows")
            run_all = train(store, workspace, config)
            timings["train_everything"], clock = time.monotonic() - clock, time.monotonic()
            store.undo_batch(batch)
            line["curation"] = curate(store, teacher, url)
            say(f"curation: {line['curation']}")
            timings["curate"], clock = time.monotonic() - clock, time.monotonic()
            run_curated = train(store, workspace, config)
            timings["train_curated"], clock = time.monotonic() - clock, time.monotonic()
            runs = {}
            for name, run_id in (("everything", run_all), ("curated", run_curated)):
                judged = name == "curated" or args.judge_everything
                metrics = evaluate(store, teacher, judge, url, run_id, args.eval_max_tokens, judged)
                timings[f"eval_{name}"], clock = time.monotonic() - clock, time.monotonic()
                run = store.run(run_id)["metrics"]
                runs[name] = {**student_report(metrics), "training": {k: run.get(k) for k in (
                    "steps", "tokens", "tokens_per_s", "runtime_s", "train_loss", "peak_memory_mb")},
                    "rows": (metrics.get("training") or {}).get("rows")}
                say(f"{name}: {json.dumps(rounded(runs[name]['change']))}")
            line["students"] = runs
            line["goals"] = goals(runs["curated"], strong_judge=judge is not None)
            line["curation_pays"] = {m: rounded((runs["curated"]["change"][m]["value"] or 0)
                                                - (runs["everything"]["change"][m]["value"] or 0))
                                     for m in ("stop_rate", "rouge_l", "nll", "pass_rate")}
    finally:
        server.stop()
        if tmp:
            tmp.cleanup()
    line["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    line["elapsed_s"] = round(time.monotonic() - STARTED, 1)
    print(json.dumps(rounded(line)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
