"""Which backend runs the bundled MiniLM fastest without losing recall? One JSON line.

    python bench/minilm_backends.py [--rows 3000] [--batch-size 64]

Each backend encodes the same sample of bench/dedupe.py's corpus (sorted by length, as embed_items does) and the
90 labelled paraphrase pairs (data/paraphrases): rows/s, the worst cosine between its vectors and
sentence-transformers' own, and precision / recall at MiniLM's default threshold 0.82 and at its best F0.5.
Backends: sentence-transformers (torch fp32, the reference), torch bf16 autocast, torch dynamic int8 (Linear
layers), ONNX Runtime fp32 (what the studio uses: curation.onnx_embed), ONNX Runtime dynamic int8 (per tensor and
per channel), and OpenVINO static int8 (NNCF post-training quantisation calibrated on the bundled seeds and documents:
the studio's "minilm-int8", curation.int8_embed). bf16 is fast only on CPUs with bf16 instructions (AVX512-BF16,
AMX) and is not used for that reason.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def torch_encoder(model, tokenizer, max_tokens: int, batch_size: int, dtype=None):
    """encode(texts) with a Hugging Face encoder on torch, mean pooled like the sentence-transformers model."""
    import torch

    from curation.embed import normalize_rows

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            for start in range(0, len(texts), batch_size):
                tokens = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                   max_length=max_tokens, return_tensors="pt")
                hidden = model(**tokens).last_hidden_state.float().numpy()
                mask = tokens["attention_mask"].numpy()[..., None].astype(np.float32)
                out.append(normalize_rows((hidden * mask).sum(1) / mask.sum(1)))
        return np.concatenate(out)
    return encode


def backends(models_dir: Path, batch_size: int) -> dict:
    """name -> encode(texts) for every backend measured."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from curation.embed import default_embedder_path, load_embedder, normalize_rows
    from curation.onnx_embed import OnnxEmbedder, ensure_onnx_model

    reference = load_embedder()
    bert, tokenizer, max_tokens = reference[0].auto_model.eval(), reference.tokenizer, reference.max_seq_length
    onnx_path, minilm = ensure_onnx_model(models_dir, default_embedder_path()), default_embedder_path()
    found = {"sentence_transformers_fp32": lambda t: normalize_rows(reference.encode(t, batch_size=batch_size)),
             "torch_bf16_autocast": torch_encoder(bert, tokenizer, max_tokens, batch_size, torch.bfloat16),
             "onnxruntime_fp32": OnnxEmbedder(onnx_path, minilm).encode}
    int8 = torch.ao.quantization.quantize_dynamic(bert, {torch.nn.Linear}, dtype=torch.qint8)
    found["torch_int8_dynamic"] = torch_encoder(int8, tokenizer, max_tokens, batch_size)
    for name, per_channel in (("onnxruntime_int8", False), ("onnxruntime_int8_per_channel", True)):
        path = models_dir / f"{name}.onnx"
        quantize_dynamic(str(onnx_path), str(path), weight_type=QuantType.QInt8, per_channel=per_channel)
        found[name] = OnnxEmbedder(path, minilm).encode
    found["openvino_int8_nncf"] = load_embedder("minilm-int8", models_dir).encode
    return found


def measure(encode, sample: list[str], pairs: list[dict], same: np.ndarray, reference: np.ndarray | None) -> dict:
    from dedupe_threshold import best, curve

    encode(sample[:64])  # warm
    started = time.perf_counter()
    vectors = encode(sample)
    seconds = time.perf_counter() - started
    similarity = np.einsum("ij,ij->i", encode([p["a"] for p in pairs]), encode([p["b"] for p in pairs]))
    rows = curve(similarity, same)
    out = {"rows_per_s": round(len(sample) / seconds, 1), "at_0.82": {r["threshold"]: r for r in rows}[0.82],
           "best": best(rows), "load_avg_1m": round(os.getloadavg()[0], 2)}
    if reference is not None:
        out["worst_cosine_to_reference"] = round(float(np.einsum("ij,ij->i", vectors, reference).min()), 5)
    return out, vectors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="bench corpus rows encoded per backend")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    import torch

    from dedupe import make_corpus
    from dedupe_threshold import load_pairs

    torch.set_num_threads(os.cpu_count() or 1)
    texts, _ = make_corpus(max(args.rows * 10, 10_000))
    sample = sorted((texts[i] for i in np.random.default_rng(0).choice(len(texts), args.rows, replace=False)),
                    key=len)
    pairs = load_pairs()
    same = np.array([p["same"] for p in pairs])
    line = {"bench": "minilm_backends", "rows": args.rows, "cpus": os.cpu_count(), "torch_threads":
            torch.get_num_threads(), "backends": {}}
    with tempfile.TemporaryDirectory() as folder:
        reference = None
        for name, encode in backends(Path(folder), args.batch_size).items():
            line["backends"][name], vectors = measure(encode, sample, pairs, same, reference)
            reference = vectors if reference is None else reference
    base = line["backends"]["sentence_transformers_fp32"]
    for entry in line["backends"].values():
        entry["speedup"] = round(entry["rows_per_s"] / base["rows_per_s"], 2)
        entry["recall_gap_at_0.82"] = round(base["at_0.82"]["recall"] - entry["at_0.82"]["recall"], 4)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
