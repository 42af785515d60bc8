"""Talking to a teacher: any OpenAI-compatible endpoint, or the embedded llama.cpp server.

`TeacherConfig` says which endpoint; `call_chat` makes one call, retrying what is worth retrying, and
turns the outcome (answer or error) into the result fields of a stored row. The retry loop is ours, not
the openai client's (which is built with `max_retries=0`): only then do we know how many attempts a
failed call took, can stop between attempts when a job is cancelled, and can keep the last error.
"""
from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import openai

from curation.errors import ConfigError
from curation.farm_config import TeacherFarm

EMBEDDED_ENDPOINT = "embedded"
EMBEDDED_MODEL = "smollm2-135m-instruct"
DEFAULT_CONCURRENCY = 16
EMBEDDED_TIMEOUT_S = 600.0

RETRYABLE_STATUSES = (408, 409, 429)
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
# A server that asks for a longer pause than this is waited for this long at most, per attempt.
MAX_RETRY_AFTER_S = 60.0


@dataclass
class TeacherConfig:
    """Which teacher to ask and how hard to push it.

    base_url: an OpenAI-compatible base URL (".../v1"); empty means the embedded local server.
    model: model name at that endpoint; empty with the embedded server means its bundled model.
    api_key: never stored, logged or shown; falls back to OPENAI_API_KEY.
    concurrency: calls in flight at once (1..64). The default matches the embedded server's slots
        (LocalTeacherServer: 16 decoded together), where more in flight stopped paying (bench/generate.py).
    timeout_s: per-call (per-attempt) timeout in seconds (1..600); a call to the embedded server gets at least
        EMBEDDED_TIMEOUT_S (see `client`).
    max_retries: retries on connection errors, timeouts, 408/409/429/5xx, with exponential backoff
        honouring Retry-After / retry-after-ms (0..10). After the last one the row is stored as failed.
    farm: several endpoints behind this teacher instead of base_url (curation/farm_config.py); model then
        defaults to the farm's model, and concurrency is each endpoint's own.
    """

    base_url: str = ""
    model: str = ""
    api_key: str = field(default="", repr=False)
    concurrency: int = DEFAULT_CONCURRENCY
    timeout_s: float = 60.0
    max_retries: int = 3
    farm: TeacherFarm | None = None

    def __post_init__(self):
        self.base_url = (self.base_url or "").strip().rstrip("/")
        self.model = (self.model or "").strip()
        if self.farm is not None:
            self._check_farm()
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https:// (got {self.base_url!r})")
        if self.base_url and not self.model:
            raise ConfigError("model is required with a custom base_url (e.g. gpt-4o-mini)")
        if not 1 <= int(self.concurrency) <= 64:
            raise ConfigError(f"concurrency must be between 1 and 64 (got {self.concurrency})")
        if not 1 <= float(self.timeout_s) <= 600:
            raise ConfigError(f"timeout_s must be between 1 and 600 seconds (got {self.timeout_s})")
        if not 0 <= int(self.max_retries) <= 10:
            raise ConfigError(f"max_retries must be between 0 and 10 (got {self.max_retries})")
        self.concurrency, self.max_retries, self.timeout_s = int(self.concurrency), int(self.max_retries), float(self.timeout_s)

    def _check_farm(self):
        if self.base_url:
            raise ConfigError("give either a base_url or a teacher farm, not both")
        self.model = self.model or self.farm.model
        if not self.model:
            raise ConfigError(f"teacher farm {self.farm.name!r} needs the model it serves (\"model\" in the farm "
                              "file, or --model)")
        if self.farm.model and self.farm.model != self.model:
            raise ConfigError(f"the model {self.model!r} is not the farm's model {self.farm.model!r}; "
                              "change one of them")

    @classmethod
    def from_env(cls, **overrides) -> "TeacherConfig":
        """Base URL and key from OPENAI_BASE_URL / OPENAI_API_KEY unless given (a farm ignores OPENAI_BASE_URL)."""
        farm = overrides.get("farm") is not None
        values = {"base_url": "" if farm else os.environ.get("OPENAI_BASE_URL", ""),
                  "model": "" if farm else os.environ.get("OPENAI_MODEL", "")}
        values.update({k: v for k, v in overrides.items() if v not in (None, "")})
        return cls(**values)

    @property
    def embedded(self) -> bool:
        return not self.base_url and self.farm is None

    @property
    def endpoint_id(self) -> str:
        # The embedded server gets a new port each start; its identity must not, or every restart
        # would make old answers look unpaid-for. A farm's is its name, whichever member answers.
        if self.farm is not None:
            return f"farm:{self.farm.name}"
        return EMBEDDED_ENDPOINT if self.embedded else self.base_url

    @property
    def in_flight_limit(self) -> int:
        """Calls the engine keeps in flight: the concurrency, or the sum of a farm's endpoints' concurrency."""
        return self.farm.concurrency if self.farm is not None else self.concurrency

    @property
    def model_name(self) -> str:
        return self.model or EMBEDDED_MODEL

    def public(self) -> dict:
        """What may be stored or shown: everything but the key."""
        return {"endpoint": self.endpoint_id, "model": self.model_name, "concurrency": self.concurrency,
                "timeout_s": self.timeout_s, "max_retries": self.max_retries,
                **({"farm": self.farm.public()} if self.farm is not None else {})}

    def client(self, base_url: str) -> openai.AsyncOpenAI:
        """A client for the running event loop (an AsyncOpenAI must not cross loops). Retries are ours.

        The embedded server is ours and local (its death is watched): a call queued behind 16 long prompts
        batched on 2 cores can take minutes, and cutting it only resends it to the same queue (the quality
        bench lost 8 of 80 judge verdicts to 60 s timeouts), so it is given at least EMBEDDED_TIMEOUT_S."""
        key = self.api_key or os.environ.get("OPENAI_API_KEY") or "no-key"  # mandatory; local servers ignore it
        timeout = max(self.timeout_s, EMBEDDED_TIMEOUT_S) if self.embedded else self.timeout_s
        return openai.AsyncOpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)


