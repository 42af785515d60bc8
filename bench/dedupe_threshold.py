"""Calibrating the semantic-dedupe threshold on labelled paraphrases.

    python bench/dedupe_threshold.py [--model NAME] [--write] [--models-dir DIR]
    python bench/dedupe_threshold.py --compare     # MiniLM vs static vs static+minilm vs minilm-int8, one JSON line

data/paraphrases/pairs.jsonl holds hand-written pairs of short tasks and responses: paraphrases (the same
request or answer in other words: a dedupe should group them) and hard negatives (the same template with a
different meaning, e.g. "capital of France" / "capital of Germany": it must not). Each pair's cosine under the
bundled all-MiniLM-L6-v2 gives precision and recall at every threshold. The default is the threshold with the
best F0.5 (ties: the higher threshold): a false pair rejects a distinct row, which is lost data, while a missed
pair only keeps a duplicate, so precision weighs twice. Prints ONE JSON line; --write stores the curve in
data/paraphrases/curve.json, which the dedupe panel draws.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAIRS = ROOT / "data" / "paraphrases" / "pairs.jsonl"
CURVE = ROOT / "data" / "paraphrases" / "curve.json"
THRESHOLDS = [round(t, 2) for t in np.arange(0.50, 1.0001, 0.01)]
MODELS_DIR = Path.home() / ".cache" / "distill-studio" / "models"  # where "static" is distilled the first time


def pair_similarities(pairs: list[dict], model: str | None = None, models_dir: Path = MODELS_DIR) -> np.ndarray:
    """float32[len(pairs)]: each pair's cosine under `model`. For "static+minilm" (curation.hybrid) a pair's
    MiniLM cosine when its static cosine makes both texts candidates, else 0: as the dedupe compares them
    when the pair's two rows have no other look-alike."""
    from curation.embed import load_embedder, normalize_rows
    from curation.hybrid import CANDIDATE_THRESHOLD, is_hybrid

    if is_hybrid(model):
        static, fine = pair_similarities(pairs, "static", models_dir), pair_similarities(pairs, None)
        return np.where(static >= CANDIDATE_THRESHOLD - 1e-6, fine, 0.0)
    encoder = load_embedder(model, models_dir)
    a = normalize_rows(np.asarray(encoder.encode([p["a"] for p in pairs]), dtype=np.float32))
    b = normalize_rows(np.asarray(encoder.encode([p["b"] for p in pairs]), dtype=np.float32))
    return np.einsum("ij,ij->i", a, b)


def load_pairs() -> list[dict]:
    return [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]


def compare_models(models_dir: Path = MODELS_DIR, default_threshold: float = 0.82) -> dict:
    """MiniLM, the static model, static+minilm and minilm-int8 on all labelled pairs: each one's best F0.5 point, and
    its recall at the default threshold next to MiniLM's (the issue's target: within 0.03)."""
    pairs = load_pairs()
    same = np.array([p["same"] for p in pairs])
    out = {}
    for model in (None, "static", "static+minilm", "minilm-int8"):
        rows = curve(pair_similarities(pairs, model, models_dir), same)
        at = {r["threshold"]: r for r in rows}
        out[model or "minilm"] = {"best": best(rows), "at_default": at[default_threshold]}
    base = out["minilm"]["at_default"]["recall"]
    for name, entry in out.items():
        entry["recall_gap_at_best"] = round(base - entry["best"]["recall"], 4)
        entry["recall_gap_at_default"] = round(base - entry["at_default"]["recall"], 4)
        entry["within_0.03"] = min(entry["recall_gap_at_best"], entry["recall_gap_at_default"]) <= 0.03
    return {"default_threshold": default_threshold, "pairs": len(pairs), **out}


def curve(similarity: np.ndarray, same: np.ndarray) -> list[dict]:
    """Precision, recall and F1 of "similarity ≥ t means duplicate" at each threshold t."""
    rows = []
    for t in THRESHOLDS:
        called = similarity >= t - 1e-9
        tp, fp = int((called & same).sum()), int((called & ~same).sum())
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / int(same.sum()) if same.any() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f05 = 1.25 * precision * recall / (0.25 * precision + recall) if precision + recall else 0.0
        rows.append({"threshold": t, "precision": round(precision, 4), "recall": round(recall, 4),
                     "f1": round(f1, 4), "f0.5": round(f05, 4), "false_pairs": fp})
    return rows


def best(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: (r["f0.5"], r["threshold"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="embedding model (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--write", action="store_true", help=f"store the curve in {CURVE.relative_to(ROOT)}")
    parser.add_argument("--compare", action="store_true",
                        help="MiniLM vs static vs static+minilm vs minilm-int8: best points and recall gaps, one JSON "
                             "line")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where the static model is kept")
    args = parser.parse_args(argv)
    if args.compare:
        print(json.dumps({"bench": "dedupe_threshold_compare", **compare_models(args.models_dir)}))
        return 0
    pairs = load_pairs()
    similarity = pair_similarities(pairs, args.model, args.models_dir)
    out = {"bench": "dedupe_threshold", "model": args.model or "all-MiniLM-L6-v2 (bundled)", "pairs": len(pairs),
           "paraphrases": sum(p["same"] for p in pairs)}
    for kind in ("all", "task", "response"):
        pick = np.array([kind == "all" or p["kind"] == kind for p in pairs])
        same = np.array([p["same"] for p in pairs])[pick]
        rows = curve(similarity[pick], same)
        at = {r["threshold"]: r for r in rows}
        out[kind] = {"best": best(rows), "at_0.9": at[0.9], "at_0.8": at[0.8],
                     "paraphrase_cosine_min": round(float(similarity[pick][same].min()), 4),
                     "negative_cosine_max": round(float(similarity[pick][~same].max()), 4)}
        if kind == "all":
            out["curve"] = rows
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}))
    if args.write:
        CURVE.write_text(json.dumps({"model": out["model"], "pairs": out["pairs"], "best": out["all"]["best"],
                                     "curve": out["curve"]}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
