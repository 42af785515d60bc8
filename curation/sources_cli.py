"""Bringing your own material without a browser: `python -m curation documents | conversations | tools`.

documents: read .txt/.md/.pdf/.html files, cut them into overlapping chunks (flags from ChunkConfig) and store
them; then `generate --method documents` asks and answers grounded questions about them.
conversations: import ShareGPT or chat-`messages` files (JSONL or a JSON array) as multi-turn rows.
tools: import a tool set (an OpenAI `tools` JSON list); then `generate --method tools` writes requests that need
the tools and has the teacher answer them with calls, each validated against its schema.
"""
from __future__ import annotations

import json

from curation.config_args import add_config_arguments, config_from_args
from curation.conversations import import_conversations
from curation.documents import ChunkConfig, bundled_documents, import_documents
from curation.toolsets import bundled_toolset, import_toolset


def add_commands(sub) -> None:
    p = sub.add_parser("documents", help="import documents (.txt .md .pdf .html) as chunks for grounded Q&A",
                       description="One bad file refuses the whole import; a document imported again adds "
                                   "nothing. Then: generate --method documents.")
    p.add_argument("files", nargs="*", help="document files (none: list what is imported)")
    p.add_argument("--bundled", action="store_true", help="import the bundled pack (data/documents: md, html, pdf)")
    p.set_defaults(config_fields=add_config_arguments(p, ChunkConfig))
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("conversations", help="import multi-turn conversations (ShareGPT or chat messages)")
    p.add_argument("file", help=".jsonl (one conversation per line) or .json (an array of conversations)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("tools", help="import a tool set (OpenAI `tools` JSON) for the tools method",
                       description="Each function's parameters must be a valid JSON Schema and names unique; a "
                                   "bad file is refused with its line and field. Then: generate --method tools.")
    p.add_argument("file", nargs="?", help="a .json file holding a `tools` list (none: list the tool sets)")
    p.add_argument("--bundled", action="store_true",
                   help="import the bundled set (data/tools/simple.json: get_weather, convert_currency, "
                        "add_calendar_event)")
    p.add_argument("--name", help="the tool set's name (default: the file's name)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_documents(store, args) -> int:
    paths = [*args.files, *(bundled_documents() if args.bundled else [])]
    report = import_documents(store, paths, config_from_args(ChunkConfig, args, args.config_fields)) if paths else []
    if args.json:
        print(json.dumps({"imported": report, "documents": store.documents_frame().to_dict("records")}))
        return 0
    for item in report:
        print(f"{item['document']}: {item['chunks']} chunks" + ("" if item["added"] else " (already imported)"))
    print(store.documents_frame().to_string(index=False) if len(store.documents_frame()) else "no documents yet")
    return 0


def cmd_conversations(store, args) -> int:
    result = import_conversations(store, args.file)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['file']}: {len(result['added'])} conversations added"
              + (f", {result['skipped']} already in the workspace" if result["skipped"] else ""))
    return 0


def cmd_tools(store, args) -> int:
    paths = [*([args.file] if args.file else []), *([bundled_toolset()] if args.bundled else [])]
    report = [import_toolset(store, path, name=args.name) for path in paths]
    frame = store.toolsets_frame()
    if args.json:
        print(json.dumps({"imported": report, "toolsets": frame.to_dict("records")}))
        return 0
    for item in report:
        print(f"tool set {item['toolset_id']} ({item['name']}): {item['tools']} tools"
              + ("" if item["added"] else " (already imported)"))
    print(frame.to_string(index=False) if len(frame) else "no tool sets yet")
    return 0


COMMANDS = {"documents": cmd_documents, "conversations": cmd_conversations, "tools": cmd_tools}
