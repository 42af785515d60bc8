"""The elicitation engine: plan a method's calls, send those without a stored answer, store each one as it
arrives.

A job runs a method's stages in order. Each stage is planned from what the workspace holds (so a re-run
plans the same calls with the same request keys), its calls are entered in the ledger as pending, the
ones with no stored answer are sent concurrently under a semaphore on one AsyncOpenAI client per event
loop, and every finished call is committed — ledger row and product together — before the next starts in
its slot. A job killed at any point therefore resumes with exactly the calls it had not stored.
A budget (tokens or USD) and `cancel` stop a job between calls; what was stored stays.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable

from curation.errors import ConfigError, StudioError, TeacherError
from curation.methods import METHODS, Stage, get_method, method_for
from curation.methods.base import Call, Writes, add_counts
from curation.methods.label import GenerateConfig, build_messages  # noqa: F401  (the UI imports them from here)
from curation.methods.context import RunContext
from curation.store import Store
from curation.farm import make_sender
from curation.teacher import TeacherConfig, call_chat, call_cost_usd
from models.students import StudentServers


@dataclass
class Budget:
    """A cap on what one job may spend; the job stops cleanly between calls once it is reached.

    max_tokens: prompt + completion tokens of the job's calls (None: no cap).
    max_usd: cost from the workspace's price table (None: no cap); needs a price for the teacher model.
    Calls already in flight when the cap is reached still finish and are stored, so a job can pass the
    cap by at most `concurrency - 1` calls.
    """

    max_tokens: int | None = None
    max_usd: float | None = None

    def __post_init__(self):
        if self.max_tokens is not None and int(self.max_tokens) < 1:
            raise ConfigError(f"budget max_tokens must be at least 1 (got {self.max_tokens})")
        if self.max_usd is not None and not float(self.max_usd) > 0:
            raise ConfigError(f"budget max_usd must be more than 0 (got {self.max_usd})")

    def reached(self, tokens: int, cost_usd: float) -> bool:
        return ((self.max_tokens is not None and tokens >= self.max_tokens)
                or (self.max_usd is not None and cost_usd >= self.max_usd))


@dataclass
class Progress:
    """A snapshot of a running job, passed to the progress callback after every stored call."""

    done: int
    total: int
    failed: int
    tokens: int
    elapsed_s: float
    prompt_tokens: int = 0
    cost_usd: float | None = None
    stage: str = ""
    discarded: int = 0
    new_tasks: int = 0
    in_flight: int = 1  # calls sent at once (the teacher's concurrency)
    endpoints: dict | None = None  # a farm's members: name -> sent, ok, failed, failed_over, in_flight, state

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace so far; None until the first wave of `in_flight` calls is stored: batched
        together, its short answers come back first, and a pace read from them ran short."""
        if not self.done or self.done < min(self.in_flight, self.total):
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


def plan_calls(store: Store, teacher: TeacherConfig, config) -> tuple[list[Call], int]:
    """The first stage's calls still to make (not stored, not waiting in a batch), and how many are stored."""
    ctx = RunContext(store, teacher, config)
    calls = method_for(config).stages(config)[0].plan(ctx)
    keys = [c.request_key for c in calls]
    done, batched = store.done_request_keys(keys), store.batched_request_keys(keys)
    return [c for c in calls if c.request_key not in done and c.request_key not in batched], len(done)


def preview(store: Store, teacher: TeacherConfig, config, limit: int = 3) -> list[dict]:
    """The exact messages (and params, request keys) of the first calls a job would send; sends nothing."""
    return method_for(config).preview(store, teacher, config, limit)


def check_budget(store: Store, teacher: TeacherConfig, budget: Budget | None) -> tuple[float, float] | None:
    """The teacher model's price; a money budget without one is refused before anything is sent."""
    price = store.price(teacher.model_name)
    if budget is not None and budget.max_usd is not None and price is None:
        raise ConfigError(f"a budget in USD needs a price for model {teacher.model_name!r}: add it to the price "
                          f"table (python -m curation prices --set MODEL IN OUT), or cap tokens instead")
    return price


