"""Logit KD against a local teacher and KD from API logprobs: tiny teacher and student sharing the bundled
SmolLM2 tokenizer, real workspaces, the same `train(run_dir)` the training child runs."""
from __future__ import annotations

import json
import shutil

import pytest

from curation.errors import ConfigError, StudioError
from distill import snapshot
from distill.config import KDOptions, TrainConfig
from distill.kd import (VocabularyMismatch, align_logprobs, logprob_features, teacher_token_starts,
                        token_text_map, vocabulary_difference)
from distill.runner import TrainingSlot
from distill.rundir import prepare_run_dir
from distill.train import train
from models.resolve import bundled_tokenizer_dir
from tests.fixtures_models import make_tiny_student
from tests.train_helpers import (HELD_OUT_EXAMPLE, QA, add_answer, api_logprobs, assert_adapter_trained, events, seed_pairs,
                                 snapshot_rows)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return bundled_tokenizer_dir(tmp_path_factory.mktemp("kd-tokenizer"))


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, tokenizer_dir):
    """Same architecture and tokenizer as the tiny student, other weights."""
    return make_tiny_student(tmp_path_factory.mktemp("tiny-teacher"), tokenizer_dir, seed=1)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def run(store, config, workspace, heldout=None):
    rows = snapshot.collect(store, config)
    run_dir = prepare_run_dir(rows, config, workspace / "runs", workspace / "models", heldout=heldout)
    return run_dir, train(run_dir)


# ---- configuration ---------------------------------------------------------------------------------
def test_kd_options_are_checked_with_the_fix_in_the_message():
    with pytest.raises(ConfigError, match="kd.teacher must name a local teacher"):
        TrainConfig(method="kd")
    with pytest.raises(ConfigError, match="beta 0 is forward_kl"):
        KDOptions(loss="jsd", beta=0.0)
    with pytest.raises(ConfigError, match="kd.on_policy must be 0 for kd_logprobs"):
        TrainConfig(method="kd_logprobs", kd=KDOptions(on_policy=0.5))
    assert TrainConfig.from_dict({"method": "kd", "kd": {"teacher": "x", "loss": "reverse_kl"}}).kd.jsd_beta() == 1.0


# ---- vocabulary ------------------------------------------------------------------------------------
def test_vocabulary_difference_names_sizes_and_differing_ids():
    student = {"a": 0, "b": 1, "c": 2}
    assert vocabulary_difference(student, dict(student)) is None
    why = vocabulary_difference(student, {"a": 0, "b": 2, "c": 1, "d": 3})
    assert "4 teacher tokens vs 3 student tokens" in why and "3 token ids differ" in why
    assert "'b' is id 1 for the student but 2 for the teacher" in why


