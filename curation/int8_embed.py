"""The bundled all-MiniLM-L6-v2 quantised to int8 and run on OpenVINO: "minilm-int8", about 2.5x faster than MiniLM
on ONNX Runtime, with MiniLM's recall on the labelled paraphrases.

Built once per workspace, in its models folder (about 10 s): the ONNX graph of curation.onnx_embed is read by
OpenVINO and quantised by NNCF's post-training quantisation (`nncf.quantize`, transformer preset: int8 weights per
channel, int8 activations whose ranges are measured on calibration texts). The calibration texts are the studio's
own bundled seed tasks and document sentences: the same on every machine, and never the labelled pairs or the bench
corpus. The rest of the graph (layer norms, softmax, GELU) runs in float32, so the vectors do not depend on whether
a CPU has bf16 instructions; int8 products run on VNNI/AMX where the CPU has them and on plain AVX2 or AVX-512
elsewhere (slower; measured only on an AVX-512 VNNI machine).

The vectors are not MiniLM's (a sentence moves by 0.002-0.03 in cosine, a one-word text up to 0.05), so they are
stored under their own key and never compared with MiniLM's. Measured on 2 cores (`python bench/dedupe.py --encoder
minilm-int8 --sizes 1000000 --threshold 0.82`, bench/RESULTS.md): 1M rows encoded at 2,490-2,590 rows/s (MiniLM on
ONNX Runtime: 900-970) and deduplicated in 476-491 s in all; on the labelled pairs recall 0.84 and precision 0.81
at 0.82, both equal to MiniLM's. It is the choice for workspaces too large for MiniLM where "static" finds too few
paraphrases.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from curation.onnx_embed import INPUTS, cpu_threads, ensure_onnx_model, max_tokens, mean_pool

INT8_EMBEDDER = "all-MiniLM-L6-v2-int8"
"""The name its vectors are stored under and its folder's name. Any change to the quantisation or the calibration
texts must change it, so that vectors of the old and new model are never compared."""
FIRST_USE = "once per workspace, about 10 seconds"
CALIBRATION_BATCH = 8
# Rows per infer request: at ~14 tokens a row, 32 keeps both streams' matrices large enough and padding small.
REQUEST_ROWS = 32
DATA = Path(__file__).resolve().parents[1] / "data"


def int8_model_path(models_dir: Path) -> Path:
    return Path(models_dir) / INT8_EMBEDDER / "model.xml"


def first_use_note(models_dir: Path) -> str:
    """What a progress line should say while the int8 model is built, or "" when it is there already."""
    return "" if int8_model_path(models_dir).exists() else f"quantising MiniLM to int8 ({FIRST_USE})"


def calibration_texts() -> list[str]:
    """The texts the int8 activation ranges are measured on: every instruction and input of the bundled seed files
    and every sentence of over 20 characters of the bundled Markdown and HTML documents, in a fixed order."""
    from curation.documents import read_document

    texts = []
    for path in sorted((DATA / "seeds").iterdir()):
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif path.suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
        else:
            continue
        texts += [row[key] for row in rows for key in ("instruction", "input") if row.get(key)]
    for path in sorted((DATA / "documents").iterdir()):
        if path.suffix in (".md", ".html"):
            sentences = re.split(r"(?<=[.!?])\s+", read_document(path))
            texts += [s.strip() for s in sentences if len(s.strip()) > 20]
    return texts


def ensure_int8_model(models_dir: Path, minilm_dir: Path) -> Path:
    """The quantised model's model.xml under `models_dir`, built from the sentence-transformers folder `minilm_dir`
    the first time (its ONNX export, curation.onnx_embed, is made on the way). Written in a folder aside and renamed,
    so a crash leaves no half model."""
    target = int8_model_path(models_dir)
    if target.exists():
        return target
    import nncf
    import openvino
    from transformers import AutoTokenizer

    onnx_path = ensure_onnx_model(models_dir, minilm_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    texts = calibration_texts()
    batches = []
    for start in range(0, len(texts), CALIBRATION_BATCH):
        tokens = tokenizer(texts[start:start + CALIBRATION_BATCH], padding=True, truncation=True,
                           max_length=max_tokens(minilm_dir), return_tensors="np")
        batches.append({k: tokens[k].astype(np.int64) for k in INPUTS})
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr):  # its progress bars must not mix with a command's --json output
        model = nncf.quantize(openvino.Core().read_model(str(onnx_path)), nncf.Dataset(batches),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches))
    aside = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{INT8_EMBEDDER}-"))
    try:
        openvino.save_model(model, str(aside / "model.xml"), compress_to_fp16=False)
        shutil.rmtree(target.parent, ignore_errors=True)  # a folder without model.xml is a crashed build's
        os.replace(aside, target.parent)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return target


class Int8Embedder:
    """`encode` like a SentenceTransformer's (the keywords `embed_items` passes), on OpenVINO. Picklable: Ray ships
    it to its workers, where the model is compiled again from its bytes."""

    preferred_batch_size = 1024  # rows per encode call: enough infer requests queued to keep every stream busy

    def __init__(self, model_path: Path, minilm_dir: Path, threads: int | None = None):
        self.model_xml = Path(model_path).read_bytes()
        self.model_bin = Path(model_path).with_suffix(".bin").read_bytes()
        self.minilm_dir = str(minilm_dir)
        self.max_tokens = max_tokens(minilm_dir)
        self.threads = threads
        self._open()

    def _open(self) -> None:
        import openvino
        from transformers import AutoTokenizer

        core = openvino.Core()
        model = core.read_model(self.model_xml, openvino.Tensor(np.frombuffer(self.model_bin, np.uint8)))
        # float32 outside the int8 products, whatever the CPU offers, so vectors do not depend on the machine
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                          "PERFORMANCE_HINT": "THROUGHPUT",
                                                          "INFERENCE_NUM_THREADS": cpu_threads(self.threads)})
        # Two requests per stream: one runs while the other's rows are tokenized (2,250 -> 2,550 rows/s, 2 cores).
        self.requests = [self.compiled.create_infer_request()
                         for _ in range(2 * self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))]
        self.tokenizer = AutoTokenizer.from_pretrained(self.minilm_dir)
        self.dim = int(self.compiled.outputs[0].get_partial_shape()[-1].get_length())

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("compiled", "requests", "tokenizer")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def encode(self, texts: list[str], batch_size: int = REQUEST_ROWS, convert_to_numpy: bool = True,
               show_progress_bar: bool = False, **_) -> np.ndarray:
        """float32[n, d] unit vectors, in the order of `texts`. Rows go to the model in requests of REQUEST_ROWS
        (`batch_size` is accepted for the interface), sorted by length, two requests in flight per stream."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        # Requests taken in turn, each waited for before it is reused: no Python callback runs on OpenVINO's
        # threads (with AsyncInferQueue's, freeing the compiled model could wait forever for the GIL).
        jobs = [None] * len(self.requests)

        def collect(slot: int) -> None:
            self.requests[slot].wait()
            picked, mask = jobs[slot]
            out[picked] = mean_pool(self.requests[slot].get_output_tensor(0).data, mask)
            jobs[slot] = None

        try:
            for turn, start in enumerate(range(0, len(texts), REQUEST_ROWS)):
                slot = turn % len(self.requests)
                if jobs[slot] is not None:
                    collect(slot)
                picked = order[start:start + REQUEST_ROWS]
                tokens = self.tokenizer([texts[i] for i in picked], padding=True, truncation=True,
                                        max_length=self.max_tokens, return_tensors="np")
                self.requests[slot].start_async({k: tokens[k].astype(np.int64) for k in INPUTS})
                jobs[slot] = (picked, tokens["attention_mask"])
            for slot in range(len(self.requests)):
                if jobs[slot] is not None:
                    collect(slot)
        finally:  # after an error, nothing is left running into the next call
            for slot, job in enumerate(jobs):
                if job is not None:
                    self.requests[slot].wait()
        return out
