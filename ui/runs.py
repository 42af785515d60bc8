"""Runs tab: every generation and training run with its config, status, timings and output folder."""
from __future__ import annotations

import pandas as pd
import gradio as gr

from ui.common import fmt_seconds


def runs_frame(store) -> pd.DataFrame:
    rows = []
    for r in store.runs():
        duration = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
        m = r["metrics"]
        summary = (f"{m.get('ok', 0)} ok / {m.get('failed', 0)} failed, {m.get('tokens', 0)} tokens"
                   if r["kind"] == "generate" and m else
                   f"loss {m['train_loss']:.4f}, {m.get('steps')} steps" if m.get("train_loss") is not None else "")
        rows.append({"id": r["id"], "kind": r["kind"], "status": r["status"], "started": str(r["started_at"])[:19],
                     "duration": fmt_seconds(duration) if duration is not None else "", "summary": summary,
                     "output": r["run_dir"] or ""})
    return pd.DataFrame(rows, columns=["id", "kind", "status", "started", "duration", "summary", "output"])


def build(studio):
    refresh = gr.Button("Refresh", size="sm", elem_id="runs-refresh")
    table = gr.Dataframe(value=lambda: runs_frame(studio.store), interactive=False, elem_id="runs-table")
    detail = gr.JSON(label="Run config, metrics and error")

    def on_select(frame, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        run = studio.store.run(int(frame.iloc[row]["id"]))
        return {k: (str(v) if k in ("started_at", "finished_at") else v) for k, v in run.items()}

    refresh.click(lambda: runs_frame(studio.store), None, [table], api_name="list_runs")
    table.select(on_select, [table], [detail], api_visibility="private")
    return table
