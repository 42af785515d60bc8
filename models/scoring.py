"""The losses of given text under the student, in a child process: what an inference endpoint cannot give.

An OpenAI-compatible server scores what it generates, not a text it is handed, so two measurements load
the student with transformers instead — never in the web process (which imports no torch):

- `nll`: the student's (base, and with its adapter) NLL of the teacher's answers, for evaluation;
- `ifd`: instruction-following difficulty of (instruction, response) pairs, for ranking.

    python -m models.scoring nll|ifd --student SPEC --models-dir DIR [--adapter DIR] --input ITEMS.jsonl

Reads one JSON item per line ({"messages", "answer"} for nll, {"instruction", "response"} for ifd),
prints {"done": i, "total": n} lines as it goes and a last line {"results": [...]}, one per item.
`score_in_child` runs it and reports the progress lines to a callback.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from models.errors import ModelError, StudioError
from models.nll import ids_nll, response_token_ids

CHUNK = 8  # items between progress lines


def score_in_child(kind: str, items: list[dict], student: str, models_dir: Path, adapter: str | Path | None = None,
                   on_progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> list | None:
    """Run `python -m models.scoring KIND` over `items`; its results, or None when stopped."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
        path = f.name
    args = [sys.executable, "-m", "models.scoring", kind, "--student", student or "", "--models-dir", str(models_dir),
            "--input", path] + (["--adapter", str(adapter)] if adapter else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    results = None
    try:
        for line in proc.stdout:
            if should_stop is not None and should_stop():
                proc.terminate()
                return None
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "results" in message:
                results = message["results"]
            elif on_progress is not None and "done" in message:
                on_progress(message["done"], message["total"])
        err = proc.stderr.read()
        if proc.wait() != 0 or results is None:
            tail = "\n".join(err.strip().splitlines()[-6:])
            raise ModelError(f"scoring ({kind}) with the student failed: {tail.removeprefix('error: ')}")
        return results
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        Path(path).unlink(missing_ok=True)


def _load(student: str, models_dir: Path, adapter: str | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.resolve import BUNDLED_STUDENT, check_adapter_folder, resolve_student, trust_remote_code

    adapter_dir = check_adapter_folder(adapter) if adapter else None
    path = resolve_student(student, models_dir)
    trust = trust_remote_code(path, student or BUNDLED_STUDENT)
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust)
    model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, trust_remote_code=trust)
    if adapter_dir:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    return model, tokenizer


def _emit(message: dict) -> None:
    print(json.dumps(message), flush=True)


def run_nll(model, tokenizer, items: list[dict], with_adapter: bool) -> list[dict]:
    """Per item {'base': {'sum', 'tokens'}, 'distilled': ... (with an adapter)}: NLL of the answer."""
    results = []
    for i, item in enumerate(items):
        ids, start = response_token_ids(tokenizer, item["messages"], item["answer"])
        row = {}
        if with_adapter:
            with model.disable_adapter():
                row["base"] = dict(zip(("sum", "tokens"), ids_nll(model, ids, start)))
            row["distilled"] = dict(zip(("sum", "tokens"), ids_nll(model, ids, start)))
        else:
            row["base"] = dict(zip(("sum", "tokens"), ids_nll(model, ids, start)))
        results.append(row)
        if (i + 1) % CHUNK == 0:
            _emit({"done": i + 1, "total": len(items)})
    return results


def run_ifd(model, tokenizer, items: list[dict]) -> list[float | None]:
    import math

    from models.ifd import ifd_scores

    out = []
    pairs = [(item["instruction"], item["response"]) for item in items]
    for start in range(0, len(pairs), CHUNK):
        out += [None if math.isnan(v) else float(v) for v in ifd_scores(model, tokenizer, pairs[start:start + CHUNK])]
        _emit({"done": min(start + CHUNK, len(pairs)), "total": len(pairs)})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("nll", "ifd"))
    parser.add_argument("--student", default="")
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--adapter", default="")
    parser.add_argument("--input", type=Path, required=True, help="one JSON item per line")
    args = parser.parse_args(argv)
    items = [json.loads(line) for line in args.input.read_text().splitlines() if line.strip()]
    try:
        model, tokenizer = _load(args.student, args.models_dir, args.adapter or None)
        _emit({"done": 0, "total": len(items)})
        results = (run_nll(model, tokenizer, items, bool(args.adapter)) if args.kind == "nll"
                   else run_ifd(model, tokenizer, items))
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _emit({"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
