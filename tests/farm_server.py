"""A scripted OpenAI-compatible server in its own process, to be killed mid-job: `python -m tests.farm_server`.

It answers every chat completion with "answer to: <the last user message>" after --delay seconds (so each
stored answer can be checked against its own call) and prints its base URL on the first line of stdout.
A test kills it with SIGKILL: the kernel then resets the connections of the calls it had in flight, as a
crashed inference server's would be.
"""
from __future__ import annotations

import argparse
import sys
import threading

from tests.fault_server import FaultServer


def echo(delay: float):
    def step(body: dict) -> dict:
        users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
        return {"text": f"answer to: {users[-1] if users else ''}", "delay": delay}
    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.1)
    args = parser.parse_args()
    with FaultServer([echo(args.delay)]) as server:
        print(server.base_url, flush=True)
        threading.Event().wait()  # until killed


if __name__ == "__main__":
    sys.exit(main())
