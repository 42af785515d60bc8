"""Seeds tab, second part: documents to ask grounded questions about, whole conversations to import, and tool
sets for the tools method.

Layout and wiring only; the core is curation/documents.py, curation/conversations.py and curation/toolsets.py."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from curation.conversations import import_conversations
from curation.documents import DOCUMENT_SUFFIXES, ChunkConfig, bundled_documents, import_documents
from curation.toolsets import bundled_toolset, import_toolset
from ui.common import guarded

_CHUNK = ChunkConfig()


def documents_table(store):
    return store.documents_frame()


def _import_documents(store, paths, size, overlap, bundled=False):
    paths = [*(paths or []), *(bundled_documents() if bundled else [])]
    if not paths:
        raise gr.Error("choose one or more documents first")
    # gradio keeps the name the user uploaded as the file's name in its temporary folder
    report = import_documents(store, paths, ChunkConfig(size=size, overlap=overlap), names=[Path(p).name for p in paths])
    lines = [f"{r['document']}: {r['chunks']} chunks" + ("" if r["added"] else " (already imported: nothing added)")
             for r in report]
    return "  \n".join(lines) + "  \nNext: Generate → method **documents**.", documents_table(store)


def _import_conversations(store, path):
    if not path:
        raise gr.Error("choose a conversation file first")
    result = import_conversations(store, path, name=Path(path).name)
    skipped = f"; {result['skipped']} already in the workspace" if result["skipped"] else ""
    return f"{result['file']}: {len(result['added'])} conversations added{skipped} (Review shows them turn by turn)"


def _import_tools(store, path, text, name, bundled=False):
    if bundled:
        result = import_toolset(store, bundled_toolset())
    elif path:
        result = import_toolset(store, path, name=name or Path(path).stem)
    elif (text or "").strip():
        result = import_toolset(store, "pasted tools", text=text, name=name or "pasted")
    else:
        raise gr.Error("choose a tools .json file or paste an OpenAI `tools` list first")
    note = "" if result["added"] else " (already imported: nothing added)"
    return (f"tool set {result['toolset_id']} (**{result['name']}**): {result['tools']} tools{note}  \n"
            "Next: Generate → method **tools**."), store.toolsets_frame()


def _tools_accordion(store):
    with gr.Accordion("Tools → tool-use tasks and calls", open=False):
        gr.Markdown("Paste or import tool definitions in OpenAI's `tools` format (a JSON list of "
                    '`{"type": "function", "function": {"name", "description", "parameters"}}`, the parameters a '
                    "JSON Schema). The **tools** method on the Generate tab has the teacher write requests that need "
                    "them and answer with tool calls; each call is checked against its schema. A bundled set "
                    "(get_weather, convert_currency, add_calendar_event) lets you try it offline.")
        with gr.Row():
            with gr.Column():
                file = gr.File(label="Tools file (.json)", file_types=[".json"], type="filepath",
                               elem_id="tools-file")
                name = gr.Textbox(label="Name (optional)", max_lines=1, elem_id="tools-name")
            text = gr.Code(label="…or paste the tools JSON", language="json", lines=8, elem_id="tools-text")
        with gr.Row():
            import_btn = gr.Button("Import tools", elem_id="tools-import")
            bundled_btn = gr.Button("Load the bundled tools", elem_id="tools-bundled")
        message = gr.Markdown(elem_id="tools-message")
        # a callable value is read at every page load: the table shows the workspace as it is
        table = gr.Dataframe(store.toolsets_frame, label="Tool sets", interactive=False, elem_id="tools-table")
    import_btn.click(guarded(lambda f, t, n: _import_tools(store, f, t, n)), [file, text, name], [message, table],
                     api_name="import_tools")
    bundled_btn.click(guarded(lambda: _import_tools(store, None, None, None, bundled=True)), None, [message, table],
                      api_name="load_bundled_tools")
    return table


def build(studio):
    store = studio.store
    with gr.Accordion("Documents → grounded questions and answers", open=False):
        gr.Markdown("Import your documents (.txt, .md, .pdf, .html): they are cut into overlapping chunks, and the "
                    "**documents** method on the Generate tab writes questions about each chunk and has the teacher "
                    "answer them from it. A bundled pack (three short CC0 documents: Markdown, HTML, PDF) lets you "
                    "try it offline.")
        with gr.Row():
            files = gr.File(label="Documents", file_count="multiple", file_types=list(DOCUMENT_SUFFIXES),
                            type="filepath", elem_id="docs-files")
            with gr.Column():
                size = gr.Slider(200, 8000, value=_CHUNK.size, step=100, label="Chunk size (characters)")
                overlap = gr.Slider(0, 2000, value=_CHUNK.overlap, step=10, label="Overlap (characters)")
                with gr.Row():
                    import_btn = gr.Button("Import documents", elem_id="docs-import")
                    bundled_btn = gr.Button("Load the bundled documents", elem_id="docs-bundled")
        doc_message = gr.Markdown(elem_id="docs-message")
        documents = gr.Dataframe(label="Documents", interactive=False, elem_id="docs-table")
    with gr.Accordion("Conversations (multi-turn)", open=False):
        gr.Markdown("Import ShareGPT (`conversations` with `from`/`value`) or chat (`messages` with `role`/"
                    "`content`) files, JSONL or a JSON array. Each conversation becomes one row; training learns "
                    "every assistant turn. Or synthesize them: Generate → method **chat**.")
        with gr.Row():
            conv_file = gr.File(label="Conversation file", file_types=[".jsonl", ".json"], type="filepath",
                                elem_id="conv-file")
            conv_btn = gr.Button("Import conversations", elem_id="conv-import")
        conv_message = gr.Markdown(elem_id="conv-message")
    import_btn.click(guarded(lambda f, s, o: _import_documents(store, f, s, o)), [files, size, overlap],
                     [doc_message, documents], api_name="import_documents")
    bundled_btn.click(guarded(lambda s, o: _import_documents(store, None, s, o, bundled=True)), [size, overlap],
                      [doc_message, documents], api_name="load_bundled_documents")
    conv_btn.click(guarded(lambda f: _import_conversations(store, f)), [conv_file], [conv_message],
                   api_name="import_conversations")
    _tools_accordion(store)
    return documents
