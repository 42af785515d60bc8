"""logprobs — the teacher answers and returns the top-k log-probabilities of every token (survey 3.1, Feature).

Reads and renders like label (label_user.j2); asks for OpenAI-style `logprobs` / `top_logprobs`.
Writes: a generation with `logprobs` = JSON [{token, logprob, top: [{token, logprob}, ...]}, ...], for
KD on the teacher's distribution. An endpoint that does not support logprobs — it refuses the parameter
or answers without the field — stops the job at the first such answer, with a message saying so.
"""
from __future__ import annotations

from dataclasses import dataclass

from curation.errors import ConfigError
from curation.methods.base import Call, Method, Stage, Writes
from curation.methods.label import GenerateConfig, plan_answers

UNSUPPORTED = ("the endpoint {endpoint} (model {model}) does not return token logprobs: {why}. "
               "Use an endpoint that supports OpenAI-style logprobs/top_logprobs (OpenAI chat models, vLLM, "
               "the embedded llama.cpp server), or the label method for answers without them.")


@dataclass
class LogprobsConfig(GenerateConfig):
    """label's fields, plus top_logprobs: alternatives kept per token (0..20; 0 keeps only the chosen token's)."""

    top_logprobs: int = 5

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= int(self.top_logprobs) <= 20:
            raise ConfigError(f"top_logprobs must be between 0 and 20 (got {self.top_logprobs})")
        self.top_logprobs = int(self.top_logprobs)

    def params(self) -> dict:
        return {**super().params(), "logprobs": True, "top_logprobs": self.top_logprobs}


def _plan(ctx) -> list[Call]:
    return plan_answers(ctx, "logprobs", ctx.config.params())


def unsupported_reason(result: dict) -> str | None:
    """Why a finished call shows the endpoint cannot give logprobs, or None when it can (or failed otherwise)."""
    if result["status"] == "ok":
        return None if result.get("logprobs") else "its answer came without a 'logprobs' field"
    error = result.get("error") or ""
    if "logprob" in error.lower() and any(f"HTTP {s}" in error for s in (400, 404, 422, 501)):
        return f"it refused the request ({error[:200]})"
    return None


def _write(ctx, call: Call, result: dict) -> Writes:
    why = unsupported_reason(result)
    if why is None:
        return Writes(generation={**call.generation_row(result, ctx.run_id), "logprobs": result.get("logprobs")})
    message = UNSUPPORTED.format(endpoint=call.endpoint, model=call.model, why=why)
    # The answer is kept as a failed row (the job's product is the logprobs), with the reason as its error.
    failed = {**result, "status": "error", "error": message, "response": None}
    return Writes(generation=call.generation_row(failed, ctx.run_id), raw_output=result.get("response"),
                  result=failed, fatal=message)


METHOD = Method("logprobs", LogprobsConfig, "the teacher answers each task and its top-k token logprobs are "
                "stored for knowledge distillation on its distribution",
                lambda config: [Stage("answer", _plan, _write)],
                writers={"answer": _write})
