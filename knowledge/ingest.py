"""Ingest content: Markdown (with YAML front matter), HTML, plain text and PDF → chunks → vectors.

Idempotent: a piece is identified by its url (or its path when it has none), each chunk by the
piece and its position; ingesting again re-embeds only chunks whose text changed, removes chunks
a shorter version no longer has, and `prune=True` removes pieces that are gone.
"""
from __future__ import annotations

import hashlib
import html
import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable

import yaml

CONTENT_TYPES = ("case_study", "guide", "ebook", "webinar", "pricing", "faq", "integration", "roi_calculator")
FUNNEL_STAGES = ("awareness", "consideration", "decision")
EXTENSIONS = {".md", ".markdown", ".html", ".htm", ".txt", ".pdf"}
SAMPLE_DIR = Path(__file__).with_name("sample")


class IngestError(ValueError):
    """One file could not be ingested; the message names the file and what is wrong."""


@dataclass
class Document:
    doc_id: str
    path: str
    title: str
    type: str
    industries: list[str]
    personas: list[str]
    stage: str
    url: str
    body: str


@dataclass
class Chunk:
    id: str
    text: str
    heading: str
    index: int
    hash: str


@dataclass
class IngestReport:
    files: int = 0
    documents: int = 0
    chunks_embedded: int = 0
    chunks_unchanged: int = 0
    chunks_removed: int = 0
    documents_pruned: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    prune_skipped: bool = False     # --prune was asked but a path or file failed: nothing was pruned

    def summary(self) -> str:
        s = (f"{self.documents} documents from {self.files} files: {self.chunks_embedded} chunks embedded, "
             f"{self.chunks_unchanged} unchanged, {self.chunks_removed} removed")
        if self.documents_pruned:
            s += f", {self.documents_pruned} documents pruned"
        if self.seconds:
            s += f" in {self.seconds:.1f}s"
        if self.errors:
            s += f"; {len(self.errors)} path(s) or file(s) skipped with errors"
        if self.prune_skipped:
            s += "; nothing pruned, because not every path and file could be read (fix them and run again)"
        return s


# ---------------------------------------------------------------------------------------------
# Reading files


def _as_list(value: Any, key: str, path: Path) -> list[str]:
    if value is None:
        return ["all"]
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise IngestError(f"{path}: front matter '{key}' must be a list of words, e.g. {key}: [healthcare, saas]")
    return [str(v).strip().lower() for v in value if str(v).strip()] or ["all"]


def parse_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    if not text.startswith("---"):
        return {}, text
    m = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)", text, re.S)
    if not m:
        raise IngestError(f"{path}: front matter starts with '---' but has no closing '---' line")
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 2})" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise IngestError(f"{path}: front matter is not valid YAML{line}: {problem}") from None
    if not isinstance(meta, dict):
        raise IngestError(f"{path}: front matter must be 'key: value' lines, got {type(meta).__name__}")
    return meta, text[m.end():]


