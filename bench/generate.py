"""Teacher throughput: the studio's engine (llama.cpp's llama-server, batching) against the engine it replaced
(llama-cpp-python's server), a raw asyncio client, and distilabel, side by side in one run.

Same prompts (the bundled seed packs' tasks, repeated with a variant tag up to --prompts), the same bundled
SmolLM2-135M-Instruct Q4_1 GGUF, greedy decoding (temperature 0), --max-tokens per answer. Contenders:

- before: llama-cpp-python 0.3.36's OpenAI server (the studio's engine until now), a raw asyncio loop at
  1, 2, 4 and 8 in flight on --sweep-prompts prompts; its best setting is the baseline.
- engine sweep: the studio's embedded server (as the studio starts it), a raw loop at 1, 8, 16, 32 in flight.
- raw: a raw asyncio openai loop (nothing stored) at the sweep's best concurrency on all prompts: the
  saturation reference.
- ours: the studio's engine end to end (`run_method`: plan, ledger, retries, one commit per row) at the
  studio's default concurrency on all prompts, and at 1 in flight on --sweep-prompts prompts.
- distilabel 1.5: `LoadDataFromDicts >> TextGeneration(OpenAILLM)`, whose requests in flight are the step's
  `input_batch_size`; swept (8, 16, 32, 64) on --sweep-prompts prompts, then its best on all prompts.
- transformers serve (the other engine considered): `transformers serve --continuous-batching --device cpu
  --dtype bfloat16` on the same model materialised as safetensors, a raw loop at 8, 16, 32 in flight, and
  whether it returns the top-k logprobs the `logprobs` method needs.

Prints one JSON line:

    python bench/generate.py [--prompts 200] [--sweep-prompts 32] [--max-tokens 64]

Needs bench/requirements.txt (distilabel, llama-cpp-python) on top of requirements.txt; a contender whose
package is missing is reported as such in the line, never dropped silently.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.generate import GenerateConfig, run_method  # noqa: E402
from curation.local_server import LocalTeacherServer  # noqa: E402
from curation.store import Store  # noqa: E402
from curation.teacher import EMBEDDED_MODEL, TeacherConfig  # noqa: E402
from models.bundled import smollm2_gguf  # noqa: E402
from models.engine import free_port  # noqa: E402

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seeds"


def prompts(n: int) -> list[str]:
    """The bundled seed packs' tasks (instruction + input), cycled with a variant tag so each prompt is new."""
    tasks = []
    for path in sorted(SEEDS.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                tasks.append(row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else ""))
    return [tasks[i % len(tasks)] + ("" if i < len(tasks) else f"\n(variant {i // len(tasks)})") for i in range(n)]


async def raw_loop(base_url: str, texts: list[str], max_tokens: int, concurrency: int,
                   model: str = EMBEDDED_MODEL) -> tuple[float, int]:
    """One AsyncOpenAI client, a semaphore, nothing stored. Returns (seconds, completion tokens)."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="no-key", max_retries=0, timeout=1200)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(text):
        async with semaphore:
            resp = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}],
                                                        temperature=0.0, max_tokens=max_tokens)
            return resp.usage.completion_tokens

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(t) for t in texts)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed, tokens


def rate(base_url: str, texts: list[str], max_tokens: int, concurrency: int, model: str = EMBEDDED_MODEL) -> float:
    elapsed, tokens = asyncio.run(raw_loop(base_url, texts, max_tokens, concurrency, model))
    return tokens / elapsed


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


def distilabel_run(base_url: str, texts: list[str], max_tokens: int, batch: int) -> tuple[float, int]:
    """distilabel's documented way; `input_batch_size` is how many requests it keeps in flight."""
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        with Pipeline(name=f"bench-generate-{batch}", cache_dir=cache) as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": t} for t in texts], batch_size=batch)
            generate = TextGeneration(llm=OpenAILLM(model=EMBEDDED_MODEL, base_url=base_url, api_key="no-key",
                                                    max_retries=0, timeout=1200,
                                                    generation_kwargs={"max_new_tokens": max_tokens,
                                                                       "temperature": 0.0}),
                                      input_batch_size=batch)
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


