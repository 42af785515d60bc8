"""Talking to a teacher: any OpenAI-compatible endpoint, or the embedded llama.cpp server.

`TeacherConfig` says which endpoint; `call_chat` makes one call and turns the outcome (answer or error)
into a row for the store. Retries with backoff (honouring Retry-After) are the openai client's own.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field

import openai

from curation.errors import ConfigError

EMBEDDED_ENDPOINT = "embedded"
EMBEDDED_MODEL = "smollm2-135m-instruct"


@dataclass
class TeacherConfig:
    """Which teacher to ask and how hard to push it.

    base_url: an OpenAI-compatible base URL (".../v1"); empty means the embedded local server.
    model: model name at that endpoint; empty with the embedded server means its bundled model.
    api_key: never stored, logged or shown; falls back to OPENAI_API_KEY.
    concurrency: calls in flight at once (1..64).
    timeout_s: per-call timeout in seconds (1..600).
    max_retries: retries on connection errors, 408/409/429/5xx, with backoff honouring Retry-After (0..10).
    """

    base_url: str = ""
    model: str = ""
    api_key: str = field(default="", repr=False)
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 2

    def __post_init__(self):
        self.base_url = (self.base_url or "").strip().rstrip("/")
        self.model = (self.model or "").strip()
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

    @classmethod
    def from_env(cls, **overrides) -> "TeacherConfig":
        """Base URL and key from OPENAI_BASE_URL / OPENAI_API_KEY unless given."""
        values = {"base_url": os.environ.get("OPENAI_BASE_URL", ""), "model": os.environ.get("OPENAI_MODEL", "")}
        values.update({k: v for k, v in overrides.items() if v not in (None, "")})
        return cls(**values)

    @property
    def embedded(self) -> bool:
        return not self.base_url

    @property
    def endpoint_id(self) -> str:
        # The embedded server gets a new port each start; its identity must not, or every restart
        # would make old answers look unpaid-for.
        return EMBEDDED_ENDPOINT if self.embedded else self.base_url

    @property
    def model_name(self) -> str:
        return self.model or EMBEDDED_MODEL

    def public(self) -> dict:
        """What may be stored or shown: everything but the key."""
        return {"endpoint": self.endpoint_id, "model": self.model_name, "concurrency": self.concurrency,
                "timeout_s": self.timeout_s, "max_retries": self.max_retries}

    def client(self, base_url: str) -> openai.AsyncOpenAI:
        # A key is mandatory for the client; local servers ignore it.
        key = self.api_key or os.environ.get("OPENAI_API_KEY") or "no-key"
        return openai.AsyncOpenAI(base_url=base_url, api_key=key, timeout=self.timeout_s,
                                  max_retries=self.max_retries)


def request_key(endpoint: str, model: str, messages: list[dict], params: dict, sample_index: int) -> str:
    """The identity of one teacher call: same inputs, same key, so a re-run never pays twice."""
    blob = json.dumps([endpoint, model, messages, params, sample_index], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


async def call_chat(client: openai.AsyncOpenAI, model: str, messages: list[dict], params: dict) -> dict:
    """One chat completion. Returns the result fields of a generation row; never raises for API errors."""
    started = time.monotonic()
    try:
        raw = await client.chat.completions.with_raw_response.create(model=model, messages=messages, **params)
        resp = raw.parse()
    except openai.APIError as exc:
        return {"status": "error", "error": _describe_error(exc), "latency_s": time.monotonic() - started,
                "attempts": _attempts(client, exc)}
    latency = time.monotonic() - started
    choice = resp.choices[0] if resp.choices else None
    if choice is None or choice.message is None:
        return {"status": "error", "error": "the endpoint returned no choices", "latency_s": latency}
    usage = resp.usage
    return {"status": "ok", "response": choice.message.content or "", "finish_reason": choice.finish_reason,
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None), "latency_s": latency,
            "attempts": int(raw.retries_taken) + 1}


def _attempts(client: openai.AsyncOpenAI, exc: openai.APIError) -> int:
    # The client does not report its retries on failure; a retryable error means it used them all.
    status = getattr(exc, "status_code", None)
    retryable = isinstance(exc, openai.APIConnectionError) or status in (408, 409, 429) or (status or 0) >= 500
    return client.max_retries + 1 if retryable else 1


def _describe_error(exc: openai.APIError) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    message = str(getattr(exc, "message", "") or exc)[:500]
    return f"{name} (HTTP {status}): {message}" if status else f"{name}: {message}"
