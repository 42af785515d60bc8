"""Evaluation end to end: a real workspace, the tiny student with a tiny trained LoRA adapter, and a teacher
that is either scripted (exact verdicts, to check the arithmetic and the closed loop) or the real local one."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from curation import exporting
from curation.errors import ConfigError, StudioError
from curation.generate import run_method
from curation.methods import GenerateConfig
from curation.teacher import TeacherConfig
from distill import runlog
from distill.runner import REPO_ROOT
from evaluation.config import EvalConfig
from evaluation.evaluate import run_eval
from evaluation.failures import FailureSeedConfig, failures_to_seeds
from evaluation.plan import set_expectation
from evaluation.report import DETAILS_NAME, read_details
from tests.fault_server import FaultServer

EVAL_TASKS = [{"instruction": "What is 2+2? Answer with the number only.", "skill": "reasoning", "domain": "math"},
              {"instruction": "Name the capital of France.", "skill": "knowledge", "domain": "geography"},
              {"instruction": "Write a haiku about autumn leaves.", "skill": "writing", "domain": "general"}]
TRAIN_TASKS = [{"instruction": "Say hello politely.", "skill": "writing", "domain": "general"},
               {"instruction": "What is 3+3?", "skill": "reasoning", "domain": "math"}]
TEACHER_MARK = "TEACHER"
NEW_TASKS = {"2+2": "A farmer has 7 apples and buys 5 more. How many apples does she have now?",
             "France": "Which river flows through the city of Cairo?",
             "haiku": "Write a four-line poem about a winter morning at the sea."}


@pytest.fixture(scope="module")
def tiny_adapter(tiny_student, tmp_path_factory):
    """A LoRA adapter on the tiny student, trained for a few steps on one answer (milliseconds on CPU)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_student))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_student)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"},
                                         {"role": "assistant", "content": "4"}], tokenize=True,
                                        return_dict=True, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    for _ in range(5):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(folder)
    return folder


def training_run(store, tiny_student, tiny_adapter, rows=5) -> int:
    """A completed sft run as the training slot leaves it: run dir with snapshot and adapter."""
    import shutil

    run_dir = store.workspace / "runs" / "20260101-000000-sft"
    run_dir.mkdir(parents=True)
    (run_dir / runlog.SNAPSHOT_NAME).write_text("".join(json.dumps({"messages": []}) + "\n" for _ in range(rows)))
    shutil.copytree(tiny_adapter, run_dir / runlog.ADAPTER_DIR)
    run_id = store.start_run("sft", {"student": str(tiny_student)}, run_dir=str(run_dir))
    store.update_run(run_id, status="completed", metrics={"tokens": 321, "steps": 5, "train_loss": 1.5})
    return run_id


def workspace(store) -> list[int]:
    """Train tasks (labelled and approved elsewhere in a test) and three eval tasks; returns the eval ids."""
    store.add_tasks(TRAIN_TASKS)
    ids = store.add_tasks(EVAL_TASKS)
    store.set_split(ids, "eval")
    set_expectation(store, [ids[0]], "regex:\\b4\\b")
    return ids


def scripted_teacher(body: dict) -> dict:
    """Teacher, judge and task writer in one: the teacher always wins, base vs distilled is position-biased."""
    content = body["messages"][-1]["content"]
    if content.startswith("You are a fair judge"):
        if re.search(rf"\[Response A\]\n{TEACHER_MARK}", content):
            return {"text": "Winner: A\nRationale: the teacher is right."}
        if re.search(rf"\[Response B\]\n{TEACHER_MARK}", content):
            return {"text": "Winner: B\nRationale: the teacher is right."}
        return {"text": "Winner: A\nRationale: the first one."}  # same winner in both orders -> a tie
    if content.startswith("You are a strict and fair judge"):
        return {"text": "Score: 9\nRationale: fine." if f"[Response]\n{TEACHER_MARK}" in content
                else "Score: 3\nRationale: weak."}
    if content.startswith("A student model got this practice task wrong"):
        task = content.splitlines()[1]
        new = next(text for key, text in NEW_TASKS.items() if key in task)
        copy = task.removeprefix("Task: ")  # a near copy of the eval task: must be discarded
        return {"text": json.dumps([new, copy])}
    answer = "4" if "2+2" in content else "Paris" if "France" in content else "Leaves fall"
    return {"text": f"{TEACHER_MARK} {answer}"}


def scripted(server) -> TeacherConfig:
    return TeacherConfig(base_url=server.base_url, model="scripted", max_retries=0)


# ---- config --------------------------------------------------------------------------------------