def _doc_from_meta(path: Path, meta: dict[str, Any], body: str, default_title: str) -> Document:
    title = meta.get("title") or default_title
    if not isinstance(title, str):
        raise IngestError(f"{path}: front matter 'title' must be text")
    ctype = str(meta.get("type") or "guide").strip().lower()
    if ctype not in CONTENT_TYPES:
        raise IngestError(f"{path}: front matter 'type: {ctype}' is not one of {', '.join(CONTENT_TYPES)}")
    stage = str(meta.get("stage") or "awareness").strip().lower()
    if stage not in FUNNEL_STAGES:
        raise IngestError(f"{path}: front matter 'stage: {stage}' is not one of {', '.join(FUNNEL_STAGES)}")
    url = meta.get("url")
    if url is not None and (not isinstance(url, str) or not re.match(r"^(https?://|/)", url)):
        raise IngestError(f"{path}: front matter 'url' must start with http://, https:// or /, got {url!r}")
    unknown = set(meta) - {"title", "type", "industries", "personas", "stage", "url", "date", "author", "tags", "description"}
    if unknown:
        raise IngestError(f"{path}: unknown front matter key(s) {', '.join(sorted(unknown))}; "
                          "expected title, type, industries, personas, stage, url")
    resolved = str(path.resolve())
    return Document(
        doc_id=url or resolved, path=resolved, title=title.strip(), type=ctype,
        industries=_as_list(meta.get("industries"), "industries", path),
        personas=_as_list(meta.get("personas"), "personas", path),
        stage=stage, url=url or "", body=body,
    )


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "nav", "footer", "header", "noscript", "svg"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self.meta: dict[str, str] = {}
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in ("h1", "h2", "h3"):
            self.parts.append("\n\n## ")
        elif tag in ("p", "li", "br", "div", "tr"):
            self.parts.append("\n")
        elif tag == "meta":
            a = dict(attrs)
            name = (a.get("name") or a.get("property") or "").lower().replace("sdr:", "")
            if name in ("type", "industries", "personas", "stage", "url") and a.get("content"):
                self.meta[name] = a["content"] or ""

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        elif tag == "title":
            self._in_title = False
        elif tag in ("h1", "h2", "h3", "p", "li"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def load_document(path: Path) -> Document:
    """Read one file into a Document, or raise IngestError naming the file and the problem."""
    suffix = path.suffix.lower()
    default_title = path.stem.replace("-", " ").replace("_", " ").strip().capitalize()
    if suffix == ".pdf":
        try:
            from pypdf import PdfReader
        except ImportError:  # pragma: no cover - pypdf is a dependency
            raise IngestError(f"{path}: reading PDF needs the 'pypdf' package (pip install pypdf)") from None
        try:
            reader = PdfReader(str(path))
            body = "\n\n".join((page.extract_text() or "") for page in reader.pages)
            title = (reader.metadata.title if reader.metadata and reader.metadata.title else None) or default_title
        except Exception as e:  # noqa: BLE001 - any parser failure is this file's problem
            raise IngestError(f"{path}: could not read PDF: {e}") from None
        if not body.strip():
            raise IngestError(f"{path}: the PDF has no extractable text (scanned images are not supported)")
        return _doc_from_meta(path, {"title": title}, body, default_title)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise IngestError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    if suffix in (".html", ".htm"):
        parser = _HTMLText()
        parser.feed(text)
        body = html.unescape("".join(parser.parts))
        meta: dict[str, Any] = dict(parser.meta)
        meta["title"] = parser.title.strip() or default_title
        return _doc_from_meta(path, meta, body, default_title)
    meta, body = parse_front_matter(text, path)
    if suffix in (".md", ".markdown") and "title" not in meta:
        h1 = re.search(r"^#\s+(.+)$", body, re.M)
        if h1:
            meta["title"] = h1.group(1).strip()
    return _doc_from_meta(path, meta, body, default_title)


# ---------------------------------------------------------------------------------------------
# Chunking: by heading, then paragraphs packed up to a size


def chunk_document(doc: Document, max_chars: int = 900) -> list[Chunk]:
    sections: list[tuple[str, str]] = []
    heading = ""
    buf: list[str] = []
    for line in doc.body.splitlines():
        m = re.match(r"^#{1,4}\s+(.*)$", line)
        if m:
            if "".join(buf).strip():
                sections.append((heading, "\n".join(buf).strip()))
            heading, buf = m.group(1).strip(), []
        else:
            buf.append(line)
    if "".join(buf).strip():
        sections.append((heading, "\n".join(buf).strip()))
    chunks: list[Chunk] = []
    for heading, text in sections:
        paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        piece = ""
        for p in paras:
            while len(p) > max_chars:  # a single huge paragraph: cut at a sentence end
                cut = p.rfind(". ", 0, max_chars)
                cut = cut + 1 if cut > max_chars // 3 else max_chars
                if piece:
                    chunks.append(_chunk(doc, heading, piece, len(chunks)))
                    piece = ""
                chunks.append(_chunk(doc, heading, p[:cut].strip(), len(chunks)))
                p = p[cut:].strip()
            if piece and len(piece) + len(p) + 2 > max_chars:
                chunks.append(_chunk(doc, heading, piece, len(chunks)))
                piece = ""
            piece = f"{piece}\n\n{p}" if piece else p
        if piece:
            chunks.append(_chunk(doc, heading, piece, len(chunks)))
    return chunks


def _chunk(doc: Document, heading: str, text: str, index: int) -> Chunk:
    cid = hashlib.sha1(f"{doc.doc_id}#{index}".encode()).hexdigest()[:24]
    h = hashlib.sha1(f"{doc.title}\n{heading}\n{text}\n{doc.type}|{doc.industries}|{doc.personas}|{doc.stage}|{doc.url}".encode()).hexdigest()
    return Chunk(id=cid, text=text, heading=heading, index=index, hash=h)


def embedding_text(doc_title: str, heading: str, text: str) -> str:
    """What the model sees: the title and heading give a chunk its context."""
    return f"{doc_title}. {heading}. {text}" if heading else f"{doc_title}. {text}"


def _meta(doc: Document, ch: Chunk) -> dict[str, Any]:
    return {
        "doc_id": doc.doc_id, "title": doc.title, "type": doc.type, "stage": doc.stage, "url": doc.url,
        "industries": "|" + "|".join(doc.industries) + "|", "personas": "|" + "|".join(doc.personas) + "|",
        "heading": ch.heading, "chunk": ch.index, "hash": ch.hash, "path": doc.path,
    }


# ---------------------------------------------------------------------------------------------


def iter_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    files: list[Path] = []
    errors: list[tuple[str, str]] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in EXTENSIONS
                                and not f.name.startswith(".") and f.name.lower() != "readme.md"))
        elif p.is_file():
            if p.suffix.lower() in EXTENSIONS:
                files.append(p)
            else:
                errors.append((str(p), f"{p}: unsupported file type {p.suffix or '(none)'}; use .md, .html, .txt or .pdf"))
        else:
            errors.append((str(p), f"{p}: no such file or folder"))
    return files, errors


