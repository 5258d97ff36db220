"""Manuals and past tickets → documents → chunks that remember where they came from.

Every chunk keeps its source (``file`` or ``file:line`` for a JSONL record) and the
character offsets of its text inside that source, so an answer can cite exactly the
passage it used: ``document.text[chunk.start:chunk.end] == chunk.text``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmstack.data.markdown import headings
from slmstack.data.utf8 import jsonl_lines, read_utf8
from slmstack.errors import ConfigError, DataError

Kind = Literal["markdown", "text"]
_SUFFIXES: dict[str, Kind | Literal["jsonl"]] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".jsonl": "jsonl",
}
_PARAGRAPH_BREAK = re.compile(r"\r?\n[ \t]*\r?\n")  # Windows files keep their \r (offsets)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Document:
    """A manual, a page or one past ticket.

    Attributes:
        text: the full text.
        source: where it came from, cited in answers (a path, or ``path:line``).
        kind: ``"markdown"`` splits on headings first; ``"text"`` on paragraphs only.
        title: a title shown with its chunks (a ticket subject, a file name).
    """

    text: str
    source: str
    kind: Kind = "text"
    title: str = ""


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: ``text == document.text[start:end]``.

    ``title`` is the nearest heading (or the document title); it is embedded together
    with the text so that a passage under "Printer jams" is found for "paper jam".
    """

    id: str
    text: str
    source: str
    start: int
    end: int
    title: str = ""

    @property
    def embed_text(self) -> str:
        """What is embedded for retrieval: title and text."""
        return f"{self.title}\n{self.text}" if self.title else self.text

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "id": self.id,
            "text": self.text,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "title": self.title,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Chunk:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(obj["id"]),
            str(obj["text"]),
            str(obj["source"]),
            int(obj["start"]),
            int(obj["end"]),
            str(obj.get("title", "")),
        )


def _read_jsonl(path: Path, text_field: str, title_field: str) -> list[Document]:
    docs = []
    for lineno, line in enumerate(jsonl_lines(read_utf8(path)), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", path=path, row=lineno) from exc
        if not isinstance(obj, dict):
            raise DataError("each JSONL line must be an object", path=path, row=lineno)
        if text_field not in obj:
            available = ", ".join(repr(k) for k in obj)
            raise DataError(
                f"no {text_field!r} field; the record has {available}. Pass text_field= "
                "(CLI: --text-field) naming the field that holds the ticket text.",
                path=path,
                row=lineno,
            )
        text = str(obj[text_field] or "")
        if text.strip():
            title = str(obj.get(title_field) or "")
            docs.append(Document(text, f"{path}:{lineno}", "text", title))
    return docs


def read_documents(
    paths: str | Path | Sequence[str | Path],
    *,
    text_field: str = "text",
    title_field: str = "title",
) -> list[Document]:
    """Read Markdown, text and JSONL files (or every such file under a folder).

    Each JSONL line is one document (a past ticket), whose text is ``text_field``.

    Example:
        >>> docs = read_documents("manuals/")  # doctest: +SKIP
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files.extend(
                f
                for f in sorted(p.rglob("*"))
                if f.is_file()
                and f.suffix.lower() in _SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.is_file():
            if p.suffix.lower() not in _SUFFIXES:
                raise DataError(
                    f"unsupported document type {p.suffix!r}; use .md, .txt or .jsonl", path=p
                )
            files.append(p)
        else:
            raise DataError("no such file or folder; check the path", path=p)
    if not files:
        shown = ", ".join(str(i) for i in items)
        raise DataError(f"no .md, .txt or .jsonl documents found in {shown}")
    docs: list[Document] = []
    for f in files:
        kind = _SUFFIXES[f.suffix.lower()]
        if kind == "jsonl":
            docs.extend(_read_jsonl(f, text_field, title_field))
            continue
        text = read_utf8(f)  # CRLF kept (citation offsets), a byte-order mark dropped
        if text.strip():
            docs.append(Document(text, str(f), kind, f.stem))
    if not docs:
        raise DataError(f"all {len(files)} documents are empty")
    return docs


def _sections(doc: Document) -> Iterator[tuple[int, int, str]]:
    """(start, end, heading) of each heading-delimited section of a document."""
    if doc.kind != "markdown":
        yield 0, len(doc.text), doc.title
        return
    heads = headings(doc.text)
    if not heads or heads[0].start() > 0:
        yield 0, heads[0].start() if heads else len(doc.text), doc.title
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(doc.text)
        yield h.end(), end, h.group(2).strip()


def _pieces(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Paragraph spans in ``text[start:end]``, long paragraphs cut at sentence ends."""
    pos = start
    for brk in [*_PARAGRAPH_BREAK.finditer(text, start, end), None]:
        stop = brk.start() if brk is not None else end
        yield from _cut_long(text, pos, stop, max_chars)
        if brk is not None:
            pos = brk.end()


def _cut_long(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    while end - start > max_chars:
        window = text[start : start + max_chars]
        cuts = [m.start() for m in _SENTENCE_END.finditer(window)]
        cut = cuts[-1] if cuts and cuts[-1] > max_chars // 3 else window.rfind(" ")
        if cut <= 0:
            cut = max_chars
        yield start, start + cut
        start += cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        yield start, end


def chunk_documents(
    documents: Iterable[Document], *, max_chars: int = 800, min_chars: int = 1
) -> list[Chunk]:
    """Split documents into passages of at most ``max_chars`` characters.

    Paragraphs inside one section are packed together until ``max_chars``; a section
    boundary (a Markdown heading) always starts a new chunk. 800 characters is about
    180 MiniLM tokens, inside its 256-token window, so no chunk is truncated silently.
    """
    if max_chars < 50:
        raise ConfigError(f"max_chars must be >= 50, got {max_chars}")
    chunks: list[Chunk] = []
    for doc in documents:
        for sec_start, sec_end, title in _sections(doc):
            current: tuple[int, int] | None = None
            for p_start, p_end in _pieces(doc.text, sec_start, sec_end, max_chars):
                if current is not None and p_end - current[0] <= max_chars:
                    current = (current[0], p_end)
                    continue
                if current is not None:
                    chunks.append(_make_chunk(doc, *current, title))
                current = (p_start, p_end)
            if current is not None and current[1] - current[0] >= min_chars:
                chunks.append(_make_chunk(doc, *current, title))
    return chunks


def _make_chunk(doc: Document, start: int, end: int, title: str) -> Chunk:
    return Chunk(f"{doc.source}#{start}-{end}", doc.text[start:end], doc.source, start, end, title)
