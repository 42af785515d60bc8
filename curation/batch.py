"""Bulk labelling through OpenAI's Batch API (half the price, answered within 24 hours) as a job mode.

`submit_batch` plans a method's next stage exactly as a live job would (same calls, same request keys), enters
its calls in the ledger as 'batched' under a new batch, writes them as a JSONL file in the workspace, uploads it
(`files.create(purpose="batch")`) and creates the batch (`batches.create`). `advance` moves a batch on from
whatever state the workspace last recorded — so a studio restarted between any two steps resumes the same batch
— and `collect` downloads the provider's output and error files and stores each result, found by its custom_id
(the request key), through the engine's own store path (`record_results`), at the batch price.

Never submitted twice: a batch's calls leave 'pending' in the same transaction that records it, a live job and a
second submit skip 'batched' calls, and a batch whose creation may have reached the provider before the studio
recorded it is looked up there (by its input file) before it is created again; within the studio, one thread
at a time uploads or creates (`store.batch_steps`).

A job over the provider's limits per batch (`BatchLimits`: OpenAI's 50,000 requests and 200 MB) is split into
several batches at submit. `cancel` asks the provider to stop a batch and then collects it like any other: what it
had answered is stored, the rest goes back to 'pending'. Collectors may race (the UI's timer, a click, the CLI's
--wait): each answer is stored by whichever reaches the ledger first, once (`commit_call(batch_id=...)`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import openai
from openai.types.chat import ChatCompletion

from curation.errors import BatchTooLarge, ConfigError, StudioError, TeacherError
from curation.generate import record_results
from curation.methods import get_method, method_for
from curation.methods.base import Call, Stage
from curation.methods.context import RunContext
from curation.store import Store
from curation.store.batches import BATCH_OPEN
from curation.teacher import TeacherConfig, read_completion

BATCH_DISCOUNT = 0.5  # OpenAI's Batch API price: half the live one
BATCH_URL = "/v1/chat/completions"
PROVIDER_ENDS = ("completed", "failed", "expired", "cancelled")
UNANSWERED = ("batch_expired", "batch_cancelled")  # not the call's failure: it goes back to 'pending'
POLLED = ("submitted", "cancelling")  # at the provider, not yet ended there


@dataclass(frozen=True)
class BatchLimits:
    """What the provider takes in one batch; a job over them is split into several batches when submitted."""

    max_requests: int = 50_000  # OpenAI: an input file holds up to 50,000 requests
    max_bytes: int = 200_000_000  # OpenAI: an input file is up to 200 MB

    def __post_init__(self):
        if int(self.max_requests) < 1:
            raise ConfigError(f"max_requests per batch must be at least 1 (got {self.max_requests})")
        if int(self.max_bytes) < 1:
            raise ConfigError(f"max_bytes per batch input file must be at least 1 (got {self.max_bytes})")


def request_line(key: str, model: str, messages: list, params: dict) -> bytes:
    """One line of a batch input file: the call as a live job would send it, found again by its request key."""
    line = {"custom_id": key, "method": "POST", "url": BATCH_URL, "body": {"model": model, "messages": messages,
                                                                            **params}}
    return (json.dumps(line, ensure_ascii=False) + "\n").encode()


def split_for_limits(calls: list[Call], limits: BatchLimits) -> list[list[Call]]:
    """The calls in order, cut into parts that each fit one batch (requests and input-file bytes).
    BatchTooLarge, naming the request, when one call alone is over the file limit."""
    parts: list[list[Call]] = [[]]
    size = 0
    for call in calls:
        n = len(request_line(call.request_key, call.model, call.messages, call.params))
        if n > limits.max_bytes:
            raise BatchTooLarge(
                f"request {call.request_key[:12]} (task {call.task_id}, stage {call.stage}) is {n:,} bytes as a "
                f"batch line, over the {limits.max_bytes:,}-byte limit of one batch input file: no batch can take "
                "it. Shorten its input or run this job live; nothing was submitted")
        if parts[-1] and (len(parts[-1]) >= limits.max_requests or size + n > limits.max_bytes):
            parts.append([])
            size = 0
        parts[-1].append(call)
        size += n
    return parts


def batch_client(teacher: TeacherConfig) -> openai.OpenAI:
    """A client for the teacher's Batch API. No automatic retries: a retried create could make a second batch;
    a failed step is resumed by `advance` instead."""
    if teacher.embedded or teacher.farm is not None:
        raise ConfigError("the Batch API needs one OpenAI-compatible base URL that serves /v1/batches (e.g. "
                          "https://api.openai.com/v1); the embedded teacher and teacher farms answer live only")
    key = teacher.api_key or os.environ.get("OPENAI_API_KEY") or "no-key"
    return openai.OpenAI(base_url=teacher.base_url, api_key=key, timeout=teacher.timeout_s, max_retries=0)


def _next_stage(store: Store, teacher: TeacherConfig, config) -> tuple:
    """The method, and the first of its stages with calls to send, and those calls (as a live job plans them)."""
    method = method_for(config)
    ctx, stored = RunContext(store, teacher, config), 0
    for stage in method.stages(config):
        calls = stage.plan(ctx)
        keys = [c.request_key for c in calls]
        done, waiting = store.done_request_keys(keys), store.batched_request_keys(keys)
        todo = [c for c in calls if c.request_key not in done and c.request_key not in waiting]
        if todo:
            if stage.sender != "teacher":
                raise ConfigError(f"stage {stage.name} of {method.name} asks the local student; the Batch API "
                                  "cannot: run it live")
            return method, stage, todo
        if waiting:
            raise StudioError(f"{len(waiting)} calls of stage {stage.name} wait in a batch; collect it first "
                              "(python -m curation batch-collect), then submit the next stage")
        stored += len(calls)
    raise StudioError(f"nothing to do: all {stored} calls already have a stored answer" if stored
                      else "nothing to do: no tasks or responses to work on; add seed tasks first")


def submit_batch(store: Store, teacher: TeacherConfig, config, discount: float = BATCH_DISCOUNT,
                 client: openai.OpenAI | None = None, limits: BatchLimits = BatchLimits()) -> list[dict]:
    """Plan the method's next stage as batches and submit them: one batch, or several where the calls are over
    the provider's `limits` per batch. Returns their rows, each 'submitted' or where a failed step left it
    (`advance` resumes from there)."""
    if not 0 < float(discount) <= 1:
        raise ConfigError(f"the batch discount must be more than 0 and at most 1 (got {discount})")
    client = client or batch_client(teacher)
    method, stage, calls = _next_stage(store, teacher, config)
    parts = split_for_limits(calls, limits)  # before anything is written: a request no batch takes changes nothing
    run_config = {"method": method.name, "mode": "batch", "stage": stage.name, "teacher": teacher.public(),
                  **asdict(config)}
    run_id = store.start_run("generate", run_config)
    store.plan_ledger(run_id, [c.ledger_row() for c in calls])
    ids = store.create_batches(teacher.endpoint_id, teacher.model_name, method.name, stage.name,
                               [[c.request_key for c in part] for part in parts], float(discount), run_id)
    store.update_run(run_id, status="completed", metrics={"mode": "batch", "batch_ids": ids, "method": method.name,
                                                          "stage": stage.name, "planned": len(calls)})
    return [advance(store, teacher, batch_id, client) for batch_id in ids]


def advance(store: Store, teacher: TeacherConfig, batch_id: int, client: openai.OpenAI | None = None) -> dict:
    """Take a batch as far as it can go now: upload, create, or poll; returns its row with the provider's
    status ('remote_status') and request counts when it was polled."""
    _ours(store, teacher, batch_id)
    client = client or batch_client(teacher)
    try:
        if store.batch(batch_id)["state"] in ("planned", "uploaded"):
            with store.batch_steps:  # re-read under the lock: another thread may have just taken these steps
                if store.batch(batch_id)["state"] == "planned":
                    _upload(store, store.batch(batch_id), client)
                if store.batch(batch_id)["state"] == "uploaded":
                    _create(store, store.batch(batch_id), client)
        if store.batch(batch_id)["state"] in POLLED:
            polled = _poll(store, store.batch(batch_id), client)
            return {**store.batch(batch_id), **polled}  # the row as the poll left it (ended, perhaps)
    except openai.APIError as exc:
        raise TeacherError(f"batch {batch_id}: the Batch API at {teacher.base_url} refused or did not answer "
                           f"({type(exc).__name__}: {exc}); nothing was lost — run batch-status again to resume"
                           ) from exc
    return store.batch(batch_id)


def cancel(store: Store, teacher: TeacherConfig, batch_id: int, client: openai.OpenAI | None = None) -> dict:
    """Cancel an open batch: the provider is asked to stop it (state 'cancelling' until it says 'cancelled');
    once it has, what the batch had answered is stored and its other calls go back to 'pending'. A batch not yet
    created at the provider is cancelled at once. Returns `collect`'s summary ('collected': False while the
    provider is still cancelling: poll or collect it later)."""
    batch = _ours(store, teacher, batch_id)
    if batch["state"] not in BATCH_OPEN:
        raise StudioError(f"batch {batch_id} has already ended ({batch['state']}): nothing to cancel"
                          + ("" if batch["state"] == "collected" else "; collect it with batch-collect"))
    client = client or batch_client(teacher)
    try:
        with store.batch_steps:  # no upload or create may run meanwhile
            batch = store.batch(batch_id)
            if batch["state"] == "uploaded":
                _adopt(store, batch, client)  # a create whose answer was lost: that batch must be cancelled
                batch = store.batch(batch_id)
            if batch["state"] in ("planned", "uploaded"):  # nothing at the provider to stop
                store.update_batch(batch_id, state="cancelled")
        if batch["state"] == "submitted":
            _cancel_remote(store, batch, client)
    except openai.APIError as exc:
        raise TeacherError(f"batch {batch_id}: the Batch API at {teacher.base_url} did not take the cancel "
                           f"({type(exc).__name__}: {exc}); nothing changed — try again") from exc
    return collect(store, teacher, batch_id, client)


def _cancel_remote(store: Store, batch: dict, client: openai.OpenAI) -> None:
    try:
        remote = client.batches.cancel(batch["remote_id"])
    except openai.APIStatusError:
        remote = client.batches.retrieve(batch["remote_id"])  # it may have ended first: then it is collected as is
        if remote.status not in PROVIDER_ENDS:
            raise
    store.update_batch(batch["id"], state="cancelling")
    _record_end(store, batch["id"], remote)


def _ours(store: Store, teacher: TeacherConfig, batch_id: int) -> dict:
    batch = store.batch(batch_id)
    if batch["endpoint"] != teacher.endpoint_id:
        raise StudioError(f"batch {batch_id} was submitted to {batch['endpoint']}; poll or collect it with "
                          f"--base-url {batch['endpoint']}")
    return batch


def _upload(store: Store, batch: dict, client: openai.OpenAI) -> None:
    data = b"".join(request_line(row["request_key"], row["model"], row["messages"], row["params"])
                    for row in store.batch_calls(batch["id"]))
    path = Path(store.workspace) / "batches" / f"batch-{batch['id']}.jsonl"  # kept: what was sent, to inspect
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    uploaded = client.files.create(file=(path.name, data, "application/jsonl"), purpose="batch")
    store.update_batch(batch["id"], state="uploaded", input_file_id=uploaded.id, input_path=str(path))


def _adopt(store: Store, batch: dict, client: openai.OpenAI) -> bool:
    """A create whose answer was lost (the studio died, the connection dropped) may have made the batch: adopt
    the provider's batch of this input file, if there is one."""
    for remote in client.batches.list(limit=100).data:
        if remote.input_file_id == batch["input_file_id"]:
            store.update_batch(batch["id"], state="submitted", remote_id=remote.id)
            return True
    return False