class _Job:
    """Counters and stop conditions of one run; touched only from its event loop's thread."""

    def __init__(self, store: Store, run_id: int, price, budget, cancel, on_progress, watch=None):
        self.store, self.run_id, self.price, self.budget = store, run_id, price, budget
        self.cancel, self.on_progress, self.watch = cancel, on_progress, watch
        self.started = time.monotonic()
        self.planned = self.skipped = self.done = self.ok = self.failed = 0
        self.prompt_tokens = self.completion_tokens = self.new_tasks = 0
        self.cost_usd, self.write_s = 0.0, 0.0
        self.discarded: Counter = Counter()
        self.stage, self.fatal, self.stop_reason = "", None, None
        self.writing = threading.Lock()
        self.in_flight = 1
        self.sender = None  # what sends the teacher calls; a farm's counts per endpoint come from it
        self.batch_id = None  # collecting a Batch API batch: store only calls still waiting in it

    async def diagnose(self) -> str | None:
        """After a connection error: did the server behind the endpoint die? (its description, or None)"""
        if self.watch is None:
            return None
        return await asyncio.to_thread(self.watch, 2.0)  # a refused connection can come before the exit

    def should_stop(self) -> bool:
        if self.stop_reason is None:
            if self.fatal:
                self.stop_reason = "error"
            elif self.cancel is not None and self.cancel.is_set():
                self.stop_reason = "cancelled"
            elif self.budget is not None and self.budget.reached(self.prompt_tokens + self.completion_tokens,
                                                                 self.cost_usd):
                self.stop_reason = "budget"
        return self.stop_reason is not None

    def store_result(self, ctx: RunContext, stage: Stage, call: Call, result: dict) -> None:
        """Turn one finished call into stored rows (ledger + product, one transaction) and count it.

        Runs in a worker thread (`asyncio.to_thread`), never on the job's event loop: a commit waits for the
        store's lock and the disk, and the loop keeps receiving the other answers meanwhile. One result is
        stored at a time (the job's lock): the methods' write hooks and the counters need no locks of their own."""
        with self.writing:
            self._store_result(ctx, stage, call, result)

    def _store_result(self, ctx: RunContext, stage: Stage, call: Call, result: dict) -> None:
        started = time.perf_counter()
        price = self.price if stage.sender == "teacher" else (0.0, 0.0)
        result = {**result, "cost_usd": call_cost_usd(price, result.get("prompt_tokens"),
                                                      result.get("completion_tokens"))}
        try:
            writes = stage.write(ctx, call, result)
        except Exception as exc:  # a hook bug must not lose a paid answer: keep it raw, mark the call failed
            writes = Writes(raw_output=result.get("response"),
                            result={**result, "status": "error",
                                    "error": f"the answer could not be stored: {type(exc).__name__}: {exc}"})
        final = writes.result or result
        stored = self.store.commit_call(call.request_key, final, generation=writes.generation,
                                        judgment=writes.judgment, new_tasks=writes.new_tasks, outcome=writes.outcome,
                                        raw_output=writes.raw_output, batch_id=self.batch_id)
        if stored is None:  # another collector stored this batch's answer first: not this run's to count
            return
        self.write_s += time.perf_counter() - started
        self.done += 1
        self.ok += final["status"] == "ok"
        self.failed += final["status"] != "ok"
        self.prompt_tokens += result.get("prompt_tokens") or 0
        self.completion_tokens += result.get("completion_tokens") or 0
        self.cost_usd += result["cost_usd"] or 0.0
        self.new_tasks += len(writes.new_tasks)
        add_counts(self.discarded, writes.outcome)
        if writes.fatal and not self.fatal:
            self.fatal = writes.fatal
        if self.on_progress:
            self.on_progress(self.progress())

    def progress(self) -> Progress:
        return Progress(self.done, self.planned, self.failed, self.completion_tokens, time.monotonic() - self.started,
                        self.prompt_tokens, self.cost_usd if self.price is not None else None, self.stage,
                        sum(self.discarded.values()), self.new_tasks, self.in_flight,
                        self.sender.counts() if self.sender is not None else None)

    def summary(self, method: str) -> dict:
        elapsed = round(time.monotonic() - self.started, 3)
        total = self.prompt_tokens + self.completion_tokens
        return {"run_id": self.run_id, "method": method, "planned": self.planned, "skipped_cached": self.skipped,
                "done": self.done, "ok": self.ok, "failed": self.failed, "pending": self.planned - self.done,
                "tokens": self.completion_tokens, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "total_tokens": total,
                "cost_usd": round(self.cost_usd, 6) if self.price is not None else None,
                "new_tasks": self.new_tasks, "discarded": dict(self.discarded), "stopped_reason": self.stop_reason,
                "elapsed_s": elapsed, "tokens_per_s": round(self.completion_tokens / elapsed, 2) if elapsed else 0.0,
                "store_ms_per_row": round(1000 * self.write_s / self.done, 3) if self.done else None,
                **({"endpoints": counts} if self.sender and (counts := self.sender.counts()) else {})}


