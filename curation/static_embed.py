"""A static embedding model distilled once from the bundled all-MiniLM-L6-v2: a vector per token, averaged.

model2vec's `distill` runs MiniLM over every token of its vocabulary once (1-4 minutes on 2 cores), reduces the
vectors with PCA and weights them by token frequency; the result is saved in the workspace's models folder and
reused from then on. Encoding is then a tokenizer pass and an average: 1M short texts in about a minute on 2
cores, where MiniLM needs over two hours. It is a bag of words, so it cannot tell "15% of 80" from "80% of 15"
and separates paraphrases less well than MiniLM (bench/RESULTS.md has the numbers); it is the choice for
workspaces too large to encode with MiniLM. Nothing here downloads.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from curation.errors import StudioError

STATIC_EMBEDDER = "all-MiniLM-L6-v2-static-128d"
"""The name its vectors are stored under and its folder's name. Any change to the settings below must change
it, so that vectors of the old and new model are never compared."""
PCA_DIMS = 128
# Token weights are SIF on a Zipf estimate of frequency; 1e-5 (model2vec's default is 1e-4) leans harder on
# rare words. On the labelled paraphrases it raised the best F0.5 from 0.62 to 0.73, and at 128 dimensions it
# did as well as 192 or 384 while search works on a third of the numbers.
SIF_COEFFICIENT = 1e-5
# model2vec truncates texts at its config's max_length tokens; the same here so vectors match its encode.
MAX_TOKENS = 512


FIRST_USE = "once per workspace, 1-4 minutes on 2 cores"


def first_use_note(models_dir: Path) -> str:
    """What a progress line should say while the static model is distilled, or "" when it is there already."""
    if (static_model_dir(models_dir) / "model.safetensors").exists():
        return ""
    return f"distilling the static embedder from MiniLM ({FIRST_USE})"


def static_model_dir(models_dir: Path) -> Path:
    """Where the distilled model lives in a workspace's models folder."""
    return Path(models_dir) / STATIC_EMBEDDER


def ensure_static_model(models_dir: Path, minilm_dir: Path) -> Path:
    """The distilled model's folder under `models_dir`, distilled from the MiniLM folder `minilm_dir` the
    first time. A crash mid-way leaves no half-written folder (it is written aside and renamed)."""
    target = static_model_dir(models_dir)
    if (target / "model.safetensors").exists():
        return target
    # skeletoken is model2vec's distill dependency; its own `model2vec[distill]` extra pins an older
    # transformers than ours, so requirements.txt lists the two packages without the extra.
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise StudioError(f"the static embedder needs model2vec and skeletoken ({exc}): "
                          "pip install -r requirements.txt") from None
    # Python's last-resort handler prints this to stderr where logging is not set up (the CLI); model2vec's own
    # progress bar follows it there. The UI says so in its progress line (first_use_note).
    logging.getLogger(__name__).warning("distilling the static embedder from MiniLM into %s: %s", target, FIRST_USE)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        distill(model_name=str(minilm_dir), pca_dims=PCA_DIMS, sif_coefficient=SIF_COEFFICIENT).save_pretrained(
            str(staging))
        os.chmod(staging, 0o755)
        try:
            staging.rename(target)
        except OSError:  # another process distilled it meanwhile: keep theirs
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class StaticEmbedder:
    """Encodes like model2vec's `StaticModel.encode` (same tokens, unknown ones dropped, the mean of their
    vectors), but the mean is one `embedding_bag` call over all texts instead of Python per text: 2x faster
    at 100k rows. `encode` takes the keywords of a SentenceTransformer's so `embed_items` can call either."""

    preferred_batch_size = 8192
    """Texts per call that keep the tokenizer's threads busy; `embed_items` uses at least this many."""

    def __init__(self, folder: Path):
        from model2vec import StaticModel

        model = StaticModel.from_pretrained(str(folder), force_download=False)
        self.tokenizer = model.tokenizer
        self.unk_token_id = model.unk_token_id
        self.table = np.ascontiguousarray(model.embedding, dtype=np.float32)  # float32[vocab, d]
        self.dim = self.table.shape[1]

    def token_ids(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(int64[total tokens] every text's token ids one after another, int64[n] where each text starts)."""
        ids = [e.ids[:MAX_TOKENS] for e in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]
        if self.unk_token_id is not None:
            ids = [[t for t in row if t != self.unk_token_id] for row in ids]
        lengths = np.fromiter((len(row) for row in ids), np.int64, len(ids))
        flat = np.fromiter((t for row in ids for t in row), np.int64, int(lengths.sum()))
        return flat, np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def encode(self, texts: list[str], batch_size: int | None = None, convert_to_numpy: bool = True,
               show_progress_bar: bool = False, **_) -> np.ndarray:
        """float32[n, d] unit vectors (zero for a text with no known token)."""
        import torch

        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        flat, starts = self.token_ids(texts)
        vectors = torch.nn.functional.embedding_bag(torch.from_numpy(flat), torch.from_numpy(self.table),
                                                    torch.from_numpy(starts), mode="mean").numpy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)
