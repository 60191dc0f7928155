"""Answer a visitor's question from the content store, or say honestly that we can't.

The policy decides *whether* to answer; this module finds *what* answers it: the integration page
for "do you integrate with X?", the pricing page for a price question, the best-matching section
of the best piece otherwise — or `unknown` when nothing in the content is close enough.

What a topic adds to the search (words, the content types that answer it, how much they are
favoured) is the playbook's `vocabulary.topics`, compiled once per playbook.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from knowledge.retrieve import Hit, LeadContext, best_sentences, keywords, plain_no

from .extract import Understanding, integrations_asked
from .playbook import Lexicon, Playbook, default_playbook

ANSWER_MIN_SIMILARITY = 0.83   # below this, the best chunk is about something else (measured on the sample)
ANSWER_MIN_SIMILARITY_ON_TOPIC = 0.80   # when the best chunk is also the right kind (pricing page for a price question)


class ContentStore(Protocol):
    """What the turn needs from the content store (knowledge.retrieve.KnowledgeBase implements it)."""

    def search(self, query: str, lead: LeadContext | None = None, k: int = 3, *, exclude_urls: Iterable[str] = (),
               types: Iterable[str] | None = None, prefer_types: dict[str, float] | None = None,
               stage: str | None = None) -> list[Hit]: ...

    def recommend(self, lead: LeadContext, topic: str, *, exclude_urls: Iterable[str] = (), stage: str | None = None,
                  types: Iterable[str] | None = None) -> Hit | None: ...

    def mentions(self, term: str) -> list[Hit]: ...

    def best_section(self, hit: Hit, question: str) -> tuple[str, str]: ...

    def headings(self, doc_id: str) -> list[str]: ...

    def integration_names(self) -> dict[str, str]: ...

    def available(self) -> bool: ...


@dataclass(frozen=True)
class Answer:
    question: str
    hit: Hit | None = None            # the content that answers it
    unknown: bool = False             # the content does not answer it
    integration: str | None = None    # "do you integrate with X?" — X
    template: str | None = None       # answered from the conversation or the playbook: this reply template ...
    values: tuple[tuple[str, Any], ...] = ()   # ... filled with these (a hit, if any, is what it quotes)


def answer_question(kb: ContentStore, question: str, u: Understanding, ctx: LeadContext, *,
                    playbook: Playbook | None = None) -> list[Answer]:
    """What answers `question`: the rows of the pages naming each tool asked about, else the best
    section of the best piece for the question and its topics (the playbook's; the default one's
    if not given), else honestly nothing — also while the store cannot be read (no tool is then
    said to be missing from the materials)."""
    pb = playbook or default_playbook()
    lex = pb.lexicon()
    about_meeting = meeting_answer(question, pb)
    if about_meeting is not None:
        return [about_meeting]   # about the call we offer: the playbook answers it, not the content
    if not kb.available():   # the store cannot be read now: not knowing, never "not in our materials"
        return [Answer(question, unknown=True)]
    targets = tools_asked(kb, question, u, lex)
    if targets:
        return _integration_answers(kb, question, targets)
    query = " ".join([question] + lex.expansions(u.topics))
    hits = kb.search(query, ctx, k=3, prefer_types=lex.prefer_types(u.topics))
    top = hits[0] if hits else None
    # the right kind of piece (pricing page for a price question), or the content's plain "no" to it
    on_topic = top is not None and (lex.answers_topic(top.type, u.topics) or plain_no(top.text, question) is not None)
    if top is not None and top.similarity >= (ANSWER_MIN_SIMILARITY_ON_TOPIC if on_topic else ANSWER_MIN_SIMILARITY):
        if on_topic or _overlaps(keywords(question), keywords(top.text + " " + top.title + " " + top.heading)):
            heading, text = kb.best_section(top, question)
            top.heading, top.text = heading, text
            top.snippet = best_sentences(text, question)
            if _asks_price(lex, question, u.topics, top.type) or ("price_ask" in u.intents and top.type == "pricing"):
                priced = [h for h in kb.headings(top.doc_id) if re.search(r"[$€£]\d|\bcustom\b", h, re.I)]
                if priced:
                    top.snippet = "; ".join(priced) + "."
            return [Answer(question, hit=top)]
    return [Answer(question, unknown=True)]


# Words a question about tools may have besides their names ("do you support Zoho?", "what about
# hubspot and gong", "we use SAP, will that work?"): with nothing else, the names are the question.
_TOOL_QUESTION_WORDS = ("integrat", "connect", "support", "sync", "work", "use", "using", "plug", "hook", "native",
                        "crm", "tool", "whats", "what's", "also", "both", "either", "available", "compatible",
                        "stack", "current", "currently", "run", "runs", "on", "ok", "okay")
MAX_TOOLS = 4   # tools answered in one reply; more than that is a list to send the integrations page for


def tools_asked(kb: Any, question: str, u: Understanding, lex: Lexicon) -> list[str]:
    """The tools `question` asks about, each once, in the order named, by the content's own name
    for it ("zoho" → "Zoho CRM"): what follows "integrate with", and the integrations the content
    names when the question is about them ("what about hubspot and gong", "Salesforce, Slack or
    Zoom?") — a tool in a list with them too ("hubspot + outreach"). A word the playbook knows as
    a topic or need ("hubspot and pricing?") is no tool."""
    known = dict(kb.integration_names()) if hasattr(kb, "integration_names") else {}
    by_lower = {k.lower(): v for k, v in known.items()}
    explicit = integrations_asked(question)
    named = integrations_asked(question, known=tuple(sorted(known, key=len, reverse=True))) if known else []
    found = [by_lower.get(t.lower(), t) for t in explicit + [t for t in named if t not in explicit]]
    out: list[str] = []
    for t in found:
        if t.lower() in (o.lower() for o in out) or (t not in known.values() and (
                lex.topics_in(t, question=True) or lex.is_need(t))):
            continue
        out.append(t)
    if not out or explicit or "integration" in u.topics:
        return out[:MAX_TOOLS]
    rest = keywords(question) - {w for t in named for w in keywords(t)}
    if all(w.startswith(_TOOL_QUESTION_WORDS) for w in rest):
        return out[:MAX_TOOLS]
    return []   # tools named in another question ("a case study from a Salesforce shop?")


def _integration_answers(kb: Any, question: str, targets: list[str]) -> list[Answer]:
    """Each tool asked about, answered: the tools a page names, quoted from it together (the
    integrations page first, then an FAQ) — its rows, or its plain "does not integrate" — and,
    for a tool our materials don't name, an honest "not in our materials"."""
    pages: dict[str, tuple[Hit, list[str], list[str]]] = {}
    unknown: list[str] = []
    for target in targets:
        mentions = kb.mentions(target)
        mentions.sort(key=lambda h: (h.type != "integration", h.type != "faq"))
        if not mentions:
            unknown.append(target)
            continue
        hit = mentions[0]
        page = pages.setdefault(hit.url or hit.doc_id, (hit, [], []))
        page[1].append(target)
        sentence = hit.snippet.strip()
        if sentence and sentence not in page[2]:
            page[2].append(sentence if re.search(r"[.!?]$", sentence) else sentence + ".")
    out = []
    for hit, names, sentences in pages.values():
        out.append(Answer(question, hit=dataclasses.replace(hit, snippet=" ".join(sentences)),
                          integration=", ".join(names)))
    out += [Answer(question, unknown=True, integration=t) for t in unknown[:2]]
    return out


def _asks_price(lex: Lexicon, question: str, topics: set[str], content_type: str) -> bool:
    """The question asks for a figure of a topic this piece answers (a price on the pricing page)."""
    for name in topics:
        t = lex.topic(name)
        if t is not None and t.price_asks is not None and content_type in t.answer_types \
                and t.price_asks.search(question):
            return True
    return False


def _overlaps(a: set[str], b: set[str]) -> bool:
    """Shared content words, counting 'on-prem' ~ 'on-premise' and 'integrate' ~ 'integrations'."""
    if a & b:
        return True
    return any(len(x) >= 5 and len(y) >= 5 and (x.startswith(y[:5]) and y.startswith(x[:5])) and (x.startswith(y) or y.startswith(x))
               for x in a for y in b)


# "How long is the call?", "what will we cover in the meeting?": about the meeting we offer.
_MEETING_RE = re.compile(r"\b(?:call|meeting|demo|intro|session|chat with (?:them|your team|sales))\b", re.I)
_MEETING_ASK_RE = re.compile(r"\b(?:how long|how many minutes|length|last|cover|covered|agenda|discuss|talk about|go over|expect|"
                             r"prepare|bring|who (?:will|would|is|'s) (?:be )?(?:on|in|join|there)|who joins)\b", re.I)
CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£"}


def meeting_answer(question: str, playbook: Playbook) -> Answer | None:
    """A question about the meeting we offer (its length, what it covers, who joins), answered
    from the playbook (template `meeting_answer`) — never searched in the content."""
    if not (_MEETING_RE.search(question) and _MEETING_ASK_RE.search(question)):
        return None
    return Answer(question, template="meeting_answer", values=(("minutes", playbook.meeting.length_minutes),))


def budget_answer(kb: Any, playbook: Playbook, budget: Any) -> Answer | None:
    """A stated budget below the playbook's price floor, answered honestly (template
    `budget_below_floor`): the floor, and the plans that fit, quoted with their prices from the
    pricing page. None when there is no floor, the budget is not a sum, or it is at or above it."""
    floor = playbook.pricing
    if floor is None or isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget >= floor.floor:
        return None
    sign = CURRENCY_SIGNS.get(floor.currency.upper(), floor.currency + " ")
    hits = kb.search("pricing plans price per user per month " + " ".join([floor.plan] + floor.fits), None, k=1,
                     types=["pricing"]) if kb is not None else []
    values = {"budget": f"{sign}{budget:,.0f}", "floor": f"{sign}{floor.floor:,.0f}", "plan": floor.plan,
              "period": floor.period, "fits": " or ".join(floor.fits) or "a smaller plan"}
    if not hits:
        return Answer("", template="budget_below_floor_plain", values=tuple(values.items()))
    hit = hits[0]
    plans = [h for h in kb.headings(hit.doc_id) if any(re.match(re.escape(p) + r"\b", h) for p in floor.fits)]
    hit.snippet = "; ".join(plans) + "." if plans else hit.snippet
    return Answer("", hit=hit, template="budget_below_floor", values=tuple(values.items()))