async def _send(job: _Job, ctx: RunContext, stage: Stage, calls: list[Call], sender) -> None:
    semaphore = asyncio.Semaphore(ctx.teacher.in_flight_limit)  # the student's server batches as the teacher's does
    student_client = []

    async def ask_student(call: Call) -> dict:
        endpoint = await asyncio.to_thread(ctx.student)  # converts and starts the student's server once
        if not student_client:
            student_client.append(ctx.teacher.client(endpoint.base_url))
        params = {**call.params, **endpoint.params(True)}  # the adapter's switch is not part of the request key
        return await call_chat(student_client[0], endpoint.model, call.messages, params, 0, should_stop=job.should_stop,
                               diagnose=lambda: asyncio.to_thread(endpoint.server.death, 2.0))

    async def one(call: Call):
        async with semaphore:  # held until the result is committed: a slot frees only once stored
            if job.should_stop():
                return
            if stage.sender == "teacher":
                result = await sender.send(call, job.should_stop, job.diagnose)
                died = result.pop("server_died", None)
                if died and not job.fatal:
                    job.fatal = died  # no more calls to a dead server; the job's owner may restart it and resume
            else:
                result = await ask_student(call)
                result.pop("server_died", None)  # its error names the student's server, its exit and log tail
            if result["status"] == "cancelled":
                return  # stays pending in the ledger; a re-run sends it
            await asyncio.to_thread(job.store_result, ctx, stage, call, result)

    try:
        # return_exceptions: one call whose commit fails must not cancel the others in flight, whose answers
        # are already paid for; every one is stored (or fails on its own), then the first error is raised.
        outcomes = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            raise errors[0]
    finally:
        for c in student_client:
            await c.close()


async def _run_stages(job: _Job, ctx: RunContext, stages: list[tuple[Stage, list[Call] | None]], base_url: str):
    sender = make_sender(ctx.teacher, base_url) if any(s.sender == "teacher" for s, _ in stages) else None
    job.sender = sender
    try:
        for stage, calls in stages:
            job.stage = stage.name
            if calls is None:
                calls = stage.plan(ctx)
            keys = [c.request_key for c in calls]
            done, batched = ctx.store.done_request_keys(keys), ctx.store.batched_request_keys(keys)
            todo = [c for c in calls if c.request_key not in done and c.request_key not in batched]
            job.planned += len(todo)
            job.skipped += len(calls) - len(todo)  # stored, or waiting in a submitted Batch API batch
            ctx.store.plan_ledger(job.run_id, [c.ledger_row() for c in todo])
            await _send(job, ctx, stage, todo, sender)
            if job.should_stop():
                break
    finally:
        if sender is not None:
            await sender.close()


