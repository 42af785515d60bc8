"""Runs tab: every generation and training run with its config, status, timings and output folder, and
the difference between two training runs' data (rows added / removed / changed)."""
from __future__ import annotations

import pandas as pd
import gradio as gr

from evaluation.plan import TRAINING_KINDS
from ui.common import fmt_seconds, guarded

DIFF_ROWS_SHOWN = 500


def _summary(run: dict, part_of: dict[int, str] | None = None) -> str:
    m, config = run["metrics"] or {}, run["config"] or {}
    if run["kind"] == "generate":
        what = (part_of or {}).get(run["id"]) or config.get("method") or "generate"
        return f"{what}: {m.get('ok', 0)} ok / {m.get('failed', 0)} failed, {m.get('tokens', 0)} tokens" if m else what
    if run["kind"] == "eval":
        return _eval_summary(m)
    if run["kind"] == "dedupe" and m:
        return (f"marked {m.get('rows_marked', 0)} duplicate rows in {m.get('clusters', 0)} clusters "
                f"({config.get('target', '')}, {config.get('method', '')} ≥ {config.get('threshold', '')})")
    if run["kind"] in TRAINING_KINDS:
        rows = ((run["config"] or {}).get("provenance") or {}).get("snapshot", {}).get("rows")
        data = f"{rows} rows, " if rows is not None else ""
        if m.get("train_loss") is not None:
            held_out = f", eval loss {m['eval_loss']:.4f}" if m.get("eval_loss") is not None else ""
            return f"{data}loss {m['train_loss']:.4f}{held_out}, {m.get('steps')} steps"
        if run["status"] == "stopped" and m.get("checkpoint"):
            return f"{data}stopped at step {m.get('steps')}, resumable"
        return f"{data}{m.get('steps', 0)} steps" if m else data.rstrip(", ")
    return ""


def _eval_summary(m: dict) -> str:
    """An eval's headline in one line: the distilled student's changes from base, and its win rate."""
    if not m or "intervals" not in m:
        return f"stopped at {m['stopped_at']}" if m.get("stopped_at") else ""
    change = m["intervals"].get("change") or {}
    parts = [f"{m.get('tasks', '?')} tasks"]
    for key, name, percent in (("stop_rate", "ends by itself", True), ("rouge_l", "ROUGE-L", False),
                               ("nll", "NLL", True), ("pass_rate", "pass", True)):
        value = (change.get(key) or {}).get("value")
        if value is not None:
            parts.append(f"{name} {value * 100:+.1f}{' pts' if key != 'nll' else '%'}" if percent
                         else f"{name} {value:+.3f}")
    win = (m.get("distilled_vs_base") or {}).get("win_rate")
    if win is not None:
        parts.append(f"wins vs base {win:.0%}")
    return " · ".join(parts)


def _parts_of_evals(runs: list[dict]) -> dict[int, str]:
    """Generate runs an eval started itself: its teacher's answers and its judge's verdicts."""
    out = {}
    for r in runs:
        m = r["metrics"] or {}
        if r["kind"] == "eval":
            for key, what in (("teacher_run_id", "teacher answers"), ("judge_run_id", "judge verdicts")):
                if m.get(key) is not None:
                    out[int(m[key])] = f"{what} for eval {r['id']}"
    return out


def runs_frame(store) -> pd.DataFrame:
    rows, runs = [], store.runs()
    part_of = _parts_of_evals(runs)
    for r in runs:
        duration = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
        rows.append({"id": r["id"], "kind": r["kind"], "status": r["status"], "started": str(r["started_at"])[:19],
                     "duration": fmt_seconds(duration) if duration is not None else "",
                     "summary": _summary(r, part_of),
                     "output": r["run_dir"] or ""})
    return pd.DataFrame(rows, columns=["id", "kind", "status", "started", "duration", "summary", "output"])


def diff_runs(store, run_a, run_b) -> tuple[str, pd.DataFrame]:
    """(summary line, one row per differing row id) of the data from run_a to run_b."""
    runs = []
    for rid in (run_a, run_b):
        run = store.run(int(rid)) if rid is not None else None
        if run is None or run["kind"] not in TRAINING_KINDS:
            raise gr.Error(f"no training run with id {rid}")
        runs.append(run)
    diff = store.diff_run_rows(runs[0]["id"], runs[1]["id"])
    changes = [(rid, kind) for kind in ("added", "removed", "changed") for rid in diff[kind]]
    frame = pd.DataFrame(changes[:DIFF_ROWS_SHOWN], columns=["row", "change"])
    summary = (f"run {runs[0]['id']} ({runs[0]['kind']}) → run {runs[1]['id']} ({runs[1]['kind']}): "
               f"**{len(diff['added'])} added, {len(diff['removed'])} removed, {len(diff['changed'])} changed** "
               f"(edited), {diff['same']} the same")
    if len(changes) > DIFF_ROWS_SHOWN:
        summary += f"; the first {DIFF_ROWS_SHOWN} differences are listed"
    return summary, frame


SERVER_COLUMNS = ["role", "model", "state", "port", "pid", "adapters", "slots", "busy_slots", "tokens", "tokens_per_s",
                  "restarts", "deaths"]


def servers_frame(studio) -> pd.DataFrame:
    """The inference servers (llama.cpp's llama-server): what each serves, where, and how hard it works."""
    return pd.DataFrame(studio.server_rows(), columns=SERVER_COLUMNS)


def build(studio):
    with gr.Accordion("Inference servers", open=True):
        gr.Markdown("Every model runs on its own llama.cpp server on 127.0.0.1, started on first use and stopped "
                    "when the studio stops. *tokens_per_s* is the server's generation rate; *busy_slots* the "
                    "requests it is decoding together.")
        servers = gr.Dataframe(value=lambda: servers_frame(studio), interactive=False, elem_id="servers-table")
        gr.Timer(5.0).tick(lambda: servers_frame(studio), None, [servers], show_progress="hidden",
                           api_name="list_servers")
    refresh = gr.Button("Refresh", size="sm", elem_id="runs-refresh")
    table = gr.Dataframe(value=lambda: runs_frame(studio.store), interactive=False, elem_id="runs-table")
    detail = gr.JSON(label="Run config (with provenance), metrics and error")
    with gr.Accordion("Compare two training runs' data", open=False):
        with gr.Row():
            run_a = gr.Number(label="Run A", precision=0, elem_id="runs-diff-a")
            run_b = gr.Number(label="Run B", precision=0, elem_id="runs-diff-b")
            diff_btn = gr.Button("Diff snapshots", elem_id="runs-diff")
        diff_note = gr.Markdown(elem_id="runs-diff-note")
        diff_table = gr.Dataframe(interactive=False, elem_id="runs-diff-table")

    def on_select(frame, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        run = studio.store.run(int(frame.iloc[row]["id"]))
        return {k: (str(v) if k in ("started_at", "finished_at") else v) for k, v in run.items()}

    refresh.click(lambda: runs_frame(studio.store), None, [table], api_name="list_runs")
    table.select(on_select, [table], [detail], api_visibility="private")
    diff_btn.click(guarded(lambda a, b: diff_runs(studio.store, a, b)), [run_a, run_b], [diff_note, diff_table],
                   api_name="diff_runs")
    return table