def test_config_names_exactly_one_distilled_student(tiny_adapter, tmp_path):
    with pytest.raises(ConfigError, match="adapter folder or a training run id"):
        EvalConfig()
    with pytest.raises(ConfigError, match="adapter folder or a training run id"):
        EvalConfig(adapter=str(tiny_adapter), run_id=3)
    with pytest.raises(ConfigError, match="not a PEFT adapter folder"):
        EvalConfig(adapter=str(tmp_path))
    with pytest.raises(ConfigError, match="temperature"):
        EvalConfig(adapter=str(tiny_adapter), temperature=5)
    assert EvalConfig(run_id="4").run_id == 4 and EvalConfig(run_id=4).temperature == 0.0  # greedy by default


def test_expectations_are_checked_before_they_are_stored(store):
    ids = store.add_tasks([{"instruction": "x"}])
    with pytest.raises(ConfigError, match="exact:TEXT"):
        set_expectation(store, ids, "4")
    assert set_expectation(store, ids, "regex:\\b4\\b") == 1 and store.tasks(ids)[0]["expected"] == "regex:\\b4\\b"
    set_expectation(store, ids, "")
    assert store.tasks(ids)[0]["expected"] is None


def test_an_eval_needs_eval_tasks_and_a_completed_training_run(store, tiny_student, tiny_adapter):
    store.add_tasks(TRAIN_TASKS)
    with pytest.raises(StudioError, match="no eval tasks"):
        run_eval(store, EvalConfig(adapter=str(tiny_adapter)))
    store.set_split([1], "eval")
    with pytest.raises(StudioError, match="no training run with id 9"):
        run_eval(store, EvalConfig(run_id=9))
    failed = store.start_run("sft", {}, run_dir=str(store.workspace))
    store.update_run(failed, status="failed")
    with pytest.raises(StudioError, match="is failed"):
        run_eval(store, EvalConfig(run_id=failed))
    assert not store.runs(kind="eval")  # refused before a run was recorded


# ---- scripted teacher: exact arithmetic, caching, the closed loop ----------------------------------

def test_eval_with_a_scripted_judge_then_failures_become_new_train_tasks(store, tiny_student, tiny_adapter, tmp_path):
    eval_ids = workspace(store)
    train_run = training_run(store, tiny_student, tiny_adapter)
    with FaultServer([scripted_teacher]) as server:
        progress = []
        config = EvalConfig(run_id=train_run, teacher=scripted(server), max_tokens=6, judge_max_tokens=16)
        metrics = run_eval(store, config, on_progress=progress.append)
        calls_made = len(server.requests)

        # The arithmetic on what the scripted judge said.
        assert metrics["tasks"] == 3 and metrics["training"] == {"run_id": train_run, "rows": 5, "tokens": 321,
                                                                 "steps": 5, "train_loss": 1.5}
        assert metrics["teacher"]["judge_score"] == 9 and metrics["base"]["judge_score"] == 3
        assert metrics["distilled"]["judge_score"] == 3
        assert metrics["distilled_vs_teacher"] == {"wins": 0, "losses": 3, "ties": 0, "n": 3, "missing": 0,
                                                   "win_rate": 0.0}
        assert metrics["distilled_vs_base"]["ties"] == 3 and metrics["distilled_vs_base"]["win_rate"] == 0.5
        assert metrics["teacher"]["pass_rate"] == 1.0 and metrics["teacher"]["checked"] == 1
        # the scripted teacher's answers end by themselves (finish_reason 'stop'); 6 tokens cut the tiny students'
        assert metrics["teacher"]["stop_rate"] == 1.0 and metrics["intervals"]["teacher"]["stop_rate"]["n"] == 3
        assert 0 <= metrics["base"]["stop_rate"] <= 1 and metrics["judge"]["asked"] > 0
        assert metrics["base"]["nll"] > 0 and metrics["distilled"]["nll"] > 0 and metrics["lost"] == 3
        assert progress[-1].done == progress[-1].total and {p.stage for p in progress} >= {
            "teacher answers", "base student answers", "distilled student answers",
            "students' NLL of the teacher's answers (child process)", "judging"}

        # Stored as a run with a per-task report; the students' answers are marked as eval data.
        run = store.run(metrics["eval_run_id"])
        assert run["kind"] == "eval" and run["status"] == "completed" and run["metrics"]["tasks"] == 3
        details = read_details(store, run["id"])
        assert (Path(run["run_dir"]) / DETAILS_NAME).is_file()
        assert [d["task_id"] for d in details] == eval_ids
        assert all(d["answers"][s] is not None for d in details for s in ("base", "distilled", "teacher"))
        assert all(d["vs_teacher"]["verdicts"] == [0.0, 0.0] and d["lost"] for d in details)
        assert details[0]["pass"] == {"teacher": True, "base": False, "distilled": False}
        assert {(d["skill"], d["domain"]) for d in details} == {(t["skill"], t["domain"]) for t in EVAL_TASKS}
        students = store.ok_generations(methods=("eval",))
        assert len(students) == 6 and {store.generation(g["id"])["endpoint"] for g in students} == {"local"}
        assert {g["model"] for g in students} == {str(tiny_student), f"{tiny_student}+adapter:"
                                                  f"{Path(run['config']['adapter'])}"}

        # A second eval of the same student asks nothing again and reports the same numbers.
        again = run_eval(store, config)
        assert len(server.requests) == calls_made
        assert {k: again[k] for k in ("distilled_vs_base", "distilled_vs_teacher", "base", "distilled")} == \
               {k: metrics[k] for k in ("distilled_vs_base", "distilled_vs_teacher", "base", "distilled")}

        # Close the loop: each lost task becomes a new train task; near copies of eval tasks are discarded.
        new_ids = failures_to_seeds(store, metrics["eval_run_id"], teacher=scripted(server),
                                    config=FailureSeedConfig(per_failure=2))
        new = store.tasks(new_ids)
        assert sorted(t["instruction"] for t in new) == sorted(NEW_TASKS.values())
        assert all(t["source"] == "student_failure" and t["split"] == "train" for t in new)
        by_parent = {t["parent_id"]: t for t in new}
        assert sorted(by_parent) == eval_ids
        assert all(by_parent[i]["skill"] == EVAL_TASKS[k]["skill"] and by_parent[i]["domain"] ==
                   EVAL_TASKS[k]["domain"] for k, i in enumerate(eval_ids))
        asked = len(server.requests)
        assert failures_to_seeds(store, metrics["eval_run_id"], teacher=scripted(server)) == new_ids  # idempotent
        assert len(server.requests) == asked

        # Label everything in the train split, approve it all, export: no eval task reaches the dataset.
        run_method(store, scripted(server), GenerateConfig(max_tokens=8), server.base_url)
    store.set_label([g["id"] for g in store.ok_generations()], "approved")
    out = tmp_path / "train.jsonl"
    exported = exporting.export_examples(store.approved_examples(), out)
    text = out.read_text()
    assert exported == len(TRAIN_TASKS) + len(NEW_TASKS)
    assert all(NEW_TASKS[k] in text for k in NEW_TASKS)
    assert not any(t["instruction"] in text for t in EVAL_TASKS)