def _teacher_with_tokenizer(tmp_path, base, edit) -> str:
    folder = tmp_path / "other-teacher"
    shutil.copytree(base, folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    edit(data)
    (folder / "tokenizer.json").write_text(json.dumps(data))
    return str(folder)


def _swap_two_ids(data):
    vocab = data["model"]["vocab"]
    vocab["hello"], vocab["world"] = vocab["world"], vocab["hello"]


def _add_a_token(data):
    data["added_tokens"].append({"id": len(data["model"]["vocab"]) + len(data["added_tokens"]), "content": "<extra>",
                                 "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                                 "special": True})


@pytest.mark.parametrize("edit, says", [(_swap_two_ids, "2 token ids differ"),
                                        (_add_a_token, "49153 teacher tokens vs 49152 student tokens")])
def test_a_teacher_with_another_vocabulary_is_refused_before_any_run(store, tiny_student, tiny_teacher, tmp_path,
                                                                     edit, says):
    seed_pairs(store)
    teacher = _teacher_with_tokenizer(tmp_path, tiny_teacher, edit)
    slot = TrainingSlot(store, store.workspace)
    with pytest.raises(VocabularyMismatch) as err:
        slot.start(TrainConfig(method="kd", student=str(tiny_student), max_steps=2, kd=KDOptions(teacher=teacher)))
    assert says in str(err.value) and "same tokenizer" in str(err.value)
    assert store.runs() == [] and not slot.busy  # refused before a run dir or a process existed


# ---- white-box KD ----------------------------------------------------------------------------------
def test_forward_kl_against_a_local_teacher_trains_and_logs_every_step(store, tiny_student, tiny_teacher):
    seed_pairs(store)
    config = TrainConfig(method="kd", student=str(tiny_student), max_steps=3, batch_size=2, learning_rate=1e-3,
                         kd=KDOptions(teacher=str(tiny_teacher)))
    run_dir, metrics = run(store, config, store.workspace, heldout=[HELD_OUT_EXAMPLE])
    steps = events(run_dir, "step")
    assert [e["step"] for e in steps] == [1, 2, 3]
    assert all(e["loss"] > 0 and e["metrics"]["kd_coverage"] == 1.0 for e in steps)
    # the eval loss is the held-out NLL whatever the method trains on (here a KL)
    assert [e["step"] for e in events(run_dir, "eval")] == [1, 2, 3] and metrics["eval_loss"] > 0
    assert events(run_dir, "start")[0]["method"] == "kd" and events(run_dir, "memory")[0]["parts_mb"]["teacher"] > 0
    assert metrics["steps"] == 3 and metrics["tokens"] == steps[-1]["tokens"] > 0
    assert_adapter_trained(run_dir)


def test_fully_on_policy_jsd_runs_on_trls_distillation_trainer(store, tiny_student, tiny_teacher):
    seed_pairs(store)
    config = TrainConfig(method="kd", student=str(tiny_student), max_steps=2, batch_size=2,
                         kd=KDOptions(teacher=str(tiny_teacher), loss="jsd", beta=0.5, temperature=0.9,
                                      on_policy=1.0, max_new_tokens=6))
    run_dir, metrics = run(store, config, store.workspace)
    steps = events(run_dir, "step")
    assert [e["step"] for e in steps] == [1, 2]
    # TRL's trainer logs the student's completions it trained on (at most max_new_tokens) and their entropy
    assert all(0 < e["metrics"]["completions/mean_length"] <= 6 and e["metrics"]["entropy"] > 0 for e in steps)
    assert all(0 < e["loss"] < 1 for e in steps)  # a JSD with beta 0.5 is at most log 2 per token
    assert metrics["tokens"] > 0
    assert_adapter_trained(run_dir)


def test_mixed_on_policy_jsd_samples_on_that_share_of_steps(store, tiny_student, tiny_teacher):
    seed_pairs(store)
    config = TrainConfig(method="kd", student=str(tiny_student), max_steps=4, batch_size=2,
                         kd=KDOptions(teacher=str(tiny_teacher), loss="jsd", beta=0.5, temperature=0.9,
                                      on_policy=0.5, max_new_tokens=6))
    run_dir, _ = run(store, config, store.workspace)
    steps = events(run_dir, "step")
    sampled = [e["metrics"]["on_policy_steps"] for e in steps]
    assert sampled == sorted(sampled) and 0 < sampled[-1] < 4  # some steps on student samples, some on the teacher's
    assert all(0 < e["loss"] < 1 for e in steps)


# ---- KD from API logprobs --------------------------------------------------------------------------
def test_teacher_tokens_are_placed_by_character_offset_and_byte_fragments_flagged():
    answer = "Ça va? Oui."
    tokens = ["", "", "a", " va", "?", " Oui", "."]  # 'Ç' arrives as two byte fragments
    assert teacher_token_starts(answer, tokens) == [None, None, 1, 2, 5, 6, 10]
    entries = [{"token": t, "logprob": -0.1, "top": [{"token": t, "logprob": -0.1}, {"token": " no", "logprob": -3}]}
               for t in tokens]
    spans = [None, (0, 1), (1, 2), (2, 5), (5, 6), (6, 10), (10, 11), None]  # student: prompt, Ç, a, va, ...
    text_to_id = {"a": 10, " va": 11, "?": 12, " Oui": 13, ".": 14, " no": 15}
    per_position, counts = align_logprobs(answer, entries, spans, text_to_id)
    assert per_position[0] is None and per_position[1] is None and per_position[-1] is None
    assert per_position[3] == [(11, -0.1), (15, -3.0)]
    assert counts == {"teacher_tokens": 7, "mapped_tokens": 5}


def test_token_texts_map_to_student_ids(tokenizer):
    text_to_id = token_text_map(tokenizer)
    for word in (" hello", "Paris", ".", "<|im_end|>"):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and text_to_id[word] == ids[0]
    assert not any("\ufffd" in text for text in text_to_id)


def test_an_api_teacher_with_another_tokenizer_is_refused(tokenizer):
    messages = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there friend."}]
    sentencepiece_style = [{"token": t, "logprob": -0.2, "top": [{"token": t, "logprob": -0.2}]}
                           for t in ("▁Hi", "▁there", "▁friend", "▁.")]
    with pytest.raises(VocabularyMismatch, match="only 0 of the teacher's 4 answer tokens"):
        logprob_features(tokenizer, [{"messages": messages, "logprobs": sentencepiece_style}], 128)


def test_kd_from_api_logprobs_trains_with_unmapped_positions_falling_back(store, tiny_student, tiny_teacher):
    task_ids = store.add_tasks([{"instruction": q} for q, _, _ in QA])
    ids = []
    for tid, (q, a, _) in zip(task_ids, QA):
        messages = [{"role": "user", "content": q}]
        ids.append(add_answer(store, tid, f"lp-{tid}", q, a, model="api-teacher",
                              logprobs=api_logprobs(tiny_teacher, messages, a)))
    store.set_label(ids, "approved")
    store.set_label(ids[:1], "approved", edited_response="Four.")  # an edit: its logprobs no longer apply
    config = TrainConfig(method="kd_logprobs", student=str(tiny_student), max_steps=3, batch_size=2,
                         learning_rate=1e-3)
    run_dir, metrics = run(store, config, store.workspace)
    rows = snapshot_rows(run_dir)
    assert rows[0]["logprobs"] is None and all(r["logprobs"] for r in rows[1:])
    data = events(run_dir, "data")[0]
    # 'Ç' comes back as byte fragments and the end-of-turn tokens are never reported: flagged, not guessed.
    assert data["mapped_tokens"] < data["teacher_tokens"] and 0 < data["covered"] < data["positions"]
    steps = events(run_dir, "step")
    assert [e["step"] for e in steps] == [1, 2, 3] and all(0 < e["metrics"]["kd_coverage"] < 1 for e in steps)
    assert metrics["method"] == "kd_logprobs"
    assert_adapter_trained(run_dir)


def test_kd_from_logprobs_without_any_logprobs_is_refused_with_what_to_do(store):
    seed_pairs(store)
    with pytest.raises(StudioError, match="logprobs method on the Generate tab"):
        snapshot.collect(store, TrainConfig(method="kd_logprobs"))


# ---- another tokenizer ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_tokenizer_teacher(tmp_path_factory, tokenizer):
    """A tiny teacher with a genuinely different tokenizer: a 300-token BPE trained from the QA texts."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    texts = [" ".join(texts) for texts in QA] * 20
    other = tokenizer.train_new_from_iterator(texts, vocab_size=300)
    torch.manual_seed(2)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=len(other), tie_word_embeddings=True,
                         bos_token_id=other.bos_token_id, eos_token_id=other.eos_token_id,
                         pad_token_id=other.pad_token_id)
    folder = tmp_path_factory.mktemp("other-tokenizer-teacher")
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    other.save_pretrained(folder)
    return folder


def test_a_teacher_with_another_tokenizer_trains_by_gold_when_asked(store, tiny_student, other_tokenizer_teacher):
    seed_pairs(store)
    slot = TrainingSlot(store, store.workspace)
    refused = KDOptions(teacher=str(other_tokenizer_teacher))
    with pytest.raises(VocabularyMismatch, match="--cross-tokenizer"):
        slot.start(TrainConfig(method="kd", student=str(tiny_student), max_steps=2, kd=refused))
    config = TrainConfig(method="kd", student=str(tiny_student), max_steps=2, batch_size=2, learning_rate=1e-3,
                         kd=KDOptions(teacher=str(other_tokenizer_teacher), cross_tokenizer=True))
    run_dir, metrics = run(store, config, store.workspace)
    assert events(run_dir, "data")[0]["cross_tokenizer"] is True
    steps = events(run_dir, "step")
    assert [e["step"] for e in steps] == [1, 2] and all(e["loss"] > 0 for e in steps)
    assert metrics["steps"] == 2
    assert_adapter_trained(run_dir)
