"""documents — grounded questions and answers from the user's own documents (survey 4.1 RAG; §5 verticals).

Stages, each planned after the one before it ran:
1. questions: for each chunk (Store.add_document), the teacher writes N questions the chunk answers
   (doc_questions.j2). Writes: one task per question (source 'document', chunk_id). What the student will
   learn is chosen here and kept in the task: `rag` puts the chunk in the task's input (the student learns
   to answer from a context it is given), `closed_book` keeps it out (the knowledge goes into the weights).
2. answer: the teacher answers each question with its chunk in view: as the student's own context (rag,
   doc_rag_system.j2 + doc_rag_user.j2) or in a teacher-only system prompt that training leaves out
   (closed_book, doc_closed_book_system.j2). Writes: one generation per question.
3. faithfulness (optional): the structured judge reads chunk, question and answer (doc_faithfulness.j2) and
   says whether the question is answerable from the chunk, whether the answer is faithful, and a 1-10 score.
   Writes: a judgment of kind 'faithfulness' (the raw verdict kept) that the unanswerable and unfaithful
   filters read.
Parsers: `parse_questions`, `parse_faithfulness` — None for what they cannot read.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from curation.errors import ConfigError, StudioError
from curation.methods.base import (Call, Method, Stage, Writes, content_words, is_refusal, json_schema_params,
                                   parse_task_list, render)
from curation.methods.label import Sampling, check_sampling

MODES = ("rag", "closed_book")
# A question that points at "the passage" cannot stand alone: the student never sees which passage.
_NEEDS_THE_PASSAGE = re.compile(r"\b(?:the|this|that)\s+(?:passage|text|document|article|excerpt)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^\s*(?:first|second|third|\w+)\s+question\s*[.?]?\s*$", re.IGNORECASE)
_YES_NO = {"yes": True, "true": True, "no": False, "false": False}
FAITHFULNESS_SCHEMA = {"type": "object", "additionalProperties": False,
                       "required": ["answerable", "faithful", "score", "rationale"],
                       "properties": {"answerable": {"type": "boolean"}, "faithful": {"type": "boolean"},
                                      "score": {"type": "integer", "minimum": 1, "maximum": 10},
                                      "rationale": {"type": "string", "maxLength": 200}}}


def questions_schema(n: int) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["questions"],
            "properties": {"questions": {"type": "array", "minItems": 1, "maxItems": n,
                                         "items": {"type": "string", "minLength": 8, "maxLength": 300}}}}


@dataclass
class DocumentsConfig(Sampling):
    """Grounded Q&A settings.

    chunk_ids: the chunks to ask about; empty means every chunk of every imported document.
    questions_per_chunk: questions the teacher writes about each chunk (1..10).
    mode: what the student learns — rag: to answer from the chunk given in its prompt; closed_book: to
        answer without it (the chunk steers only the teacher; the knowledge goes into the weights).
    faithfulness: judge each answer against its chunk (answerable, faithful, 1-10) for the filters.
    structured: ask the endpoint for JSON valid against a schema (questions and verdicts), so even a small
        teacher answers in a form that parses; turn off for an endpoint without `response_format`.
    temperature, max_tokens: sampling of each question list and answer (verdicts use temperature 0).
    """

    chunk_ids: list[int] = field(default_factory=list)
    questions_per_chunk: int = 3
    mode: str = "rag"
    faithfulness: bool = True
    structured: bool = True
    temperature: float = 0.7
    max_tokens: int = 256

    def __post_init__(self):
        check_sampling(self)
        if not 1 <= int(self.questions_per_chunk) <= 10:
            raise ConfigError(f"questions_per_chunk must be between 1 and 10 (got {self.questions_per_chunk})")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {self.mode!r})")
        self.questions_per_chunk = int(self.questions_per_chunk)
        self.faithfulness, self.structured = bool(self.faithfulness), bool(self.structured)
        self.chunk_ids = [int(i) for i in self.chunk_ids]


def parse_questions(text: str | None) -> list[str] | None:
    """Questions from {"questions": [...]}, a JSON array or a numbered list; None when none can be read."""
    if not text or not text.strip():
        return None
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            found = json.loads(text[start:end + 1]).get("questions")
        except (ValueError, AttributeError):
            found = None
        if isinstance(found, list):
            return [q.strip() for q in found if isinstance(q, str)] or None
    return parse_task_list(text)


def parse_faithfulness(text: str | None) -> dict | None:
    """{"answerable", "faithful", "score", "rationale"} from a JSON verdict or the 'Answerable: yes' lines."""
    if not text or not text.strip():
        return None
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            data = json.loads(text[start:end + 1])
            if isinstance(data, dict) and isinstance(data.get("score"), (int, float)):
                return {"answerable": bool(data.get("answerable", True)), "faithful": bool(data.get("faithful")),
                        "score": float(min(10, max(1, data["score"]))), "rationale": data.get("rationale")}
        except ValueError:
            pass
    fields = dict(re.findall(r"^\s*(answerable|faithful|score|rationale)\s*:\s*(.+?)\s*$", text, re.I | re.M))
    fields = {k.lower(): v for k, v in fields.items()}
    score = re.match(r"\d+(\.\d+)?", fields.get("score", ""))
    if score is None:
        return None
    return {"answerable": _YES_NO.get(fields.get("answerable", "yes").lower(), True),
            "faithful": _YES_NO.get(fields.get("faithful", "no").lower(), False),
            "score": float(min(10, max(1, float(score.group())))), "rationale": fields.get("rationale")}


def _chunks(ctx) -> list[dict]:
    chunks = ctx.store.chunks(ctx.config.chunk_ids or None)
    if ctx.config.chunk_ids and len(chunks) != len(set(ctx.config.chunk_ids)):
        missing = sorted(set(ctx.config.chunk_ids) - {c["id"] for c in chunks})
        raise StudioError(f"no chunk with id {missing[:5]}")
    if not chunks:
        raise StudioError("no documents to ask about: import some first (Seeds tab → Documents, or "
                          "python -m curation documents FILE...)")
    return chunks


def _plan_questions(ctx) -> list[Call]:
    config, calls = ctx.config, []
    for chunk in _chunks(ctx):
        content = render("doc_questions.j2", document=chunk["document"], passage=chunk["text"],
                         n=config.questions_per_chunk, structured=config.structured)
        params = config.params()
        if config.structured:
            params = json_schema_params(params, "questions", questions_schema(config.questions_per_chunk))
        # The mode is part of the call: the same chunk asked about for rag and for closed_book are two jobs.
        calls.append(Call.make("documents", "questions", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                               [{"role": "user", "content": content}], params, MODES.index(config.mode),
                               context={"chunk_id": chunk["id"], "mode": config.mode,
                                        "passage": chunk["text"] if config.mode == "rag" else None}))
    return calls


def write_questions(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    raw = result.get("response") or ""
    questions = parse_questions(raw)
    if questions is None:
        return Writes(raw_output=raw, outcome={"new": 0, "discarded": {"unparsable": 1}})
    kept, discarded = [], {}
    for question in questions:
        question = re.sub(r"^\s*\d+\s*[.)]\s*", "", question)
        reason = ("empty" if not content_words(question) else "refusal" if is_refusal(question)
                  else "placeholder" if _PLACEHOLDER.match(question)
                  else "not_a_question" if not question.rstrip().endswith("?")
                  else "needs_the_passage" if _NEEDS_THE_PASSAGE.search(question)
                  else "duplicate" if question.lower() in {k.lower() for k in kept} else None)
        if reason:
            discarded[reason] = discarded.get(reason, 0) + 1
        else:
            kept.append(question)
    mode = call.context["mode"]
    tasks = [{"instruction": q, "input": call.context["passage"], "source": "document", "skill": mode,
              "chunk_id": call.context["chunk_id"]} for q in kept]
    return Writes(new_tasks=tasks, raw_output=raw, outcome={"new": len(tasks), "discarded": discarded})


def _document_tasks(ctx) -> list[tuple[dict, dict]]:
    """(task, chunk) of every question asked about the config's chunks in its mode."""
    chunks = {c["id"]: c for c in _chunks(ctx)}
    mode_skill = ctx.config.mode
    return [(t, chunks[t["chunk_id"]]) for t in ctx.store.tasks(split=None)
            if t.get("source") == "document" and t.get("chunk_id") in chunks and t.get("skill") == mode_skill]


