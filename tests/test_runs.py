"""Runs you can trust, resume and reproduce: provenance, snapshot diffs, stop → resume with the same global
step, merged export with a model card, and the memory estimate against a measured peak."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curation.errors import StudioError
from distill import memory, runlog, snapshot
from distill.config import TrainConfig
from distill.runner import REPO_ROOT, TrainingSlot, child_env
from distill.rundir import prepare_run_dir
from distill.train import train
from tests.train_helpers import QA, assert_adapter_trained, events, seed_pairs, wait_for

CHILD_TIMEOUT_S = 180


# ---- the record and the diff -------------------------------------------------------------------
def test_snapshot_diff_shows_rows_added_removed_and_edited(store):
    good, bad = seed_pairs(store)
    first = snapshot.collect(store, TrainConfig())
    store.set_label(good[:1], "rejected")
    store.set_label(bad[:2], "approved")
    store.set_label(good[1:2], "approved", edited_response="A better answer.")
    second = snapshot.collect(store, TrainConfig())
    for run_id, rows in ((1, first), (2, second)):
        store.record_run_rows(run_id, [(r["row_id"], r["hash"]) for r in rows])
    diff = store.diff_run_rows(1, 2)
    assert diff == {"added": [str(b) for b in bad[:2]], "removed": [str(good[0])], "changed": [str(good[1])],
                    "same": 2}
    assert store.run_rows(1) == {r["row_id"]: r["hash"] for r in first}


def test_a_run_records_method_config_student_snapshot_code_and_libraries(store, tiny_student, tmp_path):
    seed_pairs(store)
    rows = snapshot.collect(store, TrainConfig())
    config = TrainConfig(student=str(tiny_student), seed=7)
    run_dir = prepare_run_dir(rows, config, tmp_path / "runs")
    payload = json.loads((run_dir / "config.json").read_text())
    prov = payload["provenance"]
    assert payload["train_config"]["seed"] == 7 and prov["seed"] == 7 and prov["method"] == "sft"
    assert prov["student"] == str(tiny_student) and prov["answer_teachers"] == ["teacher"]
    assert prov["snapshot"]["rows"] == len(rows) and len(prov["snapshot"]["sha256"]) == 64
    assert prov["code_version"] not in ("", "unknown") and prov["libraries"]["transformers"]
    assert [r["hash"] for r in (json.loads(x) for x in (run_dir / "snapshot.jsonl").read_text().splitlines())] == \
        [r["hash"] for r in rows]


# ---- stop and resume -----------------------------------------------------------------------------
def test_stop_saves_a_checkpoint_and_resume_continues_at_the_same_global_step(store, tiny_student):
    seed_pairs(store)
    slot = TrainingSlot(store, store.workspace)
    run_id = slot.start(TrainConfig(student=str(tiny_student), max_steps=100_000, batch_size=2))
    run_dir = Path(store.run(run_id)["run_dir"])
    wait_for(lambda: len(events(run_dir, "step")) >= 3, CHILD_TIMEOUT_S, "three training steps")
    assert slot.stop()
    assert slot.wait(60), "the child did not save and exit after SIGTERM"
    run = store.run(run_id)
    stopped_at = events(run_dir, "stopped")[0]["step"]
    checkpoint = runlog.last_complete_checkpoint(run_dir)
    assert run["status"] == "stopped" and run["metrics"]["checkpoint"] == str(checkpoint)
    assert checkpoint.name == f"checkpoint-{stopped_at}" and stopped_at >= 3
    assert (checkpoint / "optimizer.pt").exists() and (checkpoint / "adapter_model.safetensors").exists()
    assert slot.progress(run_id)["resumable"]

    assert slot.resume(run_id) == run_id
    wait_for(lambda: [e for e in events(run_dir, "step") if e["step"] > stopped_at], CHILD_TIMEOUT_S,
             "a step after the resume")
    slot.stop()
    assert slot.wait(60)
    resumed = events(run_dir, "start")[1]
    assert resumed["resumed_from"] == stopped_at
    after = events(run_dir)[events(run_dir).index(resumed) + 1:]
    assert [e["step"] for e in after if e["event"] == "step"][0] == stopped_at + 1
    assert [e["tokens"] for e in after if e["event"] == "step"][0] > resumed["tokens"] > 0
    progress = slot.progress(run_id)
    steps = [s for s, _ in progress["losses"]]
    assert steps == sorted(set(steps)) and progress["status"] == "stopped"
    second = runlog.last_complete_checkpoint(run_dir)
    state = json.loads((second / "trainer_state.json").read_text())
    assert state["global_step"] > stopped_at and [h["step"] for h in state["log_history"] if "loss" in h][:2] == [1, 2]


def test_a_run_without_a_checkpoint_cannot_be_resumed(store, tmp_path):
    seed_pairs(store)
    run_dir = prepare_run_dir(snapshot.collect(store, TrainConfig()), TrainConfig(), tmp_path / "runs")
    (run_dir / "checkpoint-4").mkdir()  # cut short by a kill: no trainer_state.json
    (run_dir / "checkpoint-4" / "adapter_model.safetensors").write_bytes(b"")
    assert runlog.last_complete_checkpoint(run_dir) is None
    run_id = store.start_run("sft", {}, run_dir=str(run_dir))
    store.update_run(run_id, status="stopped")
    with pytest.raises(StudioError, match="no complete checkpoint"):
        TrainingSlot(store, store.workspace).resume(run_id)


def test_the_log_summary_drops_steps_a_resume_superseded():
    log = [{"event": "start", "max_steps": 10}, *({"event": "step", "step": s, "loss": 1.0 / s, "tokens": 10 * s}
                                                  for s in (1, 2, 3, 4)),
           {"event": "stopped", "step": 4, "checkpoint": "c-3", "metrics": {}},
           {"event": "start", "max_steps": 10, "resumed_from": 3, "tokens": 30},
           {"event": "step", "step": 4, "loss": 0.2, "tokens": 40}]
    summary = runlog.summarise(log)
    assert summary["losses"] == [(1, 1.0), (2, 0.5), (3, 1 / 3), (4, 0.2)] and not summary["stopped"]
    assert runlog.tokens_at_step(log, 3) == 30


# ---- export ----------------------------------------------------------------------------------------
def test_export_merges_into_a_folder_plain_transformers_loads_with_a_model_card(store, tiny_student):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from distill.export import export_merged

    seed_pairs(store)
    config = TrainConfig(student=str(tiny_student), max_steps=2, batch_size=4, learning_rate=1e-2)
    run_dir = prepare_run_dir(snapshot.collect(store, config), config, store.workspace / "runs")
    train(run_dir)
    adapter = assert_adapter_trained(run_dir)

    merged = export_merged(run_dir)
    assert merged == run_dir / "merged" and (merged / "model.safetensors").exists()
    assert not list(merged.glob("adapter_*"))
    ids = torch.tensor([[1, 200, 300, 400]])
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(str(merged))(ids).logits
        base = AutoModelForCausalLM.from_pretrained(str(tiny_student))
        expected = PeftModel.from_pretrained(base, str(adapter))(ids).logits
    assert torch.allclose(plain, expected, atol=1e-4)
    card = (merged / "README.md").read_text()
    manifest = [json.loads(x) for x in (merged / "data_manifest.jsonl").read_text().splitlines()]
    assert f"base_model: {tiny_student}" in card and "train_loss" in card and "| method | sft |" in card
    assert [m["row_id"] for m in manifest] == [json.loads(x)["row_id"] for x in
                                               (run_dir / "snapshot.jsonl").read_text().splitlines()]
    assert all(f"| {m['row_id']} |" in card for m in manifest)


def test_export_of_a_run_without_an_adapter_is_refused(tmp_path):
    from distill.export import export_merged

    with pytest.raises(StudioError, match="only a completed run has one"):
        export_merged(tmp_path)


# ---- memory ----------------------------------------------------------------------------------------
def test_memory_estimate_is_within_2x_of_the_measured_peak_on_cpu(store, tiny_student):
    """Measured: the training child's peak RSS minus its RSS just before the model loaded (ru_maxrss), i.e.
    what training itself adds; the estimate is logged by the same child from the real token counts."""
    [tid] = store.add_tasks([{"instruction": "Write a long story."}])
    long_answer = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)
    from tests.train_helpers import add_answer

    ids = [add_answer(store, tid, f"long-{i}", "Write a long story.", long_answer + f" ({i})") for i in range(4)]
    store.set_label(ids, "approved")
    config = TrainConfig(student=str(tiny_student), max_steps=2, batch_size=2, max_length=256)
    run_dir = prepare_run_dir(snapshot.collect(store, config), config, store.workspace / "runs")
    result = subprocess.run([sys.executable, "-m", "distill", "train", "--run-dir", str(run_dir)], cwd=REPO_ROOT,
                            env=child_env(), capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-2000:]
    estimate = events(run_dir, "memory")[0]
    measured = events(run_dir, "end")[0]["metrics"]["train_memory_mb"]
    assert estimate["micro_batch_tokens"] == 512 and estimate["fits"]
    assert 0.5 <= estimate["estimate_mb"] / measured <= 2.0, (estimate, measured)


def test_a_setting_that_does_not_fit_is_refused_with_one_that_fits(store, tiny_student, monkeypatch):
    shape = memory.model_shape(tiny_student)
    assert shape.vocab == 49152 and shape.layers == 2 and shape.params > 0
    config = TrainConfig(student=str(tiny_student), batch_size=8, max_length=1024)
    tokens = memory.micro_batch_tokens(config, [1024] * 8)
    need = memory.estimate(config, shape, tokens).total
    squeezed = memory.estimate(config, shape, tokens, available=int(need * 0.4))
    assert not squeezed.fits and squeezed.suggestion["batch_size"] < 8
    assert squeezed.suggestion["batch_size"] * squeezed.suggestion["grad_accum"] == 8  # same effective batch
    assert squeezed.suggested_total <= 0.9 * need * 0.4 and "This fits" in squeezed.describe()

    seed_pairs(store)
    monkeypatch.setattr(memory, "available_memory", lambda device: 50 * memory.MB)
    with pytest.raises(StudioError, match="will not fit"):
        TrainingSlot(store, store.workspace).start(config)
    assert store.runs() == []


def test_start_anyway_overrides_the_memory_estimate(store, tiny_student, monkeypatch):
    """The estimate is advice: the refusal says how to start anyway, and 'start anyway' creates the run."""
    seed_pairs(store)
    monkeypatch.setattr(memory, "available_memory", lambda device: 50 * memory.MB)
    config = TrainConfig(student=str(tiny_student), batch_size=8, max_length=1024, max_steps=1)
    with pytest.raises(StudioError, match="--ignore-memory-estimate"):
        TrainingSlot(store, store.workspace).start(config)
    slot = TrainingSlot(store, store.workspace)
    run_id = slot.start(dataclasses.replace(config, ignore_memory_estimate=True))
    assert store.run(run_id)["kind"] == "sft"
    slot.stop()
    slot.close()


# ---- several processes ---------------------------------------------------------------------------------
def test_torchrun_two_cpu_ranks_train_through_the_same_entry(store, tiny_student):
    """`torchrun --nproc_per_node 2 -m distill train --run-dir` on CPU (gloo): both ranks train on their shard,
    rank 0 alone writes the log and the adapter."""
    seed_pairs(store)
    config = TrainConfig(student=str(tiny_student), max_steps=2, batch_size=2, max_length=128, eval_rows=0)
    run_dir = prepare_run_dir(snapshot.collect(store, config), config, store.workspace / "runs")
    env = {**child_env(), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", str(_free_port()), "-m", "distill", "train", "--run-dir", str(run_dir)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=2 * CHILD_TIMEOUT_S)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    start = events(run_dir, "start")
    assert len(start) == 1 and start[0].get("world_size") == 2, start
    assert [e["step"] for e in events(run_dir, "step")][-1] == 2 and len(events(run_dir, "end")) == 1
    assert_adapter_trained(run_dir)


def test_the_fsdp_config_is_read_by_accelerate_as_fsdp2_with_a_whole_adapter():
    """distill/fsdp.yaml through accelerate's own launch parsing, as `accelerate launch --config_file` reads it."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(REPO_ROOT / "distill" / "fsdp.yaml"),
                                               "--num_processes", "4", "-m", "distill", "train", "--run-dir", "X"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    assert args.use_fsdp and env["ACCELERATE_USE_FSDP"] == "true" and args.num_processes == 4
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        plugin = FullyShardedDataParallelPlugin()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type) and plugin.auto_wrap_policy is not None


def test_accelerate_launch_with_the_fsdp_config_trains_two_cpu_ranks(store, tiny_student):
    """The README's `accelerate launch --config_file distill/fsdp.yaml` runs the same entry; on CPU accelerate
    runs it as DDP (its FSDP needs GPUs), so this proves the launch and the two ranks, not the sharding."""
    seed_pairs(store)
    config = TrainConfig(student=str(tiny_student), max_steps=2, batch_size=2, max_length=128, eval_rows=0)
    run_dir = prepare_run_dir(snapshot.collect(store, config), config, store.workspace / "runs")
    env = {**child_env(), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                             str(REPO_ROOT / "distill" / "fsdp.yaml"), "--num_processes", "2", "--main_process_port",
                             str(_free_port()), "-m", "distill", "train", "--run-dir", str(run_dir)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=2 * CHILD_TIMEOUT_S)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    start = events(run_dir, "start")
    assert len(start) == 1 and start[0].get("world_size") == 2, start
    assert len(events(run_dir, "end")) == 1
    assert_adapter_trained(run_dir)


def _free_port() -> int:
    from models.engine import free_port
    return free_port()
