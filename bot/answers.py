"""Answer a visitor's question from the content store, or say honestly that we can't.

The policy decides *whether* to answer; this module finds *what* answers it: the integration page
for "do you integrate with X?", the pricing page for a price question, the best-matching section
of the best piece otherwise — or `unknown` when nothing in the content is close enough.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from knowledge.retrieve import Hit, LeadContext, best_sentences, keywords

from .extract import Understanding, integrations_asked

ANSWER_MIN_SIMILARITY = 0.83   # below this, the best chunk is about something else (measured on the sample)
ANSWER_MIN_SIMILARITY_ON_TOPIC = 0.80   # when the best chunk is also the right kind (pricing page for a price question)


@dataclass(frozen=True)
class Answer:
    question: str
    hit: Hit | None = None            # the content that answers it
    unknown: bool = False             # the content does not answer it
    integration: str | None = None    # "do you integrate with X?" — X


def answer_question(kb: Any, question: str, u: Understanding, ctx: LeadContext) -> list[Answer]:
    answers: list[Answer] = []
    targets = [t for t in integrations_asked(question) if t] if u.integrations_asked else []
    for target in targets[:2]:
        mentions = kb.mentions(target)
        mentions.sort(key=lambda h: (h.type != "integration", h.type != "faq"))
        if mentions:
            answers.append(Answer(question, hit=mentions[0], integration=target))
        else:
            answers.append(Answer(question, unknown=True, integration=target))
    if targets:
        return answers
    prefer = ({"pricing": 0.03} if "pricing" in u.topics else {"case_study": 0.03} if "customers" in u.topics
              else {"faq": 0.01} if u.topics & {"security", "onboarding"} else None)
    query = " ".join([question] + [TOPIC_EXPANSIONS[t] for t in sorted(u.topics) if t in TOPIC_EXPANSIONS])
    hits = kb.search(query, ctx, k=3, prefer_types=prefer)
    top = hits[0] if hits else None
    on_topic = top is not None and any(top.type in TOPIC_TYPES.get(t, ()) for t in u.topics)
    if top is not None and top.similarity >= (ANSWER_MIN_SIMILARITY_ON_TOPIC if on_topic else ANSWER_MIN_SIMILARITY):
        if on_topic or _overlaps(keywords(question), keywords(top.text + " " + top.title + " " + top.heading)):
            heading, text = kb.best_section(top, question)
            top.heading, top.text = heading, text
            top.snippet = best_sentences(text, question)
            if "pricing" in u.topics and top.type == "pricing" and PRICE_ASK_RE.search(question):
                priced = [h for h in kb.headings(top.doc_id) if re.search(r"[$€£]\d|\bcustom\b", h, re.I)]
                if priced:
                    top.snippet = "; ".join(priced) + "."
            return [Answer(question, hit=top)]
    return [Answer(question, unknown=True)]


TOPIC_EXPANSIONS = {"pricing": "pricing plans price per user per month", "integration": "integrations integrate with",
                    "security": "security compliance", "onboarding": "onboarding setup implementation support",
                    "customers": "customer case study results"}
TOPIC_TYPES = {"pricing": ("pricing",), "integration": ("integration",), "security": ("faq",), "onboarding": ("faq",),
               "customers": ("case_study",)}
PRICE_ASK_RE = re.compile(r"\b(?:how much|cost|costs|price|prices|pricing|per (?:user|seat)|what (?:are )?(?:the |your )?plans)\b", re.I)


def _overlaps(a: set[str], b: set[str]) -> bool:
    """Shared content words, counting 'on-prem' ~ 'on-premise' and 'integrate' ~ 'integrations'."""
    if a & b:
        return True
    return any(len(x) >= 5 and len(y) >= 5 and (x.startswith(y[:5]) and y.startswith(x[:5])) and (x.startswith(y) or y.startswith(x))
               for x in a for y in b)
