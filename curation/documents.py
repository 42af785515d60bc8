"""Your documents as text chunks the teacher writes grounded questions and answers about (survey 4.1, RAG;
verticalisation, §5).

`read_document` turns a .txt, .md, .pdf (pypdf) or .html (Beautiful Soup) file into plain text;
`chunk_text` cuts it into overlapping chunks that end at a paragraph or sentence break where one is near.
Both are pure: the store keeps the chunks (Store.add_document) and the documents method
(curation/methods/documents.py) asks about them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from curation.errors import ConfigError, ImportFormatError

DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown", ".pdf", ".html", ".htm")
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024
# Where a chunk may end, best first: a paragraph, a sentence, a line, a word.
_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"[.!?][\"')\]]*\s"), re.compile(r"\n"), re.compile(r"\s"))
_HTML_BLOCKS = ("p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "div", "section", "article", "blockquote",
                "pre", "dd", "dt")
_DROPPED_HTML = ("script", "style", "noscript", "nav", "header", "footer", "aside", "form", "svg")


@dataclass
class ChunkConfig:
    """How documents are cut.

    size: characters per chunk (200..20000); about 4 characters make a token in English.
    overlap: characters two neighbouring chunks share (0..size/2), so a fact cut at a border is whole in one.
    """

    size: int = 1200
    overlap: int = 150

    def __post_init__(self):
        if not 200 <= int(self.size) <= 20000:
            raise ConfigError(f"size must be between 200 and 20000 characters (got {self.size})")
        if not 0 <= int(self.overlap) <= int(self.size) // 2:
            raise ConfigError(f"overlap must be between 0 and half the size, {int(self.size) // 2} "
                              f"(got {self.overlap})")
        self.size, self.overlap = int(self.size), int(self.overlap)


def read_document(path: str | os.PathLike) -> str:
    """The file's text; ImportFormatError when it cannot be read or holds no text (a scanned PDF)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DOCUMENT_SUFFIXES:
        raise ImportFormatError(path, f"a document is one of {', '.join(DOCUMENT_SUFFIXES)} (got '{suffix}')")
    if not path.is_file():
        raise ImportFormatError(path, "no such file")
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise ImportFormatError(path, f"{path.stat().st_size:,} bytes is more than the {MAX_DOCUMENT_BYTES:,} "
                                      "a document may have; split it")
    if suffix == ".pdf":
        text = _pdf_text(path)
    else:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise ImportFormatError(path, "not UTF-8 text; save it as UTF-8", line) from None
        if suffix in (".html", ".htm"):
            text = _html_text(text)
    text = _tidy(text)
    if not text:
        raise ImportFormatError(path, "no text in the document" + (" (a scanned PDF has only images: run OCR on "
                                                                    "it first)" if suffix == ".pdf" else ""))
    return text


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as exc:
        raise ImportFormatError(path, f"not a readable PDF ({exc})") from None


def _html_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(_DROPPED_HTML):
        tag.decompose()
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    # Inline elements (<em>, <a>) stay inside their sentence; a block ends its paragraph.
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.append("\n\n")
    body = soup.find("main") or soup.find("article") or soup.body or soup
    return body.get_text()


def _tidy(text: str) -> str:
    # PDF and HTML extraction leave runs of spaces and blank lines; a paragraph stays one blank line apart.
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def chunk_text(text: str, config: ChunkConfig | None = None) -> list[dict]:
    """[{"ordinal", "text", "start", "end"}]: overlapping chunks of at most `size` characters covering the text.

    A chunk ends at the last paragraph break in its second half, else a sentence end, a line end or a
    space there, else at `size`; the next one starts `overlap` characters before that end (moved forward to
    the start of a word). `start`/`end` are offsets into `text`, so a chunk's place can be shown.
    """
    config = config or ChunkConfig()
    chunks, start = [], 0
    while start < len(text):
        end = min(len(text), start + config.size)
        if end < len(text):
            end = _break_before(text, start + config.size // 2, end)
        piece = text[start:end].strip()
        if piece:
            chunks.append({"ordinal": len(chunks), "text": piece, "start": start, "end": end})
        if end >= len(text):
            break
        start = _word_start(text, max(end - config.overlap, start + 1))
    return chunks


def _break_before(text: str, earliest: int, end: int) -> int:
    for pattern in _BREAKS:
        found = [m.end() for m in pattern.finditer(text, earliest, end)]
        if found:
            return found[-1]
    return end


def _word_start(text: str, pos: int) -> int:
    while 0 < pos < len(text) and not text[pos - 1].isspace():
        pos += 1
    return pos


def import_documents(store, paths: list[str | os.PathLike], config: ChunkConfig | None = None,
                     names: list[str] | None = None) -> list[dict]:
    """Read, chunk and store each file; [{"document", "chunks", "added"}] in order. Every file is read and
    cut before anything is stored, so one bad file refuses the whole import and changes nothing.

    names: what each document is called in the workspace (default: the file name; the UI passes the
    name the user uploaded, not the server's temporary path).
    """
    config = config or ChunkConfig()
    names = names or [Path(p).name for p in paths]
    cut = []
    for path, name in zip(paths, names):
        try:
            text = read_document(path)
        except ImportFormatError as exc:  # the name the user knows, not a temporary upload path
            raise ImportFormatError(name, exc.reason, exc.line, exc.field) from None
        cut.append((name, chunk_text(text, config)))
    report = []
    for name, chunks in cut:
        ids, added = store.add_document(name, chunks)
        report.append({"document": name, "chunks": len(ids), "added": added, "chunk_ids": ids})
    return report


def bundled_documents() -> list[Path]:
    """The small document pack shipped with the studio (data/documents: Markdown, HTML and PDF, CC0)."""
    folder = Path(__file__).resolve().parents[1] / "data" / "documents"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in DOCUMENT_SUFFIXES)
