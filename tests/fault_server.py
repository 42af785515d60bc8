"""A scripted OpenAI-compatible server on a real socket, for faults the real teacher never produces.

Each POST to /v1/chat/completions takes the next step of the script (the last step repeats):
an int status with optional headers, "hang" (never answers), "garbage" (200 with non-JSON), a dict
{"status": 200, "text": ..., "delay": seconds, "logprobs": True, "headers": {...}, "tool_calls": [{"name",
"arguments"}]} for a scripted answer (served after `delay`; with top-2 logprobs per word when asked; with
the calls as message.tool_calls, arguments a JSON text as the API sends them), or a callable taking the
request body and returning any of those. `script` may be replaced between phases of a test.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(text: str = "scripted answer", prompt_tokens: int = 7, completion_tokens: int = 3,
               logprobs: bool = False, tool_calls: list[dict] | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if tool_calls:
        choice["message"]["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {
                "name": c["name"], "arguments": c["arguments"] if isinstance(c["arguments"], str)
                else json.dumps(c["arguments"])}} for i, c in enumerate(tool_calls)]
        choice["finish_reason"] = "tool_calls"
    if logprobs:
        choice["logprobs"] = {"content": [
            {"token": word, "logprob": -0.5, "bytes": None,
             "top_logprobs": [{"token": word, "logprob": -0.5, "bytes": None},
                              {"token": "other", "logprob": -1.5, "bytes": None}]} for word in text.split()]}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": "scripted",
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def write_body(handler, status: int, body: bytes, headers: dict | None = None) -> None:
    """One HTTP response of JSON `body` bytes (scripted: they need not parse) from a BaseHTTPRequestHandler."""
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class FaultServer:
    def __init__(self, script: list):
        self.script = list(script)
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server._lock:
                    server.requests.append({"body": body, "headers": dict(self.headers)})
                    step = server.script[min(len(server.requests), len(server.script)) - 1]
                if callable(step):
                    step = step(body)
                server.respond(self, step)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def respond(self, handler, step):
        if step == "hang":
            self._stop.wait(60)
            return
        if step == "garbage":
            status, headers, body = 200, {}, b"<html>not json at all"
        elif isinstance(step, dict):
            if self._stop.wait(step.get("delay", 0)):
                return
            status, headers, text = step.get("status", 200), step.get("headers", {}), step.get("text", "scripted answer")
            payload = (completion(text, logprobs=step.get("logprobs", False), tool_calls=step.get("tool_calls"))
                       if status == 200
                       else {"error": {"message": text, "type": "invalid_request_error"}})
            body = json.dumps(payload).encode()
        else:
            status, headers = (step, {}) if isinstance(step, int) else step
            payload = completion() if status == 200 else {"error": {"message": f"scripted {status}", "type": "x"}}
            body = json.dumps(payload).encode()
        write_body(handler, status, body, headers)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