def request_key(endpoint: str, model: str, messages: list[dict], params: dict, sample_index: int) -> str:
    """The identity of one teacher call: same inputs, same key, so a re-run never pays twice."""
    blob = json.dumps([endpoint, model, messages, params, sample_index], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


async def call_chat(client: openai.AsyncOpenAI, model: str, messages: list[dict], params: dict,
                    max_retries: int = 0, should_stop: Callable[[], bool] | None = None,
                    diagnose: Callable[[], Awaitable[str | None]] | None = None) -> dict:
    """One chat completion with up to `max_retries` retries; returns the result fields of a stored row.

    Never raises for what the endpoint does: the result has status 'ok' or 'error' (with the last
    error and the number of attempts), or 'cancelled' when `should_stop()` turned true while waiting
    to retry (nothing is stored for those; a re-run sends them).
    diagnose: asked after a connection error whether the server behind the endpoint died; if it says
    so (a description), the call is not retried against a dead server: its error is that description
    and the result carries it as 'server_died'.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        sent = await attempt_chat(client, model, messages, params)
        if sent.result is not None:
            return {**sent.result, "latency_s": time.monotonic() - started, "attempts": attempt}
        if sent.kind in ("connection", "timeout"):
            died = await diagnose() if diagnose is not None else None
            if died:
                return {"status": "error", "error": f"{died}\n(the call saw: {sent.error})", "server_died": died,
                        "latency_s": time.monotonic() - started, "attempts": attempt}
        if not sent.retry or attempt > max_retries:
            return {"status": "error", "error": sent.error, "latency_s": time.monotonic() - started,
                    "attempts": attempt}
        if should_stop is not None and should_stop():
            return {"status": "cancelled", "error": sent.error, "attempts": attempt}
        await asyncio.sleep(backoff_s(attempt, sent.wait))


@dataclass
class Attempt:
    """What one request to an endpoint came to: its answer's fields, or why there is none.

    kind: ok | connection (refused, reset, closed: no HTTP answer) | timeout | status (an HTTP error) |
    unreadable (a 200 whose body is not a chat completion). retry: worth sending again; wait: the server's
    Retry-After in seconds."""

    result: dict | None = None
    error: str = ""
    retry: bool = False
    wait: float | None = None
    kind: str = "ok"
    status: int | None = None


async def attempt_chat(client: openai.AsyncOpenAI, model: str, messages: list[dict], params: dict) -> Attempt:
    """One request, no retries; never raises for what the endpoint does."""
    try:
        raw = await client.chat.completions.with_raw_response.create(model=model, messages=messages, **params)
        resp = raw.parse()
    except openai.APIStatusError as exc:
        return Attempt(error=_describe_error(exc), retry=_retryable_status(exc.response), kind="status",
                       wait=_retry_after(exc.response.headers), status=exc.status_code)
    except openai.APITimeoutError as exc:
        return Attempt(error=_describe_error(exc), retry=True, kind="timeout")
    except openai.APIConnectionError as exc:
        return Attempt(error=_describe_error(exc), retry=True, kind="connection")
    except (openai.APIError, ValueError) as exc:  # a 200 whose body is not a chat completion
        return Attempt(error=f"the endpoint returned an unreadable answer: {_describe_error(exc)}", kind="unreadable")
    return Attempt(result=read_completion(resp))


def backoff_s(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number `attempt`: the server's Retry-After if it gave a sane one,
    else exponential backoff (0.5, 1, 2, 4, 8 s ...) less up to 25 % jitter so clients do not stampede."""
    if retry_after is not None and 0 < retry_after:
        return min(retry_after, MAX_RETRY_AFTER_S)
    return min(INITIAL_BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S) * (1 - 0.25 * random.random())


def _retryable_status(response) -> bool:
    should = response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return response.status_code in RETRYABLE_STATUSES or response.status_code >= 500


def _retry_after(headers) -> float | None:
    """Retry-After (seconds or an HTTP date) or the non-standard retry-after-ms, in seconds."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    return seconds if math.isfinite(seconds) else None


def read_completion(resp) -> dict:
    """The result fields of a stored row from a ChatCompletion (live, or a Batch API result line's body)."""
    choice = resp.choices[0] if getattr(resp, "choices", None) else None
    if choice is None or choice.message is None:
        return {"status": "error", "error": "the endpoint returned no choices"}
    usage = resp.usage
    return {"status": "ok", "response": choice.message.content or "", "finish_reason": choice.finish_reason,
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
            "logprobs": _read_logprobs(choice), "tool_calls": _read_tool_calls(choice.message)}


def _read_tool_calls(message) -> list[dict] | None:
    """The calls of an answer through the tools API: [{"id", "name", "arguments"}], arguments the JSON text
    as sent (not parsed here: a call whose arguments do not parse is kept and marked by the method)."""
    calls = getattr(message, "tool_calls", None)
    if not calls:
        return None
    return [{"id": getattr(c, "id", None), "name": getattr(getattr(c, "function", None), "name", None),
             "arguments": getattr(getattr(c, "function", None), "arguments", None)} for c in calls]


def _read_logprobs(choice) -> list[dict] | None:
    """Per generated token: its text, logprob and the top-k alternatives; None when the endpoint sent none."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return [{"token": t.token, "logprob": t.logprob,
             "top": [{"token": a.token, "logprob": a.logprob} for a in (t.top_logprobs or [])]} for t in content]


def _describe_error(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    message = str(getattr(exc, "message", "") or exc)[:500]
    return f"{name} (HTTP {status}): {message}" if status else f"{name}: {message}"


def call_cost_usd(price: tuple[float, float] | None, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """Cost of one call from a (input, output) price in USD per million tokens; None without a price."""
    if price is None:
        return None
    return ((prompt_tokens or 0) * price[0] + (completion_tokens or 0) * price[1]) / 1e6
