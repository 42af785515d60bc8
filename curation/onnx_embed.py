"""The bundled all-MiniLM-L6-v2 on ONNX Runtime: the same vectors as sentence-transformers, about 2x faster on CPU.

The model is exported once from the installed package into the workspace's models folder (a few seconds; written
aside and renamed, so a crash leaves no half file) and run by onnxruntime's CPU provider, which picks its kernels
for the CPU it runs on: nothing depends on the machine that exported it. Pooling is the model's own (the mean of
the token vectors under the attention mask, then unit length) and texts are cut at its max_seq_length, so vectors
match `SentenceTransformer.encode` to float rounding and are stored under the same key (`tests/test_onnx_embed.py`
checks it). Measured on 3,000 bench texts, 2 cores (`python bench/minilm_backends.py`, bench/RESULTS.md): 482 rows/s
with sentence-transformers, 972 with this, the same recall on the labelled paraphrases. int8 quantisation was 3.5-4x
faster but moved vectors (worst cosine to the model's 0.83-0.97) and lost recall at 0.82 (0.62-0.80 vs 0.84), so it
is not used.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

ONNX_FOLDER = "all-MiniLM-L6-v2-onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_model_path(models_dir: Path) -> Path:
    return Path(models_dir) / ONNX_FOLDER / "model.onnx"


def ensure_onnx_model(models_dir: Path, minilm_dir: Path) -> Path:
    """The exported model under `models_dir`, exported from the sentence-transformers folder `minilm_dir` the first
    time; fails (ValueError) when that model is not Transformer -> mean Pooling -> Normalize, which is all this
    module reproduces."""
    target = onnx_model_path(models_dir)
    if target.exists():
        return target
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_dir), device="cpu")
    if [type(m).__name__ for m in model] != ["Transformer", "Pooling", "Normalize"] or \
            model[1].get_config_dict().get("pooling_mode") != "mean":
        raise ValueError(f"{minilm_dir} is not a Transformer with mean pooling and Normalize: cannot run it on ONNX")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Traced on a padded batch of two, so the graph keeps the attention mask's path for padded rows.
    sample = model.tokenizer(["a sentence to trace the graph with", "short"], padding=True, return_tensors="pt")
    fd, aside = tempfile.mkstemp(dir=target.parent, suffix=".onnx.part")
    os.close(fd)
    try:
        _export(model[0].auto_model.eval(), sample, aside)
        os.replace(aside, target)
    finally:
        Path(aside).unlink(missing_ok=True)
    return target


def _export(transformer, sample: dict, path: str) -> None:
    """Trace `transformer` (a Hugging Face encoder) to an ONNX file whose one output is its last hidden state."""
    import torch

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    with warnings.catch_warnings():  # the tracer's notes on Python branches it records as constants
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(), tuple(sample[k] for k in INPUTS), path, input_names=list(INPUTS),
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={k: {0: "batch", 1: "tokens"} for k in (*INPUTS, "last_hidden_state")})


class OnnxEmbedder:
    """`encode` like a SentenceTransformer's (the keywords `embed_items` passes), on ONNX Runtime. Picklable: Ray
    ships it to its workers, where the session is opened again from the model's bytes."""

    def __init__(self, model_path: Path, minilm_dir: Path, threads: int | None = None):
        self.model_bytes = Path(model_path).read_bytes()
        self.minilm_dir = str(minilm_dir)
        self.max_tokens = max_tokens(minilm_dir)
        self.threads = threads
        self._open()

    def _open(self) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cpu_threads(self.threads)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(self.model_bytes, options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(self.minilm_dir)
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("session", "tokenizer")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def encode(self, texts: list[str], batch_size: int = 64, convert_to_numpy: bool = True,
               show_progress_bar: bool = False, **_) -> np.ndarray:
        """float32[n, d] unit vectors, in the order of `texts`."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        for start in range(0, len(texts), max(batch_size, 1)):
            picked = order[start:start + batch_size]
            tokens = self.tokenizer([texts[i] for i in picked], padding=True, truncation=True,
                                    max_length=self.max_tokens, return_tensors="np")
            hidden = self.session.run(None, {k: tokens[k].astype(np.int64) for k in INPUTS})[0]
            out[picked] = mean_pool(hidden, tokens["attention_mask"])
        return out


def cpu_threads(threads: int | None = None) -> int:
    """`threads` when given, else OMP_NUM_THREADS where it is set (Ray sets it to a worker's CPUs), else every core
    this process may use."""
    return threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))


def max_tokens(minilm_dir: Path) -> int:
    """Where the sentence-transformers model in `minilm_dir` cuts a text (its max_seq_length)."""
    import json

    config = json.loads((Path(minilm_dir) / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return int(config["max_seq_length"])


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """The model's pooling: the mean of the token vectors `hidden` float[n, tokens, d] under the mask, unit length."""
    mask = attention_mask[..., None].astype(np.float32)
    mean = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
