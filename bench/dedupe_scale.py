"""`bench/dedupe.py --encoder static`: a million rows end to end on 2 cores, ours vs semhash 0.5.0 with the same
static model, plus what MiniLM and static+minilm would cost, the labelled recall comparison, and the workspace
(embed into DuckDB, the dedupe panel's counts and slider, review pages) at the same size.

Timed in one process run on the corpus of bench/dedupe.py (templated instructions with planted near-duplicates):
- ours: the static embedder (curation.static_embed) encodes every text, then the studio's grouping
  (curation.dedupe_groups.semantic_labels: exact texts collapsed, inverted-file search, leaders);
- semhash 0.5.0 end to end through its documented API: `SemHash.from_records(records, columns, model=...)` then
  `self_deduplicate(threshold)`, its default model (potion-base-8M, also a model2vec static model, which would need
  a download) swapped for a `StaticModel` loaded from our very folder, so both encode with the same vectors;
- MiniLM: its encode rate on a sample of the corpus as the studio runs it (ONNX Runtime) and on torch,
  extrapolated to all rows (marked extrapolated);
- static+minilm (curation.hybrid): the candidate rows (a static look-alike at CANDIDATE_THRESHOLD) found among all
  rows, timed; their MiniLM encode extrapolated from the same sample rate;
- the workspace (--workspace-rows): that many responses stored with bulk inserts, then `embed_items` (vectors
  written to DuckDB), `preview_counts` at the slider's 51 stops (what Preview computes once), `plan_dedupe` from
  Preview's neighbour graph (what letting the slider go costs) and with its own search (the CLI), the slider's
  answer (ui.curate_dedupe.slide on the computed counts) and Review pages (`Store.review_page`).
Model loads are timed apart from the work. The 1-minute load average is sampled at every step.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

ENCODE_CHUNK = 65_536  # texts per static encode call: bounds the token buffers at a million rows
SLIDER_STOPS = [round(0.5 + i / 100, 2) for i in range(51)]  # ui.curate_dedupe.THRESHOLDS


def load() -> float:
    return round(os.getloadavg()[0], 2)


def static_folder(models_dir: Path) -> Path:
    from curation.embed import default_embedder_path
    from curation.static_embed import ensure_static_model

    return ensure_static_model(models_dir, default_embedder_path())


def encode_and_group(embedder, texts: list[str], threshold: float) -> tuple[np.ndarray, dict, np.ndarray]:
    """(labels int64[n], seconds by step, unit vectors float32[n, d]) of `embedder` over `texts` (in chunks of
    ENCODE_CHUNK) and the studio's grouping."""
    from curation.dedupe_groups import semantic_labels

    start = time.perf_counter()
    vectors = np.concatenate([embedder.encode(texts[i:i + ENCODE_CHUNK]) for i in range(0, len(texts), ENCODE_CHUNK)])
    encoded = time.perf_counter()
    labels = semantic_labels(texts, vectors, [threshold])[threshold]
    done = time.perf_counter()
    return labels, {"encode_s": round(encoded - start, 2), "dedupe_s": round(done - encoded, 2),
                    "total_s": round(done - start, 2), "load_avg_1m": load()}, vectors


def ours(texts: list[str], threshold: float, folder: Path) -> tuple[np.ndarray, dict, np.ndarray]:
    """(labels int64[n], seconds by step, unit vectors float32[n, d]) of the static encode + our grouping."""
    from curation.static_embed import StaticEmbedder

    start = time.perf_counter()
    embedder = StaticEmbedder(folder)
    load_s = round(time.perf_counter() - start, 2)
    labels, seconds, vectors = encode_and_group(embedder, texts, threshold)
    return labels, {"load_s": load_s, **seconds}, vectors


def semhash_end_to_end(texts: list[str], threshold: float, folder: Path | None = None,
                       model=None) -> tuple[np.ndarray, dict]:
    """(labels int64[n]: the kept row each filtered row duplicates, seconds) of semhash from texts to groups, with the
    static model in `folder` or any `model` with an `encode` method (semhash's Encoder protocol)."""
    from semhash import SemHash

    start = time.perf_counter()
    if model is None:
        from model2vec import StaticModel
        model = StaticModel.from_pretrained(str(folder))
    loaded = time.perf_counter()
    records = [{"text": t, "row": i} for i, t in enumerate(texts)]
    result = SemHash.from_records(records, columns=["text"], model=model).self_deduplicate(threshold=threshold)
    done = time.perf_counter()
    labels = np.arange(len(texts), dtype=np.int64)
    for dup in result.filtered:
        labels[dup.record["row"]] = dup.duplicate_of["row"]
    return labels, {"load_s": round(loaded - start, 2), "total_s": round(done - loaded, 2), "load_avg_1m": load()}


