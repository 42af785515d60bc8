"""Leakage against the eval split: word n-gram containment of eval tasks in training rows (pure functions on
token lists), and `LeakageFilter`, which removes the rows that hold too much of one eval task."""
from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Sequence

from curation.errors import ConfigError
from curation.filters import TARGET_WORDS, TARGETS, Filter, row_text
from curation.store import Store

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
        return (f"rows whose {TARGET_WORDS[self.target]} holds ≥ {self.threshold:.0%} of the {self.n}-grams "
                f"of one of {len(self.eval_texts)} eval tasks")

    @functools.cached_property
    def _index(self) -> NgramIndex:
        return build_ngram_index(self.eval_texts, self.n)

    def removes(self, row: dict) -> bool:
        if row.get("split") == "eval" or not self.eval_texts:
            return False
        return max_containment(row_text(row, self.target), self._index)[0] >= self.threshold
