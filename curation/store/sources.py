"""What the user brings besides seed tasks: documents cut into chunks (curation/documents.py) with the tasks
and answers grounded in each, whole conversations (curation/conversations.py), and tool sets
(curation/toolsets.py) with the tasks to be answered by calling them."""
from __future__ import annotations

import hashlib
import json

import pandas as pd

from curation.errors import StudioError


class SourcesMixin:
    """`Store` methods for imported documents, their chunks, imported conversations and tool sets."""

    def add_document(self, name: str, chunks: list[dict]) -> tuple[list[int], bool]:
        """Store a document's chunks ({"ordinal", "text", "start", "end"}) in one transaction.

        Returns (chunk ids, added): the same document (name and text) imported again adds nothing and
        returns the stored chunks' ids with added False.
        """
        digest = hashlib.sha256("\x00".join(c["text"] for c in chunks).encode("utf-8")).hexdigest()
        with self.transaction() as con:
            found = con.execute("SELECT id FROM chunks WHERE document = ? AND document_hash = ? ORDER BY ordinal",
                                [name, digest]).fetchall()
            if found:
                return [r[0] for r in found], False
            ids = [con.execute("INSERT INTO chunks (document, document_hash, ordinal, text, char_start, char_end) "
                               "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                               [name, digest, c["ordinal"], c["text"], c.get("start"), c.get("end")]).fetchone()[0]
                   for c in chunks]
        return ids, True

    def chunks(self, ids: list[int] | None = None) -> list[dict]:
        """The chunks named (all when None), in document order."""
        where, params = ("WHERE list_contains(?, id)", [list(ids)]) if ids is not None else ("", [])
        return self._fetchdicts(f"SELECT * FROM chunks {where} ORDER BY document, ordinal, id", params)

    def chunk_of_task(self, task_id: int) -> dict | None:
        rows = self._fetchdicts("SELECT c.* FROM chunks c JOIN tasks t ON t.chunk_id = c.id WHERE t.id = ?",
                                [int(task_id)])
        return rows[0] if rows else None

    def generations_of_tasks(self, task_ids: list[int]) -> list[dict]:
        """The successful answers of the tasks, as trained on (the edit wins): id, task_id, answer."""
        return self._fetchdicts(
            "SELECT g.id, g.task_id, coalesce(l.edited_response, g.response) AS answer FROM generations g "
            "LEFT JOIN labels l ON l.generation_id = g.id WHERE g.status = 'ok' AND list_contains(?, g.task_id) "
            "ORDER BY g.id", [list(task_ids)])

    def documents_frame(self) -> pd.DataFrame:
        """One row per document: its chunks, the questions asked about them and the answers stored."""
        return self._fetchdf(
            "SELECT c.document, count(DISTINCT c.id) AS chunks, count(DISTINCT t.id) AS questions, "
            "count(DISTINCT g.id) FILTER (WHERE g.status = 'ok') AS answers FROM chunks c "
            "LEFT JOIN tasks t ON t.chunk_id = c.id LEFT JOIN generations g ON g.task_id = t.id "
            "GROUP BY c.document ORDER BY c.document")

    def add_toolset(self, name: str, tools: list[dict]) -> tuple[int, bool]:
        """Store a checked tool set (curation/toolsets.py); (id, added). The same tools stored before, under
        any name, add nothing and return that set's id."""
        text = json.dumps(tools, ensure_ascii=False, sort_keys=True)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self.transaction() as con:
            found = con.execute("SELECT id FROM toolsets WHERE tools_hash = ?", [digest]).fetchone()
            if found:
                return found[0], False
            return con.execute("INSERT INTO toolsets (name, tools, tools_hash) VALUES (?, ?, ?) RETURNING id",
                               [name, json.dumps(tools, ensure_ascii=False), digest]).fetchone()[0], True

    def toolset(self, ref: int | str | None = None) -> dict | None:
        """A tool set by id, or by name (the newest of that name), or the newest of all (ref None):
        {"id", "name", "tools", "created_at"}; None when there is none."""
        if ref is None:
            where, params = "", []
        elif isinstance(ref, int) or str(ref).isdigit():
            where, params = "WHERE id = ?", [int(ref)]
        else:
            where, params = "WHERE name = ?", [str(ref)]
        rows = self._fetchdicts(f"SELECT * FROM toolsets {where} ORDER BY id DESC LIMIT 1", params)
        if not rows:
            return None
        return {**rows[0], "tools": json.loads(rows[0]["tools"])}

    def toolsets_frame(self) -> pd.DataFrame:
        """One row per tool set: its tools' names, the tasks written for it, their answers, and the calls in
        those answers (as the teacher made them) with how many are valid against their schemas."""
        frame = self._fetchdf(
            "SELECT s.id, s.name, s.tools, count(DISTINCT t.id) AS tasks, count(g.id) AS answers, "
            "CAST(coalesce(sum(json_array_length(g.tool_calls)), 0) AS BIGINT) AS calls, CAST(coalesce(sum(len("
            "list_filter(CAST(json_extract(g.tool_calls, '$[*].valid') AS BOOLEAN[]), lambda v: v))), 0) AS BIGINT) "
            "AS valid_calls "
            "FROM toolsets s LEFT JOIN tasks t ON t.toolset_id = s.id "
            "LEFT JOIN generations g ON g.task_id = t.id AND g.status = 'ok' "
            "GROUP BY s.id, s.name, s.tools ORDER BY s.id")
        frame["tools"] = [", ".join(t["function"]["name"] for t in json.loads(v)) for v in frame["tools"]]
        return frame

    def tool_references(self) -> list[dict]:
        """Eval-split tasks answered with a tool set: id, instruction, skill, tools, and the teacher's answer (the
        tools method's first ok one, an edit winning; a rejected one is no reference) as `reference`."""
        rows = self._fetchdicts(
            "SELECT t.id, t.instruction, t.skill, ts.tools, coalesce(l.edited_response, g.response) AS reference "
            "FROM tasks t JOIN toolsets ts ON ts.id = t.toolset_id JOIN generations g ON g.task_id = t.id "
            "LEFT JOIN labels l ON l.generation_id = g.id WHERE t.split = 'eval' AND g.status = 'ok' "
            "AND g.method = 'tools' AND coalesce(l.status, 'pending') != 'rejected' "
            "QUALIFY row_number() OVER (PARTITION BY t.id ORDER BY g.id) = 1 ORDER BY t.id")
        return [{**r, "tools": json.loads(r["tools"])} for r in rows]

    def add_conversations(self, conversations: list[list[dict]], source: str) -> tuple[list[int], int]:
        """Store each conversation (checked chat messages ending with the assistant) as a task (its first
        user turn, its system message) and a generation (every turn before the last answer + that answer,
        endpoint 'import', model `source`), in one transaction. Returns (new generation ids, skipped): a
        conversation already in the workspace, from any file, is skipped."""
        new, skipped = [], 0
        with self.transaction() as con:
            for messages in conversations:
                key = "import:" + hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True)
                                                 .encode("utf-8")).hexdigest()
                if con.execute("SELECT 1 FROM generations WHERE request_key = ?", [key]).fetchone():
                    skipped += 1
                    continue
                system = messages[0]["content"] if messages[0]["role"] == "system" else None
                first_user = next(m["content"] for m in messages if m["role"] == "user")
                task_id = con.execute("INSERT INTO tasks (instruction, system_prompt, source) VALUES (?, ?, 'import') "
                                      "RETURNING id", [first_user, system]).fetchone()[0]
                new.append(con.execute(
                    "INSERT INTO generations (task_id, request_key, endpoint, model, messages, params, sample_index, "
                    "response, finish_reason, status, method) VALUES (?, ?, 'import', ?, ?, '{}', 0, ?, 'stop', 'ok', "
                    "'import') RETURNING id",
                    [task_id, key, source, json.dumps(messages[:-1], ensure_ascii=False),
                     messages[-1]["content"]]).fetchone()[0])
        return new, skipped

    def edit_turns(self, gen_id: int, messages: list[dict]) -> None:
        """Approve a conversation with an edit of its turns before the answer (the original is kept, and the
        edit is a label event, as an edited answer is). The edit has the same roles in the same order."""
        row = self.generation(int(gen_id))
        if row is None:
            raise StudioError(f"no generation with id {int(gen_id)}")
        roles = [m["role"] for m in row["messages"]]
        if [m.get("role") for m in messages] != roles:
            raise StudioError(f"generation {gen_id}: an edit keeps the turns' roles and order ({', '.join(roles)})")
        empty = [i for i, m in enumerate(messages) if not str(m.get("content") or "").strip()]
        if empty:
            raise StudioError(f"generation {gen_id}: turn {empty[0]} is empty; reject the row instead")
        edited = [{"role": m["role"], "content": str(m["content"])} for m in messages]
        self.set_label([int(gen_id)], "approved", edited_messages=None if edited == row["messages"] else edited)
