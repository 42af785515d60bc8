"""Checkable expectations of a task (`tasks.expected`): what the evaluation's pass rate and GRPO's reward read.

One string, a kind prefix and a value:
  "exact:TEXT"      the answer equals TEXT
  "contains:TEXT"   the answer contains TEXT
  "regex:PATTERN"   PATTERN (Python `re`) is found somewhere in the answer
Both sides are normalised first: case-folded, runs of whitespace made one space, trimmed; an exact
answer may also end with one full stop ("4." passes "exact:4"). A regex is matched case-insensitively
against the normalised answer, so write it for single spaces.
"""
from __future__ import annotations

import re

from curation.errors import ConfigError

EXPECTATION_KINDS = ("exact", "contains", "regex")


def normalise(text: str | None) -> str:
    """Case-folded, whitespace collapsed to single spaces, trimmed."""
    return " ".join((text or "").casefold().split())


def parse_expectation(expected: str) -> tuple[str, str]:
    """(kind, value) of an expectation string; ConfigError saying the format when it is not one."""
    kind, sep, value = (expected or "").partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in EXPECTATION_KINDS or not value.strip():
        raise ConfigError(f"an expectation is 'exact:TEXT', 'contains:TEXT' or 'regex:PATTERN' (got {expected!r})")
    if kind == "regex":
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"expectation regex {value!r} does not compile: {exc}") from None
    return kind, value


def check_expectation(expected: str | None, answer: str | None) -> bool | None:
    """Whether `answer` meets `expected`; None when the task carries no expectation."""
    if not expected:
        return None
    kind, value = parse_expectation(expected)
    got = normalise(answer)
    if kind == "exact":
        want = normalise(value)
        return got == want or got == want + "."
    if kind == "contains":
        return normalise(value) in got
    return re.search(value, got, re.IGNORECASE) is not None
