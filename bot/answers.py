"""Answer a visitor's question from the content store, or say honestly that we can't.

The policy decides *whether* to answer; this module finds *what* answers it: the integration page
for "do you integrate with X?", the pricing page for a price question, the best-matching section
of the best piece otherwise — or `unknown` when nothing in the content is close enough.

What a topic adds to the search (words, the content types that answer it, how much they are
favoured) is the playbook's `vocabulary.topics`, compiled once per playbook.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from knowledge.retrieve import Hit, LeadContext, best_sentences, keywords

from .extract import Understanding, integrations_asked
from .playbook import Lexicon, Playbook, default_playbook

ANSWER_MIN_SIMILARITY = 0.83   # below this, the best chunk is about something else (measured on the sample)
ANSWER_MIN_SIMILARITY_ON_TOPIC = 0.80   # when the best chunk is also the right kind (pricing page for a price question)


class ContentStore(Protocol):
    """What the turn needs from the content store (knowledge.retrieve.KnowledgeBase implements it)."""

    def search(self, query: str, lead: LeadContext | None = None, k: int = 3, *, exclude_urls: Iterable[str] = (),
               types: Iterable[str] | None = None, prefer_types: dict[str, float] | None = None) -> list[Hit]: ...

    def recommend(self, lead: LeadContext, topic: str, *, exclude_urls: Iterable[str] = ()) -> Hit | None: ...

    def mentions(self, term: str) -> list[Hit]: ...

    def best_section(self, hit: Hit, question: str) -> tuple[str, str]: ...

    def headings(self, doc_id: str) -> list[str]: ...


@dataclass(frozen=True)
class Answer:
    question: str
    hit: Hit | None = None            # the content that answers it
    unknown: bool = False             # the content does not answer it
    integration: str | None = None    # "do you integrate with X?" — X


def answer_question(kb: ContentStore, question: str, u: Understanding, ctx: LeadContext, *,
                    playbook: Playbook | None = None) -> list[Answer]:
    """What answers `question`: the pages naming the tools asked about, else the best section of
    the best piece for the question and its topics (the playbook's; the default one's if not given)."""
    targets = [t for t in integrations_asked(question) if t] if u.integrations_asked else []
    if targets:
        return [_integration_answer(kb, question, target) for target in targets[:2]]
    lex = (playbook or default_playbook()).lexicon()
    query = " ".join([question] + lex.expansions(u.topics))
    hits = kb.search(query, ctx, k=3, prefer_types=lex.prefer_types(u.topics))
    top = hits[0] if hits else None
    on_topic = top is not None and lex.answers_topic(top.type, u.topics)
    if top is not None and top.similarity >= (ANSWER_MIN_SIMILARITY_ON_TOPIC if on_topic else ANSWER_MIN_SIMILARITY):
        if on_topic or _overlaps(keywords(question), keywords(top.text + " " + top.title + " " + top.heading)):
            heading, text = kb.best_section(top, question)
            top.heading, top.text = heading, text
            top.snippet = best_sentences(text, question)
            if _asks_price(lex, question, u.topics, top.type):
                priced = [h for h in kb.headings(top.doc_id) if re.search(r"[$€£]\d|\bcustom\b", h, re.I)]
                if priced:
                    top.snippet = "; ".join(priced) + "."
            return [Answer(question, hit=top)]
    return [Answer(question, unknown=True)]


def _integration_answer(kb: Any, question: str, target: str) -> Answer:
    """The page that names the tool (an integration page first, then an FAQ), or honestly none."""
    mentions = kb.mentions(target)
    mentions.sort(key=lambda h: (h.type != "integration", h.type != "faq"))
    if mentions:
        return Answer(question, hit=mentions[0], integration=target)
    return Answer(question, unknown=True, integration=target)


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
