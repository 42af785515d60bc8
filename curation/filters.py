"""Filters: pure predicates over candidate rows; each says what it removes and how many.

A row is a dict from `Store.candidate_rows` (the response is the edited text when there is one). A
filter is a frozen dataclass config: `removes(row)` decides one row, `evaluate(rows)` a whole list and
also reports side counts (rows kept because they have no judgment, …). Filters compose with `AnyOf`.

`preview_filter` changes nothing. `apply_filter` rejects the rows a filter removes with the reason
`filter:<name>` in one label batch; `store.undo_batch(batch_id)` puts them back. Only successful
generations that are pending or approved are candidates: a filter never revives a rejected row.
"""
from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

from curation.errors import ConfigError
from curation.store import ReviewFilter, Store

CANDIDATE_STATUSES = ("pending", "approved")

DEFAULT_REFUSALS = (
    "as an ai language model", "as an ai model", "as a language model", "as an ai assistant, i",
    "i cannot help with", "i can't help with", "i cannot assist with", "i can't assist with",
    "i'm sorry, but i cannot", "i'm sorry, but i can't", "i am sorry, but i cannot",
    "i cannot fulfill", "i can't fulfill", "i'm not able to help", "i am not able to help",
)


@dataclass(frozen=True)
class Evaluation:
    """Which rows a filter removes (parallel to the rows) and side counts worth showing the user."""

    mask: list[bool]
    notes: dict[str, int] = field(default_factory=dict)


class Filter:
    """Base of every filter: subclasses set `name` and implement `removes` and `description`."""

    name: ClassVar[str] = "filter"

    @property
    def description(self) -> str:
        raise NotImplementedError

    def removes(self, row: dict) -> bool:
        raise NotImplementedError

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        return Evaluation([self.removes(r) for r in rows])

    @property
    def reason(self) -> str:
        return f"filter:{self.name}"


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
def _row_text(row: dict, target: str) -> str:
    prompt = "\n".join(t for t in (row.get("instruction"), row.get("input")) if t)
    if target == "prompt":
        return prompt
    if target == "response":
        return row.get("response") or ""
    return prompt + "\n" + (row.get("response") or "")


TARGETS = ("response", "prompt", "both")
_TARGET_WORDS = {"response": "response", "prompt": "instruction", "both": "instruction + response"}


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
        return f"rows whose {_TARGET_WORDS[self.target]} {verb} /{self.pattern}/"

    def removes(self, row: dict) -> bool:
        found = self._compiled.search(_row_text(row, self.target)) is not None
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


# ---- leakage against the eval split -----------------------------------------------------------
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """Distinct n-grams of a token list; a list shorter than n is one gram of its own length."""
    if not tokens:
        return set()
    if len(tokens) < n:
        return {tuple(tokens)}
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class NgramIndex:
    """Inverted index gram -> eval items holding it; sizes[i] = distinct grams of eval item i."""

    postings: dict[tuple[str, ...], list[int]]
    sizes: list[int]
    lengths: frozenset[int]  # gram lengths present (n, plus shorter eval texts)


def build_ngram_index(texts: Sequence[str], n: int) -> NgramIndex:
    postings: dict[tuple[str, ...], list[int]] = {}
    sizes = []
    for i, text in enumerate(texts):
        grams = ngrams(words(text), n)
        sizes.append(len(grams))
        for g in grams:
            postings.setdefault(g, []).append(i)
    return NgramIndex(postings, sizes, frozenset(len(g) for g in postings))


def max_containment(text: str, index: NgramIndex) -> tuple[float, int | None]:
    """Largest share of one eval item's n-grams found in `text`, and which item (None when no overlap).

    Containment, not Jaccard: a long response that quotes an eval task in full is still a leak.
    """
    tokens = words(text)
    hits: Counter = Counter()
    for length in index.lengths:
        for g in ngrams(tokens, length) if len(tokens) >= length else ():
            for item in index.postings.get(g, ()):
                hits[item] += 1
    if not hits:
        return 0.0, None
    item, count = max(hits.items(), key=lambda kv: kv[1] / index.sizes[kv[0]])
    return count / index.sizes[item], item


