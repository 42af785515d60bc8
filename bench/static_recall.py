"""Can a static (token-table) embedder close its recall gap to MiniLM on the labelled paraphrases?

    python bench/static_recall.py [--texts 30000] [--markov 15000] [--epochs 3] [--variants a,b,...]

Variants, each scored like `bench/dedupe_threshold.py --compare` (best-F0.5 threshold over the 90 labelled
pairs, its precision and recall) and timed encoding 100k bench texts with curation.static_embed.StaticEmbedder:

  minilm        the bundled all-MiniLM-L6-v2 (the reference)
  distill       today's static model: model2vec distill, 128 PCA dims, SIF 1e-5
  vocab         the same distill with `vocabulary=` the corpus' frequent whole words added as tokens
  tokenlearn    tokenlearn 0.2.1's `train_model` (MSE to PCA'd MiniLM vectors through a linear head that is
                then dropped) starting from `distill`
  cosine        a short torch loop: the table (initialised from `distill`) averaged per text, a linear head,
                1 - cosine to MiniLM's own vectors; the head is folded into the table afterwards
  relational    the cosine loop plus matching each batch's text-to-text cosine matrix to MiniLM's

The training corpus is built offline and is disjoint from data/paraphrases/pairs.jsonl (asserted): sentences
from installed packages' docstrings and PyPI descriptions, the bench's templated instructions (bench/dedupe.py),
data/seeds, data/documents and /work/shared/seeds; with --markov N, the first N texts are instead sentences from
essential-generators' Markov chain over Wikipedia (a PyPI wheel unpacked at --markov-path, not a project
dependency): everyday words in context, which the technical package prose lacks, and which is what moved recall.
MiniLM's vectors for the corpus are cached per text in --cache-dir: featurizing is the expensive part (30k texts
took 8 minutes on 2 cores at load 3-5, 15k took 18 minutes at load 8), which is why none of the trained variants
fits a first-use build of "a few minutes". tokenlearn is imported from --tokenlearn-path (a `pip download
--no-deps` copy): it imports and runs with our torch and transformers, but its `model2vec[distill]` requirement
pins an older transformers, so it cannot be a requirement of the studio. Prints ONE JSON line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dedupe_threshold import best, curve, load_pairs  # noqa: E402

from curation.static_embed import PCA_DIMS, SIF_COEFFICIENT, StaticEmbedder  # noqa: E402

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
PLAIN_SENTENCE = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'\"\-()%$&/?!.]+[.?!]$")
DOCSTRING = re.compile(r'"""(.*?)"""', re.S)
ALL = ("minilm", "distill", "vocab", "tokenlearn", "cosine", "relational")


def load() -> float:
    return round(os.getloadavg()[0], 2)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def sentences(text: str) -> list[str]:
    """Plain English sentences of 5-40 words from prose (no URLs, code or markup)."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        for s in SENTENCE_END.split(" ".join(para.split())):
            if 5 <= len(s.split()) <= 40 and PLAIN_SENTENCE.match(s) and "http" not in s:
                out.append(s)
    return out


def package_sentences() -> list[str]:
    """Sentences from every installed package's description and the docstrings of its Python files."""
    import importlib.metadata

    found = []
    for dist in importlib.metadata.distributions():
        found += sentences(dist.metadata.get_payload() or dist.metadata.get("Description") or "")
    for path in sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py")):
        source = path.read_text(encoding="utf-8", errors="ignore")
        for match in DOCSTRING.finditer(source):
            found += sentences(match.group(1))
    return found


def local_sentences() -> list[str]:
    """The seeds' instructions and inputs, the bundled documents and the survey, cut into sentences."""
    from curation.documents import bundled_documents, read_document

    found = []
    for path in sorted((ROOT / "data" / "seeds").iterdir()):
        text = path.read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else []
        found += [r[k] for r in rows for k in ("instruction", "input") if r.get(k)] or sentences(text)
    for path in bundled_documents():
        found += sentences(read_document(path))
    for path in sorted(Path("/work/shared/seeds").glob("*")):
        found += sentences(path.read_text(encoding="utf-8", errors="ignore"))
    return found


def markov_sentences(n: int, path: str, seed: int = 0) -> list[str]:
    """`n` sentences from essential-generators' Markov chain over Wikipedia text (its wheel unpacked at `path`):
    everyday encyclopedic English, where package prose is technical."""
    sys.path.insert(0, path)
    from essential_generators import DocumentGenerator

    random.seed(seed)  # its chain samples with the module-level random
    generator = DocumentGenerator()
    return [" ".join(generator.sentence().split()) for _ in range(n)]


