"""Holding tasks out for evaluation: a stratified random split by skill and domain, reproducible by seed."""
from __future__ import annotations

import math
import random
from collections import defaultdict

from curation.errors import ConfigError


def stratified_split(tasks: list[dict], fraction: float, seed: int = 0,
                     keys: tuple[str, ...] = ("skill", "domain")) -> list[int]:
    """Ids of the tasks to hold out: `fraction` of all tasks, spread over the strata in proportion.

    Strata are the distinct values of `keys` (None is a value). Counts per stratum come from the
    largest-remainder method, so the total is exactly round(fraction * len(tasks)) and small strata
    still get their share over the whole set. Same tasks + seed -> same split.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"eval fraction must be between 0 and 1, exclusive (got {fraction})")
    strata: dict[tuple, list[int]] = defaultdict(list)
    for task in sorted(tasks, key=lambda t: t["id"]):
        strata[tuple(task.get(k) for k in keys)].append(task["id"])
    target = round(fraction * len(tasks))
    quotas = {s: fraction * len(ids) for s, ids in strata.items()}
    counts = {s: math.floor(q) for s, q in quotas.items()}
    by_remainder = sorted(strata, key=lambda s: (-(quotas[s] - counts[s]), str(s)))
    for s in by_remainder[: target - sum(counts.values())]:
        counts[s] += 1
    rng = random.Random(seed)
    held_out = []
    for s in sorted(strata, key=str):
        ids = list(strata[s])
        rng.shuffle(ids)
        held_out += ids[: counts[s]]
    return sorted(held_out)


def hold_out(store, fraction: float, seed: int = 0) -> tuple[list[int], int]:
    """Re-split the whole workspace: `stratified_split` of all tasks to eval, every other task to train.
    Returns (the held-out ids, the number of tasks). Validates before anything changes."""
    tasks = store.tasks()
    held = stratified_split(tasks, fraction, seed=seed)
    store.set_split([t["id"] for t in tasks], "train")
    store.set_split(held, "eval")
    return held, len(tasks)