@dataclass(frozen=True)
class LeakageFilter(Filter):
    """Removes training rows that contain ≥ `threshold` of an eval task's word n-grams.

    Rows of eval-split tasks are the eval set itself and are never removed.
    """

    eval_texts: tuple[str, ...]  # instruction + input of each eval-split task; see `from_store`
    n: int = 8
    threshold: float = 0.5  # containment in (0, 1]: share of the eval task's n-grams found in the row
    target: str = "both"  # "prompt", "response" or "both"
    name: ClassVar[str] = "leakage"

    def __post_init__(self):
        if not isinstance(self.n, int) or not 1 <= self.n <= 64:
            raise ConfigError(f"n-gram size n must be a whole number in [1, 64] (got {self.n!r}); 8 is usual")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"leakage threshold must be in (0, 1] (got {self.threshold!r}); 0.5 is usual")
        if self.target not in TARGETS:
            raise ConfigError(f"leakage target must be one of {', '.join(TARGETS)} (got {self.target!r})")
        object.__setattr__(self, "eval_texts", tuple(self.eval_texts))

    @classmethod
    def from_store(cls, store: Store, **config) -> "LeakageFilter":
        texts = tuple("\n".join(x for x in (t["instruction"], t["input"]) if x) for t in store.eval_tasks())
        return cls(eval_texts=texts, **config)

    @property
    def description(self) -> str:
        return (f"rows whose {_TARGET_WORDS[self.target]} holds ≥ {self.threshold:.0%} of the {self.n}-grams "
                f"of one of {len(self.eval_texts)} eval tasks")

    @functools.cached_property
    def _index(self) -> NgramIndex:
        return build_ngram_index(self.eval_texts, self.n)

    def removes(self, row: dict) -> bool:
        if row.get("split") == "eval" or not self.eval_texts:
            return False
        return max_containment(_row_text(row, self.target), self._index)[0] >= self.threshold


# ---- composition ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnyOf(Filter):
    """Removes a row when any of `filters` does; notes count each filter's removals."""

    filters: tuple[Filter, ...]

    def __post_init__(self):
        if not self.filters:
            raise ConfigError("combine at least one filter")
        object.__setattr__(self, "filters", tuple(self.filters))

    @property
    def name(self) -> str:  # type: ignore[override]
        return "+".join(f.name for f in self.filters)

    @property
    def description(self) -> str:
        return "; or ".join(f.description for f in self.filters)

    def removes(self, row: dict) -> bool:
        return any(f.removes(row) for f in self.filters)

    def evaluate(self, rows: Sequence[dict]) -> Evaluation:
        mask, notes = [False] * len(rows), {}
        for f in self.filters:
            result = evaluate_filter(f, rows)
            mask = [a or b for a, b in zip(mask, result.mask)]
            notes[f"{f.name}:removed"] = sum(result.mask)
            notes.update({f"{f.name}:{k}": v for k, v in result.notes.items()})
        return Evaluation(mask, notes)


def evaluate_filter(flt: Filter, rows: Sequence[dict]) -> Evaluation:
    result = flt.evaluate(rows)
    if len(result.mask) != len(rows):  # a broken custom filter must not label the wrong rows
        raise RuntimeError(f"filter {flt.name} returned {len(result.mask)} decisions for {len(rows)} rows")
    return result


# ---- preview and apply ------------------------------------------------------------------------
@dataclass(frozen=True)
class FilterPreview:
    name: str
    description: str
    removed_count: int
    total: int  # candidate rows the filter looked at
    sample: list[dict]  # the first removed rows (id, instruction, response, status, …), oldest first
    notes: dict[str, int]  # side counts, e.g. {"unjudged_kept": 3}


def preview_filter(store: Store, flt: Filter, review_filter: ReviewFilter | None = None,
                   sample_size: int = 20) -> FilterPreview:
    """What `apply_filter` would remove, without changing anything."""
    rows = store.candidate_rows(review_filter, CANDIDATE_STATUSES)
    result = evaluate_filter(flt, rows)
    removed = [r for r, hit in zip(rows, result.mask) if hit]
    return FilterPreview(flt.name, flt.description, len(removed), len(rows), removed[:sample_size], result.notes)


def apply_filter(store: Store, flt: Filter, review_filter: ReviewFilter | None = None) -> int | None:
    """Reject every row the filter removes (reason 'filter:<name>', for `AnyOf` 'filter:a+b') in one
    label batch; returns the batch id to pass to `store.undo_batch`, or None when nothing was removed."""
    rows = store.candidate_rows(review_filter, CANDIDATE_STATUSES)
    result = evaluate_filter(flt, rows)
    ids = [r["id"] for r, hit in zip(rows, result.mask) if hit]
    return store.label_batch(ids, "rejected", reason=flt.reason)
