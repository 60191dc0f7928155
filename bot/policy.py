"""Decide what this reply does: answer, ask, recommend, offer a meeting, hand off, escalate, close.

Rules from the playbook and the conversation state decide; no model is asked whether a lead is
qualified. The decision is a typed value the brain turns into words.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from knowledge.retrieve import Hit, KnowledgeBase, LeadContext, best_sentences, keywords

from .answers import Answer, answer_question
from .extract import Understanding
from .playbook import Playbook
from .text import has_word

SKIP_COOLDOWN_TURNS = 3         # a skipped question is not asked again for this many turns
MAX_ASKS_PER_FIELD = 2          # asked twice and ignored twice: treat as skipped


@dataclass
class Decision:
    mode: str = "converse"            # converse | refuse | close | unsubscribe
    greet: bool = False
    learned: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    ask_field: str | None = None
    ask_question: str | None = None
    recommend: Hit | None = None
    offer_meeting: bool = False
    book: bool = False
    human: bool = False
    objection: bool = False
    not_interested: bool = False
    meeting_accepted: bool = False
    handed_off: bool = False          # this lead's handoff is (now or already) queued
    close_reason: str | None = None   # student | job_seeker | competitor
    slots_text: str | None = None     # concrete meeting times offered this reply (from the calendar)
    booked_text: str | None = None    # the meeting just booked: when, in the visitor's time zone
    booked_pending: bool = False      # the calendar holds it until the rep confirms
    meeting_rep: str | None = None    # who the meeting is with
    ics_url: str | None = None        # the invitation
    slot_taken: bool = False          # the picked time went to someone else a moment ago
    calendar_down: bool = False       # the calendar could not be reached; the rep will follow up

    def sources(self) -> list[Hit]:
        out = [a.hit for a in self.answers if a.hit is not None]
        if self.recommend is not None:
            out.append(self.recommend)
        seen: set[str] = set()
        return [h for h in out if not (h.url in seen or seen.add(h.url))]


def persona_for(playbook: Playbook, role: Any) -> str | None:
    if not role:
        return None
    text = str(role).lower()
    for persona, words in playbook.personas.items():
        for w in words:
            if has_word(text, w.lower()):
                return persona
    return None


def lead_context(playbook: Playbook, fields: dict[str, Any], stage: str) -> LeadContext:
    industry = fields.get("industry")
    return LeadContext(industry=industry if industry in playbook.industries else None,
                       persona=persona_for(playbook, fields.get("role")) or
                       ("executive" if fields.get("seniority") == "c_level" else None),
                       stage=stage)


def next_field(playbook: Playbook, fields: dict[str, Any], state: dict[str, Any], turn: int,
               only: tuple[str, ...] | None = None) -> str | None:
    """The most valuable unknown field we may ask now: never a known one, never one just skipped."""
    skipped: dict[str, int] = state.get("skipped", {})
    candidates = []
    for f in sorted(playbook.fields, key=lambda f: -f.priority):
        if not f.ask or f.asked_with:
            continue
        group = [f.name] + [g.name for g in playbook.fields if g.asked_with == f.name]
        if any(fields.get(n) not in (None, "") for n in group):
            continue
        if only and f.name not in only:
            continue
        cooling = f.name in skipped and turn - skipped[f.name] <= SKIP_COOLDOWN_TURNS
        candidates.append((cooling, f.name))
    fresh = [name for cooling, name in candidates if not cooling]
    if fresh:
        return fresh[0]
    return None


def decide(*, playbook: Playbook, kb: KnowledgeBase | None, u: Understanding, fields: dict[str, Any],
           learned: list[str], stage: str, crossed_sql: bool, handed_off: bool, state: dict[str, Any],
           turn: int, first_turn: bool, sent_urls: set[str], text: str,
           disqualified_reason: str | None = None) -> Decision:
    d = Decision(learned=learned, handed_off=handed_off)
    if "injection" in u.intents:
        d.mode = "refuse"
        return d
    d.greet = first_turn and ("greeting" in u.intents or not (u.questions or u.fields))
    d.objection = "objection" in u.intents
    ctx = lead_context(playbook, fields, stage)
    if kb is not None:
        for q in u.questions[:2]:
            if "human" in u.intents and not u.topics and not u.integrations_asked:
                continue  # "can I talk to a person?" is a request, not a content question
            if "book" in u.intents and not u.topics:
                continue
            if "job_seeker" in u.intents:
                continue
            # "is it secure? we need SOC 2": a short message's statements are part of its question
            asked = text if len(u.questions) == 1 and len(text) <= 240 else q
            d.answers.extend(answer_question(kb, asked, u, ctx))
            if len(d.answers) >= 2:
                break
    if "unsubscribe" in u.intents:
        d.mode = "unsubscribe"
        return d
    if stage == "disqualified":
        d.mode = "close"
        d.close_reason = disqualified_reason or "student"
        d.answers = [a for a in d.answers if a.hit is not None][:1]
        return d
    d.human = "human" in u.intents
    d.book = "book" in u.intents
    offered = state.get("offered_meeting_turn")
    if not d.book and offered is not None and turn - offered == 1 and "affirm" in u.intents:
        d.book = d.meeting_accepted = True   # "sure, let's talk" right after a meeting offer
    d.offer_meeting = crossed_sql and not d.book
    d.not_interested = "not_interested" in u.intents and not (d.human or d.book)
    if d.not_interested:
        return d   # no question, no content: they said no
    if d.human or d.book:
        d.handed_off = True
    # One question per reply: a meeting offer is the question when there is one.
    asking_allowed = not d.offer_meeting and not (d.book and playbook.meeting.url) and "objection" not in u.intents
    if asking_allowed:
        only = ("email", "name") if (handed_off or d.human or d.book) else None
        d.ask_field = next_field(playbook, fields, state, turn, only=only)
        if d.ask_field:
            d.ask_question = playbook.question_for(d.ask_field)
    if "price_objection" in u.intents and kb is not None:
        roi = kb.search("ROI payback return on investment cost", ctx, k=1, types=["roi_calculator"],
                        exclude_urls=sent_urls)
        if roi:
            d.recommend = roi[0]
            return d
    # Recommend a piece when we know enough to pick one, not in every reply.
    last_rec = state.get("last_recommend_turn", -99)
    recs = int(state.get("recommendations", 0))
    industry_known = fields.get("industry") in playbook.industries
    knows_enough = (industry_known and not state.get("recommended_for_industry")) or (fields.get("need") and recs == 0)
    answered_with_content = any(a.hit is not None for a in d.answers)
    if kb is not None and knows_enough and turn - last_rec >= 3 and not d.human and not d.offer_meeting \
            and not answered_with_content:
        topic = " ".join(str(fields.get(k) or "") for k in ("need", "industry", "role")).strip()
        answered_urls = {a.hit.url for a in d.answers if a.hit is not None}
        hit = kb.recommend(ctx, topic, exclude_urls=sent_urls | answered_urls)
        if hit is not None:
            d.recommend = hit
    return d
