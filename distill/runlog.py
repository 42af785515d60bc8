"""The run directory's files: the JSON-lines event log the child writes and the studio reads.

Standard library only, so the studio process can read progress without importing torch.

log.jsonl events, one JSON object a line, in order:
  {"event": "data", "time", "examples"[, "positions", "covered", "teacher_tokens", "mapped_tokens"]}   kd methods
  {"event": "memory", "time", "estimate_mb", "available_mb", "device", "parts_mb", "micro_batch_tokens", "fits"}
   before any weight loads
  {"event": "start", "time", "method", "device", "student", "n_examples", "max_steps", "trainable_params",
   "world_size"[, "resumed_from", "tokens"]}
  {"event": "step", "time", "step", "max_steps", "loss", "learning_rate", "epoch", "tokens", "elapsed_s", "eta_s"
   [, "metrics": {method-specific numbers, e.g. rewards/margins}]}
  {"event": "checkpoint", "time", "step", "path", "tokens"}   after each complete checkpoint
  {"event": "end", "time", "status": "completed", "adapter_dir", "metrics": {train_loss, steps, tokens,
   tokens_per_s, runtime_s, device, peak_memory_mb, train_memory_mb, ...}}
or {"event": "stopped", "time", "step", "checkpoint", "metrics"} after a Stop (resumable from "checkpoint"),
or, when the child fails, {"event": "error", "time", "error"} as the last line.
A resumed run appends to the same file: its "start" event carries "resumed_from" (the checkpoint's step),
and the steps logged after that checkpoint by the stopped session are superseded.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

LOG_NAME = "log.jsonl"
STDOUT_NAME = "stdout.log"
CONFIG_NAME = "config.json"
SNAPSHOT_NAME = "snapshot.jsonl"
HELDOUT_NAME = "heldout.jsonl"  # eval-split answers whose loss is measured while training
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
CHECKPOINT_PREFIX = "checkpoint-"


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
    out = {"steps": 0, "max_steps": None, "losses": [], "eval_losses": [], "tokens": 0, "eta_s": None, "elapsed_s": 0.0,
           "device": None, "metrics": {}, "error": None, "ended": False, "stopped": False, "checkpoint": None,
           "memory": None, "method": None, "notes": []}
    for ev in events:
        kind = ev.get("event")
        if kind == "start":
            out["max_steps"], out["device"], out["method"] = ev.get("max_steps"), ev.get("device"), ev.get("method")
            out["stopped"], out["error"] = False, None
            if ev.get("resumed_from") is not None:
                resumed = ev["resumed_from"]
                out["losses"] = [(s, loss) for s, loss in out["losses"] if s <= resumed]
                out["eval_losses"] = [(s, loss) for s, loss in out["eval_losses"] if s <= resumed]
                out["steps"], out["tokens"] = resumed, ev.get("tokens", out["tokens"])
        elif kind == "memory":
            out["memory"] = ev
        elif kind == "note":
            out["notes"].append(ev["note"])
        elif kind == "checkpoint":
            out["checkpoint"] = ev.get("path")
        elif kind == "stopped":
            out["stopped"], out["checkpoint"] = True, ev.get("checkpoint") or out["checkpoint"]
            out["metrics"] = ev.get("metrics", {})
        elif kind == "step":
            out["steps"] = ev["step"]
            out["max_steps"] = ev.get("max_steps", out["max_steps"])
            out["tokens"] = ev.get("tokens", out["tokens"])
            out["eta_s"], out["elapsed_s"] = ev.get("eta_s"), ev.get("elapsed_s", 0.0)
            if ev.get("loss") is not None:
                out["losses"].append((ev["step"], ev["loss"]))
        elif kind == "eval" and ev.get("eval_loss") is not None:
            out["eval_losses"].append((ev["step"], ev["eval_loss"]))
        elif kind == "end":
            out["metrics"], out["ended"], out["eta_s"] = ev.get("metrics", {}), True, 0.0
        elif kind == "error":
            out["error"] = ev.get("error")
    return out


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """The highest-step checkpoint folder that was written to the end, or None.

    Trainer writes trainer_state.json last, so a folder whose state file parses and names its own step,
    next to saved weights, is complete; a folder cut short by a kill is skipped, never resumed from.
    """
    best = None
    for folder in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        step_text = folder.name[len(CHECKPOINT_PREFIX):]
        if not step_text.isdigit() or not any(folder.glob("*.safetensors")):
            continue
        try:
            state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if state.get("global_step") == int(step_text) and (best is None or int(step_text) > best[0]):
            best = (int(step_text), folder)
    return best[1] if best else None


def tokens_at_step(events: list[dict], step: int) -> int:
    """Real tokens trained up to `step` as logged (the count a resumed run continues from)."""
    tokens = 0
    for ev in events:
        if ev.get("event") == "start" and ev.get("resumed_from") is not None and ev["resumed_from"] <= step:
            tokens = ev.get("tokens", tokens)
        elif ev.get("event") in ("step", "checkpoint") and ev.get("step", 0) <= step:
            tokens = ev.get("tokens", tokens)
    return tokens
