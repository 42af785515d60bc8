"""Your documents → grounded Q&A (issue 16.2): real .md / .html / .pdf files, chunks, the documents method."""
from __future__ import annotations

import json

import pytest

from curation.documents import ChunkConfig, bundled_documents, chunk_text, import_documents, read_document
from curation.errors import ConfigError, ImportFormatError, StudioError
from curation.generate import run_method
from curation.methods import DocumentsConfig
from curation.methods.documents import parse_faithfulness, parse_questions
from curation.teacher import TeacherConfig
from tests.fault_server import FaultServer


def _doc(name):
    return next(p for p in bundled_documents() if p.name == name)


# ---- reading -------------------------------------------------------------------------------------
def test_the_bundled_pdf_html_and_markdown_read_as_text():
    pdf = read_document(_doc("sourdough-starter.pdf"))
    assert pdf.startswith("Caring for a sourdough starter") and "called hooch" in pdf
    html = read_document(_doc("bicycle-history.html"))
    assert "the Laufmaschine, or running machine" in html  # <em> stays inside its sentence
    assert "console.log" not in html and "Home" not in html  # script and nav are not text
    assert "\n\nIn the 1860s" in html  # a <p> ends its paragraph
    assert "71 percent" in read_document(_doc("water-cycle.md"))


def test_a_bad_document_is_refused_with_what_and_where(tmp_path):
    (tmp_path / "a.docx").write_bytes(b"PK")
    with pytest.raises(ImportFormatError, match=r"a.docx: a document is one of"):
        read_document(tmp_path / "a.docx")
    (tmp_path / "b.txt").write_bytes(b"fine\nline two \xff\xfe\n")
    with pytest.raises(ImportFormatError, match=r"b.txt, line 2: not UTF-8"):
        read_document(tmp_path / "b.txt")
    (tmp_path / "c.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    with pytest.raises(ImportFormatError, match=r"c.pdf: not a readable PDF"):
        read_document(tmp_path / "c.pdf")


def test_a_pdf_without_a_text_layer_says_to_run_ocr(tmp_path):
    from fpdf import FPDF
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)  # a page with a drawing and no text, as a scan is
    pdf.output(str(tmp_path / "scan.pdf"))
    with pytest.raises(ImportFormatError, match="OCR"):
        read_document(tmp_path / "scan.pdf")


# ---- chunks --------------------------------------------------------------------------------------
def test_chunks_cover_the_text_overlap_and_end_at_breaks():
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 40 for i in range(12))
    chunks = chunk_text(text, ChunkConfig(size=500, overlap=100))
    assert all(len(c["text"]) <= 500 for c in chunks)
    assert chunks[0]["start"] == 0 and chunks[-1]["end"] == len(text)
    for before, after in zip(chunks, chunks[1:]):
        assert after["start"] < before["end"]  # they overlap
        assert text[before["end"] - 2:before["end"]] == "\n\n"  # ended at a paragraph break
        assert text[after["start"] - 1].isspace()  # the next starts at a word
    assert chunk_text("short", ChunkConfig()) == [{"ordinal": 0, "text": "short", "start": 0, "end": 5}]
    assert chunk_text("", ChunkConfig()) == []


def test_chunk_config_names_the_bad_field():
    with pytest.raises(ConfigError, match="overlap"):
        ChunkConfig(size=400, overlap=300)
    with pytest.raises(ConfigError, match="size"):
        ChunkConfig(size=10)


def test_importing_a_document_twice_adds_nothing_and_a_bad_file_adds_nothing(store, tmp_path):
    first = import_documents(store, [_doc("water-cycle.md")])
    again = import_documents(store, [_doc("water-cycle.md")])
    assert first[0]["added"] and not again[0]["added"] and again[0]["chunk_ids"] == first[0]["chunk_ids"]
    (tmp_path / "bad.pdf").write_bytes(b"nope")
    with pytest.raises(ImportFormatError, match="upload.pdf"):
        import_documents(store, [_doc("bicycle-history.html"), tmp_path / "bad.pdf"],
                         names=["bicycle-history.html", "upload.pdf"])
    assert list(store.documents_frame()["document"]) == ["water-cycle.md"]