def execute_stages(store: Store, teacher: TeacherConfig, ctx: RunContext, method_name: str, run_config: dict,
                   stages: list[tuple[Stage, list[Call] | None]], base_url: str,
                   on_progress: Callable[[Progress], None] | None, cancel: threading.Event | None,
                   budget: Budget | None, finish: Callable[[RunContext], dict] | None = None,
                   watch: Callable[[float], str | None] | None = None) -> dict:
    """Run `stages` in order as one recorded run (kind 'generate'); returns its summary, also stored as the
    run's metrics. The engine under `run_method` and `retry_failed`, for callers that build their own calls
    (the eval's judge, failures-to-seeds).

    stages: (stage, its calls) pairs; calls None means the stage plans them from `ctx` when it is reached.
        Only calls without a stored answer are sent; each is stored by `stage.write` as it arrives.
    method_name: the summary's method; run_config: stored as the run's config (teacher.public(), never a key).
    base_url: where the teacher answers. finish: called with `ctx` after the last stage unless the run
        stopped; what it returns is added to the summary. watch: for a server the studio runs, says
        whether it died (`LlamaServer.death`); a death fails the calls it broke with its description and
        stops the run (TeacherError), so that the owner can restart the server and resume.
    The run ends 'completed', 'stopped' (cancel or budget; a re-run resumes) or 'failed'. A USD budget
    without a price is refused (ConfigError) before a run is recorded. Raises TeacherError after storing
    what was done when the endpoint cannot serve a stage at all; any other error is stored on the run
    and re-raised.
    """
    price = check_budget(store, teacher, budget)
    if teacher.farm is not None:
        teacher.farm.check_keys(teacher.api_key)  # a member's key variable unset: said before a run is recorded
    run_id = store.start_run("generate", run_config)
    ctx.run_id = run_id
    job = _Job(store, run_id, price, budget, cancel, on_progress, watch)
    job.in_flight = teacher.in_flight_limit
    try:
        try:
            asyncio.run(_run_stages(job, ctx, stages, base_url))
        finally:
            ctx.close()
        extra = finish(ctx) if finish is not None and not job.should_stop() else {}
    except BaseException as exc:
        store.set_run_usage(run_id, job.prompt_tokens, job.completion_tokens, job.cost_usd if price else None)
        store.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}", metrics=job.summary(method_name))
        raise
    summary = {**job.summary(method_name), **extra}
    status = "failed" if job.fatal else "stopped" if job.stop_reason else "completed"
    store.set_run_usage(run_id, job.prompt_tokens, job.completion_tokens, summary["cost_usd"])
    store.update_run(run_id, status=status, metrics=summary, **({"error": job.fatal} if job.fatal else {}))
    if job.fatal:
        raise TeacherError(job.fatal)
    return summary


def run_method(store: Store, teacher: TeacherConfig, config, base_url: str,
               on_progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
               budget: Budget | None = None, watch: Callable[[float], str | None] | None = None,
               students: StudentServers | None = None) -> dict:
    """Run the elicitation job `config` describes (its class picks the method) to the end, until `cancel`
    is set, or until the budget is spent; returns its summary, also stored as the run's metrics.

    base_url: where the teacher answers (the embedded server's URL, or teacher.base_url).
    Raises TeacherError after storing what was done when the endpoint cannot serve the method at all.
    """
    method = method_for(config)
    ctx = RunContext(store, teacher, config, students=students)
    stage_list = method.stages(config)
    first = stage_list[0].plan(ctx)  # validates the inputs before a run is recorded
    run_config = {"method": method.name, "teacher": teacher.public(), **asdict(config),
                  "budget": asdict(budget) if budget else None}
    stages = [(stage_list[0], first)] + [(s, None) for s in stage_list[1:]]
    return execute_stages(store, teacher, ctx, method.name, run_config, stages, base_url, on_progress, cancel,
                          budget, finish=method.finish, watch=watch)


