"""Multi-turn dialogue (issue 16.1): conversation files, self-chat with a simulated user, the loss on every
assistant turn."""
from __future__ import annotations

import json

import pytest

from curation.conversations import conversation_text, read_conversations, turn_pairs
from curation.errors import ConfigError, ImportFormatError
from curation.generate import run_method
from curation.methods import ChatConfig
from curation.methods.chat import parse_user_turn
from curation.teacher import TeacherConfig
from tests.fault_server import FaultServer


def _write(path, lines):
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


# ---- files ---------------------------------------------------------------------------------------
def test_sharegpt_and_chat_files_read_as_messages(tmp_path):
    path = _write(tmp_path / "c.jsonl", [
        {"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi"},
                           {"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "Name a fruit."},
                           {"from": "gpt", "value": "Apple."}]},
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}])
    first, second = read_conversations(path)
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert second == {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
                      "line": 2}
    assert turn_pairs(first["messages"]) == [("Hi", "Hello!"), ("Name a fruit.", "Apple.")]
    assert conversation_text(first["messages"]) == "user: Hi\nassistant: Hello!\nuser: Name a fruit.\nassistant: Apple."


@pytest.mark.parametrize("record, where", [
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "x"}]}, "line 2, field 'conversations[1].from'"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "again"}]}, "line 2, field 'turn 1': expected a assistant"),
    ({"messages": [{"role": "user", "content": "Hi"}]}, "ends with a user turn"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]}, "line 2, field 'turn 1': the assistant turn is empty"),
    ({"text": "hello"}, "line 2: no 'messages'"),
])
def test_a_bad_conversation_is_refused_with_its_line_and_field(tmp_path, record, where):
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    path = _write(tmp_path / "bad.jsonl", [good, record])
    with pytest.raises(ImportFormatError, match=where.replace("[", r"\[").replace("]", r"\]")):
        read_conversations(path)


def test_parse_user_turn_drops_labels_and_the_assistants_part():
    assert parse_user_turn('User: "What about pears?"') == "What about pears?"
    assert parse_user_turn("And pears?\nAssistant: Pears are fruit.") == "And pears?"
    assert parse_user_turn("  \n ") is None and parse_user_turn(None) is None


def test_chat_config_names_the_bad_field():
    with pytest.raises(ConfigError, match="turns"):
        ChatConfig(turns=1)
    with pytest.raises(ConfigError, match="user_max_tokens"):
        ChatConfig(user_max_tokens=2)


# ---- self-chat on a scripted teacher --------------------------------------------------------------
def _script(user_turn="User: Can you say more?"):
    counter = {"answers": 0}

    def answer(body):
        content = body["messages"][-1]["content"]
        if "You are playing the user" in content:
            return {"text": user_turn}
        counter["answers"] += 1
        return {"text": f"Answer {counter['answers']}."}
    return answer


def _teacher(server):
    return TeacherConfig(base_url=server.base_url, model="scripted", concurrency=1, max_retries=0)


def test_self_chat_stores_one_conversation_of_n_turns_and_resumes_without_paying_twice(store):
    store.add_tasks([{"instruction": "Tell me about tea.", "system_prompt": "Be brief."}])
    with FaultServer([_script()]) as server:
        summary = run_method(store, _teacher(server), ChatConfig(turns=3), server.base_url)
        sent = len(server.requests)
        again = run_method(store, _teacher(server), ChatConfig(turns=3), server.base_url)
        assert len(server.requests) == sent  # every turn is in the ledger: nothing is asked again
    assert sent == 5 and summary["ok"] == 5 and again["ok"] == 0
    rows = store._fetchdicts("SELECT messages, response, method FROM generations")
    assert len(rows) == 1 and rows[0]["method"] == "chat" and rows[0]["response"] == "Answer 3."
    messages = json.loads(rows[0]["messages"])
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "Be brief."), ("user", "Tell me about tea."), ("assistant", "Answer 1."),
        ("user", "Can you say more?"), ("assistant", "Answer 2."), ("user", "Can you say more?")]
    # the simulator saw the conversation, not the assistant's system prompt
    simulator = [r["body"] for r in server.requests if "playing the user" in r["body"]["messages"][-1]["content"]]
    assert "Assistant: Answer 1." in simulator[0]["messages"][0]["content"]
    assert "Be brief." not in simulator[0]["messages"][0]["content"]


