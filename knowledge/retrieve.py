"""Retrieval and recommendation over the content store.

Top-k by meaning, then ranked with what we know about the lead: the lead's industry, persona and
funnel stage boost matching pieces, and a piece this lead already received is not recommended
again. One result per piece; each carries title, url, type and a snippet.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .embeddings import get_embeddings
from .index import ContentUnavailable, open_collection
from .ingest import IngestReport, ingest
from bot.settings import hide_url_password
from bot.text import word_pattern

STOPWORDS = set("""a an the and or but if of to in on for with at by from as is are was were be been being do does did
have has had i we you they he she it our your their my me us them this that these those what which who whom how why
when where can could would should will shall may might must about into over under than then so such not no yes any
all some more most much many very just also there here its it's i'm we're you're let get got want need like know
tell please thanks thank hi hello hey pipelark""".split())

# Tool names on an integration page: "| Salesforce | Two-way sync | All plans |", "**Gong**: imports…",
# "Pipelark does not integrate with Zoho CRM, Microsoft Dynamics 365 or SAP."
_ROW_RE = re.compile(r"^\|\s*([^|\n]+?)\s*\|", re.M)
_BOLD_RE = re.compile(r"\*\*([^*\n]{2,40})\*\*")
_NOT_WITH_RE = re.compile(r"(?:not|n't)\s+(?:integrate|connect|sync|work)\w*\s+with\s+([^.\n]+)", re.I)
_TOOL_NAME_RE = re.compile(r"[A-Z][\w.&+'-]*(?:\s+[A-Z0-9][\w.&+'-]*){0,3}")
_NOT_TOOLS = {"integration", "integrations", "teams", "calendar", "api", "crm", "data", "plans", "all plans", "what",
              "there", "pipelark", "settings", "enterprise", "growth", "starter", "sheets", "drive", "the"}

# A yes/no question ("can we self-host it?", "do you have a free plan?") is answered best by the
# content's plain "no" when it has one: a negative statement sharing the question's words.
_YES_NO_RE = re.compile(r"^\W*(?:do|does|did|is|are|was|can|could|will|would|have|has|any|so)\b", re.I)
_NEGATIVE_RE = re.compile(r"^\W*(?:no|there (?:is|are) no)\b|\b(?:do|does|is|are|can|will|we)\s*(?:n't|not)\b|"
                          r"\b(?:don't|doesn't|isn't|aren't|can't|cannot|never|won't)\b", re.I)


def plain_no(text: str, question: str) -> str | None:
    """The sentence of `text` that says no to the yes/no `question` in its words, if any."""
    if not _YES_NO_RE.search(question):
        return None
    q = keywords(question)
    for s in re.split(r"(?<=[.!?])\s+|\n+", re.sub(r"[*_`>#|]", " ", text)):
        s = s.strip(" -•")
        if _NEGATIVE_RE.search(s) and q & keywords(s):
            return s.strip(" -•")
    return None


# What content suits a lead at each stage of the funnel.
STAGE_FOR_LEAD = {"new": "awareness", "engaged": "consideration", "mql": "consideration", "human": "consideration",
                  "sql": "decision", "meeting_booked": "decision", "disqualified": "awareness"}


@dataclass
class Hit:
    title: str
    url: str
    type: str
    snippet: str
    score: float
    similarity: float
    text: str
    heading: str = ""
    doc_id: str = ""
    industries: list[str] = field(default_factory=list)
    personas: list[str] = field(default_factory=list)
    stage: str = ""
    why: list[str] = field(default_factory=list)

    def source(self) -> dict[str, str]:
        return {"title": self.title, "url": self.url, "type": self.type}


@dataclass
class LeadContext:
    industry: str | None = None
    persona: str | None = None
    stage: str | None = None   # the lead's funnel stage (new, engaged, mql, sql...)


def keywords(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9][a-z0-9$%.+-]*", text.lower())
    out = set()
    for w in words:
        w = w.strip(".-")
        if len(w) > 2 and w not in STOPWORDS:
            out.add(w)
            if w.endswith("s") and len(w) > 4:
                out.add(w[:-1])
            if "-" in w:   # a compound counts as its parts too ("free-forever" ~ "free", "self-hosted" ~ "self")
                out.update(p for p in w.split("-") if len(p) > 2 and p not in STOPWORDS)
    return out


def best_sentences(text: str, query: str, n: int = 2, max_chars: int = 360) -> str:
    """The sentences of a chunk that answer the query best, in their original order."""
    flat = re.sub(r"\s+", " ", re.sub(r"[*_`>#|]", " ", text)).strip()
    sentences = [s.strip(" -•") for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9$\"“(])|\s+-\s+(?=\*?\*?[A-Z])", flat) if len(s.strip()) > 2]
    if not sentences:
        return flat[:max_chars]
    q = keywords(query)
    scored = []
    for i, s in enumerate(sentences):
        k = keywords(s)
        overlap = len(q & k)
        numbers = 0.5 if re.search(r"\d", s) and re.search(r"\b(?:how much|price|cost|pricing|how many|%|accuracy)\b", query.lower()) else 0.0
        no = 1.0 if overlap and _NEGATIVE_RE.search(s.strip(" -•")) and _YES_NO_RE.search(query) else 0.0
        scored.append((overlap + numbers + no - i * 0.01, i, s))
    top = sorted(scored, reverse=True)[:n]
    chosen = [s for _, _, s in sorted(top, key=lambda t: t[1])]
    out = " ".join(chosen)
    if len(out) > max_chars:
        out = out[: max_chars].rsplit(" ", 1)[0] + "…"
    return out


log = logging.getLogger("sdr.content")
RETRY_OPEN_S = 10.0   # after the store failed to open, turns answer without it this long before it is tried again


class KnowledgeBase:
    """The content store: one per process, holding the embedder and the collection.

    Reads degrade instead of failing a turn: when the store cannot be opened or read, `search` and
    the lookups find nothing (the turn says it does not know and offers a person), the cause is
    logged, `status()` says "unavailable" with it, and the open is tried again RETRY_OPEN_S later.
    Writes (`ingest`) and `count` raise ContentUnavailable: they are the operator's."""

    def __init__(self, settings: Any, embedder: Any | None = None):
        self.settings = settings
        self.embedder = embedder or get_embeddings(settings.embedding_provider, settings.embedding_model, settings)
        self._collection: Any = None
        self._open_lock = threading.Lock()
        self._failed_at: float | None = None
        self.unavailable: str | None = None   # why the store could not be opened or read, until it can
        self._corpus: dict[str, tuple[str, dict[str, Any]]] | None = None
        self._corpus_lock = threading.Lock()
        self._kw: dict[str, tuple[set[str], set[str]]] = {}
        self._sections: dict[str, list[tuple[str, str]]] | None = None
        self._tools: dict[str, str] | None = None

    @property
    def collection(self) -> Any:
        """The Chroma collection, opened on first use (importing chromadb and opening the store is
        ~1.4 s on 2 cores: a server worker does it in the background once it takes requests, and a
        turn that needs content meanwhile waits here for it). Raises ContentUnavailable when it cannot
        be opened, at once for RETRY_OPEN_S after a failed try, then tries again."""
        if self._collection is None:
            with self._open_lock:
                if self._collection is None:
                    if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_OPEN_S:
                        raise ContentUnavailable(self.unavailable or "the content store could not be opened")
                    try:
                        self._collection = open_collection(self.settings, self.embedder)
                    except Exception as e:  # noqa: BLE001 - chromadb, httpx, OS errors: the store is a boundary
                        self._failed_at = time.monotonic()
                        raise self._failed("opened", e) from e
                    self._failed_at = None
                    self._recovered()
        return self._collection

    def _failed(self, doing: str, e: Exception) -> ContentUnavailable:
        where = f"the Chroma server at SDR_CHROMA_URL={hide_url_password(self.settings.chroma_url)}" \
            if self.settings.chroma_url \
            else f"the store in {self.settings.chroma_dir}"
        reason = (f"the content store could not be {doing} ({type(e).__name__}: {str(e)[:200]}); check {where}; "
                  "turns answer without content meanwhile")
        if reason != self.unavailable:
            log.error("%s", reason)
        self.unavailable = reason
        return ContentUnavailable(reason)

    def available(self) -> bool:
        """Whether the store can be read now: opens it if needed (waiting for a worker's background
        open); False while it cannot be opened or read."""
        return bool(self._load_corpus()) or self.unavailable is None

    def status(self) -> dict[str, Any]:
        """For /healthz, without waiting: {"content": "ready", "content_chunks": n} once the store is
        open, {"content": "opening", "content_chunks": None} while a worker opens it, or
        {"content": "unavailable", "content_chunks": None, "content_error": why}."""
        if self._collection is None:
            if self.unavailable:
                return {"content": "unavailable", "content_chunks": None, "content_error": self.unavailable}
            return {"content": "opening", "content_chunks": None}
        corpus = self._corpus
        if corpus is not None:
            return {"content": "ready", "content_chunks": len(corpus)}
        try:
            return {"content": "ready", "content_chunks": self.count()}
        except ContentUnavailable as e:
            return {"content": "unavailable", "content_chunks": None, "content_error": str(e)}

    # -- ingest -----------------------------------------------------------------------------

    def ingest(self, paths: Iterable[str | Path], *, prune: bool = False, progress: bool = True) -> IngestReport:
        report = ingest(paths, self.collection, self.embedder, prune=prune, progress=progress)
        self._forget_corpus()
        return report

    def count(self) -> int:
        """The chunks in the store. Raises ContentUnavailable when it cannot be opened or read."""
        try:
            return int(self.collection.count())
        except ContentUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - a Chroma server gone after the open
            raise self._failed("read", e) from e

    def warm(self) -> None:
        """Do now what the first search would pay for: the chunks' text and metadata into memory and
        one query through the index (~2.5 s at 10k chunks on 2 busy cores). The embedder warms itself
        when it loads. A server's worker runs it in the background once it takes requests."""
        if self._load_corpus():
            self.search("warm up")

    def _forget_corpus(self) -> None:
        with self._corpus_lock:
            self._corpus, self._sections, self._kw, self._tools = None, None, {}, None

    def _load_corpus(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every chunk by id, read once; empty (and not kept) while the store is unavailable."""
        with self._corpus_lock:
            if self._corpus is None:
                try:
                    got = self.collection.get(include=["documents", "metadatas"])
                except ContentUnavailable:
                    return {}
                except Exception as e:  # noqa: BLE001 - a Chroma server gone after the open
                    self._failed("read", e)
                    return {}
                self._corpus = {i: (d or "", m or {}) for i, d, m in
                                zip(got["ids"], got["documents"] or [], got["metadatas"] or [])}
                self._recovered()
            return self._corpus

    def _query(self, **kwargs: Any) -> dict[str, Any] | None:
        """The index's nearest chunks (Chroma's `query`), or None while the store is unavailable."""
        try:
            res = self.collection.query(**kwargs)
        except ContentUnavailable:
            return None
        except Exception as e:  # noqa: BLE001 - a Chroma server gone after the open
            self._failed("read", e)
            return None
        self._recovered()
        return res

    def _recovered(self) -> None:
        """A read worked: a store that had failed is available again (said once)."""
        if self.unavailable is not None:
            self.unavailable = None
            log.warning("the content store is available again")

    def corpus(self) -> list[tuple[str, dict[str, Any]]]:
        """Every chunk's text and metadata, held in memory once per process (for exact lookups,
        grounding, and ranking without fetching metadata from the store on every query)."""
        return list(self._load_corpus().values())

    def _words(self, chunk_id: str, heading: str, text: str) -> tuple[set[str], set[str]]:
        got = self._kw.get(chunk_id)
        if got is None:
            got = (keywords(heading), keywords(text))
            if len(self._kw) < 200_000:
                self._kw[chunk_id] = got
        return got

    def _chunks(self, ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
        corpus = self._load_corpus()
        if any(i not in corpus for i in ids):   # another process ingested since we loaded: reload once
            self._forget_corpus()
            corpus = self._load_corpus()
        return [corpus.get(i, ("", {})) for i in ids]

    def mentions(self, term: str) -> list[Hit]:
        """Pieces whose text names `term` (case-insensitive, whole words): what we really say about it."""
        rx = word_pattern(term.strip(), ignore_case=True)
        hits: dict[str, Hit] = {}
        for text, meta in self._load_corpus().values():
            if rx.search(text) or rx.search(meta.get("title", "")):
                sentence = next((s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if rx.search(s)), text[:200])
                doc = meta.get("doc_id", "")
                if doc not in hits:
                    if sentence.count("|") >= 2:   # a table row: "| Salesforce | Two-way sync | All plans |"
                        sentence = " — ".join(c.strip() for c in sentence.strip().strip("|").split("|") if c.strip())
                    hits[doc] = self._hit(text, meta, 1.0, re.sub(r"[*_`#>|]", "", sentence).strip(" -•"))
        return list(hits.values())

    def integration_names(self) -> dict[str, str]:
        """The tools the integration pages name — a table row's first cell, a bolded item, each
        tool of a "does not integrate with A, B or C" sentence — as {name or short name: name}
        ("Zoho" → "Zoho CRM", "Dynamics" → "Microsoft Dynamics 365"); read once per load."""
        with self._corpus_lock:
            cached = self._tools
        if cached is not None:
            return cached
        names: dict[str, str] = {}
        for text, meta in self._load_corpus().values():
            if meta.get("type") != "integration":
                continue
            found = [m.group(1) for m in _ROW_RE.finditer(text)] + [m.group(1) for m in _BOLD_RE.finditer(text)]
            for m in _NOT_WITH_RE.finditer(text):
                found += re.split(r"\s*,\s*|\s+(?:or|and)\s+", m.group(1))
            for raw in found:
                name = re.sub(r"[*_`]", "", raw).strip(" .")
                if not _TOOL_NAME_RE.fullmatch(name) or name.lower() in _NOT_TOOLS:
                    continue
                names.setdefault(name, name)
                core = re.sub(r"^(?:microsoft|oracle|google|sap)\s+|\s+(?:crm|365)$", "", name, flags=re.I)
                core = re.sub(r"\s+(?:crm|365)$", "", core, flags=re.I)
                if core != name and len(core) >= 4 and core.lower() not in _NOT_TOOLS:
                    names.setdefault(core, name)
        with self._corpus_lock:
            self._tools = names
        return names

    def headings(self, doc_id: str) -> list[str]:
        """The section headings of one piece, in order (e.g. the plans and prices of a pricing page)."""
        return [h for h, _ in self.sections(doc_id) if h]

    def sections(self, doc_id: str) -> list[tuple[str, str]]:
        """(heading, text) of each section of one piece, in order; indexed by piece once per load."""
        corpus = self._load_corpus()
        with self._corpus_lock:
            if self._sections is None:
                by_doc: dict[str, list[tuple[int, str, str]]] = {}
                for text, meta in corpus.values():
                    by_doc.setdefault(meta.get("doc_id", ""), []).append((int(meta.get("chunk", 0)), meta.get("heading", ""), text))
                self._sections = {}
                for doc, chunks in by_doc.items():
                    out: list[tuple[str, str]] = []
                    for _, heading, text in sorted(chunks):
                        if out and out[-1][0] == heading:
                            out[-1] = (heading, out[-1][1] + "\n\n" + text)
                        else:
                            out.append((heading, text))
                    self._sections[doc] = out
            return self._sections.get(doc_id, [])

    def best_section(self, hit: Hit, question: str) -> tuple[str, str]:
        """The section of the hit's piece whose heading and words match the question best
        (meaning picks the piece; the question's own words pick the part of it to quote)."""
        q = keywords(question)

        def score(heading: str, text: str) -> int:
            return 2 * len(q & keywords(heading)) + len(q & keywords(text)) + (1 if plain_no(text, question) else 0)

        best = (hit.heading, hit.text)
        best_score = score(*best)
        for heading, text in self.sections(hit.doc_id):
            sc = score(heading, text)
            if sc > best_score:
                best, best_score = (heading, text), sc
        return best

    # -- retrieval --------------------------------------------------------------------------

    def _hit(self, text: str, meta: dict[str, Any], sim: float, snippet: str) -> Hit:
        return Hit(
            title=meta.get("title", ""), url=meta.get("url", ""), type=meta.get("type", ""), snippet=snippet,
            score=sim, similarity=sim, text=text, heading=meta.get("heading", ""), doc_id=meta.get("doc_id", ""),
            industries=[x for x in meta.get("industries", "").split("|") if x],
            personas=[x for x in meta.get("personas", "").split("|") if x], stage=meta.get("stage", ""),
        )

    def search(self, query: str, lead: LeadContext | None = None, k: int = 3, *,
               exclude_urls: Iterable[str] = (), types: Iterable[str] | None = None,
               prefer_types: dict[str, float] | None = None, stage: str | None = None) -> list[Hit]:
        """Best pieces for a query, boosted by the lead's industry, persona and stage; one hit per
        piece. `types` and `stage` (a funnel stage: awareness, consideration, decision) keep only
        pieces of those types and that stage."""
        lead = lead or LeadContext()
        excluded = set(exclude_urls)
        n = len(self._load_corpus())
        if n == 0 or not query.strip():
            return []
        qv = self.embedder.embed_query_np(query)
        wanted = set(types) if types else None

        def keep(meta: dict[str, Any]) -> bool:
            return (wanted is None or meta.get("type") in wanted) and (stage is None or meta.get("stage") == stage)
        # Ask the index for ids and distances only (metadata comes from memory), and filter types
        # here: a `where` filter makes Chroma scan and costs ~25 ms at 10k chunks.
        res = self._query(query_embeddings=[qv], n_results=min(n, max(32, k * 10)), include=["distances"])
        if res is None:
            return []
        ids, dists = res["ids"][0], res["distances"][0]
        rows = list(zip(ids, self._chunks(ids), dists))
        def pieces(rs: list[Any]) -> int:   # distinct pieces the caller may still get
            return len({(m or {}).get("doc_id") or (m or {}).get("url") for _, (_t, m), _d in rs
                        if (m or {}).get("url") not in excluded})

        if wanted or stage:
            rows = [r for r in rows if keep(r[1][1] or {})]
            if pieces(rows) < k:   # few unsent pieces of the wanted types near the query: ask the index for them
                conds: list[dict[str, Any]] = ([{"type": {"$in": sorted(wanted)}}] if wanted else []) + \
                    ([{"stage": stage}] if stage else [])
                res = self._query(query_embeddings=[qv], n_results=min(n, max(24, k * 8)),
                                  where=conds[0] if len(conds) == 1 else {"$and": conds}, include=["distances"])
                if res is None:
                    return []
                rows = list(zip(res["ids"][0], self._chunks(res["ids"][0]), res["distances"][0]))
        best: dict[str, Hit] = {}
        want_stage = STAGE_FOR_LEAD.get(lead.stage or "", None)
        q_words = keywords(query)
        for chunk_id, (text, meta), dist in rows:
            meta = meta or {}
            if meta.get("url") in excluded:
                continue
            sim = 1.0 - float(dist)
            hit = self._hit(text or "", meta, sim, "")
            score = sim
            if lead.industry and lead.industry in hit.industries:
                score += 0.05
                hit.why.append(f"industry {lead.industry}")
            elif lead.industry and "all" not in hit.industries and hit.type == "case_study":
                score -= 0.02
            if lead.persona and lead.persona in hit.personas:
                score += 0.015
                hit.why.append(f"persona {lead.persona}")
            if want_stage and hit.stage == want_stage:
                score += 0.01
                hit.why.append(f"stage {want_stage}")
            if prefer_types and hit.type in prefer_types:
                score += prefer_types[hit.type]
            # a little lexical evidence on top of meaning: the words of the question in the heading or text
            head_words, text_words = self._words(chunk_id, hit.heading, text)
            score += min(0.04, 0.02 * len(q_words & head_words)) + min(0.02, 0.005 * len(q_words & text_words))
            hit.score = score
            key = hit.doc_id or hit.url or hit.title
            if key not in best or best[key].score < score:
                best[key] = hit
        ranked = sorted(best.values(), key=lambda h: h.score, reverse=True)[:k]
        for h in ranked:
            h.snippet = best_sentences(h.text, query)
        return ranked

    def recommend(self, lead: LeadContext, topic: str, *, exclude_urls: Iterable[str] = (), stage: str | None = None,
                  types: Iterable[str] | None = None) -> Hit | None:
        """The next piece to send this lead: their industry's case study first, never one they got
        (`exclude_urls`). `stage` keeps only pieces of that funnel stage (a nurture step's), `types`
        only those content types (default: case studies, guides, ebooks, webinars, ROI calculators).
        None when nothing is left."""
        prefer = {"case_study": 0.04} if lead.industry else {"guide": 0.02, "ebook": 0.02, "webinar": 0.02, "case_study": 0.01}
        query = topic.strip() or "how teams improve forecast accuracy and pipeline visibility"
        hits = self.search(query, lead, k=3, exclude_urls=exclude_urls, stage=stage,
                           types=list(types) if types else ["case_study", "guide", "ebook", "webinar", "roi_calculator"],
                           prefer_types=prefer)
        return hits[0] if hits else None

    def as_langchain_vectorstore(self) -> Any:
        """The same collection as a LangChain `Chroma` vector store (for chains and agents)."""
        from langchain_chroma import Chroma

        from .embeddings import langchain_embeddings
        from .index import _client, collection_name
        return Chroma(client=_client(self.settings), collection_name=collection_name(self.embedder),
                      embedding_function=langchain_embeddings(self.embedder))