def test_a_cancelled_eval_is_stopped_and_resumes_from_what_is_stored(store, tiny_adapter, tiny_student):
    import threading

    workspace(store)
    cancel = threading.Event()
    with FaultServer([scripted_teacher]) as server:
        config = EvalConfig(adapter=str(tiny_adapter), student=str(tiny_student), teacher=scripted(server),
                            max_tokens=4, judge_max_tokens=8)

        def stop_at_students(p):
            if p.stage == "base student answers":
                cancel.set()

        stopped = run_eval(store, config, on_progress=stop_at_students, cancel=cancel)
        assert stopped["stopped_at"] == "base student answers"
        assert store.run(stopped["eval_run_id"])["status"] == "stopped"
        teacher_calls = len(server.requests)
        assert teacher_calls == 3  # the teacher answered; the judge was never asked
        done = run_eval(store, config)
        assert store.run(done["eval_run_id"])["status"] == "completed"
        assert sum(1 for r in server.requests if "fair judge" not in r["body"]["messages"][-1]["content"]) == 3


def test_cli_prints_one_json_line_of_metrics(store, tiny_student, tiny_adapter):
    workspace(store)
    ws = store.workspace
    store.close()  # the CLI opens the workspace itself
    with FaultServer([scripted_teacher]) as server:
        result = subprocess.run(
            [sys.executable, "-m", "evaluation", "--workspace", str(ws), "--adapter", str(tiny_adapter),
             "--student", str(tiny_student), "--limit", "2", "--max-tokens", "4", "--judge-max-tokens", "8",
             "--base-url", server.base_url, "--model", "scripted"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "unused"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert metrics["tasks"] == 2 and metrics["distilled_vs_teacher"]["losses"] == 2
    assert "judging: " in result.stderr
    usage = subprocess.run([sys.executable, "-m", "evaluation", "--workspace", str(ws)], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "--adapter" in usage.stderr
    # the old spelling, from before evaluation left the training side, says where it went
    moved = subprocess.run([sys.executable, "-m", "distill", "eval", "--workspace", str(ws)], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert moved.returncode == 2 and "python -m evaluation" in moved.stderr


# ---- the real local teacher --------------------------------------------------------------------

@pytest.mark.integration
def test_eval_end_to_end_with_the_real_local_teacher(store, tiny_student, tiny_adapter, teacher_url):
    eval_ids = workspace(store)
    config = EvalConfig(adapter=str(tiny_adapter), student=str(tiny_student), teacher=TeacherConfig(concurrency=2),
                        max_tokens=12, judge_max_tokens=20)
    metrics = run_eval(store, config, base_url=teacher_url)
    details = read_details(store, metrics["eval_run_id"])
    assert [d["task_id"] for d in details] == eval_ids
    assert all(d["answers"]["teacher"] for d in details)  # the real teacher answered every task
    assert all(d["nll"]["base"]["tokens"] > 0 and d["nll"]["distilled"]["tokens"] > 0 for d in details)
    for key in ("distilled_vs_base", "distilled_vs_teacher"):
        result = metrics[key]
        assert result["n"] + result["missing"] == 3
        assert result["win_rate"] is None or 0 <= result["win_rate"] <= 1
    for system in ("base", "distilled", "teacher"):
        score = metrics[system]["judge_score"]
        assert score is None or 1 <= score <= 10
    # Every judge call is stored (a verdict the tiny judge wrote unreadably keeps its raw output).
    ledger = store.ledger_rows()
    assert {r["method"] for r in ledger} == {"label", "eval", "compare", "judge"}
    assert all(r["state"] == "ok" for r in ledger)
    assert not [e for e in store.approved_examples() if e["task_id"] in eval_ids]


# ---- the Evaluate tab through gradio_client --------------------------------------------------------

def test_evaluate_tab_through_the_api(tmp_path, tiny_student, tiny_adapter):
    import gradio as gr
    from gradio_client import Client

    from app import Studio
    from curation.local_server import free_port
    from tests.ui_helpers import wait_for
    from ui import evaluate

    studio = Studio.open(tmp_path / "ws")
    eval_ids = workspace(studio.store)
    train_run = training_run(studio.store, tiny_student, tiny_adapter)
    with FaultServer([scripted_teacher]) as server:
        config = EvalConfig(run_id=train_run, teacher=scripted(server), max_tokens=4, judge_max_tokens=8)
        first, second = run_eval(studio.store, config)["eval_run_id"], run_eval(studio.store, config)["eval_run_id"]
        with gr.Blocks() as demo:
            jobs = evaluate.build(studio)
        demo.queue()
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            message = client.predict(str(train_run), "", 4, 0, 2, 0, server.base_url, "scripted", "", "",
                                     api_name="/start_eval")
            assert message == f"evaluating training run {train_run} on 2 eval tasks…"
            wait_for(lambda: jobs.status().state == "completed", timeout=120, what="the eval job")
            bar, note, _ = client.predict(api_name="/eval_status")
            assert "completed" in bar and f"eval run {jobs.status().result['eval_run_id']} completed" in note

            headline, _, _, viewer = client.predict(str(first), api_name="/eval_report")
            rows = {r[0]: r[1:] for r in headline["data"]}
            assert rows["judge: mean score (1-10)"] == ["3.0", "3.0", None, "9.0"]  # base, distilled, change, teacher
            assert rows["judge: win rate of distilled vs teacher"][1].startswith("0% [0%, 0%] · 0 won")
            assert rows["training rows · tokens"][1].startswith("5 · ")
            assert rows["ends its answer by itself (within max tokens)"][2] is not None  # distilled - base, paired
            assert sorted(r[0] for r in viewer["data"]) == eval_ids

            info, teacher, distilled, base = client.predict(str(first), eval_ids[1], api_name="/eval_task_detail")
            assert teacher == f"{TEACHER_MARK} Paris" and "distilled vs teacher: **loss**" in info

            table, _ = client.predict([str(first), str(second)], api_name="/compare_eval_runs")
            assert [r[0] for r in table["data"]] == [first, second]

            base, distilled, teacher = client.predict("What is 2+2?", str(train_run), "", 4, 0, server.base_url,
                                                      "scripted", api_name="/playground")
            assert teacher == f"{TEACHER_MARK} 4" and isinstance(base, str) and isinstance(distilled, str)

            note = client.predict(str(first), 1, api_name="/failures_to_seeds")
            assert note.startswith("asking the teacher for new practice tasks for the 3 tasks")
            wait_for(lambda: jobs.status().state == "completed", timeout=60, what="the seeding job")
            assert len([t for t in studio.store.tasks() if t["source"] == "student_failure"]) == 3

            assert client.predict(str(eval_ids[1]), "exact:Paris", api_name="/set_expectation") == \
                "expectation set on 1 tasks"
            with pytest.raises(Exception, match="exact:TEXT"):
                client.predict(str(eval_ids[1]), "Paris", api_name="/set_expectation")
        finally:
            demo.close()
            studio.close()
