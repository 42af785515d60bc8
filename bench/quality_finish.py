"""Finish an interrupted bench/quality.py run: evaluate both trained students of its workspace with the bench's
own settings and print its JSON line (answers, verdicts and teacher answers already stored are reused).

    python bench/quality_finish.py --workdir DIR --everything RUN --curated RUN [--log ERR_LOG]

`--log` reads the interrupted run's stderr for the figures it measured before the evals (teacher answers,
curation) so the line carries them; the line says it was finished this way.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import quality  # noqa: E402


def logged(log: Path | None, key: str):
    if log is None:
        return None
    for line in log.read_text(errors="replace").splitlines():
        if f"] {key}: " in line:
            return ast.literal_eval(line.split(f"] {key}: ", 1)[1])
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--everything", type=int, required=True)
    parser.add_argument("--curated", type=int, required=True)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)

    from curation.local_server import LocalTeacherServer
    from curation.store import Store
    from curation.teacher import TeacherConfig

    started = time.monotonic()
    workspace = args.workdir / "workspace"
    teacher = TeacherConfig()
    server = LocalTeacherServer(workspace / "logs")
    line = {"bench": "quality", "finished_by": "bench/quality_finish.py (the bench run was interrupted during its "
                                              "evals; stored answers and verdicts reused)",
            "teacher": "SmolLM2-135M-Instruct (embedded, llama-server)",
            "student": "Gemma 3 270M base (gemma-3-270m, LoRA SFT)", "judge": "the embedded teacher (135M)",
            "teacher_answers": logged(args.log, "teacher answers"), "curation": logged(args.log, "curation")}
    try:
        with Store(workspace) as store:
            url = server.ensure_started()
            runs = {}
            for name, run_id in (("everything", args.everything), ("curated", args.curated)):
                metrics = quality.evaluate(store, teacher, None, url, run_id, 256)
                run = store.run(run_id)["metrics"]
                runs[name] = {**quality.student_report(metrics), "training": {k: run.get(k) for k in (
                    "steps", "tokens", "tokens_per_s", "runtime_s", "train_loss", "peak_memory_mb")},
                    "rows": len(store.run_rows(run_id))}
                quality.say(f"{name}: {json.dumps(quality.rounded(runs[name]['change']))}")
            line["students"] = runs
            line["goals"] = quality.goals(runs["curated"], strong_judge=False)
            line["curation_pays"] = {m: quality.rounded((runs["curated"]["change"][m]["value"] or 0)
                                                        - (runs["everything"]["change"][m]["value"] or 0))
                                     for m in ("stop_rate", "rouge_l", "nll", "pass_rate")}
    finally:
        server.stop()
    line["finish_elapsed_s"] = round(time.monotonic() - started, 1)
    line["cpu_threads"] = os.cpu_count()
    print(json.dumps(quality.rounded(line)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