def build_corpus(n: int, cache_dir: Path, markov: int = 0, markov_path: str = "", seed: int = 0) -> list[str]:
    """`n` distinct texts (kept in `cache_dir`: finding them takes minutes), the first `markov` of them Markov
    sentences; asserts none is a labelled text."""
    path = cache_dir / f"corpus-{n}-{markov}-{seed}.json"
    if not path.exists() and markov:
        held_out = {_norm(p[k]) for p in load_pairs() for k in ("a", "b")}
        chain = [t for t in dict.fromkeys(markov_sentences(markov * 2, markov_path, seed)) if _norm(t) not in held_out]
        texts = chain[:markov] + build_corpus(n, cache_dir, 0, "", seed)[:n - markov]
    else:
        texts = json.loads(path.read_text()) if path.exists() else find_corpus(n, seed)
    held_out = {_norm(p[k]) for p in load_pairs() for k in ("a", "b")}
    assert not held_out & {_norm(t) for t in texts}, "a labelled pair's text is in the training corpus"
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(texts))
    return texts


def find_corpus(n: int, seed: int) -> list[str]:
    """`n` distinct texts: local prose, then 1/4 bench templates, then package prose; none is (or contains) a
    labelled pair's text."""
    from dedupe import make_corpus

    rng = random.Random(seed)
    prose = sorted(set(package_sentences()))
    rng.shuffle(prose)
    templated = make_corpus(n // 4, seed=seed + 1)[0]
    texts = list(dict.fromkeys(local_sentences() + templated + prose))
    held_out = {_norm(p[k]) for p in load_pairs() for k in ("a", "b")}
    long_held = [h for h in held_out if len(h.split()) >= 4]
    keep = [t for t in texts if _norm(t) not in held_out and not any(h in _norm(t) for h in long_held)]
    return keep[:n]


def minilm_vectors(texts: list[str], cache_dir: Path) -> tuple[np.ndarray, float]:
    """float32[n, 384] unit MiniLM vectors of `texts` and the seconds encoding took. Vectors are kept in
    `cache_dir` as (texts, vectors) chunks; only texts in none of them are encoded."""
    from curation.embed import load_embedder

    known = {}
    for path in sorted(cache_dir.glob("minilm-*.npy")):
        names = cache_dir / path.name.replace(".npy", ".json")
        if names.exists():
            known.update(zip(json.loads(names.read_text()), np.load(path)))
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    start = time.perf_counter()
    if missing:
        vectors = load_embedder().encode(missing, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)
        key = hashlib.sha1("\n".join(missing).encode()).hexdigest()[:16]
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(cache_dir / f"minilm-{key}.npy", vectors.astype(np.float32))
        (cache_dir / f"minilm-{key}.json").write_text(json.dumps(missing))
        known.update(zip(missing, vectors))
    return np.stack([known[t] for t in texts]).astype(np.float32), time.perf_counter() - start


def score(encode) -> dict:
    """The best-F0.5 point over the labelled pairs for `encode(list[str]) -> float[n, d]`."""
    pairs = load_pairs()
    a = np.asarray(encode([p["a"] for p in pairs]), np.float32)
    b = np.asarray(encode([p["b"] for p in pairs]), np.float32)
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return best(curve(np.einsum("ij,ij->i", a, b), np.array([p["same"] for p in pairs])))


def encode_rate(folder: Path, texts: list[str]) -> dict:
    """StaticEmbedder's texts/s over `texts` (model load not counted), with the load average."""
    embedder = StaticEmbedder(folder)
    embedder.encode(texts[:1000])
    before = load()
    start = time.perf_counter()
    for i in range(0, len(texts), embedder.preferred_batch_size):
        embedder.encode(texts[i:i + embedder.preferred_batch_size])
    seconds = time.perf_counter() - start
    return {"texts_per_s": round(len(texts) / seconds), "load_1m": [before, load()]}


def corpus_vocabulary(texts: list[str], tokenizer_vocab: set[str], size: int) -> list[str]:
    """The `size` most frequent lowercase corpus words that are not already one token."""
    from collections import Counter

    counts = Counter(w for t in texts for w in re.findall(r"[a-z]+", t.lower()) if len(w) > 2)
    return [w for w, _ in counts.most_common() if w not in tokenizer_vocab][:size]


def distill_variant(out: Path, vocabulary: list[str] | None = None) -> float:
    from model2vec.distill import distill

    from curation.embed import default_embedder_path

    start = time.perf_counter()
    distill(model_name=str(default_embedder_path()), vocabulary=vocabulary, pca_dims=PCA_DIMS,
            sif_coefficient=SIF_COEFFICIENT, quantize_to="float32").save_pretrained(str(out))
    return time.perf_counter() - start


def token_lists(tokenizer, texts: list[str]) -> list[list[int]]:
    unk = tokenizer.token_to_id("[UNK]")
    return [[t for t in e.ids[:512] if t != unk] for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def train_table(base: Path, out: Path, texts: list[str], targets: np.ndarray, epochs: int,
                relational: float, seed: int = 0) -> float:
    """Trains `base`'s token table so a text's mean token vector, through a linear head, points like its MiniLM
    vector (targets float32[n, 384], unit rows); saves table @ head + bias (exact for a mean: the bias moves every
    row equally) in `out`. `relational` > 0 adds the MSE between the batch's cosine matrices. Returns seconds."""
    import torch
    from model2vec import StaticModel

    torch.manual_seed(seed)
    model = StaticModel.from_pretrained(str(base))
    table = torch.tensor(np.asarray(model.embedding, np.float32))
    rows = [r for r in token_lists(model.tokenizer, texts)]
    keep = [i for i, r in enumerate(rows) if r]
    target = torch.from_numpy(targets[keep])
    rows = [rows[i] for i in keep]
    bag = torch.nn.EmbeddingBag.from_pretrained(table.clone(), freeze=False, mode="mean")
    head = torch.nn.Linear(table.shape[1], target.shape[1])
    optimizer = torch.optim.Adam([{"params": bag.parameters(), "lr": 3e-3}, {"params": head.parameters(), "lr": 3e-3}])
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.randperm(len(rows)).split(256):
            flat = torch.tensor([t for i in batch.tolist() for t in rows[i]])
            offsets = torch.tensor([0] + [len(rows[i]) for i in batch.tolist()][:-1]).cumsum(0)
            pred = torch.nn.functional.normalize(head(bag(flat, offsets)), dim=1)
            loss = (1 - (pred * target[batch]).sum(1)).mean()
            if relational:
                loss = loss + relational * ((pred @ pred.T - target[batch] @ target[batch].T) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        folded = (bag.weight @ head.weight.T + head.bias).numpy()
    seconds = time.perf_counter() - start
    StaticModel(vectors=folded, tokenizer=model.tokenizer, config=model.config).save_pretrained(str(out))
    return seconds


def tokenlearn_variant(base: Path, out: Path, texts: list[str], targets: np.ndarray, path: str) -> float:
    sys.path.insert(0, path)
    from model2vec import StaticModel
    from tokenlearn.train import train_model

    model = StaticModel.from_pretrained(str(base))
    start = time.perf_counter()
    train_model(model, texts, targets, device="cpu", pca_dims=PCA_DIMS).save_pretrained(str(out))
    return time.perf_counter() - start


def run_variant(name: str, work: Path, texts: list[str], targets: np.ndarray, args) -> tuple[Path | None, float]:
    """Builds variant `name` in `work` (distill first: the others start from it); (folder, seconds)."""
    folder = work / (name if name == "distill" else f"{name}-{len(texts)}-{args.markov}")
    if name == "distill":
        return folder, distill_variant(folder)
    if name == "vocab":
        from model2vec import StaticModel

        known = set(StaticModel.from_pretrained(str(work / "distill")).tokenizer.get_vocab())
        return folder, distill_variant(folder, corpus_vocabulary(texts, known, args.vocab_words))
    if name == "tokenlearn":
        return folder, tokenlearn_variant(work / "distill", folder, texts, targets, args.tokenlearn_path)
    return folder, train_table(work / "distill", folder, texts, targets, args.epochs,
                               args.relational if name == "relational" else 0.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=30000, help="training corpus size")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--relational", type=float, default=1.0, help="weight of the cosine-matrix loss")
    parser.add_argument("--vocab-words", type=int, default=20000, help="corpus words added by the vocab variant")
    parser.add_argument("--variants", default=",".join(ALL))
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "distill-studio" / "bench")
    parser.add_argument("--tokenlearn-path", default="/tmp/tl/src")
    parser.add_argument("--markov", type=int, default=0, help="how many of --texts are Markov sentences")
    parser.add_argument("--markov-path", default="/tmp/eg/src", help="essential-generators 1.0, unpacked")
    parser.add_argument("--rate-texts", type=int, default=100_000)
    args = parser.parse_args(argv)
    from dedupe import make_corpus

    line = {"bench": "static_recall", "cpus": os.cpu_count(), "load_1m_start": load()}
    texts = build_corpus(args.texts, args.cache_dir, args.markov, args.markov_path)
    targets, line["minilm_featurize_s"] = minilm_vectors(texts, args.cache_dir)
    line.update(corpus_texts=len(texts), markov_texts=args.markov, epochs=args.epochs,
                relational_weight=args.relational)
    rate_texts = make_corpus(args.rate_texts, seed=7)[0]
    work = args.cache_dir / "variants"
    for name in args.variants.split(","):
        if name == "minilm":
            from curation.embed import load_embedder

            line[name] = score(load_embedder().encode)
            continue
        folder, seconds = run_variant(name, work, texts, targets, args)
        line[name] = {**score(StaticEmbedder(folder).encode), "build_s": round(seconds, 1),
                      **encode_rate(folder, rate_texts)}
        print(name, json.dumps(line[name]), file=sys.stderr, flush=True)
    line["load_1m_end"] = load()
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
