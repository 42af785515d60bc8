"""The Generate tab through its HTTP API (gradio_client), with a scripted teacher on a real socket."""
from __future__ import annotations

import json
import urllib.request

import pytest
from gradio_client import Client

from tests.conftest import add_generation
from tests.fault_server import FaultServer
from tests.ui_helpers import running_studio
from ui.generate import GROUPS, show_method

MODEL = "scripted-teacher"


@pytest.fixture
def studio_with(tmp_path):
    """studio_with(script) -> (studio, client, fault server): the studio launched in-process, the fault
    server as its teacher (passed as base URL in each call, as a user would type it)."""
    with_stack = []

    def start(script):
        fault = FaultServer(script).__enter__()
        running = running_studio(tmp_path / "ws")
        studio, url = running.__enter__()
        with_stack.extend([fault, running])
        return studio, Client(url, verbose=False), fault

    yield start
    for ctx in reversed(with_stack):
        ctx.__exit__(None, None, None)


def teacher(fault, **extra) -> dict:
    return {"base_url": fault.base_url, "model": MODEL, "concurrency": 1, **extra}


def finished(studio):
    status = studio.generation.wait(timeout=30)
    assert status.state in ("completed", "stopped", "failed"), status.state
    return status


def test_each_method_shows_only_its_options():
    names = list(GROUPS)
    for method, visible, hidden in (("label", {"tasks", "answer"}, {"rubric", "topics", "judge_endpoint"}),
                                    ("judge", {"rubric", "judge", "judge_endpoint"}, {"answer", "topics"}),
                                    ("topics", {"topics", "novelty"}, {"tasks", "rubric", "seed"})):
        description, *updates, temperature, max_tokens = show_method(method)
        shown = {name for name, update in zip(names, updates) if update["visible"]}
        assert visible <= shown and not hidden & shown, method
    assert show_method("judge")[-2:] == (0.0, 256)  # the judge's own sampling defaults
    # untouched sampling follows the method; a value the user typed survives the switch
    label_temperature, label_tokens = show_method("label")[-2:]
    assert show_method("judge", label_temperature, label_tokens)[-2:] == (0.0, 256)
    assert show_method("judge", 0.3, 700)[-2:] == (0.3, 700)


def test_preview_shows_the_exact_messages_and_sends_nothing(studio_with):
    studio, client, fault = studio_with([200])
    (task,) = studio.store.add_tasks([{"instruction": "Name a colour.", "input": "One word."}])
    calls, note = client.predict(**teacher(fault), method="label", system_prompt="Be brief.", max_tokens=32,
                                 api_name="/preview_generation")
    assert calls == [{"request_key": calls[0]["request_key"], "task_id": task, "generation_id": None,
                      "endpoint": fault.base_url, "model": MODEL,
                      "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Name a colour.\n\nOne word."}],
                      "params": {"temperature": 0.7, "max_tokens": 32}}]
    assert "1 to send, 0 already stored" in note
    [held] = studio.store.add_tasks([{"instruction": "Name a fruit."}])
    studio.store.set_split([held], "eval")
    calls, _ = client.predict(**teacher(fault), method="label", api_name="/preview_generation")
    assert [c["task_id"] for c in calls] == [task]  # the eval split is left alone by default
    calls, _ = client.predict(**teacher(fault), method="label", with_eval=True, api_name="/preview_generation")
    assert [c["task_id"] for c in calls] == [task, held]

    gen = add_generation(studio.store, task, "k1", response="Blue.")
    calls, _ = client.predict(**teacher(fault), method="judge", rubric="Is it a colour?", temperature=0,
                              judge_base_url="http://127.0.0.1:9/v1", judge_model="judge-m",
                              api_name="/preview_generation")
    (call,) = calls
    assert (call["endpoint"], call["model"], call["generation_id"]) == ("http://127.0.0.1:9/v1", "judge-m", gen)
    assert call["messages"] == [{"role": "user", "content": (
        "You are a strict and fair judge. Rate the response to the task below on a scale of 1 to 10, using this "
        "rubric:\nIs it a colour?\n\n[Task]\nName a colour.\n\nOne word.\n\n[Response]\nBlue.\n\n"
        'Reply with a JSON object: {"score": <an integer from 1 to 10>, "rationale": "<one or two sentences>"}')}]
    assert call["params"]["response_format"]["type"] == "json_schema"  # the structured judge, on by default
    assert fault.requests == []
    with pytest.raises(Exception, match="base_url must start with http"):
        client.predict(**teacher(fault, base_url="ftp://teacher"), method="label", api_name="/preview_generation")