run_generation = run_method  # the name the labeling-only engine had


def record_results(store: Store, teacher: TeacherConfig, run_config: dict,
                   answered: list[tuple[Stage, Call, dict]], price: tuple[float, float] | None,
                   batch_id: int | None = None) -> dict:
    """Store calls answered outside a live job (a Batch API batch's results) through the path a live job
    stores its answers by, as one recorded run; returns its summary. price: what the answers cost per million
    tokens (the batch price); the calls must be in the ledger. With `batch_id`, only calls still waiting in that
    batch are stored (and counted): a second collector racing this one stores none twice."""
    ctx = RunContext(store, teacher)
    ctx.run_id = run_id = store.start_run("generate", run_config)
    job = _Job(store, run_id, price, None, None, None)
    job.batch_id = batch_id
    job.planned = len(answered)
    try:
        for stage, call, result in answered:
            job.stage = stage.name
            job.store_result(ctx, stage, call, result)
    except BaseException as exc:
        store.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}",
                         metrics=job.summary("batch"))
        raise
    summary = job.summary(run_config.get("method", "batch"))
    store.set_run_usage(run_id, job.prompt_tokens, job.completion_tokens, summary["cost_usd"])
    store.update_run(run_id, status="completed", metrics=summary)
    return summary


def retry_failed(store: Store, teacher: TeacherConfig, base_url: str, keys: list[str] | None = None,
                 on_progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
                 budget: Budget | None = None, watch: Callable[[float], str | None] | None = None) -> dict:
    """Send failed calls again — the ones named by request key, or every failed call this teacher made —
    with the same request keys; each is stored as its method stores it. Returns the retry run's summary.
    Calls left 'retried' by a retry that died count as failed here."""
    rows = store.ledger_rows(keys, states=("failed", "retried"))  # 'retried': queued again by a job that died
    if keys:
        missing = sorted(set(keys) - {r["request_key"] for r in rows})
        if missing:
            states = {r["request_key"]: r["state"] for r in store.ledger_rows(missing)}
            raise StudioError("only failed calls can be retried: " + ", ".join(
                f"{k[:12]} is {states.get(k, 'not in the ledger')}" for k in missing[:5]))
    ours = [r for r in rows if (r["endpoint"], r["model"]) == (teacher.endpoint_id, teacher.model_name)]
    if keys and len(ours) < len(rows):
        other = next(r for r in rows if r not in ours)
        raise StudioError(f"call {other['request_key'][:12]} was made to {other['endpoint']} ({other['model']}); "
                          "retry it with that teacher" + (" — or re-run its self job, for the local student"
                                                          if other["endpoint"] == "local" else ""))
    if not ours:
        raise StudioError("no failed calls to retry" + (f" for {teacher.endpoint_id} ({teacher.model_name})"
                                                        if rows else ""))
    groups: dict[tuple[str, str], list[Call]] = {}
    for row in ours:
        groups.setdefault((row["method"], row["stage"] or ""), []).append(Call.from_ledger(row))
    stages = []
    for (method_name, stage_name), calls in groups.items():
        write = get_method(method_name).writers[stage_name]
        stages.append((Stage(stage_name, plan=lambda ctx, c=calls: c, write=write), calls))
    run_config = {"method": "retry-failed", "teacher": teacher.public(), "keys": len(ours),
                  "methods": sorted({m for m, _ in groups}), "budget": asdict(budget) if budget else None}
    summary = execute_stages(store, teacher, RunContext(store, teacher), "retry-failed", run_config, stages,
                             base_url, on_progress, cancel, budget, watch=watch)
    return {**summary, "skipped_other_teacher": len(rows) - len(ours)}


__all__ = ["Budget", "Progress", "RunContext", "METHODS", "GenerateConfig", "build_messages", "plan_calls",
           "preview", "run_method", "run_generation", "retry_failed", "check_budget", "execute_stages",
           "record_results"]
