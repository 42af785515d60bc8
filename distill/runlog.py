"""The run directory's files: the JSON-lines event log the child writes and the studio reads.

Standard library only, so the studio process can read progress without importing torch.

log.jsonl events, one JSON object a line, in order:
  {"event": "start", "time", "device", "student", "n_examples", "max_steps", "trainable_params"}
  {"event": "step", "time", "step", "max_steps", "loss", "learning_rate", "epoch", "tokens", "elapsed_s", "eta_s"}
  {"event": "end", "time", "status": "completed", "adapter_dir", "metrics": {train_loss, steps, tokens,
   tokens_per_s, runtime_s, device}}
or, when the child fails, {"event": "error", "time", "error"} as the last line.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

LOG_NAME = "log.jsonl"
STDOUT_NAME = "stdout.log"
CONFIG_NAME = "config.json"
SNAPSHOT_NAME = "snapshot.jsonl"
ADAPTER_DIR = "adapter"


def append_event(run_dir: Path, event: dict) -> None:
    """Append one event and flush it, so a reader polling the file sees it at once."""
    line = json.dumps({**event, "time": round(time.time(), 3)}, default=str)
    with open(Path(run_dir) / LOG_NAME, "a", encoding="utf-8") as f:
        # One write per line: a reader never sees two events interleaved, at worst a line not yet complete.
        f.write(line + "\n")
        f.flush()


def read_events(run_dir: Path) -> list[dict]:
    """All complete events; a last line still being written is left for the next poll."""
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def tail_lines(path: Path, n: int = 40) -> str:
    """The last `n` lines of a text file, with progress-bar carriage returns collapsed."""
    path = Path(path)
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        # Read only the end: a long run's stdout can be large and this is polled every second.
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 64 * 1024))
        text = f.read().decode("utf-8", errors="replace")
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]  # not splitlines: it splits on \r too
    lines = [line for line in lines if line.strip()]
    return "\n".join(lines[-n:])


def summarise(events: list[dict]) -> dict:
    """Progress for the UI/CLI from the events so far: steps, losses, tokens, ETA, end metrics, error."""
    out = {"steps": 0, "max_steps": None, "losses": [], "tokens": 0, "eta_s": None, "elapsed_s": 0.0,
           "device": None, "metrics": {}, "error": None, "ended": False}
    for ev in events:
        kind = ev.get("event")
        if kind == "start":
            out["max_steps"], out["device"] = ev.get("max_steps"), ev.get("device")
        elif kind == "step":
            out["steps"] = ev["step"]
            out["max_steps"] = ev.get("max_steps", out["max_steps"])
            out["tokens"] = ev.get("tokens", out["tokens"])
            out["eta_s"], out["elapsed_s"] = ev.get("eta_s"), ev.get("elapsed_s", 0.0)
            if ev.get("loss") is not None:
                out["losses"].append((ev["step"], ev["loss"]))
        elif kind == "end":
            out["metrics"], out["ended"], out["eta_s"] = ev.get("metrics", {}), True, 0.0
        elif kind == "error":
            out["error"] = ev.get("error")
    return out
