"""The filter kinds a user picks from: response length, a regex, refusals and boilerplate, judge score, and
language. Each is a frozen dataclass config whose fields are its settings (see filters.py for the base and
for applying one; leakage.py for the eval-overlap filter).
"""
from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

from curation.errors import ConfigError
from curation.filters import TARGET_WORDS, TARGETS, Evaluation, Filter, row_text

DEFAULT_REFUSALS = (
    "as an ai language model", "as an ai model", "as a language model", "as an ai assistant, i",
    "i cannot help with", "i can't help with", "i cannot assist with", "i can't assist with",
    "i'm sorry, but i cannot", "i'm sorry, but i can't", "i am sorry, but i cannot",
    "i cannot fulfill", "i can't fulfill", "i'm not able to help", "i am not able to help",
)


# ---- length -----------------------------------------------------------------------------------
def response_length(row: dict, unit: str) -> int:
    """Characters, or tokens: the teacher's completion_tokens unless missing or the response was edited,
    then a whitespace estimate."""
    text = row.get("response") or ""
    if unit == "chars":
        return len(text)
    tokens = row.get("completion_tokens")
    if tokens is None or row.get("edited"):
        return len(text.split())
    return int(tokens)


@dataclass(frozen=True)
class LengthFilter(Filter):
    """Removes responses shorter than `min_length` or longer than `max_length` (in `unit`)."""

    unit: str = "tokens"  # "tokens" or "chars"
    min_length: int | None = None  # inclusive lower bound; None = no lower bound
    max_length: int | None = None  # inclusive upper bound; None = no upper bound
    name: ClassVar[str] = "length"

    def __post_init__(self):
        if self.unit not in ("tokens", "chars"):
            raise ConfigError(f"length unit must be 'tokens' or 'chars' (got {self.unit!r})")
        if self.min_length is None and self.max_length is None:
            raise ConfigError("set min_length, max_length or both for the length filter")
        for key in ("min_length", "max_length"):
            value = getattr(self, key)
            if isinstance(value, float) and value.is_integer():  # UI number fields give floats
                object.__setattr__(self, key, value := int(value))
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"{key} must be a whole number ≥ 0 (got {value!r})")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ConfigError(f"min_length ({self.min_length}) must not exceed max_length ({self.max_length})")

    @property
    def description(self) -> str:
        bounds = [f"< {self.min_length}" if self.min_length is not None else "",
                  f"> {self.max_length}" if self.max_length is not None else ""]
        return f"responses with {' or '.join(b for b in bounds if b)} {self.unit}"

    def removes(self, row: dict) -> bool:
        length = response_length(row, self.unit)
        return ((self.min_length is not None and length < self.min_length)
                or (self.max_length is not None and length > self.max_length))


# ---- regex ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegexFilter(Filter):
    """exclude: removes rows whose text matches `pattern`; include: removes rows whose text does not."""

    pattern: str
    mode: str = "exclude"  # "exclude" or "include"
    target: str = "response"  # "response", "prompt" (instruction + input) or "both"
    ignore_case: bool = True
    name: ClassVar[str] = "regex"
    _compiled: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.mode not in ("exclude", "include"):
            raise ConfigError(f"regex mode must be 'exclude' or 'include' (got {self.mode!r})")
        if self.target not in TARGETS:
            raise ConfigError(f"regex target must be one of {', '.join(TARGETS)} (got {self.target!r})")
        if not self.pattern:
            raise ConfigError("the regex pattern is empty; type a pattern such as \\bTODO\\b")
        try:
            compiled = re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)
        except re.error as e:
            raise ConfigError(f"regex {self.pattern!r} is invalid: {e.msg} at position {e.pos}; "
                              "escape special characters such as ( [ + * ? with a backslash") from None
        object.__setattr__(self, "_compiled", compiled)

    @property
    def description(self) -> str:
        verb = "match" if self.mode == "exclude" else "do not match"
        return f"rows whose {TARGET_WORDS[self.target]} {verb} /{self.pattern}/"

    def removes(self, row: dict) -> bool:
        found = self._compiled.search(row_text(row, self.target)) is not None
        return found if self.mode == "exclude" else not found


