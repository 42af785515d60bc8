"""The survey's further skills through the HTTP API (gradio_client): documents and conversations imported on the
Seeds tab, a conversation reviewed and edited turn by turn, a grounded answer shown with its source chunk."""
from __future__ import annotations

import json

from gradio_client import Client, handle_file

from curation.documents import bundled_documents
from tests.ui_helpers import running_studio


def test_documents_and_conversations_import_and_review(tmp_path):
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."}]
    chats = tmp_path / "my chats.jsonl"
    chats.write_text(json.dumps({"messages": conversation}) + "\n")
    pdf = next(p for p in bundled_documents() if p.suffix == ".pdf")
    with running_studio(tmp_path / "ws") as (studio, url):
        client = Client(url, verbose=False)
        message, table = client.predict([handle_file(str(pdf))], 1200, 150, api_name="/import_documents")
        assert "sourdough-starter.pdf: 2 chunks" in message and table["data"][0][:2] == ["sourdough-starter.pdf", 2]
        message, _ = client.predict(1200, 150, api_name="/load_bundled_documents")
        assert "sourdough-starter.pdf: 2 chunks (already imported: nothing added)" in message
        assert client.predict(handle_file(str(chats)), api_name="/import_conversations") == \
            "my chats.jsonl: 1 conversations added (Review shows them turn by turn)"

        gid = studio.store._fetchdicts("SELECT id FROM generations")[0]["id"]
        status, sent, original, kept, meta, chat, turns, source, calls = client.predict(
            str(gid), api_name="/generation_detail")
        said = [m["content"][0]["text"] if isinstance(m["content"], list) else m["content"] for m in chat]
        assert original == "Apple." and said == ["Hi", "Hello!", "Name a fruit.", "Apple."]
        assert turns["data"] == [["user", "Hi"], ["assistant", "Hello!"], ["user", "Name a fruit."]]
        edited = {"headers": ["role", "text"],
                  "data": [["user", "Hi"], ["assistant", "Hello there!"], ["user", "Name a fruit."]]}
        *_, message = client.predict(str(gid), edited, "", "all", 1, "id", api_name="/save_turns")
        assert message == f"generation {gid}: turns saved and approved"
        (example,) = studio.store.approved_examples()
        assert [m["content"] for m in example["messages"]] == ["Hi", "Hello there!", "Name a fruit.", "Apple."]
        assert studio.store.generation(gid)["messages"][1]["content"] == "Hello!"  # the original is kept

        chunk = next(c for c in studio.store.chunks() if c["document"] == "sourdough-starter.pdf")
        (task,) = studio.store.add_tasks([{"instruction": "What is hooch?", "source": "document",
                                            "chunk_id": chunk["id"]}])
        grounded = studio.store.record_generation({
            "task_id": task, "request_key": "k", "endpoint": "e", "model": "m", "params": {}, "sample_index": 0,
            "messages": [{"role": "user", "content": "What is hooch?"}], "response": "Alcohol.", "status": "ok"})
        *_, source, _calls = client.predict(str(grounded), api_name="/generation_detail")
        assert source.startswith("**Source:** sourdough-starter.pdf, chunk 1") and "> Caring for a sourdough" in source
