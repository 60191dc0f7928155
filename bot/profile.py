"""Update the lead's profile from what this message told us.

A fact the visitor states (or the widget sends) fills an empty field; a guess never overwrites
what we know; an email that belongs to another lead merges the two records into one lead.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .extract import Fact, Understanding
from .store import Activity, ContentSent, Conversation, Lead, Message, OutboxEntry, ScoreEvent

VISITOR_FIELDS = ("email", "name", "company")   # what a channel may tell us about the visitor directly


def _facts(lead: Lead, u: Understanding, visitor: dict[str, Any]) -> dict[str, Fact]:
    """The widget's (or form's) own fields first, then what the message said."""
    facts: dict[str, Fact] = {}
    for key in VISITOR_FIELDS:
        v = visitor.get(key)
        if isinstance(v, str) and v.strip() and not (lead.fields or {}).get(key):
            facts[key] = Fact(v.strip().lower() if key == "email" else v.strip(), extractor="visitor", evidence="widget")
    facts.update(u.fields)
    return facts


def _keeps_old(name: str, old: Any, fact: Fact, sources: dict[str, Any]) -> bool:
    if old == fact.value:
        return True
    if old not in (None, "") and not fact.certain:
        return True   # a guess never overwrites what we know
    return (old not in (None, "") and name == "company" and sources.get(name, {}).get("certain")
            and fact.extractor == "rules" and not fact.certain)


def update_profile(s: Session, lead: Lead, u: Understanding, visitor: dict[str, Any],
                   now: datetime) -> tuple[Lead, list[str]]:
    """Merge this message's facts into the lead's fields (each with its extractor, certainty,
    evidence and time in `field_sources`). Returns the lead — another one when the email showed
    this visitor is a lead we already know — and the names of the fields learned."""
    fields = dict(lead.fields or {})
    sources = dict(lead.field_sources or {})
    learned = []
    for name, fact in _facts(lead, u, visitor).items():
        if _keeps_old(name, fields.get(name), fact, sources):
            continue
        if name == "email":
            other = s.scalars(select(Lead).where(Lead.email == fact.value, Lead.id != lead.id)).first()
            if other is not None:
                absorb(s, keep=other, gone=lead, now=now)
                fields = {**dict(other.fields or {}), **{k: v for k, v in fields.items() if v not in (None, "")}}
                sources = {**dict(other.field_sources or {}), **sources}
                lead = other
            lead.email = fact.value
        fields[name] = fact.value
        sources[name] = {"extractor": fact.extractor, "certain": fact.certain, "evidence": fact.evidence[:120],
                         "at": now.isoformat()}
        learned.append(name)
    lead.fields = fields
    lead.field_sources = sources
    return lead, learned


def absorb(s: Session, keep: Lead, gone: Lead, now: datetime) -> None:
    """Two records turned out to be one person (same email): move everything onto `keep`, count
    each fit rule once, and delete `gone`."""
    for model in (Conversation, Message, ScoreEvent, Activity, OutboxEntry):
        for row in s.scalars(select(model).where(model.lead_id == gone.id)):
            row.lead_id = keep.id
    keep_urls = set(s.scalars(select(ContentSent.url).where(ContentSent.lead_id == keep.id)))
    for row in s.scalars(select(ContentSent).where(ContentSent.lead_id == gone.id)):
        if row.url in keep_urls:
            s.delete(row)
        else:
            row.lead_id = keep.id
    applied = dict(keep.fit_rules or {})
    for rule, pts in (gone.fit_rules or {}).items():
        if rule in applied:
            s.add(ScoreEvent(lead_id=keep.id, kind="fit", rule=rule, points=-pts,
                             reason="counted once: two conversations turned out to be the same lead", at=now))
        else:
            applied[rule] = pts
    keep.fit_rules = applied
    if gone.handed_off_at and not keep.handed_off_at:
        keep.handed_off_at = gone.handed_off_at
    s.flush()
    s.delete(gone)
    s.flush()


def note_intents(lead: Lead, u: Understanding, now: datetime) -> None:
    """What the message says about the lead beyond facts: a job seeker or a competitor (closed
    politely), an unsubscribe (honoured on every channel), a request for a person."""
    if "job_seeker" in u.intents and not lead.disqualified_reason:
        lead.disqualified_reason = "job_seeker"
    if "competitor" in u.intents:
        lead.disqualified_reason = "competitor"
    if "unsubscribe" in u.intents:
        lead.unsubscribed = 1
    if "human" in u.intents and lead.human_requested_at is None:
        lead.human_requested_at = now
