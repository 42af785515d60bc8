"""A teacher farm's settings: several OpenAI-compatible endpoints that serve one teacher model.

Kept apart from the router (curation/farm.py) so that `TeacherConfig` can hold a farm without importing the
client machinery. A farm is loaded from a small JSON or YAML file (`load_farm`), built by the UI from its
table of endpoints (`farm_from_rows`), or constructed directly; every field is checked here.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from curation.errors import ConfigError

ENDPOINT_FIELDS = ("name", "base_url", "model", "api_key_env", "concurrency", "rpm", "tpm")


@dataclass
class EndpointConfig:
    """One member of a farm.

    base_url: its OpenAI-compatible base URL (".../v1").
    name: how progress and the ledger's answered_by column show it (default: the base URL).
    model: the model name this endpoint serves the farm's model under (default: the farm's model).
    api_key_env: the environment variable holding its key (default OPENAI_API_KEY); the key itself is never
        written in the farm file, stored or shown.
    concurrency: calls in flight at this endpoint at once (1..256).
    rpm: requests per minute it accepts (None: no limit).
    tpm: tokens (prompt + completion) per minute it accepts (None: no limit). A call's tokens are estimated
        before it is sent (prompt characters / 4 + its max_tokens) and corrected from the usage it reports.
    """

    base_url: str
    name: str = ""
    model: str = ""
    api_key_env: str = ""
    concurrency: int = 16
    rpm: int | None = None
    tpm: int | None = None

    def __post_init__(self):
        self.base_url = (self.base_url or "").strip().rstrip("/")
        self.name = (self.name or "").strip() or self.base_url
        self.model, self.api_key_env = (self.model or "").strip(), (self.api_key_env or "").strip()
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint {self.name or '?'}: base_url must start with http:// or https:// "
                              f"(got {self.base_url!r})")
        if not 1 <= int(self.concurrency) <= 256:
            raise ConfigError(f"endpoint {self.name}: concurrency must be between 1 and 256 (got {self.concurrency})")
        for limit in ("rpm", "tpm"):
            value = getattr(self, limit)
            if value in ("", 0):
                value = None  # an empty table cell means no limit
            if value is not None and int(value) < 1:
                raise ConfigError(f"endpoint {self.name}: {limit} must be at least 1, or empty for no limit "
                                  f"(got {value})")
            setattr(self, limit, None if value is None else int(value))
        self.concurrency = int(self.concurrency)

    def api_key(self, fallback: str = "") -> str:
        """Its key from the environment; ConfigError when its own variable is named but not set."""
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(f"endpoint {self.name}: environment variable {self.api_key_env} (its API key) "
                                  "is not set; export it before starting the job")
            return key
        return fallback or os.environ.get("OPENAI_API_KEY") or "no-key"  # local servers ignore it


@dataclass
class TeacherFarm:
    """Several endpoints behind one teacher: calls go to the least loaded endpoint with rate budget left, and
    an endpoint that dies is rested and its calls sent to the others.

    name: the farm's identity in every request key ("farm:NAME"): adding, removing or moving an endpoint keeps
        the keys, so a rerun never pays twice for what any member answered. Rename it only to ask again.
    model: the teacher model every endpoint serves (its name in request keys and the price table).
    endpoints: the members (at least one).
    cooldown_s: seconds a dead endpoint (connection refused or reset, or fail_after failures in a row) rests
        before one call probes it again (1..3600).
    fail_after: 5xx answers or timeouts in a row that mark an endpoint down (1..20).
    """

    endpoints: tuple[EndpointConfig, ...]
    name: str = "farm"
    model: str = ""
    cooldown_s: float = 30.0
    fail_after: int = 3

    def __post_init__(self):
        self.name, self.model = (self.name or "").strip(), (self.model or "").strip()
        self.endpoints = tuple(e if isinstance(e, EndpointConfig) else EndpointConfig(**_known(e, "endpoint"))
                               for e in self.endpoints or ())
        if not self.name:
            raise ConfigError("a teacher farm needs a name (its identity in the request keys), e.g. \"vllm-8b\"")
        if not self.endpoints:
            raise ConfigError(f"teacher farm {self.name!r} has no endpoints; add at least one base_url")
        names = [e.name for e in self.endpoints]
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"teacher farm {self.name!r}: endpoint names must differ (twice: {', '.join(twice)}); "
                              "give each a name")
        if not 1 <= float(self.cooldown_s) <= 3600:
            raise ConfigError(f"cooldown_s must be between 1 and 3600 seconds (got {self.cooldown_s})")
        if not 1 <= int(self.fail_after) <= 20:
            raise ConfigError(f"fail_after must be between 1 and 20 (got {self.fail_after})")
        self.cooldown_s, self.fail_after = float(self.cooldown_s), int(self.fail_after)

    @property
    def concurrency(self) -> int:
        """Calls in flight across the farm at most."""
        return sum(e.concurrency for e in self.endpoints)

    def check_keys(self, fallback: str = "") -> None:
        """ConfigError before a job starts when a member's key variable is not set."""
        for endpoint in self.endpoints:
            endpoint.api_key(fallback)

    def public(self) -> dict:
        """The farm as stored with a run or written to a farm file (no keys: only their variables' names)."""
        return {"name": self.name, "model": self.model, "cooldown_s": self.cooldown_s, "fail_after": self.fail_after,
                "endpoints": [asdict(e) for e in self.endpoints]}


def _known(values: dict, what: str) -> dict:
    if not isinstance(values, dict):
        raise ConfigError(f"each {what} must be a mapping of settings (got {values!r})")
    allowed = ENDPOINT_FIELDS if what == "endpoint" else ("name", "model", "cooldown_s", "fail_after", "endpoints")
    unknown = sorted(set(values) - set(allowed))
    if "api_key" in unknown:
        raise ConfigError("a farm file must not hold API keys: name the environment variable with api_key_env")
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
    return values


def farm_from_dict(values: dict) -> TeacherFarm:
    return TeacherFarm(**_known(values, "farm"))


def load_farm(path: str | Path) -> TeacherFarm:
    """A farm from a JSON (.json) or YAML (.yaml/.yml) file; ConfigError naming the file when it is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the teacher farm file {path}: {exc.strerror}") from None
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    if is_yaml:
        import yaml  # PyYAML comes with gradio and transformers; only YAML farm files need it
    try:
        values = yaml.safe_load(text) if is_yaml else json.loads(text)
    except (ValueError, *((yaml.YAMLError,) if is_yaml else ())) as exc:  # a JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: not valid {'YAML' if is_yaml else 'JSON'}: {exc}") from None
    try:
        return farm_from_dict(values if isinstance(values, dict) else {"endpoints": values})
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def farm_from_rows(name: str, model: str, rows: list[list]) -> TeacherFarm | None:
    """A farm from the UI's table of endpoints (columns ENDPOINT_FIELDS); None when no row has a base URL."""
    endpoints = []
    for row in rows or []:
        values = dict(zip(ENDPOINT_FIELDS, [None if v is None or str(v).strip() == "" else v for v in row]))
        if not values.get("base_url"):
            continue
        values["concurrency"] = values.get("concurrency") or 16
        endpoints.append(EndpointConfig(**{k: v for k, v in values.items() if v is not None}))
    return TeacherFarm(tuple(endpoints), name=name or "farm", model=model) if endpoints else None
