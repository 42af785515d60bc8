"""Sending a job's calls: to one endpoint, or routed across a teacher farm with failover.

`make_sender(teacher, base_url)` gives the engine one object to send every call through. For a farm, each
call goes to the endpoint with the lowest in-flight / concurrency ratio that is up and has requests and tokens
left in its last minute (`RateWindow`). A connection refused or reset marks an endpoint down at once,
`fail_after` 5xx answers or timeouts in a row do too; its calls, the ones in flight included, are sent to the
others, and after `cooldown_s` one call probes it again. The call's request key is the farm's (it never
names a member), so the engine stores each call once whoever answers; the result says who did (answered_by).
Clocks are injectable so that routing and limits are tested without waiting.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Awaitable, Callable

import openai

from curation.farm_config import EndpointConfig, TeacherFarm
from curation.teacher import Attempt, TeacherConfig, attempt_chat, backoff_s, call_chat

PERIOD_S = 60.0  # the window of rpm / tpm limits
DEFAULT_MAX_TOKENS = 256  # a call's completion estimate when it sets no max_tokens


def estimate_tokens(messages: list[dict], params: dict) -> int:
    """Tokens a call may use before it is sent: ~4 characters a prompt token, plus its max_tokens."""
    return len(json.dumps(messages, ensure_ascii=False)) // 4 + int(params.get("max_tokens") or DEFAULT_MAX_TOKENS)


class RateWindow:
    """Requests and tokens admitted in the last `period` seconds, against rpm / tpm limits (None: none)."""

    def __init__(self, rpm: int | None, tpm: int | None, clock: Callable[[], float] = time.monotonic,
                 period: float = PERIOD_S):
        self.rpm, self.tpm, self.clock, self.period = rpm, tpm, clock, period
        self._events: deque[list] = deque()  # [admitted at, tokens, still in the window], oldest first
        self._tokens = 0

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.period:
            entry = self._events.popleft()
            self._tokens -= entry[1]
            entry[2] = False

    def wait_s(self, tokens: int) -> float:
        """Seconds until a call of `tokens` fits in both limits (0: now). A call larger than the whole tpm
        waits for an empty window, then goes alone."""
        now = self.clock()
        self._expire(now)
        wait = 0.0
        if self.rpm is not None and len(self._events) >= self.rpm:
            wait = self._events[len(self._events) - self.rpm][0] + self.period - now
        if self.tpm is not None and self._events and self._tokens + tokens > self.tpm:
            excess = self._tokens + tokens - self.tpm
            for admitted, used, _ in self._events:  # the oldest calls whose leaving makes room
                excess -= used
                if excess <= 0:
                    break
            wait = max(wait, admitted + self.period - now)  # without a break: the last one, an empty window
        return max(wait, 0.0)

    def admit(self, tokens: int) -> list:
        """Count a call now; returns its entry, for `settle` once its real usage is known."""
        entry = [self.clock(), tokens, True]
        self._events.append(entry)
        self._tokens += tokens
        return entry

    def settle(self, entry: list, tokens: int) -> None:
        if entry[2]:
            self._tokens += tokens - entry[1]
        entry[1] = tokens


class Member:
    """One endpoint of a farm as the router sees it: load, health, rate window and counts."""

    def __init__(self, config: EndpointConfig, clock: Callable[[], float]):
        self.config, self.name, self.clock = config, config.name, clock
        self.window = RateWindow(config.rpm, config.tpm, clock)
        self.in_flight = self.strikes = 0
        self.down_until: float | None = None  # while down: when a probe may go
        self.down_reason = ""
        self.paused_until = 0.0  # after a 429: its Retry-After
        self.counts = {"sent": 0, "ok": 0, "failed": 0, "failed_over": 0}
        self.client = None

    def state(self, now: float) -> str:
        if self.down_until is None:
            return "up"
        return "down" if now < self.down_until else "probing"

    def can_take(self, now: float, tokens: int) -> bool:
        state = self.state(now)
        if state == "down" or now < self.paused_until:
            return False
        limit = 1 if state == "probing" else self.config.concurrency  # a probe goes alone
        return self.in_flight < limit and self.window.wait_s(tokens) == 0

    def ready_in(self, now: float, tokens: int) -> float:
        """Seconds until it may take a call, ignoring its in-flight calls."""
        waits = [self.paused_until - now, self.window.wait_s(tokens)]
        if self.down_until is not None:
            waits.append(self.down_until - now)
        return max(0.0, *waits)


class Router:
    """Picks the member for each call and keeps the members' health; one per job, on its event loop."""

    def __init__(self, farm: TeacherFarm, clock: Callable[[], float] = time.monotonic):
        self.farm, self.clock = farm, clock
        self.members = [Member(e, clock) for e in farm.endpoints]
        self._changed: asyncio.Condition | None = None

    def pick(self, tokens: int) -> Member | None:
        """The least loaded member (in flight / concurrency; the first listed on a tie) that is up, or due a
        probe, under its concurrency and within its rate limits; None when none is."""
        now = self.clock()
        ready = [m for m in self.members if m.can_take(now, tokens)]
        return min(ready, key=lambda m: m.in_flight / m.config.concurrency) if ready else None

    def all_down(self) -> bool:
        now = self.clock()
        return all(m.state(now) == "down" for m in self.members)

    def start(self, member: Member, tokens: int) -> list:
        member.in_flight += 1
        member.counts["sent"] += 1
        return member.window.admit(tokens)

    def finish(self, member: Member, entry: list, sent: Attempt) -> None:
        """Record what one request to `member` came to: its tokens, and its health."""
        member.in_flight -= 1
        now = self.clock()
        if sent.result is not None:
            used = (sent.result.get("prompt_tokens") or 0) + (sent.result.get("completion_tokens") or 0)
            member.window.settle(entry, used or entry[1])
            member.strikes, member.down_until, member.down_reason = 0, None, ""
            member.counts["ok"] += 1
            return
        member.counts["failed"] += 1
        if sent.kind == "connection":
            member.window.settle(entry, 0)  # refused or reset: nothing was generated
            self._down(member, now, sent.error)
        elif sent.status == 429:
            member.paused_until = now + backoff_s(1, sent.wait)
        elif sent.kind == "timeout" or (sent.status or 0) >= 500:
            member.strikes += 1
            if member.strikes >= self.farm.fail_after or member.state(now) == "probing":
                self._down(member, now, sent.error)

    def _down(self, member: Member, now: float, reason: str) -> None:
        member.down_until, member.down_reason, member.strikes = now + self.farm.cooldown_s, reason, 0

    async def acquire(self, tokens: int, should_stop: Callable[[], bool]) -> tuple[Member, list] | None:
        """Wait for a member that may take the call and count it as sent there; None when the job stops or every
        member is down."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        while not should_stop() and not self.all_down():
            member = self.pick(tokens)
            if member is not None:
                return member, self.start(member, tokens)
            now = self.clock()
            wait = min((m.ready_in(now, tokens) for m in self.members), default=1.0)
            async with self._changed:  # woken when a call finishes, or when a pause or window ends
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=min(max(wait, 0.01), 1.0))
                except TimeoutError:
                    pass
        return None

    async def notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    def counts(self) -> dict:
        """Per member: calls sent, answered, failed, sent on elsewhere after failing there; in flight; state."""
        now = self.clock()
        return {m.name: {**m.counts, "in_flight": m.in_flight, "state": m.state(now)} for m in self.members}

    def down_report(self) -> str:
        return "; ".join(f"{m.name}: {m.down_reason or 'down'}" for m in self.members)


class SingleSender:
    """Every call to one endpoint, with call_chat's retries (and, for the embedded server, its death watch)."""

    def __init__(self, teacher: TeacherConfig, base_url: str):
        self.teacher, self.client = teacher, teacher.client(base_url)

    async def send(self, call, should_stop: Callable[[], bool],
                   diagnose: Callable[[], Awaitable[str | None]] | None = None) -> dict:
        result = await call_chat(self.client, call.model, call.messages, call.params, self.teacher.max_retries,
                                 should_stop=should_stop, diagnose=diagnose)
        return {**result, "answered_by": self.teacher.endpoint_id}

    def counts(self) -> dict | None:
        return None

    async def close(self) -> None:
        await self.client.close()


