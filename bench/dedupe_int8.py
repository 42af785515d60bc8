"""`bench/dedupe.py --encoder minilm-int8`: a million rows end to end on 2 cores with MiniLM quantised to int8 on
OpenVINO (curation.int8_embed), next to semhash 0.5.0 with the very same int8 encoder, the labelled recall
comparison, and how far int8's groups are from float MiniLM's.

Timed in one process run on the corpus of bench/dedupe.py:
- ours: the int8 embedder encodes every text (model load timed apart), then the studio's grouping
  (curation.dedupe_groups.semantic_labels), as with every other encoder;
- semhash (unless --no-semhash): `SemHash.from_records(records, columns, model=...)` then `self_deduplicate(threshold)`
  end to end (bench/dedupe_scale.semhash_end_to_end), given our loaded int8 embedder as its model, so both tools
  encode with the same vectors and the difference is the rest of the pipeline (as `--encoder static` does);
- fidelity (--fidelity-rows, the first rows of the shuffled corpus): the same grouping on float MiniLM vectors (ONNX
  Runtime, curation.onnx_embed, what the default model stores) and on int8's; pairwise precision / recall of each
  against the planted pairs, and of int8's groups against float MiniLM's;
- labelled: bench/dedupe_threshold.compare_models, every model's recall at 0.82 and at its best F0.5 next to MiniLM's.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

def encode_and_group(embedder, texts: list[str], threshold: float) -> tuple[np.ndarray, dict]:
    """(labels int64[n], seconds by step and the encode rate) of `embedder` over `texts` and the studio's grouping."""
    from dedupe_scale import encode_and_group as timed

    labels, seconds, _ = timed(embedder, texts, threshold)
    return labels, {**seconds, "rows_per_s": round(len(texts) / seconds["encode_s"], 1)}


def fidelity(texts: list[str], planted: np.ndarray, threshold: float, int8, minilm) -> dict:
    """int8 and float MiniLM on the same rows: each against the planted pairs, and int8's groups against MiniLM's."""
    from dedupe import pair_scores

    int8_labels, int8_s = encode_and_group(int8, texts, threshold)
    float_labels, float_s = encode_and_group(minilm, texts, threshold)
    return {"rows": len(texts), "minilm_float": {**float_s, **pair_scores(float_labels, planted)},
            "minilm_int8": {**int8_s, **pair_scores(int8_labels, planted)},
            "int8_vs_float_groups": pair_scores(int8_labels, float_labels),
            "speedup": round(float_s["encode_s"] / int8_s["encode_s"], 2)}


def run_int8(args, sizes: list[int]) -> dict:
    import importlib.metadata
    import os
    import platform

    import pandas as pd
    from dedupe import _pairs, make_corpus, pair_scores
    from dedupe_scale import load, semhash_end_to_end
    from dedupe_threshold import compare_models

    from curation.embed import load_embedder

    models: Path = args.models_dir
    line = {"bench": "dedupe", "encoder": "minilm-int8 (curation.int8_embed), the same encoder for both tools",
            "threshold": args.threshold, "openvino": importlib.metadata.version("openvino"),
            "nncf": importlib.metadata.version("nncf"), "semhash": importlib.metadata.version("semhash"),
            "cpus": os.cpu_count(), "machine": platform.machine(), "load_avg_1m_start": load(),
            "labelled": compare_models(models), "sizes": []}
    start = time.perf_counter()
    int8 = load_embedder("minilm-int8", models)
    int8.encode(["warm the compiled model"])
    load_s = round(time.perf_counter() - start, 2)
    texts, planted = make_corpus(args.fidelity_rows)
    line["fidelity"] = fidelity(texts, planted, args.threshold, int8, load_embedder(None, models))
    for n in sizes:
        texts, planted = make_corpus(n)
        labels, ours = encode_and_group(int8, texts, args.threshold)
        semhash_labels, semhash_s = (semhash_end_to_end(texts, args.threshold, model=int8)
                                     if not args.no_semhash else (None, None))
        line["sizes"].append({
            "rows": n, "planted_pairs": _pairs(pd.Series(planted).value_counts()),
            "ours": {"load_s": load_s, **ours, **pair_scores(labels, planted)},
            "semhash": {**semhash_s, **pair_scores(semhash_labels, planted)} if semhash_s else "not run",
            "ratio_total": round(ours["total_s"] / semhash_s["total_s"], 3) if semhash_s else None})
    big = line["sizes"][-1] if line["sizes"] else None
    line["goals"] = {"int8_recall_within_0.03": line["labelled"]["minilm-int8"]["within_0.03"]}
    if big:
        line["goals"].update(rows=big["rows"], ours_total_le_600s=big["ours"]["total_s"] <= 600,
                             ratio_total_le_0_5=big["ratio_total"] <= 0.5 if big["ratio_total"] else None)
    line["load_avg_1m_end"] = load()
    return line