def _create(store: Store, batch: dict, client: openai.OpenAI) -> None:
    if _adopt(store, batch, client):
        return
    remote = client.batches.create(input_file_id=batch["input_file_id"], endpoint=BATCH_URL,
                                   completion_window="24h", metadata={"distill_studio_batch": str(batch["id"])})
    store.update_batch(batch["id"], state="submitted", remote_id=remote.id)


def _poll(store: Store, batch: dict, client: openai.OpenAI) -> dict:
    remote = client.batches.retrieve(batch["remote_id"])
    _record_end(store, batch["id"], remote)
    counts = remote.request_counts
    return {"remote_status": remote.status,
            "request_counts": counts.model_dump() if counts is not None else None}


def _record_end(store: Store, batch_id: int, remote) -> None:
    if remote.status in PROVIDER_ENDS:
        errors = "; ".join(f"{e.code}: {e.message}" for e in (remote.errors.data or [])) if remote.errors else ""
        store.update_batch(batch_id, state=remote.status, output_file_id=remote.output_file_id,
                           error_file_id=remote.error_file_id, error=errors or None)


def collect(store: Store, teacher: TeacherConfig, batch_id: int, client: openai.OpenAI | None = None) -> dict:
    """Store the results of a batch the provider has ended: each answer and error by its custom_id, at the batch
    price; calls it left unanswered (expired, cancelled, missing) go back to 'pending'. Returns a summary.
    A batch still running is polled and its state returned ('collected': False). Collecting twice is harmless,
    and so are two collectors at once: the ledger stores each answer once, for whichever comes first."""
    client = client or batch_client(teacher)
    batch = advance(store, teacher, batch_id, client)
    if batch["state"] in BATCH_OPEN or batch["state"] == "collected":
        return _not_collected(batch)
    try:
        output, error = _download(client, batch["output_file_id"]), _download(client, batch["error_file_id"])
    except openai.APIError as exc:
        raise TeacherError(f"batch {batch_id}: its result files could not be downloaded ({exc}); run batch-collect "
                           "again") from exc
    lines, unreadable = output[0] + error[0], output[1] + error[1]
    waiting = {row["request_key"]: row for row in store.batch_calls(batch_id)}
    if not waiting and store.batch(batch_id)["state"] == "collected":
        return _not_collected(store.batch(batch_id))  # another collector stored it all meanwhile
    stage = Stage(batch["stage"], plan=lambda ctx: [], write=get_method(batch["method"]).writers[batch["stage"]])
    answered = []
    for line in lines:
        row = waiting.pop(line.get("custom_id"), None)
        result = _result_of(line, batch["remote_id"]) if row is not None else None
        if result is not None:
            answered.append((stage, Call.from_ledger(row), result))
    price = store.price(batch["model"])
    price = (price[0] * batch["discount"], price[1] * batch["discount"]) if price else None
    run_config = {"method": batch["method"], "mode": "batch-collect", "batch_id": batch_id,
                  "remote_id": batch["remote_id"], "discount": batch["discount"], "teacher": teacher.public()}
    summary = record_results(store, teacher, run_config, answered, price, batch_id=batch_id)
    finished = store.finish_batch(batch_id)  # None: another collector finished it first
    done = store.batch(batch_id)
    # ok / failed: the batch's, from the ledger; stored_*: what this collector stored (less, had another raced it)
    return {**summary, "stored_ok": summary["ok"], "stored_failed": summary["failed"], "ok": done["ok_count"],
            "failed": done["failed_count"], "batch_id": batch_id, "state": "collected", "collected": True,
            "provider_state": batch["state"], "returned_to_pending": finished["returned_to_pending"] if finished else 0,
            "unreadable_lines": unreadable}


