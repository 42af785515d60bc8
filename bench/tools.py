"""Tool calls from the embedded 135M teacher on the bundled tools: structured calls (ours) against the OpenAI
tools API (the peer: what the same teacher gives when the tools go through the API), on the same requests.

The tools method writes --requests-per-tool requests for each of the three bundled tools (structured JSON),
then answers every request twice: `call_mode="structured"` (the tools in a teacher-only prompt, the answer held
to a JSON schema of calls) and `call_mode="api"` (`tools` + tool_choice "auto"). For each mode:

- answers_with_calls: answers holding at least one call
- valid_call_rate: calls valid against their function's JSON Schema (jsonschema, formats checked)
- right_tool_rate: answers whose first call names the tool the request was written for
- grounded_argument_rate: string argument values that appear in the request's text (case-insensitive): a
  rough share of arguments taken from the request rather than invented

Prints one JSON line:

    python bench/tools.py [--requests-per-tool 3] [--max-tokens 256] [--workspace DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.generate import run_method  # noqa: E402
from curation.local_server import LocalTeacherServer  # noqa: E402
from curation.methods import ToolsConfig  # noqa: E402
from curation.store import Store  # noqa: E402
from curation.teacher import TeacherConfig  # noqa: E402
from curation.toolsets import bundled_toolset, import_toolset  # noqa: E402


def measure(store: Store, run_id: int) -> dict:
    rows = store._fetchdicts("SELECT t.instruction, t.skill, g.tool_calls FROM generations g JOIN tasks t "
                             "ON t.id = g.task_id WHERE g.run_id = ? AND g.status = 'ok'", [run_id])
    answers = [(r["instruction"], r["skill"], json.loads(r["tool_calls"]) if r["tool_calls"] else []) for r in rows]
    calls = [c for _, _, cs in answers for c in cs]
    with_calls = [(text, skill, cs) for text, skill, cs in answers if cs]
    values = [(text, v) for text, _, cs in with_calls for c in cs if isinstance(c["arguments"], dict)
              for v in c["arguments"].values() if isinstance(v, str)]

    def rate(hits, total):
        return round(hits / total, 3) if total else None

    return {"answers": len(answers), "answers_with_calls": len(with_calls), "calls": len(calls),
            "valid_call_rate": rate(sum(c["valid"] for c in calls), len(calls)),
            "right_tool_rate": rate(sum(cs[0]["name"] == skill for _, skill, cs in with_calls), len(answers)),
            "grounded_argument_rate": rate(sum(v.lower() in text.lower() for text, v in values), len(values))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests-per-tool", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--workspace", type=Path, default=None)
    args = p.parse_args()
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="bench-tools-"))
    started = time.monotonic()
    with Store(workspace) as store:
        import_toolset(store, bundled_toolset())
        server = LocalTeacherServer(workspace / "logs")
        url = server.ensure_started()
        try:
            teacher = TeacherConfig()
            ours = run_method(store, teacher, ToolsConfig(requests_per_tool=args.requests_per_tool,
                                                          call_mode="structured", max_tokens=args.max_tokens), url)
            peer = run_method(store, teacher, ToolsConfig(requests_per_tool=0, call_mode="api",
                                                          max_tokens=args.max_tokens), url)
        finally:
            server.stop()
        structured, api = measure(store, ours["run_id"]), measure(store, peer["run_id"])
        tasks = len([t for t in store.tasks(split=None) if t["toolset_id"]])
    print(json.dumps({"teacher": teacher.model_name, "tools": "data/tools/simple.json", "requests": tasks,
                      "discarded_requests": ours["discarded"], "structured": structured, "api": api,
                      "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
