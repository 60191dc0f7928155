"""Update the lead's profile from what this message told us.

A fact the visitor states (or the widget sends) fills an empty field; a guess never overwrites
what we know, and what the visitor wrote replaces a guess (the company guessed from the email
domain); a correction replaces the old value; an email that belongs to another lead merges the
two records into one lead. Each field's `field_sources` entry says where it came from in
`source`: said | form | guessed_from_email | corrected.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .extract import Fact, Understanding
from .store import (Enrollment, NurturePause, SequenceStepRun, Activity, ContentSent, Conversation, EmailMessage, EmailStatus, InboundReceipt, Lead, LeadToken,
                    Message, OutboxEntry, ScoreEvent)

VISITOR_FIELDS = ("email", "name", "company")   # what a channel may tell us about the visitor directly


def _facts(lead: Lead, u: Understanding, visitor: dict[str, Any], verified: bool) -> dict[str, Fact]:
    """The widget's (or form's) own fields first, then what the message said. A verified email
    always comes in (it may confirm the one the lead typed)."""
    facts: dict[str, Fact] = {}
    for key in VISITOR_FIELDS:
        v = visitor.get(key)
        if isinstance(v, str) and v.strip() and (not (lead.fields or {}).get(key) or (key == "email" and verified)):
            facts[key] = Fact(v.strip().lower() if key == "email" else v.strip(), extractor="visitor", evidence="widget",
                                source="form")
    facts.update(u.fields)
    return facts


def _keeps_old(name: str, old: Any, fact: Fact, sources: dict[str, Any]) -> bool:
    if old == fact.value:
        return True
    if old in (None, ""):
        return False
    if fact.source == "guessed_from_email":
        return True   # a guess never overwrites what we know
    if fact.certain:
        return False  # a stated fact or a correction replaces the old value
    return sources.get(name, {}).get("source") != "guessed_from_email"   # an unsure reading replaces only a guess


def update_profile(s: Session, lead: Lead, u: Understanding, visitor: dict[str, Any],
                   now: datetime, verified: bool = False) -> tuple[Lead, list[str]]:
    """Merge this message's facts into the lead's fields (each with its extractor, certainty,
    evidence and time in `field_sources`). `verified`: the channel vouches for visitor["email"].
    Returns the lead — another one when a verified email showed this visitor is a lead we already
    know — and the names of the fields learned."""
    fields = dict(lead.fields or {})
    sources = dict(lead.field_sources or {})
    learned = []
    for name, fact in _facts(lead, u, visitor, verified).items():
        confirms = name == "email" and verified and not sources.get("email", {}).get("verified")
        if _keeps_old(name, fields.get(name), fact, sources) and not confirms:
            continue
        source = {"extractor": fact.extractor, "certain": fact.certain, "evidence": fact.evidence[:120],
                  "source": getattr(fact, "source", "said"), "at": now.isoformat()}
        if name == "email":
            trusted = verified and fact.value == str(visitor.get("email") or "").strip().lower()
            kept, source = _claim_email(s, lead, fact.value, trusted, source, now)
            if kept is not lead:   # the same person as a lead we know: continue on that one
                fields = {**dict(kept.fields or {}), **{k: v for k, v in fields.items() if v not in (None, "")}}
                sources = {**dict(kept.field_sources or {}), **sources}
                lead = kept
        fields[name] = fact.value
        sources[name] = source
        learned.append(name)
    lead.fields = fields
    lead.field_sources = sources
    return lead, learned


def _claim_email(s: Session, lead: Lead, email: str, trusted: bool, source: dict[str, Any],
                 now: datetime) -> tuple[Lead, dict[str, Any]]:
    """Who holds `email` now. A verified address held verified by another lead joins the two
    (absorbed into that lead); a verified address held unverified by another lead moves here (that
    lead keeps a note of the match); an unverified address another lead holds stays there — this
    lead records it as a possible match for sales and never sees the other's data."""
    source = {**source, "verified": trusted}
    other = s.scalars(select(Lead).where(Lead.email == email, Lead.id != lead.id)).first()
    if other is None:
        lead.email = email
        return lead, source
    other_verified = bool((other.field_sources or {}).get("email", {}).get("verified"))
    if trusted and other_verified:
        absorb(s, keep=other, gone=lead, now=now)
        return other, source
    if trusted:
        other.email = None
        other.field_sources = {**dict(other.field_sources or {}),
                               "email": {**(other.field_sources or {}).get("email", {}), "matches_lead": lead.id}}
        s.flush()   # the unique address leaves the other row before it lands on this one
        lead.email = email
        return lead, source
    lead.email = None
    return lead, {**source, "matches_lead": other.id}


def absorb(s: Session, keep: Lead, gone: Lead, now: datetime) -> None:
    """Two records turned out to be one person (same email): move everything onto `keep`, count
    each fit rule once, and delete `gone`."""
    for model in (Conversation, Message, ScoreEvent, Activity, OutboxEntry, EmailMessage, InboundReceipt):
        for row in s.scalars(select(model).where(model.lead_id == gone.id)):
            row.lead_id = keep.id
    for row in list(s.scalars(select(LeadToken).where(LeadToken.lead_id == gone.id))):   # moves unless keep has one
        mine = s.scalars(select(LeadToken).where(LeadToken.lead_id == keep.id, LeadToken.purpose == row.purpose)).first()
        if mine is None:
            row.lead_id = keep.id
        else:
            s.delete(row)
    for model in (EmailStatus,):   # one per lead
        mine, theirs = (s.scalars(select(model).where(model.lead_id == lid)).first() for lid in (keep.id, gone.id))
        if theirs is not None:
            if model is EmailStatus:   # a bounce or unsubscribe of either record holds for the person
                kept = mine or EmailStatus(lead_id=keep.id)
                for col in ("bounced_at", "bounce_reason", "unsubscribed_at", "unsubscribe_source", "consent"):
                    setattr(kept, col, getattr(kept, col) or getattr(theirs, col))
                s.add(kept)
            s.delete(theirs)
    keep_seqs = set(s.scalars(select(Enrollment.sequence_id).where(Enrollment.lead_id == keep.id)))
    for enr in list(s.scalars(select(Enrollment).where(Enrollment.lead_id == gone.id))):   # one enrolment per sequence
        steps = list(s.scalars(select(SequenceStepRun).where(SequenceStepRun.enrollment_id == enr.id)))
        for st in steps:
            if enr.sequence_id in keep_seqs:
                s.delete(st)
            else:
                st.lead_id = keep.id
        s.flush()
        if enr.sequence_id in keep_seqs:
            s.delete(enr)
        else:
            enr.lead_id = keep.id
    pause = s.get(NurturePause, gone.id)
    if pause is not None:   # a pause of either record holds for the person
        if s.get(NurturePause, keep.id) is None:
            s.add(NurturePause(lead_id=keep.id, paused_at=pause.paused_at, by=pause.by))
        s.delete(pause)
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
    politely), an opt-out (honoured on every channel until a new explicit request), a request for a person."""
    if "job_seeker" in u.intents and not lead.disqualified_reason:
        lead.disqualified_reason = "job_seeker"
    if "competitor" in u.intents:
        lead.disqualified_reason = "competitor"
    if "unsubscribe" in u.intents:
        lead.unsubscribed = 1
    elif lead.unsubscribed and u.intents & {"book", "human"}:
        lead.unsubscribed = 0   # a new explicit request (a demo, a person) reopens it
    if "human" in u.intents and lead.human_requested_at is None:
        lead.human_requested_at = now
