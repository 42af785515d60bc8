"""A scripted OpenAI Batch API on a real socket: /v1/files, /v1/batches, /v1/batches/{id}, /v1/batches/{id}/cancel,
/v1/files/{id}/content.

A batch is 'validating' when created and moves one step each time it is retrieved (in_progress, finalizing,
then `end`: completed by default, or expired / cancelled / failed). When it ends, each input line is answered by
`answer(custom_id, body)`: a text (a 200 chat completion in the output file), an int status (an HTTP error
line in the error file), or None (left unanswered: in the error file as batch_expired). The server counts what
it was asked, so a test can check that nothing was uploaded or created twice.

A cancel moves a running batch to 'cancelling' (for `cancelling_polls` retrieves), then to 'cancelled' with the
first `done_before_cancel` input lines answered as above and the others in the error file as batch_cancelled; an
ended batch refuses a cancel (400). `delay_s` holds each upload and each file download that long (outside the server's
lock), so that two clients' requests overlap.
"""
from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fault_server import completion, write_body

STEPS = ("validating", "in_progress", "finalizing")


def echo(custom_id: str, body: dict):
    return "batched answer to: " + body["messages"][-1]["content"]


class BatchServer:
    def __init__(self, answer=echo, end: str = "completed", done_before_cancel: int = 0, delay_s: float = 0.0,
                 cancelling_polls: int = 1):
        self.answer, self.end = answer, end
        self.done_before_cancel, self.delay_s, self.cancelling_polls = done_before_cancel, delay_s, cancelling_polls
        self.cancels = 0
        self.cancelling: dict[str, int] = {}  # batch id: retrieves left that still answer 'cancelling'
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.created = self.uploads = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/files":
                    time.sleep(server.delay_s)
                with server.lock:
                    server.route_post(self, raw)

            def do_GET(self):
                if self.path.endswith("/content"):
                    time.sleep(server.delay_s)
                with server.lock:
                    server.route_get(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # ---- routes ---------------------------------------------------------------------------------------
    def route_post(self, handler, raw: bytes):
        if handler.path == "/v1/files":
            form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"content-type: " + handler.headers["content-type"].encode() + b"\r\n\r\n" + raw)
            parts = {p.get_param("name", header="content-disposition"): p for p in form.iter_parts()}
            assert parts["purpose"].get_content().strip() == "batch"
            self.uploads += 1
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = parts["file"].get_payload(decode=True)
            return self.send(handler, self.file_object(file_id, "batch"))
        if handler.path == "/v1/batches":
            body = json.loads(raw)
            assert body["endpoint"] == "/v1/chat/completions" and body["completion_window"] == "24h"
            self.created += 1
            batch_id = f"batch_{len(self.batches) + 1}"
            self.batches[batch_id] = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"],
                                      "input_file_id": body["input_file_id"], "completion_window": "24h",
                                      "status": "validating", "created_at": int(time.time()),
                                      "metadata": body.get("metadata"), "output_file_id": None,
                                      "error_file_id": None,
                                      "request_counts": {"total": 0, "completed": 0, "failed": 0}}
            return self.send(handler, self.batches[batch_id])
        if handler.path.startswith("/v1/batches/") and handler.path.endswith("/cancel"):
            batch = self.batches[handler.path.split("/")[3]]
            if batch["status"] not in STEPS:
                return self.send(handler, {"error": {"message": f"cannot cancel a batch that is {batch['status']}",
                                                     "type": "invalid_request_error"}}, 400)
            self.cancels += 1
            batch["status"], self.cancelling[batch["id"]] = "cancelling", self.cancelling_polls
            return self.send(handler, batch)
        self.send(handler, {"error": {"message": f"no route {handler.path}"}}, 404)

    def route_get(self, handler):
        path = handler.path.split("?")[0]
        if path == "/v1/batches":
            data = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)
            return self.send(handler, {"object": "list", "data": data, "has_more": False})
        if path.startswith("/v1/batches/"):
            return self.send(handler, self.step(self.batches[path.rsplit("/", 1)[1]]))
        if path.startswith("/v1/files/") and path.endswith("/content"):
            data = self.files[path.split("/")[3]]
            handler.send_response(200)
            handler.send_header("content-type", "application/octet-stream")
            handler.send_header("content-length", str(len(data)))
            handler.end_headers()
            return handler.wfile.write(data)
        self.send(handler, {"error": {"message": f"no route {path}"}}, 404)

    # ---- the batch's life -----------------------------------------------------------------------------
    def step(self, batch: dict) -> dict:
        if batch["status"] == "cancelling":
            self.cancelling[batch["id"]] -= 1
            if self.cancelling[batch["id"]] < 0:
                self.finish(batch, "cancelled")
        elif batch["status"] in STEPS:
            following = STEPS.index(batch["status"]) + 1
            if following < len(STEPS):
                batch["status"] = STEPS[following]
            else:
                self.finish(batch)
        return batch

    def finish(self, batch: dict, end: str | None = None) -> None:
        batch["status"] = end = end or self.end
        if end == "failed":
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_json_line", "message": "scripted"}]}
            return
        output, errors = [], []
        for n, text in enumerate(self.files[batch["input_file_id"]].decode().splitlines()):
            request = json.loads(text)
            line = {"id": f"batch_req_{n}", "custom_id": request["custom_id"]}
            if end == "cancelled" and n >= self.done_before_cancel:
                errors.append({**line, "response": None,
                               "error": {"code": "batch_cancelled", "message": "the batch was cancelled"}})
                continue
            answer = self.answer(request["custom_id"], request["body"])
            if isinstance(answer, str):
                output.append({**line, "response": {"status_code": 200, "request_id": f"req_{n}",
                                                    "body": completion(answer, 11, 5)}, "error": None})
            elif isinstance(answer, int):
                errors.append({**line, "response": {"status_code": answer, "request_id": f"req_{n}", "body": {
                    "error": {"message": "scripted refusal", "type": "invalid_request_error"}}}, "error": None})
            else:
                errors.append({**line, "response": None,
                               "error": {"code": "batch_expired", "message": "not done within 24h"}})
        batch["request_counts"] = {"total": len(output) + len(errors), "completed": len(output),
                                   "failed": len(errors)}
        for key, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode()
                batch[key] = file_id

    # ---- plumbing -------------------------------------------------------------------------------------
    @staticmethod
    def file_object(file_id: str, purpose: str) -> dict:
        return {"id": file_id, "object": "file", "bytes": 0, "created_at": int(time.time()),
                "filename": f"{file_id}.jsonl", "purpose": purpose, "status": "processed"}

    @staticmethod
    def send(handler, payload: dict, status: int = 200):
        write_body(handler, status, json.dumps(payload).encode())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