def test_a_failed_call_is_in_the_ledger_and_retry_fixes_it(studio_with):
    studio, client, fault = studio_with([500, 200])
    studio.store.add_tasks([{"instruction": "Say hi."}, {"instruction": "Say bye."}])
    started = client.predict(**teacher(fault, max_retries=0, api_key="sk-typed-in-the-form"), method="label",
                             api_name="/start_generation")
    assert started.startswith("started: 2 calls")
    finished(studio)
    _, note = client.predict(api_name="/generation_status")
    assert "completed: 1 ok, 1 failed" in note

    table, info = client.predict("latest", "failed", "all", 1, api_name="/ledger_page")
    assert "1 matching calls" in info and "1 ok, 1 failed" in info
    (row,) = table["data"]
    failed = dict(zip(table["headers"], row))
    assert failed["state"] == "failed" and "500" in failed["error"]

    message = client.predict(**teacher(fault), key=failed["request_key"], api_name="/retry_selected")
    assert message.startswith("retrying 1 failed call ")
    finished(studio)
    table, info = client.predict("all", "ok", "all", 1, api_name="/ledger_page")
    assert "2 matching calls" in info and "failed" not in info
    assert len(fault.requests) == 3 and studio.store.stats()["by_status"]["pending"] == 2
    with pytest.raises(Exception, match="no failed calls to retry"):
        client.predict(**teacher(fault), api_name="/retry_failed")

    auth = {k.lower(): v for k, v in fault.requests[0]["headers"].items()}["authorization"]
    assert auth == "Bearer sk-typed-in-the-form"
    page = urllib.request.urlopen(client.src + "config", timeout=10).read().decode()
    assert "sk-typed-in-the-form" not in page


def test_the_budget_cap_stops_a_job_and_the_cost_uses_the_price_set_in_the_ui(studio_with):
    studio, client, fault = studio_with([200])  # 7 prompt + 3 completion tokens a call
    studio.store.add_tasks([{"instruction": f"Task {i}."} for i in range(5)])
    prices, message = client.predict(MODEL, 100.0, 1000.0, api_name="/set_price")
    assert message.startswith(f"price of {MODEL}")
    assert [MODEL, 100.0, 1000.0] in [r[:3] for r in prices["data"]]
    assert studio.store.price(MODEL) == (100.0, 1000.0)

    client.predict(**teacher(fault), method="label", budget_tokens=25, api_name="/start_generation")
    assert finished(studio).summary["stopped_reason"] == "budget"
    progress, note = client.predict(api_name="/generation_status")
    assert "3 / 5" in progress and note.startswith("stopped (budget): 3 ok, 0 failed, 0 already stored · 2 not sent")
    assert "30 tokens (9 out) · $0.0111" in note and "$0.0111" in progress  # 3 calls x (7 x 100 + 3 x 1000) / 1e6
    assert len(fault.requests) == 3
    _, info = client.predict("all", "all", "all", 1, api_name="/ledger_page")
    assert "3 ok" in info


def test_prices_are_set_and_deleted_through_the_ui(studio_with):
    studio, client, _ = studio_with([200])
    before = studio.store.prices()["model"].tolist()  # the embedded teacher's free price is seeded
    client.predict("gpt-4o-mini", 0.15, 0.6, api_name="/set_price")
    client.predict("other", 1, 2, api_name="/set_price")
    rows = studio.store.prices()[["model", "input_usd_per_mtok", "output_usd_per_mtok"]].values.tolist()
    assert ["gpt-4o-mini", 0.15, 0.6] in rows and ["other", 1.0, 2.0] in rows and len(rows) == len(before) + 2
    prices, message = client.predict("other", api_name="/delete_price")
    assert message == "deleted the price of other" and len(prices["data"]) == len(before) + 1
    assert "other" not in studio.store.prices()["model"].tolist()
    with pytest.raises(Exception, match="needs the model name"):
        client.predict("", 1, 1, api_name="/set_price")


TOPIC_TASKS = {
    "finance": ["Plan a monthly budget for a family of four on a fixed income.",
                "Compute the savings rate of a household that earns 4000 and spends 3100 a month."],
    "law": ["Explain which repairs a tenant may deduct from rent under a typical lease.",
            "Draft a clause splitting utility bills fairly between three flatmates."],
}


def topic_answer(body: dict) -> dict:
    prompt = body["messages"][-1]["content"]
    domain = next(d for d in TOPIC_TASKS if f"Domain: {d}" in prompt)
    return {"text": json.dumps(TOPIC_TASKS[domain])}


def test_a_topics_job_creates_tasks_tagged_with_skill_and_domain(studio_with):
    studio, client, fault = studio_with([topic_answer])
    client.predict(**teacher(fault), method="topics", topics="household budgeting", skills=["reasoning"],
                   domains=["finance", "law"], per_call=2, api_name="/start_generation")
    assert finished(studio).state == "completed"
    _, note = client.predict(api_name="/generation_status")
    assert note.startswith("completed: 2 ok, 0 failed") and "4 new tasks" in note
    assert len(fault.requests) == 2
    made = {(t["instruction"], t["skill"], t["domain"], t["source"]) for t in studio.store.tasks()}
    assert made == {(text, "reasoning", domain, "topic") for domain, texts in TOPIC_TASKS.items() for text in texts}


def test_a_judge_job_says_how_many_verdicts_it_could_read_and_what_to_do():
    from ui.generate import summary_text

    base = {"failed": 0, "skipped_cached": 0, "total_tokens": 10, "completion_tokens": 5, "elapsed_s": 1.0,
            "tokens_per_s": 5, "run_id": 3}
    silent = summary_text("completed", {**base, "method": "judge", "ok": 8, "discarded": {"unparsable": 8}})
    assert "the judge wrote 0 of 8 verdicts readably — the raw text is kept; turn on structured output" in silent
    fine = summary_text("completed", {**base, "method": "compare", "ok": 4})
    assert "the judge wrote 4 of 4 verdicts readably" in fine and "raw text" not in fine
    assert "verdicts" not in summary_text("completed", {**base, "method": "label", "ok": 4})