def _not_collected(batch: dict) -> dict:
    """collect's answer for a batch it had nothing to store for: still open, or already collected."""
    return {"batch_id": batch["id"], "state": batch["state"], "collected": batch["state"] == "collected",
            **{k: batch.get(k) for k in ("remote_status", "request_counts", "ok_count", "failed_count")}}


def _download(client: openai.OpenAI, file_id: str | None) -> tuple[list[dict], int]:
    if not file_id:
        return [], 0
    lines, unreadable = [], 0
    for text in client.files.content(file_id).text.splitlines():
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError:
            line = None
        if isinstance(line, dict):
            lines.append(line)
        else:
            unreadable += 1  # its call stays unanswered: back to 'pending', sent again by the next run
    return lines, unreadable


def _result_of(line: dict, remote_id: str) -> dict | None:
    """A stored row's result fields from one output or error line; None for a call the batch never answered."""
    response, error = line.get("response") or {}, line.get("error") or {}
    by = {"answered_by": f"batch:{remote_id}", "attempts": 1}
    if response.get("status_code") == 200:
        try:
            return {**read_completion(ChatCompletion.model_validate(response.get("body"))), **by}
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            return {"status": "error", "error": f"the batch's answer is not a chat completion: {exc}"[:500], **by}
    if error.get("code") in UNANSWERED:
        return None
    body_error = (response.get("body") or {}).get("error") or {}
    status = f"HTTP {response['status_code']}: " if response.get("status_code") else ""
    message = error.get("message") or body_error.get("message") or "no message"
    code = error.get("code") or body_error.get("code") or body_error.get("type") or ""
    return {"status": "error", "error": f"the batch's answer: {status}{code + ': ' if code else ''}{message}", **by}


def wait_and_collect(store: Store, teacher: TeacherConfig, batch_id: int, poll_s: float = 30.0,
                     timeout_s: float | None = None, sleep: Callable[[float], None] = time.sleep,
                     client: openai.OpenAI | None = None) -> dict:
    """Poll every `poll_s` seconds until the provider ends the batch (or `timeout_s` passes), then collect."""
    client, started = client or batch_client(teacher), time.monotonic()
    while True:
        summary = collect(store, teacher, batch_id, client)
        if summary["collected"] or (timeout_s is not None and time.monotonic() - started >= timeout_s):
            return summary
        sleep(poll_s)


def open_batches(store: Store, teacher: TeacherConfig) -> list[int]:
    """Ids of this teacher's batches not yet collected, oldest first (to resume after a restart)."""
    return [b["id"] for b in reversed(store.batches(open_only=True)) if b["endpoint"] == teacher.endpoint_id]
