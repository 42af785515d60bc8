"""LoRA SFT end to end: a real DuckDB workspace, a tiny real Llama student, the real training child."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curation.errors import ConfigError, StudioError, TrainingBusy
from curation.store import Store
from distill import runlog
from distill.runner import REPO_ROOT, TrainingSlot
from distill.config import TrainConfig
from distill.rundir import prepare_run_dir
from models.resolve import bundled_tokenizer_dir, resolve_student
from tests.fixtures_models import make_tiny_student

CHILD_TIMEOUT_S = 120

# Different lengths on purpose: batches get padded, and the logged token count must not include padding.
QA = [("What is 2+2?", "4."),
      ("Name a primary colour.", "Red is a primary colour."),
      ("Say hello in French.", "Bonjour! That is how you say hello in French."),
      ("Give one word for happy.", "Joyful."),
      ("What is the capital of Italy?", "Rome is the capital of Italy."),
      ("Count to three.", "One, two, three.")]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    return bundled_tokenizer_dir(tmp_path_factory.mktemp("bundled"))


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory, tokenizer_dir):
    return make_tiny_student(tmp_path_factory.mktemp("tiny-student"), tokenizer_dir)


@pytest.fixture
def ws(tmp_path):
    with Store(tmp_path / "ws") as store:
        yield store


def seed_workspace(store: Store, n_approved: int = 4) -> list[int]:
    """QA tasks with ok generations: the first n approved, one rejected, the rest pending."""
    task_ids = store.add_tasks([{"instruction": q} for q, _ in QA])
    gen_ids = [store.record_generation({
        "task_id": tid, "request_key": f"key-{tid}", "endpoint": "http://teacher", "model": "teacher",
        "messages": [{"role": "user", "content": q}], "params": {"temperature": 0}, "sample_index": 0,
        "response": a, "status": "ok"}) for tid, (q, a) in zip(task_ids, QA)]
    store.set_label(gen_ids[:n_approved], "approved")
    store.set_label(gen_ids[n_approved:n_approved + 1], "rejected")
    return gen_ids[:n_approved]


def wait_for(predicate, timeout=CHILD_TIMEOUT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def events(run_dir, kind):
    return [e for e in runlog.read_events(run_dir) if e["event"] == kind]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# ---- config and run dir -----------------------------------------------------------------------
@pytest.mark.parametrize("field, value, hint", [
    ("max_steps", 0, "-1"), ("epochs", 0, "(0, 1000]"), ("learning_rate", 0, "1e-4"),
    ("batch_size", 0, "at least 1"), ("grad_accum", 0, "at least 1"), ("max_length", 8, "between 16"),
    ("lora_r", 0, "between 1"), ("lora_alpha", -1, "positive"), ("lora_dropout", 1.0, "[0, 1)"),
    ("target_modules", " , ", "all-linear"), ("student", " ", "must name a model"), ("seed", -1, "0 or more"),
    ("logging_steps", 0, "at least 1")])
def test_config_out_of_range_names_the_field_and_the_fix(field, value, hint):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**{field: value})
    assert str(err.value).startswith(field) and hint in str(err.value)


def test_config_defaults_are_valid_and_target_modules_split():
    assert TrainConfig().target_module_list() == "all-linear"
    assert TrainConfig(target_modules="q_proj, v_proj").target_module_list() == ["q_proj", "v_proj"]


def test_numbers_from_widgets_are_normalised_and_junk_is_refused():
    config = TrainConfig(max_steps=3.0, batch_size="2", learning_rate="1e-3")
    assert (config.max_steps, config.batch_size, config.learning_rate) == (3, 2, 1e-3)
    assert isinstance(config.max_steps, int)
    with pytest.raises(ConfigError, match="batch_size must be a whole number"):
        TrainConfig(batch_size=2.5)
    with pytest.raises(ConfigError, match="epochs must be a number"):
        TrainConfig(epochs="many")


def test_a_relative_student_path_is_pinned_to_the_callers_cwd(tmp_path, monkeypatch):
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert TrainConfig(student="my-model").student == str(tmp_path / "my-model")
    assert TrainConfig(student="SomeOrg/not-a-local-path").student == "SomeOrg/not-a-local-path"


def test_log_tail_collapses_progress_bars_and_skips_blank_lines(tmp_path):
    log = tmp_path / "stdout.log"
    log.write_text("loading\nbar 1%\rbar 50%\rbar 100%\n\nstep 1\n")
    assert runlog.tail_lines(log, 2) == "bar 100%\nstep 1"
    assert runlog.tail_lines(tmp_path / "missing.log") == ""


def test_a_half_written_last_event_is_left_for_the_next_poll(tmp_path):
    runlog.append_event(tmp_path, {"event": "step", "step": 1, "loss": 2.0})
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"event": "step", "st')
    assert [e["step"] for e in runlog.read_events(tmp_path)] == [1]


def test_an_empty_snapshot_is_refused_with_a_hint(tmp_path):
    with pytest.raises(StudioError, match="approve"):
        prepare_run_dir([], TrainConfig(), tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_two_run_dirs_in_the_same_second_do_not_collide(tmp_path):
    example = [{"generation_id": 1, "task_id": 1, "messages": [{"role": "user", "content": "q"},
                                                              {"role": "assistant", "content": "a"}]}]
    first = prepare_run_dir(example, TrainConfig(), tmp_path / "runs")
    second = prepare_run_dir(example, TrainConfig(), tmp_path / "runs")
    assert first != second and first.name.endswith("-sft") and second.name.endswith("-sft")


# ---- labels -----------------------------------------------------------------------------------
def test_labels_cover_the_response_only(tiny_student, tmp_path):
    from transformers import AutoTokenizer

    from distill.train import build_trainer

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": "It is 4."}]
    trainer = build_trainer(tiny_student, [{"generation_id": 1, "messages": messages}],
                            TrainConfig(student=str(tiny_student), max_steps=1), tmp_path)
    row = trainer.train_dataset[0]
    tok = AutoTokenizer.from_pretrained(str(tiny_student))
    prompt_len = len(tok.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"])
    assert row["labels"][:prompt_len] == [-100] * prompt_len
    assert row["labels"][prompt_len:] == row["input_ids"][prompt_len:]
    assert tok.decode(row["input_ids"][prompt_len:]) == "It is 4.<|im_end|>\n"
    assert "Be brief." in tok.decode(row["input_ids"][:prompt_len])


def test_padding_free_batches_carry_no_padding_and_give_the_padded_loss(tiny_student, tmp_path):
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from distill.train import build_trainer

    examples = [{"generation_id": i, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                for i, (q, a) in enumerate(QA)]
    trainer = build_trainer(tiny_student, examples, TrainConfig(student=str(tiny_student), max_steps=1,
                                                                batch_size=len(QA)), tmp_path)
    packed = next(iter(trainer.get_train_dataloader()))
    edges = packed["cu_seq_lens_q"].tolist()
    lengths = [e - s for s, e in zip(edges, edges[1:])]
    assert sorted(lengths) == sorted(len(trainer.train_dataset[i]["input_ids"]) for i in range(len(QA)))
    assert packed["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in packed
    assert packed["position_ids"][0].tolist() == [p for n in lengths for p in range(n)]
    # The same examples, padded the usual way.
    rows = [{"input_ids": packed["input_ids"][0, s:e].tolist(), "labels": packed["labels"][0, s:e].tolist()}
            for s, e in zip(edges, edges[1:])]
    padded = DataCollatorForLanguageModeling(pad_token_id=trainer.processing_class.pad_token_id)(rows)
    assert padded["input_ids"].numel() == len(QA) * max(lengths) > sum(lengths)
    assert trainer.model.config._attn_implementation == "sdpa_segments"
    trainer.model.eval()  # no LoRA dropout: the two forwards must be comparable
    with torch.no_grad():  # use_cache=False as TRL's compute_loss passes it
        packed_out = trainer.model(**packed, use_cache=False)
        padded_out = trainer.model(**padded, use_cache=False)
    # Same examples, same logits and loss: no example attends to another.
    for i, (s, e) in enumerate(zip(edges, edges[1:])):
        assert torch.allclose(packed_out.logits[0, s:e], padded_out.logits[i, :e - s], atol=1e-5)
    assert torch.allclose(packed_out.loss, padded_out.loss, atol=1e-5)


def test_edited_answers_reach_training_and_teacher_only_system_prompts_do_not(ws, tiny_student, tmp_path):
    from transformers import AutoTokenizer

    from distill import snapshot
    from distill.train import build_trainer
    from tests.train_helpers import add_answer

    [tid] = ws.add_tasks([{"instruction": "Capital of France?"}])
    messages = [{"role": "system", "content": "HIDDEN teacher instructions"},
                {"role": "user", "content": "Capital of France?"}]
    gid = add_answer(ws, tid, "k", "", "Paris, I believe.", messages=messages, teacher_only_system=True)
    ws.set_label([gid], "approved", edited_response="Paris.")
    rows = snapshot.collect(ws, TrainConfig())
    assert rows[0]["messages"] == [messages[1], {"role": "assistant", "content": "Paris."}]
    trainer = build_trainer(tiny_student, rows, TrainConfig(student=str(tiny_student), max_steps=1), tmp_path)
    text = AutoTokenizer.from_pretrained(str(tiny_student)).decode(trainer.train_dataset[0]["input_ids"])
    assert "Paris.<|im_end|>" in text and "I believe" not in text and "HIDDEN" not in text


# ---- the training child through the slot ------------------------------------------------------
def test_three_steps_through_the_slot_save_a_loadable_adapter(ws, tiny_student):
    approved = seed_workspace(ws, n_approved=4)
    slot = TrainingSlot(ws, ws.workspace)
    run_id = slot.start(TrainConfig(student=str(tiny_student), max_steps=3, batch_size=4))
    assert slot.wait(CHILD_TIMEOUT_S), "training child did not finish"

    run = ws.run(run_id)
    run_dir = Path(run["run_dir"])
    assert run["status"] == "completed", run["error"]
    assert run["kind"] == "sft" and run["config"]["max_steps"] == 3 and run["pid"] > 0
    snapshot = [json.loads(line) for line in (run_dir / "snapshot.jsonl").read_text().splitlines()]
    assert [row["generation_id"] for row in snapshot] == approved

    start, steps, end = events(run_dir, "start"), events(run_dir, "step"), events(run_dir, "end")
    assert start[0]["device"] == "cpu" and start[0]["n_examples"] == 4 and start[0]["max_steps"] == 3
    assert [s["step"] for s in steps] == [1, 2, 3] and all(s["max_steps"] == 3 for s in steps)
    assert all(s["loss"] > 0 and s["learning_rate"] > 0 and s["eta_s"] >= 0 for s in steps)
    assert steps[-1]["eta_s"] == 0
    # batch 4 = the whole snapshot each step, so each step sees exactly the snapshot's real tokens.
    assert [s["tokens"] for s in steps] == [snapshot_tokens(tiny_student, snapshot) * k for k in (1, 2, 3)]
    assert end[0]["status"] == "completed" and run["metrics"] == end[0]["metrics"]
    assert run["metrics"]["steps"] == 3 and run["metrics"]["tokens"] == steps[-1]["tokens"]
    assert run["metrics"]["tokens_per_s"] > 0 and run["metrics"]["train_loss"] > 0
    assert events(run_dir, "eval") == [] and not (run_dir / "heldout.jsonl").exists()  # no eval split here

    adapter = run_dir / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert_adapter_loads(tiny_student, adapter)
    assert (adapter / "README.md").exists() and "| method | sft |" in (adapter / "README.md").read_text()

    # The record: method, config, student, snapshot (ids + hashes), code and library versions, device.
    prov = run["config"]["provenance"]
    assert prov["method"] == "sft" and prov["student"] == str(tiny_student) and prov["seed"] == 0
    assert prov["snapshot"]["rows"] == 4 and prov["code_version"] and prov["libraries"]["trl"]
    assert ws.run_rows(run_id) == {row["row_id"]: row["hash"] for row in snapshot}
    assert run["metrics"]["device"] == "cpu" and run["metrics"]["peak_memory_mb"] > 0

    progress = slot.progress(run_id)
    assert progress["status"] == "completed" and progress["steps"] == 3 and progress["max_steps"] == 3
    assert [s for s, _ in progress["losses"]] == [1, 2, 3] and progress["adapter_dir"] == str(adapter)
    assert progress["notes"] == ["no eval loss: no task is held out (Seeds tab: hold out a fraction; or "
                                 "python -m curation split)"]
    assert "train_runtime" in progress["log_tail"] or "completed" in progress["log_tail"]


HELD_OUT = [("What is 3+3?", "6."), ("Name a fruit.", "An apple is a fruit."), ("Say goodbye in German.", "Tschüss!")]


def test_the_eval_loss_is_measured_on_held_out_answers_that_are_never_trained_on(ws, tiny_student):
    from models.nll import answer_nll
    approved = seed_workspace(ws, n_approved=4)
    held_tasks = ws.add_tasks([{"instruction": q} for q, _ in HELD_OUT])
    ws.set_split(held_tasks, "eval")
    held = [ws.record_generation({
        "task_id": tid, "request_key": f"held-{tid}", "endpoint": "http://teacher", "model": "teacher",
        "messages": [{"role": "user", "content": q}], "params": {}, "sample_index": i, "response": a, "status": "ok"})
        for i, (tid, (q, a)) in enumerate(zip(held_tasks, HELD_OUT))]
    ws.set_label(held[:1], "approved")  # approved or not, an eval-split answer is held out, never trained on
    ws.set_label(held[2:], "rejected")  # a rejected answer is no reference
    ws.record_generation({"task_id": held_tasks[1], "request_key": "student-answer", "endpoint": "local",
                          "model": "student", "messages": [{"role": "user", "content": HELD_OUT[1][0]}],
                          "params": {}, "sample_index": 0, "response": "a student's answer", "status": "ok"})
    slot = TrainingSlot(ws, ws.workspace)
    run_id = slot.start(TrainConfig(student=str(tiny_student), max_steps=4, batch_size=4, eval_steps=2))
    assert slot.wait(CHILD_TIMEOUT_S), "training child did not finish"
    run = ws.run(run_id)
    run_dir = Path(run["run_dir"])
    assert run["status"] == "completed", run["error"]

    heldout = [json.loads(line) for line in (run_dir / "heldout.jsonl").read_text().splitlines()]
    snapshot = [json.loads(line) for line in (run_dir / "snapshot.jsonl").read_text().splitlines()]
    assert [row["generation_id"] for row in heldout] == held[:2]  # one teacher answer per task, by id
    assert [row["generation_id"] for row in snapshot] == approved
    assert run["config"]["provenance"]["heldout_rows"] == 2

    evals = events(run_dir, "eval")
    assert [e["step"] for e in evals] == [2, 4] and all(e["rows"] == 2 and e["tokens"] > 0 for e in evals)
    assert run["metrics"]["eval_loss"] == evals[-1]["eval_loss"] and run["metrics"]["eval_rows"] == 2
    assert slot.progress(run_id)["notes"] == []
    assert slot.progress(run_id)["eval_losses"] == [(e["step"], e["eval_loss"]) for e in evals]

    # The logged value is the Evaluate tab's measure: the trained student's NLL per token of those answers.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_student)),
                                      str(run_dir / "adapter")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "adapter"))
    parts = [answer_nll(model, tokenizer, row["messages"][:-1], row["messages"][-1]["content"]) for row in heldout]
    assert evals[-1]["eval_loss"] == pytest.approx(sum(s for s, _ in parts) / sum(n for _, n in parts), abs=1e-4)

    # eval_rows 0 turns it off; by default (eval_steps 0) it runs about 5 times per run: every step here.
    off = slot.start(TrainConfig(student=str(tiny_student), max_steps=2, batch_size=4, eval_rows=0))
    assert slot.wait(CHILD_TIMEOUT_S)
    assert not (Path(ws.run(off)["run_dir"]) / "heldout.jsonl").exists()
    assert events(Path(ws.run(off)["run_dir"]), "eval") == [] and "eval_loss" not in ws.run(off)["metrics"]
    every = slot.start(TrainConfig(student=str(tiny_student), max_steps=3, batch_size=4))
    assert slot.wait(CHILD_TIMEOUT_S)
    assert [e["step"] for e in events(Path(ws.run(every)["run_dir"]), "eval")] == [1, 2, 3]


def test_a_run_says_why_it_has_no_eval_loss(ws):
    from distill.snapshot import heldout_note
    seed_workspace(ws)
    [held] = ws.add_tasks([{"instruction": "Held out, never answered."}])
    assert heldout_note(ws, TrainConfig(eval_rows=0), []) == ""
    assert "no task is held out" in heldout_note(ws, TrainConfig(), [])
    ws.set_split([held], "eval")
    assert heldout_note(ws, TrainConfig(), []).startswith("no eval loss: none of the 1 eval tasks has a teacher answer")
    assert heldout_note(ws, TrainConfig(), [{"row_id": "1"}]) == ""


def snapshot_tokens(model_dir, snapshot) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    return sum(len(tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"])
               for row in snapshot)


def assert_adapter_loads(base_dir, adapter_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir)), str(adapter_dir))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(torch.count_nonzero(p) for p in lora_b), "adapter weights were not trained"


def test_a_second_start_while_one_runs_is_refused(ws, tiny_student):
    seed_workspace(ws)
    slot = TrainingSlot(ws, ws.workspace)
    run_id = slot.start(TrainConfig(student=str(tiny_student), max_steps=100_000))
    try:
        assert slot.busy
        with pytest.raises(TrainingBusy) as err:
            slot.start(TrainConfig(student=str(tiny_student), max_steps=3))
        assert err.value.run_id == run_id and str(run_id) in str(err.value)
        assert len(ws.runs(kind="sft")) == 1
    finally:
        slot.stop()
        assert slot.wait(30)


def test_stop_ends_the_process_group_and_marks_the_run_stopped(ws, tiny_student):
    seed_workspace(ws)
    slot = TrainingSlot(ws, ws.workspace)
    run_id = slot.start(TrainConfig(student=str(tiny_student), max_steps=100_000))
    run_dir, pid = Path(ws.run(run_id)["run_dir"]), ws.run(run_id)["pid"]
    wait_for(lambda: events(run_dir, "step"), what="the first training step")
    assert group_alive(pid)

    assert slot.stop()
    assert slot.wait(30), "child ignored SIGTERM and SIGKILL"
    assert not slot.busy and not group_alive(pid)
    run = ws.run(run_id)
    assert run["status"] == "stopped" and run["finished_at"] is not None
    assert 0 < run["metrics"]["steps"] < 100_000
    assert not events(run_dir, "end")
    assert slot.stop() is False  # nothing left to stop


def test_a_failing_child_leaves_a_failed_run_with_its_log_tail(ws, tmp_path):
    seed_workspace(ws)
    slot = TrainingSlot(ws, ws.workspace)
    run_id = slot.start(TrainConfig(student=str(tmp_path / "no-such-model"), max_steps=3))
    assert slot.wait(CHILD_TIMEOUT_S)
    run = ws.run(run_id)
    assert run["status"] == "failed"
    assert "no-such-model does not exist" in run["error"]
    assert "last lines of stdout.log" in run["error"]
    assert events(Path(run["run_dir"]), "error")
    assert not (Path(run["run_dir"]) / "adapter").exists()
    # The slot is free again after a failure.
    assert not slot.busy


# ---- headless CLI -----------------------------------------------------------------------------
def run_cli(*args, timeout=CHILD_TIMEOUT_S):
    return subprocess.run([sys.executable, "-m", "distill", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_headless_cli_trains_and_prints_the_adapter(tmp_path, tiny_student):
    with Store(tmp_path / "ws") as store:
        seed_workspace(store)
        [held] = store.add_tasks([{"instruction": HELD_OUT[0][0]}])
        store.set_split([held], "eval")
        store.record_generation({"task_id": held, "request_key": "held", "endpoint": "http://teacher", "model": "t",
                                 "messages": [{"role": "user", "content": HELD_OUT[0][0]}], "params": {},
                                 "sample_index": 0, "response": HELD_OUT[0][1], "status": "ok"})
    result = run_cli("train", "--workspace", str(tmp_path / "ws"), "--student", str(tiny_student),
                     "--max-steps", "2", "--batch-size", "2", "--lr", "1e-3", "--eval-steps", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "step 2/2" in result.stdout
    assert [line.split()[1] for line in result.stdout.splitlines() if "eval loss" in line] == ["1", "2"]
    assert "(1 held-out answers)" in result.stdout
    adapter = Path(result.stdout.strip().splitlines()[-1].removeprefix("adapter: "))
    assert (adapter / "adapter_model.safetensors").exists()
    with Store(tmp_path / "ws") as store:
        assert store.runs(kind="sft")[0]["status"] == "completed"


def test_headless_cli_on_a_workspace_in_use_exits_2(ws):
    result = run_cli("train", "--workspace", str(ws.workspace), "--max-steps", "1", timeout=60)
    assert result.returncode == 2
    assert f"in use by PID {os.getpid()}" in result.stderr


def test_headless_cli_rejects_a_bad_config_before_training(tmp_path):
    result = run_cli("train", "--workspace", str(tmp_path / "ws"), "--batch-size", "0", timeout=60)
    assert result.returncode == 2 and "batch_size must be at least 1" in result.stderr


# ---- resolving students -----------------------------------------------------------------------
def test_a_local_model_folder_is_used_as_is(tiny_student, tmp_path):
    assert resolve_student(str(tiny_student), tmp_path) == tiny_student


def test_a_pickle_only_checkpoint_is_refused(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(StudioError, match="pickle.*safetensors"):
        resolve_student(str(folder), tmp_path / "models")


def test_an_uncached_hub_id_fails_offline_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(StudioError, match="not available offline"):
        resolve_student("SomeOrg/some-model-that-is-not-cached", tmp_path / "models")


def test_a_missing_local_path_says_so(tmp_path):
    with pytest.raises(StudioError, match="does not exist"):
        resolve_student(str(tmp_path / "nope"), tmp_path / "models")


# ---- the real bundled student -----------------------------------------------------------------
@pytest.mark.integration
def test_the_bundled_student_trains_two_steps(ws):
    seed_workspace(ws)
    slot = TrainingSlot(ws, ws.workspace)
    run_id = slot.start(TrainConfig(student="smollm2-135m-instruct", max_steps=2, batch_size=2))
    assert slot.wait(600), "bundled student training did not finish"
    run = ws.run(run_id)
    assert run["status"] == "completed", run["error"]
    assert run["metrics"]["steps"] == 2 and run["metrics"]["tokens"] > 0
    model_dir = ws.workspace / "models" / "smollm2-135m-instruct"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "chat_template.jinja").exists()
    assert "quantization_config" not in json.loads((model_dir / "config.json").read_text())
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".")], "a staging folder was left"
    assert_adapter_loads(model_dir, Path(run["run_dir"]) / "adapter")


def test_a_4bit_student_loads_on_its_own_rank_s_gpu(monkeypatch):
    """Under torchrun every rank has LOCAL_RANK; the model is loaded before TrainingArguments pick the
    device, so the device map must come from it (not torch.cuda.current_device(), 0 in every rank)."""
    from distill.loading import local_cuda_device
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert local_cuda_device() == 3


def test_liger_kernels_only_on_cuda_when_installed(monkeypatch):
    import importlib.util

    from distill.loading import use_liger

    assert use_liger("cpu") is False  # Triton does not run on CPU, installed or not
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "liger_kernel" else None)
    assert use_liger("cuda") is True
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert use_liger("cuda") is False