def ingest(paths: Iterable[str | Path], collection: Any, embedder: Any, *, prune: bool = False,
           progress: bool = True, batch_size: int = 64) -> IngestReport:
    import time

    from tqdm import tqdm

    t0 = time.perf_counter()
    report = IngestReport()
    files, report.errors = iter_files(paths)
    report.files = len(files)
    seen_docs: set[str] = set()
    # Changed chunks of several pieces are embedded together, `batch_size` at a time: the engine runs a
    # batch's texts in parallel (a piece alone often has 2-5 chunks, too few to keep the cores busy).
    # A piece's stale chunks are deleted only after its new ones are stored.
    pending: list[tuple[Document, Chunk]] = []
    stale_after: list[str] = []

    def flush() -> None:
        if pending:
            vecs = embedder.embed_documents_np([embedding_text(d.title, c.heading, c.text) for d, c in pending])
            collection.upsert(ids=[c.id for _, c in pending], embeddings=[v for v in vecs],
                              documents=[c.text for _, c in pending], metadatas=[_meta(d, c) for d, c in pending])
            report.chunks_embedded += len(pending)
            pending.clear()
        if stale_after:
            collection.delete(ids=sorted(stale_after))
            report.chunks_removed += len(stale_after)
            stale_after.clear()

    bar = tqdm(files, desc="ingest", unit="file", disable=not progress, file=sys.stderr)
    for path in bar:
        bar.set_postfix_str(path.name[:30])
        try:
            doc = load_document(path)
        except IngestError as e:
            report.errors.append((str(path), str(e)))
            continue
        if doc.doc_id in seen_docs:
            report.errors.append((str(path), f"{path}: url {doc.url} is already used by another file in this run; skipped"))
            continue
        seen_docs.add(doc.doc_id)
        report.documents += 1
        chunks = chunk_document(doc)
        existing = collection.get(where={"doc_id": doc.doc_id}, include=["metadatas"])
        old = {i: (m or {}).get("hash") for i, m in zip(existing["ids"], existing["metadatas"] or [])}
        changed = [c for c in chunks if old.get(c.id) != c.hash]
        report.chunks_unchanged += len(chunks) - len(changed)
        pending.extend((doc, c) for c in changed)
        stale_after.extend(set(old) - {c.id for c in chunks})
        if len(pending) >= batch_size:
            flush()
    flush()
    if prune and report.errors:
        report.prune_skipped = True   # a typo'd path or a broken file must not wipe what it would have replaced
    elif prune:
        everything = collection.get(include=["metadatas"])
        gone_ids = [i for i, m in zip(everything["ids"], everything["metadatas"] or []) if (m or {}).get("doc_id") not in seen_docs]
        gone_docs = {(m or {}).get("doc_id") for i, m in zip(everything["ids"], everything["metadatas"] or []) if i in set(gone_ids)}
        if gone_ids:
            collection.delete(ids=gone_ids)
            report.chunks_removed += len(gone_ids)
            report.documents_pruned = len(gone_docs)
    report.seconds = time.perf_counter() - t0
    return report