# ---- refusals & boilerplate -------------------------------------------------------------------
def _normalise(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").lower().split())


def refusal_kind(row: dict, phrases: Sequence[str] = DEFAULT_REFUSALS, empty: bool = True,
                 truncated: bool = True) -> str | None:
    """'empty', 'truncated' (stopped at max tokens) or 'boilerplate' (a refusal phrase); None when clean."""
    text = row.get("response") or ""
    if empty and not text.strip():
        return "empty"
    if truncated and row.get("finish_reason") == "length" and not row.get("edited"):
        return "truncated"
    norm = _normalise(text)
    if any(p in norm for p in phrases):
        return "boilerplate"
    return None


@dataclass(frozen=True)
class RefusalFilter(Filter):
    """Removes refusals and boilerplate ("As an AI language model"), empty and truncated responses."""

    phrases: tuple[str, ...] = DEFAULT_REFUSALS  # matched case-insensitively anywhere in the response
    empty: bool = True  # remove empty / whitespace-only responses
    truncated: bool = True  # remove responses cut off at max tokens (finish_reason 'length'), unless edited
    name: ClassVar[str] = "refusal"

    def __post_init__(self):
        cleaned = tuple(_normalise(p) for p in self.phrases if p.strip())
        if not cleaned and not self.empty and not self.truncated:
            raise ConfigError("the refusal filter checks nothing: give phrases or turn on empty / truncated")
        object.__setattr__(self, "phrases", cleaned)

    @property
    def description(self) -> str:
        parts = [f"{len(self.phrases)} refusal phrases"] + (["empty"] if self.empty else []) \
            + (["truncated at max tokens"] if self.truncated else [])
        return "responses that are " + ", ".join(parts)

    def removes(self, row: dict) -> bool:
        return refusal_kind(row, self.phrases, self.empty, self.truncated) is not None

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        kinds = [refusal_kind(r, self.phrases, self.empty, self.truncated) for r in rows]
        return Evaluation([k is not None for k in kinds], dict(Counter(k for k in kinds if k)))


# ---- judge score ------------------------------------------------------------------------------
@dataclass(frozen=True)
class JudgeScoreFilter(Filter):
    """Removes rows whose mean judge score is below `threshold`; unjudged rows are kept and counted."""

    threshold: float = 5.0
    name: ClassVar[str] = "judge_score"

    def __post_init__(self):
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise ConfigError(f"judge score threshold must be a number such as 5 (got {self.threshold!r})")

    @property
    def description(self) -> str:
        return f"rows with a mean judge score below {self.threshold:g}"

    def removes(self, row: dict) -> bool:
        score = row.get("judge_score")
        return score is not None and score < self.threshold

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        return Evaluation([self.removes(r) for r in rows],
                          {"unjudged_kept": sum(r.get("judge_score") is None for r in rows)})


# ---- language ---------------------------------------------------------------------------------
def _lingua_language(name: str):
    from lingua import Language
    try:
        return getattr(Language, name.strip().upper())
    except AttributeError:
        raise ConfigError(f"unknown language {name!r}; use English names such as english, french, "
                          "german, spanish, chinese") from None


@dataclass(frozen=True)
class LanguageFilter(Filter):
    """Keeps responses in the `allowed` languages (lingua, offline); removes the rest.

    Detection is restricted to `allowed` + `detect` for speed and accuracy; responses shorter than
    `min_chars` or that lingua cannot tell apart are kept and counted.
    """

    allowed: tuple[str, ...] = ("english",)
    detect: tuple[str, ...] = ("english", "french", "german", "spanish", "portuguese", "italian", "chinese",
                               "japanese", "russian")
    min_chars: int = 20
    name: ClassVar[str] = "language"

    def __post_init__(self):
        if not self.allowed:
            raise ConfigError("name at least one allowed language, e.g. english")
        if not isinstance(self.min_chars, int) or self.min_chars < 0:
            raise ConfigError(f"min_chars must be a whole number ≥ 0 (got {self.min_chars!r})")
        object.__setattr__(self, "allowed", tuple(a.strip().lower() for a in self.allowed))
        object.__setattr__(self, "detect", tuple(d.strip().lower() for d in self.detect))
        for name in set(self.allowed) | set(self.detect):
            _lingua_language(name)

    @property
    def description(self) -> str:
        return f"responses not in {', '.join(self.allowed)}"

    @functools.cached_property
    def _detector(self):
        # Built once per filter: loading the language models is the slow part.
        from lingua import LanguageDetectorBuilder
        languages = {_lingua_language(n) for n in (*self.allowed, *self.detect)}
        if len(languages) == 1:  # lingua needs two languages to compare; one means "anything else"
            languages.add(_lingua_language("english" if "english" not in self.allowed else "french"))
        return LanguageDetectorBuilder.from_languages(*languages).with_minimum_relative_distance(0.1).build()

    def languages(self, rows: Sequence[dict]) -> list[str | None]:
        """The detected language name of each row's response (None: too short or undecided)."""
        texts = [(r.get("response") or "").strip() for r in rows]
        todo = [i for i, t in enumerate(texts) if len(t) >= self.min_chars]
        found = self._detector.detect_languages_in_parallel_of([texts[i] for i in todo]) if todo else []
        result: list[str | None] = [None] * len(texts)
        for i, lang in zip(todo, found):
            result[i] = lang.name.lower() if lang is not None else None
        return result

    def removes(self, row: dict) -> bool:
        return self.evaluate([row]).mask[0]

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        langs = self.languages(rows)
        return Evaluation([lang is not None and lang not in self.allowed for lang in langs],
                          {"undetected_kept": sum(lang is None for lang in langs)})
