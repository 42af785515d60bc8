"""Generation throughput: a raw asyncio openai loop vs our engine vs distilabel 1.5 TextGeneration.

Same prompts, same embedded llama.cpp server, one process run. Greedy decoding (temperature 0), so every
contender asks for the same tokens. The raw loop's concurrency is the smallest that saturates the server
(within 5 % of the best of a short sweep); our engine runs at that concurrency; distilabel runs with its
default batch (all prompts in flight). Prints one JSON line:

    python bench/generate.py [--prompts 24] [--max-tokens 48]

Needs bench/requirements.txt (distilabel) on top of requirements.txt.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.generate import GenerateConfig, run_method  # noqa: E402
from curation.local_server import LocalTeacherServer  # noqa: E402
from curation.store import Store  # noqa: E402
from curation.teacher import EMBEDDED_MODEL, TeacherConfig  # noqa: E402

SUBJECTS = ["rain", "a library", "bread", "the moon", "bicycles", "tea", "a river", "chess", "winter", "bees",
            "trains", "paper", "a lighthouse", "salt", "clocks", "owls", "glass", "maps", "snow", "violins",
            "coffee", "bridges", "foxes", "kites", "sand", "lamps", "ships", "apples", "wind", "stones"]


def prompts(n: int) -> list[str]:
    return [f"Write three sentences about {SUBJECTS[i % len(SUBJECTS)]} (variant {i})." for i in range(n)]


async def raw_loop(base_url: str, texts: list[str], max_tokens: int, concurrency: int) -> tuple[float, int]:
    """The floor: one AsyncOpenAI client, a semaphore, nothing stored. Returns (seconds, completion tokens)."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="no-key", max_retries=0, timeout=600)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(text):
        async with semaphore:
            resp = await client.chat.completions.create(model=EMBEDDED_MODEL, messages=[{"role": "user", "content": text}],
                                                        temperature=0.0, max_tokens=max_tokens)
            return resp.usage.completion_tokens

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(t) for t in texts)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed, tokens


def ours(base_url: str, texts: list[str], max_tokens: int, concurrency: int) -> tuple[float, int, dict]:
    """Our engine end to end in a fresh workspace: plan, ledger, send, commit every row."""
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "ws") as store:
        store.add_tasks([{"instruction": t} for t in texts])
        teacher = TeacherConfig(concurrency=concurrency, timeout_s=600)
        started = time.perf_counter()
        summary = run_method(store, teacher, GenerateConfig(temperature=0.0, max_tokens=max_tokens), base_url)
        elapsed = time.perf_counter() - started
        assert summary["ok"] == len(texts), summary
        return elapsed, summary["completion_tokens"], summary


def distilabel_run(base_url: str, texts: list[str], max_tokens: int) -> tuple[float, int]:
    """distilabel's documented way: a Pipeline of LoadDataFromDicts >> TextGeneration(OpenAILLM)."""
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        with Pipeline(name="bench-generate", cache_dir=cache) as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": t} for t in texts])
            generate = TextGeneration(llm=OpenAILLM(model=EMBEDDED_MODEL, base_url=base_url, api_key="no-key",
                                                    max_retries=0, timeout=600,
                                                    generation_kwargs={"max_new_tokens": max_tokens,
                                                                       "temperature": 0.0}))
            load >> generate
        distiset = pipeline.run(use_cache=False)
        elapsed = time.perf_counter() - started
        rows = distiset["default"]["train"]
        tokens = 0
        for meta in rows["distilabel_metadata"]:
            stats = meta.get(f"statistics_{generate.name}") or {}
            out = stats.get("output_tokens")
            tokens += sum(out) if isinstance(out, list) else (out or 0)
        assert len(rows) == len(texts) and all(rows["generation"]), "distilabel lost rows"
    return elapsed, tokens


@contextlib.contextmanager
def stdout_to_stderr():
    """distilabel logs to stdout, in its worker processes too: park fd 1 on stderr so stdout is one JSON line."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def saturating_concurrency(base_url: str, texts: list[str], max_tokens: int) -> tuple[int, dict]:
    rates = {}
    for c in (1, 2, 4, 8):
        elapsed, tokens = asyncio.run(raw_loop(base_url, texts, max_tokens, c))
        rates[c] = tokens / elapsed
    best = max(rates.values())
    return min(c for c, r in rates.items() if r >= 0.95 * best), {c: round(r, 2) for c, r in rates.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    texts = prompts(args.prompts)
    with tempfile.TemporaryDirectory() as logs:
        server = LocalTeacherServer(Path(logs))
        base_url = server.ensure_started()
        try:
            asyncio.run(raw_loop(base_url, texts[:2], args.max_tokens, 1))  # warm-up
            concurrency, sweep = saturating_concurrency(base_url, prompts(8), args.max_tokens)
            raw_s, raw_tokens = asyncio.run(raw_loop(base_url, texts, args.max_tokens, concurrency))
            our_s, our_tokens, summary = ours(base_url, texts, args.max_tokens, concurrency)
            try:
                with stdout_to_stderr():
                    dl_s, dl_tokens = distilabel_run(base_url, texts, args.max_tokens)
                dl_error = None
            except Exception as exc:  # reported in the JSON line: the comparison is then incomplete, not silent
                dl_s, dl_tokens, dl_error = None, None, f"{type(exc).__name__}: {exc}"[:300]
        finally:
            server.stop()
    raw_rate, our_rate = raw_tokens / raw_s, our_tokens / our_s
    dl_rate = dl_tokens / dl_s if dl_s else None
    result = {"bench": "generate", "server": "llama.cpp SmolLM2-135M-Instruct Q4 (embedded)", "prompts": len(texts),
              "max_tokens": args.max_tokens, "concurrency": concurrency, "concurrency_sweep_tok_s": sweep,
              "raw_tok_s": round(raw_rate, 2), "ours_tok_s": round(our_rate, 2),
              "distilabel_tok_s": round(dl_rate, 2) if dl_rate else None,
              "ours_vs_raw": round(our_rate / raw_rate, 3),
              "ours_vs_distilabel": round(our_rate / dl_rate, 3) if dl_rate else None,
              "tokens": {"raw": raw_tokens, "ours": our_tokens, "distilabel": dl_tokens},
              "seconds": {"raw": round(raw_s, 2), "ours": round(our_s, 2), "distilabel": round(dl_s, 2) if dl_s else None},
              "overhead_ms_per_row": round(1000 * (our_s - raw_s) / len(texts), 1),
              "store_ms_per_row": summary["store_ms_per_row"], "distilabel_error": dl_error}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