# ---- parsers -------------------------------------------------------------------------------------
def test_parsers_read_json_and_text_and_return_none_for_nothing():
    assert parse_questions('{"questions": ["What drives the water cycle?", " "]}') == ["What drives the water cycle?", ""]
    assert parse_questions("1. What is hooch?\n2. How often to feed?") == ["What is hooch?", "How often to feed?"]
    assert parse_questions("no questions here") is None
    assert parse_faithfulness('{"answerable": true, "faithful": false, "score": 3, "rationale": "invents"}') == {
        "answerable": True, "faithful": False, "score": 3.0, "rationale": "invents"}
    assert parse_faithfulness("Answerable: no\nFaithful: yes\nScore: 9\nRationale: ok")["answerable"] is False
    assert parse_faithfulness("looks fine to me") is None


# ---- the method on a scripted teacher ---------------------------------------------------------------
def _script(body):
    content = body["messages"][-1]["content"]
    if "Write 2 different questions" in content:
        return {"text": json.dumps({"questions": ["What drives the water cycle?", "What is fog?"]})}
    if "faithful to a source passage" in content:
        return {"text": json.dumps({"answerable": True, "faithful": True, "score": 9, "rationale": "stated"})}
    return {"text": "The Sun drives it."}


def _teacher(server):
    return TeacherConfig(base_url=server.base_url, model="scripted", concurrency=1, max_retries=0)


@pytest.mark.parametrize("mode", ["rag", "closed_book"])
def test_documents_method_asks_answers_and_judges_each_chunk(store, mode):
    (report,) = import_documents(store, [_doc("water-cycle.md")])
    with FaultServer([_script]) as server:
        summary = run_method(store, _teacher(server), DocumentsConfig(questions_per_chunk=2, mode=mode),
                             server.base_url)
        questions = [r["body"] for r in server.requests if "different questions" in r["body"]["messages"][-1]["content"]]
    chunks = report["chunks"]
    assert summary["failed"] == 0 and summary["new_tasks"] == 2 * chunks
    assert questions[0]["response_format"]["type"] == "json_schema"  # structured: even 135M parses
    tasks = store.tasks(split=None)
    assert {t["chunk_id"] for t in tasks} == set(report["chunk_ids"]) and {t["skill"] for t in tasks} == {mode}
    assert all((t["input"] is not None) == (mode == "rag") for t in tasks)
    verdicts = store._fetchdicts("SELECT score FROM judgments WHERE kind = 'faithfulness'")
    assert len(verdicts) == 2 * chunks and {v["score"] for v in verdicts} == {9.0}
    gen = store._fetchdicts("SELECT id FROM generations ORDER BY id")[0]["id"]
    store.set_label([gen], "approved")
    (example,) = store.approved_examples()
    sent = [m["role"] for m in example["messages"]]
    # rag: the student sees the context; closed book: the chunk steered only the teacher and is not trained on
    if mode == "rag":
        assert sent == ["system", "user", "assistant"] and "Context:" in example["messages"][1]["content"]
    else:
        assert sent == ["user", "assistant"] and example["messages"][0]["content"] == "What drives the water cycle?"


def test_documents_method_without_documents_says_what_to_do(store):
    with FaultServer([_script]) as server, pytest.raises(StudioError, match="import some first"):
        run_method(store, _teacher(server), DocumentsConfig(), server.base_url)