def answer_messages(task: dict, chunk: dict) -> tuple[list[dict], bool]:
    """(messages, teacher_only_system) for a question: the chunk as the student's context (rag: the task
    carries it as input) or as a teacher-only system prompt (closed book)."""
    if task.get("input"):
        return [{"role": "system", "content": render("doc_rag_system.j2")},
                {"role": "user", "content": render("doc_rag_user.j2", passage=task["input"],
                                                   question=task["instruction"])}], False
    system = render("doc_closed_book_system.j2", document=chunk["document"], passage=chunk["text"])
    return [{"role": "system", "content": system}, {"role": "user", "content": task["instruction"]}], True


def _plan_answers(ctx) -> list[Call]:
    calls = []
    for task, chunk in _document_tasks(ctx):
        messages, teacher_only = answer_messages(task, chunk)
        calls.append(Call.make("documents", "answer", ctx.teacher.endpoint_id, ctx.teacher.model_name, messages,
                               ctx.config.params(), 0, task_id=task["id"],
                               context={"teacher_only_system": teacher_only, "chunk_id": chunk["id"]}))
    return calls


def write_answer(ctx, call: Call, result: dict) -> Writes:
    return Writes(generation=call.generation_row(result, ctx.run_id))


def _plan_faithfulness(ctx) -> list[Call]:
    config, calls = ctx.config, []
    tasks = {task["id"]: (task, chunk) for task, chunk in _document_tasks(ctx)}
    for gen in ctx.store.generations_of_tasks(list(tasks)):
        task, chunk = tasks[gen["task_id"]]
        content = render("doc_faithfulness.j2", passage=chunk["text"], question=task["instruction"],
                         answer=gen["answer"], structured=config.structured)
        params = {"temperature": 0.0, "max_tokens": 200}
        if config.structured:
            params = json_schema_params(params, "faithfulness", FAITHFULNESS_SCHEMA)
        calls.append(Call.make("documents", "faithfulness", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                               [{"role": "user", "content": content}], params, 0, task_id=task["id"],
                               generation_id=gen["id"], context={"chunk_id": chunk["id"]}))
    return calls


def write_faithfulness(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    raw = result.get("response") or ""
    verdict = parse_faithfulness(raw)
    judgment = {"generation_id": call.generation_id, "judge_model": call.model, "kind": "faithfulness",
                "score": verdict["score"] if verdict else None, "raw_output": raw,
                "rationale": json.dumps(verdict, ensure_ascii=False) if verdict else None}
    return Writes(judgment=judgment, raw_output=raw, outcome={"parsed": verdict is not None})


def _stages(config: DocumentsConfig) -> list[Stage]:
    stages = [Stage("questions", _plan_questions, write_questions), Stage("answer", _plan_answers, write_answer)]
    if config.faithfulness:
        stages.append(Stage("faithfulness", _plan_faithfulness, write_faithfulness))
    return stages


METHOD = Method("documents", DocumentsConfig, "your documents → grounded Q&A: questions about each chunk, the "
                "teacher answers from the chunk (in the student's prompt, or closed book), a faithfulness judge",
                _stages, writers={"questions": write_questions, "answer": write_answer,
                                  "faithfulness": write_faithfulness})
