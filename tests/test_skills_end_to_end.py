"""Each new skill headless from import to a trained student (issue 16): the bundled documents and a synthesized
conversation, labelled by the real embedded teacher, approved, and trained on by `python -m distill train`."""
from __future__ import annotations

import json

import pytest

from curation.store import Store
from tests.conftest import curation_cli
from tests.test_train import run_cli

pytestmark = pytest.mark.integration


def _teacher(url):
    return ["--base-url", url, "--model", "smollm2-135m-instruct", "--concurrency", "2"]


def _train(workspace, student):
    result = run_cli("train", "--workspace", str(workspace), "--student", str(student), "--max-steps", "2",
                     "--batch-size", "2", "--lr", "1e-3")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "step 2/2" in result.stdout


def test_documents_to_a_trained_student(tmp_path, teacher_url, tiny_student):
    ws = tmp_path / "ws"
    curation_cli("--workspace", ws, "documents", "--bundled", "--size", "2000")
    # Every chunk of the three bundled documents (PDF, HTML, Markdown): with the PDF's one chunk alone, the 135M
    # teacher sometimes wrote a single line that was not a question, and nothing was left to train on.
    out = curation_cli("--workspace", ws, "generate", "--method", "documents", "--questions-per-chunk", "3",
                       "--mode", "closed_book", "--max-tokens", "96", *_teacher(teacher_url))
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 0
    with Store(ws) as store:
        kept = store._fetchdicts("SELECT count(*) AS n FROM generations WHERE status = 'ok'")[0]["n"]
    if kept == 0:  # the 135M teacher may write no question that stands alone: then say so, not pass silently
        pytest.fail(f"the embedded teacher's questions were all discarded: {summary['discarded']}")
    curation_cli("--workspace", ws, "review", "--approve-all")
    _train(ws, tiny_student)
    with Store(ws) as store:
        run = store.runs(kind="sft")[0]
        (example,) = store.approved_examples()[:1]
    assert run["status"] == "completed"
    assert [m["role"] for m in example["messages"]] == ["user", "assistant"]  # closed book: no chunk trained on


def test_a_synthesized_conversation_to_a_trained_student(tmp_path, teacher_url, tiny_student):
    ws = tmp_path / "ws"
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps({"instruction": q}) for q in (
        "How do I boil an egg?", "What is a good name for a cat?")) + "\n")
    curation_cli("--workspace", ws, "import", seeds)
    out = curation_cli("--workspace", ws, "generate", "--method", "chat", "--turns", "2", "--max-tokens", "64",
                       "--user-max-tokens", "32", *_teacher(teacher_url))
    assert json.loads(out.stdout.strip().splitlines()[-1])["failed"] == 0
    curation_cli("--workspace", ws, "review", "--approve-all")
    _train(ws, tiny_student)
    with Store(ws) as store:
        assert store.runs(kind="sft")[0]["status"] == "completed"
        assert len(store.approved_examples()) == 2
