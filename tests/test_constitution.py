"""Values by critique and revision (issue 16.4): the teacher critiques answers against the user's principles and
rewrites them; the revision trains by SFT and (revision, original) is a DPO pair."""
from __future__ import annotations

import json

import pytest

from curation.errors import ConfigError, StudioError
from curation.generate import run_method
from curation.methods import ConstitutionConfig
from curation.methods.constitution import needs_change, parse_revision
from curation.teacher import TeacherConfig
from distill import snapshot
from distill.config import TrainConfig
from tests.conftest import add_generation
from tests.fault_server import FaultServer


def _teacher(server):
    return TeacherConfig(base_url=server.base_url, model="scripted", concurrency=1, max_retries=0)


def _answers(store):
    tasks = store.add_tasks([{"instruction": "How do I fix a flat bike tyre?"}, {"instruction": "Name a colour."},
                             {"instruction": "Say hi."}])
    return [add_generation(store, t, f"k{t}", response=r, messages=[{"role": "user", "content": q}])
            for t, q, r in zip(tasks, ("How do I fix a flat bike tyre?", "Name a colour.", "Say hi."),
                               ("Buy a new bike, obviously. Bikes are cheap and fixing is for losers.", "Blue.",
                                "Hi there, friend."))]


def _script(body):
    content = body["messages"][-1]["content"]
    if "You review an AI assistant's answer" in content:
        if "Buy a new bike" in content:
            return {"text": "- Helpful: it does not answer how to fix the tyre.\n- Harmless: it insults the user."}
        if "Hi there" in content:
            return {"text": "- Concise: could be shorter."}
        return {"text": "NO_CHANGE"}
    if "Buy a new bike" in content:
        return {"text": "Revised answer: Remove the wheel, find the hole, patch the tube and pump it up."}
    return {"text": "Hi there, friend."}  # a copy of the original: discarded


def test_parsers():
    assert not needs_change("NO_CHANGE") and not needs_change("**NO_CHANGE.**") and not needs_change("  ")
    assert needs_change("- Honest: it guesses a date.")
    assert parse_revision("Revised answer: Patch it.") == "Patch it." and parse_revision("  ") is None


def test_config_names_the_bad_field():
    with pytest.raises(ConfigError, match="temperature"):
        ConstitutionConfig(temperature=9)
    assert "Be honest" in ConstitutionConfig().principles


def test_critique_then_revision_and_the_pair_feeds_sft_and_dpo(store):
    bad, fine, copy = _answers(store)
    with FaultServer([_script]) as server:
        summary = run_method(store, _teacher(server), ConstitutionConfig(), server.base_url)
        sent = len(server.requests)
        run_method(store, _teacher(server), ConstitutionConfig(), server.base_url)
        assert len(server.requests) == sent  # a re-run pays for nothing twice
    # 3 critiques, 2 revisions (the NO_CHANGE answer is not revised)
    assert sent == 5 and summary["discarded"] == {"no_change_needed": 1, "copy": 1}
    (revision,) = store._fetchdicts("SELECT id, task_id, messages, response, method FROM generations "
                                    "WHERE method = 'constitution'")
    assert revision["response"] == "Remove the wheel, find the hole, patch the tube and pump it up."
    assert json.loads(revision["messages"]) == [{"role": "user", "content": "How do I fix a flat bike tyre?"}]
    assert store.revision_links() == [{"original_id": bad, "revised_id": revision["id"]}]
    (pair,) = snapshot.pair_rows(store, TrainConfig(method="dpo", dpo={"pairs": "revisions"}))
    assert (pair["chosen_id"], pair["rejected_id"]) == (revision["id"], bad)
    assert pair["prompt"] == [{"role": "user", "content": "How do I fix a flat bike tyre?"}]
    # a rejected revision is no better: no pair
    store.set_label([revision["id"]], "rejected")
    with pytest.raises(StudioError, match="no revised answer"):
        snapshot.pair_rows(store, TrainConfig(method="dpo", dpo={"pairs": "revisions"}))
    del fine, copy


def test_no_answers_says_what_to_do(store):
    with FaultServer([_script]) as server, pytest.raises(StudioError, match="generate answers first"):
        run_method(store, _teacher(server), ConstitutionConfig(), server.base_url)


@pytest.mark.integration
def test_constitution_on_the_embedded_teacher(store, teacher_url):
    _answers(store)
    summary = run_method(store, TeacherConfig(concurrency=2), ConstitutionConfig(max_tokens=96), teacher_url)
    critiques = store.ledger_rows(states=("ok",))
    assert summary["failed"] == 0 and len([c for c in critiques if c["stage"] == "critique"]) == 3


def test_revisions_train_a_dpo_student_headless(store, tiny_student):
    from tests.test_train import run_cli

    _answers(store)
    with FaultServer([_script]) as server:
        run_method(store, _teacher(server), ConstitutionConfig(), server.base_url)
    workspace = store.workspace
    store.close()
    result = run_cli("train", "--workspace", str(workspace), "--student", str(tiny_student), "--method", "dpo",
                     "--pairs", "revisions", "--max-steps", "2", "--batch-size", "1", "--lr", "1e-3")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    assert "step 2/2" in result.stdout