@contextlib.contextmanager
def peer_server(name: str, args: list[str], port: int, log_path: Path, timeout_s: float):
    """A peer's OpenAI-compatible server, up once GET /v1/models answers (any HTTP status), stopped after."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}); see {log_path}")
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers (transformers serve's model list reads the hub cache, absent offline)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def llama_cpp_python_server(log_dir: Path):
    """The engine the studio used before: `python -m llama_cpp.server` over the same GGUF, as it was started."""
    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--model_alias", EMBEDDED_MODEL,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
            "--n_threads", str(len(os.sched_getaffinity(0)))]
    return peer_server("llama_cpp.server", args, port, log_dir / "llama-cpp-python.log", 120)


def before_sweep(texts: list[str], max_tokens: int, log_dir: Path) -> tuple[dict | None, str | None]:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None, "llama-cpp-python is not installed (pip install -r bench/requirements.txt)"
    with llama_cpp_python_server(log_dir) as url:
        rate(url, texts[:2], max_tokens, 1)  # warm-up
        return {c: round(rate(url, texts, max_tokens, c), 2) for c in (1, 2, 4, 8)}, None


def transformers_server(log_dir: Path, folder: Path):
    port = free_port()
    args = [str(Path(sys.executable).with_name("transformers")), "serve", str(folder), "--continuous-batching",
            "--device", "cpu", "--dtype", "bfloat16", "--host", "127.0.0.1", "--port", str(port)]
    return peer_server("transformers serve", args, port, log_dir / "transformers-serve.log", 300)


def transformers_sweep(texts: list[str], max_tokens: int, log_dir: Path):
    """(tokens/s by concurrency, whether logprobs came back, error) for transformers serve."""
    try:
        from models.resolve import resolve_student
        folder = resolve_student("", log_dir / "models")
        with transformers_server(log_dir, folder) as url:
            model = str(folder)

            async def probe():
                client = openai.AsyncOpenAI(base_url=url, api_key="no-key", max_retries=0, timeout=600)
                try:
                    resp = await client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0.0,
                        logprobs=True, top_logprobs=2)
                    return bool(getattr(resp.choices[0], "logprobs", None) and resp.choices[0].logprobs.content)
                finally:
                    await client.close()
            has_logprobs = asyncio.run(probe())
            rates = {c: round(rate(url, texts, max_tokens, c, model=model), 2) for c in (8, 16, 32)}
        return rates, has_logprobs, None
    except Exception as exc:  # reported in the JSON line, never dropped silently
        return None, None, f"{type(exc).__name__}: {exc}"[:300]


def distilabel_sweep(url: str, sweep_texts: list[str], texts: list[str], max_tokens: int):
    try:
        import distilabel  # noqa: F401
    except ImportError:
        return None, None, None, "distilabel is not installed (pip install -r bench/requirements.txt)"
    try:
        with stdout_to_stderr():
            sweep = {}
            for batch in (8, 16, 32, 64):
                seconds, tokens = distilabel_run(url, sweep_texts, max_tokens, batch)
                sweep[batch] = round(tokens / seconds, 2)
            best = max(sweep, key=sweep.get)
            seconds, tokens = distilabel_run(url, texts, max_tokens, best)
        return sweep, best, (seconds, tokens), None
    except Exception as exc:  # reported in the JSON line: the comparison is then incomplete, not silent
        return None, None, None, f"{type(exc).__name__}: {exc}"[:300]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--sweep-prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    texts, sweep_texts = prompts(args.prompts), prompts(args.sweep_prompts)
    default_concurrency = TeacherConfig().concurrency
    with tempfile.TemporaryDirectory() as logs:
        before, before_error = before_sweep(sweep_texts, args.max_tokens, Path(logs))
        tf_sweep, tf_logprobs, tf_error = transformers_sweep(sweep_texts, args.max_tokens, Path(logs))
        server = LocalTeacherServer(Path(logs))
        url = server.ensure_started()
        try:
            rate(url, sweep_texts[:4], args.max_tokens, 4)  # warm-up
            sweep = {c: round(rate(url, sweep_texts, args.max_tokens, c), 2) for c in (1, 8, 16, 32)}
            best_c = max(sweep, key=sweep.get)
            raw_s, raw_tokens = asyncio.run(raw_loop(url, texts, args.max_tokens, best_c))
            our_s, our_tokens, summary = ours(url, texts, args.max_tokens, default_concurrency)
            one_s, one_tokens, _ = ours(url, sweep_texts, args.max_tokens, 1)
            dl_sweep, dl_best, dl_run, dl_error = distilabel_sweep(url, sweep_texts, texts, args.max_tokens)
            slots = server.spec.parallel
        finally:
            server.stop()
    raw_rate, our_rate, one_rate = raw_tokens / raw_s, our_tokens / our_s, one_tokens / one_s
    dl_rate = dl_run[1] / dl_run[0] if dl_run else None
    before_best = max(before.values()) if before else None
    result = {
        "bench": "generate", "model": "SmolLM2-135M-Instruct Q4_1 (embedded)", "engine": "llama-server b11434",
        "server_slots": slots, "prompts": len(texts), "sweep_prompts": len(sweep_texts), "max_tokens": args.max_tokens,
        "cpus": len(os.sched_getaffinity(0)),
        "before_llama_cpp_python_tok_s": before, "before_best_tok_s": before_best, "before_error": before_error,
        "transformers_serve_bf16_tok_s": tf_sweep, "transformers_serve_logprobs": tf_logprobs,
        "transformers_serve_error": tf_error,
        "engine_sweep_tok_s": sweep, "raw_concurrency": best_c, "raw_tok_s": round(raw_rate, 2),
        "ours_concurrency": default_concurrency, "ours_tok_s": round(our_rate, 2), "ours_c1_tok_s": round(one_rate, 2),
        "distilabel_sweep_tok_s": dl_sweep, "distilabel_batch": dl_best,
        "distilabel_tok_s": round(dl_rate, 2) if dl_rate else None, "distilabel_error": dl_error,
        "ours_vs_before_best": round(our_rate / before_best, 3) if before_best else None,
        "ours_vs_ours_c1": round(our_rate / one_rate, 3),
        "ours_vs_raw": round(our_rate / raw_rate, 3),
        "ours_vs_distilabel": round(our_rate / dl_rate, 3) if dl_rate else None,
        "tokens": {"raw": raw_tokens, "ours": our_tokens, "distilabel": dl_run[1] if dl_run else None},
        "seconds": {"raw": round(raw_s, 2), "ours": round(our_s, 2),
                    "distilabel": round(dl_run[0], 2) if dl_run else None},
        "store_ms_per_row": summary["store_ms_per_row"],
    }
    result["goals"] = {"ours_3x_before": bool(result["ours_vs_before_best"] and result["ours_vs_before_best"] >= 3),
                       "c8_2_5x_c1": result["ours_vs_ours_c1"] >= 2.5, "ours_0_9x_raw": result["ours_vs_raw"] >= 0.9}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
