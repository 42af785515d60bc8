"""An eval's report: one detail row per task (run_dir/eval.jsonl, written whole or not at all), read back
for the Evaluate tab, and completed evals compared side by side."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from curation.errors import StudioError
from curation.store import Store
from evaluation import metrics as em

DETAILS_NAME = "eval.jsonl"


def detail_row(task, answers, scores, verdicts, nll) -> dict:
    """One task's line of the report (see evaluation.metrics for its fields): the three answers, their
    scores, checks and NLLs, and the judge's pairwise outcomes."""
    gens = {n: answers[n].get(task["id"]) for n in em.SYSTEMS}
    text = {n: (g["response"] if g and g["status"] == "ok" else None) for n, g in gens.items()}
    row = {"task_id": task["id"], "instruction": task["instruction"], "input": task.get("input"),
           "skill": task.get("skill"), "domain": task.get("domain"), "expected": task.get("expected"),
           "answers": text,
           "errors": {n: gens[n]["error"] for n in em.SYSTEMS if gens[n] and gens[n]["status"] != "ok"},
           "generation_ids": {n: (gens[n] or {}).get("id") for n in em.SYSTEMS},
           # only the systems the judge was asked to score (none when judge_scores is off)
           "scores": {n: scores[(task["id"], n)][0] for n in em.SYSTEMS if (task["id"], n) in scores},
           "rationales": {n: scores[(task["id"], n)][1] for n in em.SYSTEMS if (task["id"], n) in scores},
           "rouge_l": {n: (em.rouge_l_text(text[n], text["teacher"]) if text[n] is not None
                           and text["teacher"] is not None else None) for n in em.STUDENTS},
           "nll": {n: nll[n].get(task["id"]) for n in em.STUDENTS},
           "pass": {n: (em.check_expectation(task.get("expected"), text[n]) if text[n] is not None else None)
                    for n in em.SYSTEMS},
           # ended its turn by itself (not cut at max tokens): what a base model that rambles never does
           "stopped": {n: (gens[n].get("finish_reason") == "stop" if text[n] is not None else None)
                       for n in em.SYSTEMS}}
    for other in ("base", "teacher"):
        v = verdicts.get((task["id"], other), {"verdicts": [], "identical": False, "failed": 0})
        row[f"vs_{other}"] = {**v, "outcome": em.pairwise_outcome(v["verdicts"])}
    row["lost"], row["deficit"] = em.is_lost(row), round(em.deficit(row), 4)
    return row


def new_eval_dir(runs_root: Path) -> Path:
    runs_root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        candidate = runs_root / (f"{stamp}-eval" if n == 1 else f"{stamp}-{n}-eval")
        try:
            candidate.mkdir()  # without exist_ok: two evals started in one second get -2, -3
            return candidate
        except FileExistsError:
            continue
    raise StudioError(f"could not create a new run folder under {runs_root}")


def write_details(run_dir: Path, details: list[dict]) -> Path:
    """run_dir/eval.jsonl, written to a temp file and renamed, so a reader never sees half of it."""
    path = Path(run_dir) / DETAILS_NAME
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in details:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)
    return path


def read_details(store: Store, eval_run_id: int) -> list[dict]:
    """The per-task detail rows of a completed eval run."""
    run = store.run(int(eval_run_id))
    if run is None or run["kind"] != "eval":
        raise StudioError(f"no eval run with id {eval_run_id}")
    path = Path(run["run_dir"] or "") / DETAILS_NAME
    if run["status"] != "completed" or not path.is_file():
        raise StudioError(f"eval run {eval_run_id} is {run['status']} and has no report; run the eval to the end")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def compare_runs(store: Store, eval_run_ids: list[int]) -> list[dict]:
    """One row per completed eval run, for comparing students trained differently on the same eval split.

    `same_tasks` says whether a run evaluated the same tasks as the first one (else its numbers are
    not comparable).
    """
    rows, first_tasks = [], None
    for rid in eval_run_ids:
        run = store.run(int(rid))
        if run is None or run["kind"] != "eval" or run["status"] != "completed":
            raise StudioError(f"eval run {rid} is not a completed eval run")
        m, task_ids = run["metrics"], run["config"].get("task_ids") or []
        first_tasks = task_ids if first_tasks is None else first_tasks
        training = m.get("training") or {}
        rows.append({"eval_run": run["id"], "training_run": training.get("run_id"), "tasks": m.get("tasks"),
                     "same_tasks": sorted(task_ids) == sorted(first_tasks), "training_rows": training.get("rows"),
                     "training_tokens": training.get("tokens"),
                     "score_base": m["base"]["judge_score"], "score_distilled": m["distilled"]["judge_score"],
                     "score_teacher": m["teacher"]["judge_score"],
                     "win_vs_base": m["distilled_vs_base"]["win_rate"],
                     "win_vs_teacher": m["distilled_vs_teacher"]["win_rate"],
                     "rouge_l_base": m["base"]["rouge_l"], "rouge_l_distilled": m["distilled"]["rouge_l"],
                     "nll_base": m["base"]["nll"], "nll_distilled": m["distilled"]["nll"],
                     "pass_distilled": m["distilled"]["pass_rate"],
                     "stop_base": m["base"].get("stop_rate"), "stop_distilled": m["distilled"].get("stop_rate")})
    return rows


__all__ = ["DETAILS_NAME", "detail_row", "new_eval_dir", "write_details", "read_details", "compare_runs"]