def test_a_simulator_with_nothing_to_say_ends_the_conversation_where_it_got(store):
    store.add_tasks([{"instruction": "Tell me about tea."}])
    with FaultServer([_script(user_turn="  ")]) as server:
        summary = run_method(store, _teacher(server), ChatConfig(turns=4), server.base_url)
    assert len(server.requests) == 2 and summary["discarded"] == {"user_simulator": 1}
    rows = store._fetchdicts("SELECT messages, response FROM generations")
    assert rows[0]["response"] == "Answer 1."
    assert [m["role"] for m in json.loads(rows[0]["messages"])] == ["user"]


# ---- training: the loss on every assistant turn -----------------------------------------------------
def test_every_assistant_turn_is_trained_on_and_no_user_turn(tiny_student):
    from transformers import AutoTokenizer

    from distill.data import IGNORE, tokenize_example

    tok = AutoTokenizer.from_pretrained(str(tiny_student))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."},
                {"role": "assistant", "content": "Apple."}, {"role": "user", "content": "Another?"},
                {"role": "assistant", "content": "Pear."}]
    example = tokenize_example(tok, messages, 512)
    trained = tok.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE])
    assert trained == "Apple.<|im_end|>\nPear.<|im_end|>\n"
    single = tokenize_example(tok, messages[:3], 512)
    assert tok.decode([t for t, label in zip(single["input_ids"], single["labels"]) if label != IGNORE]) == \
        "Apple.<|im_end|>\n"
    # prompt_length is where the last answer starts: what an on-policy method answers
    assert tok.decode(example["input_ids"][example["prompt_length"]:]) == "Pear.<|im_end|>\n"


@pytest.mark.integration
def test_self_chat_on_the_embedded_teacher(store, teacher_url):
    store.add_tasks([{"instruction": "Give me one tip for learning to cook."}])
    teacher = TeacherConfig(concurrency=2)
    summary = run_method(store, teacher, ChatConfig(turns=2, max_tokens=48, user_max_tokens=32), teacher_url)
    rows = store._fetchdicts("SELECT messages, response, status FROM generations")
    assert summary["failed"] == 0 and len(rows) == 1 and rows[0]["status"] == "ok"
    roles = [m["role"] for m in json.loads(rows[0]["messages"])]
    # a real 135M simulator may have nothing to add: then the conversation ends after the first answer
    assert roles in (["user", "assistant", "user"], ["user"])


# ---- import, train rows, export --------------------------------------------------------------------
def test_imported_conversations_train_and_export_whole_and_import_once(store, tmp_path):
    from curation import exporting
    from curation.conversations import import_conversations

    conversation = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a fruit."},
                    {"role": "assistant", "content": "Apple."}]
    path = _write(tmp_path / "chats.jsonl", [{"messages": conversation}])
    first = import_conversations(store, path)
    again = import_conversations(store, path)
    assert len(first["added"]) == 1 and again == {"file": "chats.jsonl", "added": [], "skipped": 1}
    store.set_label(first["added"], "approved")
    (example,) = store.approved_examples()
    assert example["messages"] == conversation
    exporting.export_examples([example], tmp_path / "out.jsonl", "sharegpt-jsonl")
    assert read_conversations(tmp_path / "out.jsonl")[0]["messages"] == conversation  # the round trip is exact
    bad = _write(tmp_path / "bad.jsonl", [{"messages": conversation}, {"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(ImportFormatError, match="upload.jsonl, line 2"):
        import_conversations(store, bad, name="upload.jsonl")
    assert store.count_tasks() == 1  # the bad file added nothing, not even its good first line


def test_conversations_are_deduplicated_as_a_whole(store):
    from curation.dedupe import DedupeConfig, plan_dedupe

    def chat(first, answer="Apple."):
        return [{"role": "user", "content": first}, {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": answer}]

    # same last answer, different conversations: not duplicates; the same conversation twice (another system
    # prompt makes it a new import): duplicates
    store.add_conversations([chat("Hi"), chat("Good morning"),
                             [{"role": "system", "content": "Be kind."}] + chat("Hi")], "test")
    plan = plan_dedupe(store, DedupeConfig(method="exact"))
    assert [sorted(m.id for m in cluster.members) for cluster in plan.clusters] == [[1, 3]]