def minilm_rate(texts: list[str], sample: int, batch_size: int, models_dir: Path) -> dict:
    """MiniLM's encode seconds per row on a random sample (sorted by length, as embed_items does): as the studio runs
    it (ONNX Runtime, curation.onnx_embed: `s_per_row`, the rate extrapolated) and on sentence-transformers' torch."""
    from curation.embed import load_embedder

    picked = sorted((texts[i] for i in np.random.default_rng(0).choice(len(texts), sample, replace=False)), key=len)
    out = {"sample_rows": sample}
    for name, model in (("torch_s_per_row", load_embedder()), ("s_per_row", load_embedder(None, models_dir))):
        model.encode(picked[:batch_size], batch_size=batch_size, convert_to_numpy=True)  # warm
        start = time.perf_counter()
        model.encode(picked, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        out[name] = (time.perf_counter() - start) / sample
    out["onnx_speedup"] = round(out["torch_s_per_row"] / out["s_per_row"], 2)
    return {**out, "load_avg_1m": load()}


def hybrid_cost(vectors: np.ndarray, per_row: float, ours_s: dict, n: int) -> dict:
    """static+minilm for n rows: the candidate rows among `vectors` (the first rows of the shuffled corpus, or all)
    found (timed), their share carried to n rows and their MiniLM encode extrapolated from the sample rate. The
    total adds our static encode and dedupe step (the last search runs on 384 numbers a row, not 128: a floor)."""
    from curation.hybrid import CANDIDATE_THRESHOLD, candidate_rows

    start = time.perf_counter()
    rows = candidate_rows(vectors)
    search_s = (time.perf_counter() - start) * (n / len(vectors)) ** 1.5  # our search grows as n^1.5
    share = len(rows) / len(vectors)
    minilm_s = share * n * per_row
    return {"candidate_threshold": CANDIDATE_THRESHOLD, "searched_rows": len(vectors), "candidate_share": round(share, 4),
            "candidate_search_s" + ("" if len(vectors) == n else "_extrapolated"): round(search_s, 1),
            "minilm_encode_s_extrapolated": round(minilm_s, 1),
            "total_s_extrapolated": round(ours_s["encode_s"] + search_s + minilm_s + ours_s["dedupe_s"], 1),
            "load_avg_1m": load()}


def workspace(texts: list[str], threshold: float, folder: Path) -> dict:
    """The studio on a workspace of len(texts) responses: embed, slider counts, plan, slider answer, review pages,
    apply, undo and apply again."""
    import shutil

    from browse import time_pages

    from curation.dedupe import DedupeConfig, plan_dedupe, preview_counts
    from curation.embed import embed_items
    from curation.neighbours import ReusedSearch
    from curation.store import ReviewFilter
    from curation.static_embed import static_model_dir

    out = {"rows": len(texts)}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        store = build_workspace(Path(tmp) / "ws", texts)
        out["build_s"] = round(time.perf_counter() - started, 1)
        shutil.copytree(folder, static_model_dir(Path(tmp) / "ws" / "models"))
        try:
            config = DedupeConfig(model="static", threshold=threshold)
            search = ReusedSearch()  # what the panel keeps in its gr.State between Preview and the slider
            for name, step in (("embed", lambda: embed_items(store, "response", "static")),
                               ("preview_counts", lambda: preview_counts(store, config, SLIDER_STOPS, search=search)),
                               ("plan_after_preview", lambda: plan_dedupe(store, config, search=search)),
                               ("plan", lambda: plan_dedupe(store, config))):
                started = time.perf_counter()
                result = step()
                out[f"{name}_s"] = round(time.perf_counter() - started, 2)
                out[f"{name}_load_avg_1m"] = load()
                if name == "preview_counts":
                    counts = result
            out["marked_at_threshold"] = counts[round(threshold, 2)]
            out["slider_answer_ms"] = slider_answer_ms(store, config, counts)
            total = store.review_page(ReviewFilter())[1]
            out["review_page"] = time_pages(lambda p: store.review_page(ReviewFilter(), page=p, page_size=25), total,
                                            50, np.random.default_rng(1))
            out.update(apply_and_undo(store, lambda: plan_dedupe(store, config, search=search)))
        finally:
            store.close()
    return out


def apply_and_undo(store, make_plan) -> dict:
    """Seconds to apply a plan (every duplicate marked, one label batch), to undo it, and to apply a fresh plan again
    (the rows carry labels now: what a person does who tries another threshold); last, as it changes labels."""
    from curation.dedupe import apply_dedupe

    out = {}

    def timed(step: str, work):
        started = time.perf_counter()
        result = work()
        out[f"{step}_s"] = round(time.perf_counter() - started, 2)
        return result

    plan = make_plan()  # plans are made outside the timings
    applied = timed("apply", lambda: apply_dedupe(store, plan))
    timed("undo", lambda: store.undo_batch(applied.batch))
    plan = make_plan()
    again = timed("reapply", lambda: apply_dedupe(store, plan))
    return {**out, "apply_marked": applied.marked, "reapply_marked": again.marked, "apply_load_avg_1m": load()}


def slider_answer_ms(store, config, counts) -> float:
    """The slowest of the slider's answers over all its stops, through the UI's own handler, once Preview has
    computed the counts (the UI keeps them in a gr.State)."""
    from ui.curate_dedupe import settings_key, slide

    cache = {"key": settings_key(config), "counts": counts}
    worst = 0.0
    for stop in SLIDER_STOPS:
        started = time.perf_counter()
        slide(store, config.target, config.method, config.model, config.representative, stop, cache)
        worst = max(worst, time.perf_counter() - started)
    return round(worst * 1000, 3)


def build_workspace(path: Path, texts: list[str]):
    """A workspace whose generations answer with `texts` (bench/browse.py's frames: 4 per task, ~30% labelled,
    1% failed), built with bulk inserts, closed and reopened as the studio finds it."""
    from browse import build_frames

    from curation.store import Store

    tasks, gens, labels = build_frames(len(texts))
    gens["response"] = np.where(gens["status"] == "ok", np.asarray(texts, dtype=object), None)
    with Store(path) as store:
        task_ids = store.bulk_add("tasks", tasks)
        store.bulk_add("generations", gens.assign(task_id=np.asarray(task_ids)[gens["task_id"] - 1]))
        store.bulk_add("labels", labels)
    return Store(path)