class FarmSender:
    """Every call to the farm member the router picks; a call that fails at one member is sent to another.

    A connection error (the member died) does not count against the teacher's max_retries: the call just goes
    elsewhere. 5xx, 429 and timeouts do, as with one endpoint. When every member is down the call fails with
    'server_died', which stops the job (what was stored stays; a rerun resumes)."""

    def __init__(self, teacher: TeacherConfig, clock: Callable[[], float] = time.monotonic):
        self.teacher, self.router = teacher, Router(teacher.farm, clock)
        for m in self.router.members:
            m.client = openai.AsyncOpenAI(base_url=m.config.base_url, api_key=m.config.api_key(teacher.api_key),
                                          timeout=teacher.timeout_s, max_retries=0)
        self.max_attempts = teacher.max_retries + 1 + 2 * len(self.router.members)

    async def send(self, call, should_stop: Callable[[], bool], diagnose=None) -> dict:
        started, attempts, failures, last = time.monotonic(), 0, 0, ""
        tokens = estimate_tokens(call.messages, call.params)
        while True:
            got = await self.router.acquire(tokens, should_stop)
            if got is None:
                return self._gave_up(should_stop, last, attempts, started)
            member, entry = got
            attempts += 1
            sent = await self._attempt(member, entry, call)
            answered = {"answered_by": member.config.base_url, "latency_s": time.monotonic() - started,
                        "attempts": attempts}
            if sent.result is not None or not sent.retry:
                return {**(sent.result or {"status": "error", "error": f"{member.name}: {sent.error}"}), **answered}
            last = f"{member.name}: {sent.error}"
            failures += sent.kind != "connection"
            if failures > self.teacher.max_retries or attempts >= self.max_attempts:
                return {"status": "error", "error": last, **answered}
            if should_stop():
                return {"status": "cancelled", "error": last, "attempts": attempts}
            member.counts["failed_over"] += 1
            if sent.kind != "connection" and self.router.pick(tokens) is None:
                await asyncio.sleep(backoff_s(failures, sent.wait))

    async def _attempt(self, member: Member, entry: list, call) -> Attempt:
        try:
            sent = await attempt_chat(member.client, member.config.model or call.model, call.messages, call.params)
        except BaseException:  # the job's loop is being torn down: the slot must still be given back
            self.router.finish(member, entry, Attempt(error="cancelled", kind="cancelled"))
            raise
        self.router.finish(member, entry, sent)
        await self.router.notify()
        return sent

    def _gave_up(self, should_stop, last: str, attempts: int, started: float) -> dict:
        if should_stop():
            return {"status": "cancelled", "error": last, "attempts": attempts}
        died = f"every endpoint of teacher farm {self.teacher.farm.name!r} is down ({self.router.down_report()})"
        return {"status": "error", "error": died, "server_died": died, "attempts": max(attempts, 1),
                "latency_s": time.monotonic() - started}

    def counts(self) -> dict | None:
        return self.router.counts()

    async def close(self) -> None:
        for m in self.router.members:
            await m.client.close()


def make_sender(teacher: TeacherConfig, base_url: str, clock: Callable[[], float] = time.monotonic):
    """How a job sends its teacher calls: through the farm's router, or to `base_url`."""
    return FarmSender(teacher, clock) if teacher.farm is not None else SingleSender(teacher, base_url)
