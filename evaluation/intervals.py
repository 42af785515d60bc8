"""95% bootstrap intervals for an eval's per-task measures: a mean, a ratio of sums, a paired difference.

Tasks are the unit resampled (with replacement, 2000 times, a fixed seed so a report is repeatable); the
interval is the 2.5th and 97.5th percentile of the resampled statistic. With fewer than two tasks there
is no interval (low and high are None). Pure numpy; tested on hand-built cases (tests/test_eval_metrics.py).
"""
from __future__ import annotations

import numpy as np

RESAMPLES = 2000
SEED = 0


def _resample_indices(n: int, resamples: int, seed: int):
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _interval(point: float | None, samples, n: int) -> dict:
    if point is None:
        return {"value": None, "low": None, "high": None, "n": n}
    if n < 2:
        return {"value": point, "low": None, "high": None, "n": n}
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"value": point, "low": float(low), "high": float(high), "n": n}


def mean(values, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """The mean of the values that are not None, with its interval: {value, low, high, n}."""
    kept = np.array([float(v) for v in values if v is not None], dtype=np.float64)
    if not len(kept):
        return _interval(None, None, 0)
    samples = kept[_resample_indices(len(kept), resamples, seed)].mean(axis=1)
    return _interval(float(kept.mean()), samples, len(kept))


def ratio(numerators, denominators, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """sum(numerators) / sum(denominators) over the tasks that have both (e.g. NLL per token), with its interval."""
    pairs = [(float(a), float(b)) for a, b in zip(numerators, denominators) if a is not None and b]
    if not pairs:
        return _interval(None, None, 0)
    num, den = (np.array(x) for x in zip(*pairs))
    idx = _resample_indices(len(pairs), resamples, seed)
    return _interval(float(num.sum() / den.sum()), num[idx].sum(axis=1) / den[idx].sum(axis=1), len(pairs))


def paired_difference(after, before, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """mean(after - before) over the tasks where both are known, with its interval (paired by task)."""
    diffs = [float(a) - float(b) for a, b in zip(after, before) if a is not None and b is not None]
    return mean(diffs, resamples, seed)


def paired_ratio_change(after_num, after_den, before_num, before_den, resamples: int = RESAMPLES,
                        seed: int = SEED) -> dict:
    """Relative change of a ratio of sums, after / before - 1 (e.g. NLL per token: -0.2 is 20% lower), paired
    by task over the tasks where both are known, with its interval."""
    rows = [tuple(map(float, r)) for r in zip(after_num, after_den, before_num, before_den)
            if None not in r and r[1] and r[3]]
    if not rows:
        return _interval(None, None, 0)
    a_num, a_den, b_num, b_den = (np.array(x) for x in zip(*rows))
    idx = _resample_indices(len(rows), resamples, seed)
    samples = (a_num[idx].sum(1) / a_den[idx].sum(1)) / (b_num[idx].sum(1) / b_den[idx].sum(1)) - 1
    point = (a_num.sum() / a_den.sum()) / (b_num.sum() / b_den.sum()) - 1
    return _interval(float(point), samples, len(rows))


def above(interval: dict, threshold: float = 0.0) -> bool:
    """Whether the whole interval lies above the threshold (False when there is none)."""
    return interval.get("low") is not None and interval["low"] > threshold


def below(interval: dict, threshold: float = 0.0) -> bool:
    """Whether the whole interval lies below the threshold (False when there is none)."""
    return interval.get("high") is not None and interval["high"] < threshold