@pytest.mark.integration
def test_documents_on_the_embedded_teacher(store, teacher_url):
    """The bundled PDF through the real teacher: the structured questions and verdicts parse.

    The 135M teacher's wording differs by CPU (AMD vs Intel AMX kernels) and by sampling, and a call sometimes
    repeats itself past max_tokens, leaving JSON that does not parse. With the PDF in its default 2 chunks, 10
    runs here lost a chunk's call that way 3 times in 20 and one local CI run kept no question at all; cut into 500-
    character chunks (5 calls) 8 of 8 runs kept 5-13 questions. The prompt asks for questions that name their
    subject (the earlier one, "questions a reader could ask about this passage", kept none in 3 of 8 runs)."""
    (report,) = import_documents(store, [_doc("sourdough-starter.pdf")], ChunkConfig(size=500, overlap=50))
    assert report["chunks"] == 5
    summary = run_method(store, TeacherConfig(concurrency=2),
                         DocumentsConfig(questions_per_chunk=3, max_tokens=96), teacher_url)
    assert summary["failed"] == 0 and summary["new_tasks"] >= 1
    answers = store._fetchdicts("SELECT g.response FROM generations g WHERE g.status = 'ok'")
    verdicts = store._fetchdicts("SELECT score FROM judgments WHERE kind = 'faithfulness'")
    assert answers and len(verdicts) == len(answers) and all(v["score"] is not None for v in verdicts)


def test_questions_that_cannot_stand_alone_are_discarded_and_counted(store):
    import_documents(store, [_doc("water-cycle.md")])
    answer = json.dumps({"questions": ["What is the passage about?", "first question", "Why it matters",
                                       "What drives evaporation?", "what drives evaporation?", "I'm sorry, I can't."]})
    with FaultServer([{"text": answer}]) as server:
        summary = run_method(store, _teacher(server), DocumentsConfig(faithfulness=False, chunk_ids=[1]),
                             server.base_url)
    assert [t["instruction"] for t in store.tasks(split=None)] == ["What drives evaporation?"]
    assert summary["discarded"] == {"needs_the_passage": 1, "placeholder": 1, "not_a_question": 1, "duplicate": 1,
                                    "refusal": 1}


# ---- the unanswerable and unfaithful filters -------------------------------------------------------
def test_unanswerable_and_unfaithful_filters_read_the_faithfulness_verdicts(store, tmp_path):
    from curation.filters import apply_filter, preview_filter
    from curation.grounding import UnanswerableFilter, UnfaithfulFilter
    from tests.conftest import curation_cli

    import_documents(store, [_doc("water-cycle.md")])
    verdicts = iter([{"answerable": True, "faithful": True, "score": 9, "rationale": "ok"},
                     {"answerable": False, "faithful": True, "score": 8, "rationale": "not in it"},
                     {"answerable": True, "faithful": False, "score": 7, "rationale": "invents"},
                     {"answerable": True, "faithful": True, "score": 3, "rationale": "weak"}])
    answers = iter(["The Sun.", "Fog is a low cloud.", "The Moon drives it.", "Water.",
                    "The context does not say."])

    def script(body):
        content = body["messages"][-1]["content"]
        if "different questions" in content:
            return {"text": json.dumps({"questions": ["What drives the water cycle?", "What is fog?"]})}
        if "faithful to a source passage" in content:
            return {"text": json.dumps(next(verdicts))}
        return {"text": next(answers)}

    with FaultServer([script]) as server:
        run_method(store, _teacher(server), DocumentsConfig(questions_per_chunk=2, chunk_ids=[1, 2]), server.base_url)
    scores = {r["score"] for r in store._fetchdicts("SELECT score FROM judgments WHERE kind = 'faithfulness'")}
    assert scores == {9.0, 8.0, 7.0, 3.0}
    unanswerable = preview_filter(store, UnanswerableFilter())
    assert unanswerable.removed_count == 1 and unanswerable.sample[0]["response"] == "Fog is a low cloud."
    unfaithful = preview_filter(store, UnfaithfulFilter(min_score=6))
    assert sorted(r["response"] for r in unfaithful.sample) == ["The Moon drives it.", "Water."]
    assert preview_filter(store, UnfaithfulFilter(min_score=1)).removed_count == 1  # the verdict alone
    batch = apply_filter(store, UnfaithfulFilter())
    assert store.label_batch_count(batch) == 2
    store.close()
    out = curation_cli("--workspace", store.workspace, "filter", "unanswerable", "--dry-run", "--json")
    assert json.loads(out.stdout)["removed"] == 1
