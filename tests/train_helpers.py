"""Shared by the training tests: tiny models, a seeded workspace, API-style logprobs, running a run dir."""
from __future__ import annotations

import json
import time
from pathlib import Path

from distill import runlog

QA = [("What is 2+2?", "4.", "5, obviously."),
      ("Name a primary colour.", "Red is a primary colour.", "Green, I think."),
      ("Say hello in French.", "Bonjour! Ça va? That is how you say hello in French.", "Hola."),
      ("Give one word for happy.", "Joyful.", "Sad.")]


def add_answer(store, task_id: int, key: str, question: str, answer: str, model: str = "teacher",
               logprobs: list | None = None, messages: list | None = None, teacher_only_system: bool = False) -> int:
    """Store one teacher answer the way the generation engine does (plan the call, then commit it)."""
    messages = messages or [{"role": "user", "content": question}]
    call = {"request_key": key, "method": "logprobs" if logprobs else "label", "stage": "answer", "task_id": task_id,
            "endpoint": "http://teacher", "model": model, "messages": messages, "params": {}, "sample_index": 0}
    store.plan_ledger(None, [call])
    generation = {**{k: v for k, v in call.items() if k != "stage"}, "response": answer, "status": "ok",
                  "logprobs": logprobs, "teacher_only_system": teacher_only_system}
    return store.commit_call(key, {"status": "ok"}, generation=generation)["generation_id"]


HELD_OUT_EXAMPLE = {"row_id": "held-1", "generation_id": None, "task_id": None, "hash": "h",
                    "messages": [{"role": "user", "content": "What is 3+3?"}, {"role": "assistant", "content": "6."}]}


def seed_pairs(store) -> tuple[list[int], list[int]]:
    """Each QA task gets a good and a bad answer; the good ones approved. Returns (good ids, bad ids)."""
    task_ids = store.add_tasks([{"instruction": q} for q, _, _ in QA])
    good = [add_answer(store, tid, f"good-{tid}", q, a) for tid, (q, a, _) in zip(task_ids, QA)]
    bad = [add_answer(store, tid, f"bad-{tid}", q, b) for tid, (q, _, b) in zip(task_ids, QA)]
    store.set_label(good, "approved")
    return good, bad


def api_logprobs(teacher_dir: Path, messages: list[dict], answer: str, k: int = 5) -> list[dict]:
    """What an OpenAI-compatible API returns for `answer`, computed from a local model: per answer token its
    text, logprob and top-k. Byte fragments come back as '' (as llama.cpp's server sends them)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    model = AutoModelForCausalLM.from_pretrained(str(teacher_dir))
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([list(prompt) + ids])).logits[0].float(), -1)

    def text(token_id):
        decoded = tok.decode([int(token_id)])
        return "" if "\ufffd" in decoded else decoded

    out = []
    for i, token_id in enumerate(ids):
        dist = logp[len(prompt) + i - 1]
        top = torch.topk(dist, k)
        out.append({"token": text(token_id), "logprob": float(dist[token_id]),
                    "top": [{"token": text(t), "logprob": float(v)} for v, t in zip(top.values, top.indices)]})
    return out


def events(run_dir, kind: str | None = None) -> list[dict]:
    return [e for e in runlog.read_events(run_dir) if kind is None or e["event"] == kind]


def snapshot_rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / runlog.SNAPSHOT_NAME).read_text().splitlines()]


def wait_for(predicate, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def assert_adapter_trained(run_dir) -> Path:
    """The run completed: adapter weights + config + tokenizer + model card, and a non-zero LoRA B."""
    from safetensors.torch import load_file

    adapter = Path(run_dir) / runlog.ADAPTER_DIR
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "README.md",
                 "data_manifest.jsonl"):
        assert (adapter / name).exists(), name
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert any(name.endswith("lora_B.weight") and weights[name].abs().sum() > 0 for name in weights)
    return adapter
