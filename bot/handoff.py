"""Handoffs to sales: which rep gets the lead, the story the rep reads, and what reps do with it
(claim, not a fit, book). Channel-free: Slack (or anything else) renders and calls these.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import logging

from .outbox import enqueue
from .playbook import Playbook, Rep
from .scoring import engage, rescore, restage
from .store import Activity, ContentSent, Lead, Meeting, Message, OutboxEntry, ScoreEvent, Store, utcnow

log = logging.getLogger("sdr.handoff")

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def in_working_hours(rep: Rep, at_utc: datetime) -> bool:
    local = at_utc.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(rep.timezone))
    if DAYS[local.weekday()] not in rep.working_days:
        return False
    start, end = rep.working_hours.split("-")
    hm = local.strftime("%H:%M")
    return start <= hm < end


def assign_rep(s: Session, playbook: Playbook, lead: Lead, now: datetime | None = None) -> Rep | None:
    """Round robin over the playbook's reps, skipping those outside working hours; a lead that had a
    rep keeps them. When nobody is working, the rotation continues anyway (someone must own it)."""
    if not playbook.reps:
        return None
    now = now or utcnow()
    by_id = {r.id: r for r in playbook.reps}
    if lead.owner in by_id:   # a returning lead (one lead per email) keeps its rep
        return by_id[lead.owner]
    last = dict(s.execute(select(Lead.owner, func.max(Lead.owner_assigned_at)).where(Lead.owner.is_not(None))
                          .group_by(Lead.owner)).all())
    working = [r for r in playbook.reps if in_working_hours(r, now)] or list(playbook.reps)
    # least recently assigned first; never-assigned reps first, in playbook order
    order = {r.id: i for i, r in enumerate(playbook.reps)}
    rep = min(working, key=lambda r: (last.get(r.id) or datetime.min, order[r.id]))
    lead.owner = rep.id
    lead.owner_assigned_at = now
    return rep


def queue_handoff(s: Session, playbook: Playbook, lead: Lead, reason: str, now: datetime) -> OutboxEntry | None:
    """Queue the lead's handoff to sales in the caller's transaction: exactly one per lead (its
    idempotency key is `handoff:<lead id>`), never for a disqualified lead. `reason` is sql,
    asked_for_human or meeting_requested. Returns the new entry, or None when nothing was queued."""
    if lead.disqualified_reason:
        return None
    events = s.scalars(select(ScoreEvent).where(ScoreEvent.lead_id == lead.id).order_by(ScoreEvent.points.desc())).all()
    top = [{"points": round(e.points, 1), "reason": e.reason} for e in events if e.points > 0][:5]
    entry = enqueue(s, kind="handoff", key=f"handoff:{lead.id}", lead_id=lead.id, now=now,
                    payload={"reason": reason, "score": round(lead.score, 1), "fit_score": round(lead.fit_score, 1),
                             "engagement_score": round(lead.engagement_score, 1), "fields": dict(lead.fields or {}),
                             "top_reasons": top, "channel": playbook.handoff.channel})
    if entry is None:
        return None
    lead.handed_off_at = now
    log.info("handoff queued for lead %s (%s, score %.1f)", lead.id, reason, lead.score)
    return entry


def story(s: Session, playbook: Playbook, lead: Lead, reason: str | None = None) -> dict[str, Any]:
    """Everything a rep needs to open the conversation warm. `reason` defaults to why the lead was
    handed off (so a re-rendered message keeps saying it)."""
    if reason is None:
        entry = s.scalars(select(OutboxEntry).where(OutboxEntry.idempotency_key == f"handoff:{lead.id}")).first()
        reason = (entry.payload or {}).get("reason", "sql") if entry else "sql"
    f = dict(lead.fields or {})
    events = s.scalars(select(ScoreEvent).where(ScoreEvent.lead_id == lead.id)).all()
    top = sorted((e for e in events if e.points > 0), key=lambda e: -e.points)[:4]
    asked = [m.text for m in s.scalars(select(Message).where(Message.lead_id == lead.id, Message.role == "visitor")
                                       .order_by(Message.id))
             if "?" in m.text][-3:]
    content = [{"title": c.title, "url": c.url} for c in
               s.scalars(select(ContentSent).where(ContentSent.lead_id == lead.id).order_by(ContentSent.id))]
    if reason == "meeting_requested":
        step = "They asked for a meeting: book it today."
    elif reason == "asked_for_human":
        step = "They asked to talk to a person: reach out now" + (f" at {f['email']}." if f.get("email") else ".")
    elif f.get("timeline") in ("now", "this_quarter"):
        step = "Buying this quarter: offer a call within the hour."
    else:
        step = "Sales-qualified: open with their need and offer a call."
    src = (lead.field_sources or {}).get("email", {})
    return {
        "lead_id": lead.id, "reason": reason, "fields": f, "stage": lead.stage,
        "email_verified": bool(src.get("verified")), "email_matches_lead": src.get("matches_lead"),
        "score": round(lead.score, 1), "fit_score": round(lead.fit_score, 1),
        "engagement_score": round(lead.engagement_score, 1),
        "thresholds": {"mql": playbook.thresholds.mql, "sql": playbook.thresholds.sql},
        "top_reasons": [{"points": round(e.points, 1), "reason": e.reason} for e in top],
        "asked": asked, "content": content, "next_step": step,
    }


def claim(store: Store, lead_id: str, user: str, now: datetime | None = None) -> tuple[bool, str | None]:
    """First claim wins. Returns (claimed_now, who_has_it). Raises LookupError for an unknown lead."""
    with store.session() as s:
        lead = s.get(Lead, lead_id, with_for_update=True)
        if lead is None:
            raise LookupError(lead_id)
        if lead.claimed_by and lead.claimed_by != user:
            return False, lead.claimed_by
        lead.claimed_by = user
        lead.updated_at = now or utcnow()
        return True, user


def not_a_fit(store: Store, lead_id: str, user: str, now: datetime | None = None) -> float | None:
    """A rep says no: the lead is disqualified and its score goes to zero, with the reason recorded.
    Returns the points taken off, or None when it was already marked (nothing changes: a second
    click is harmless). Raises LookupError."""
    now = now or utcnow()
    with store.session() as s:
        lead = s.get(Lead, lead_id, with_for_update=True)
        if lead is None:
            raise LookupError(lead_id)
        if lead.stage == "disqualified" and lead.disqualified_reason == "not_a_fit":
            return None
        points = -lead.score
        s.add(ScoreEvent(lead_id=lead.id, kind="rep", rule="rep.not_a_fit", points=points,
                         reason=f"marked not a fit by {user}", at=now))
        lead.score = 0.0
        lead.stage = "disqualified"
        lead.disqualified_reason = "not_a_fit"
        lead.updated_at = now
        return points


def mark_booked(store: Store, playbook: Playbook, lead_id: str, user: str, now: datetime | None = None) -> bool:
    """A rep says a meeting is booked (Slack's "Book meeting"): the rep claims the lead, the
    `meeting_booked` engagement is scored once per lead however often it is clicked, and the stage
    becomes meeting_booked unless the lead is disqualified. Returns True when this call booked it,
    False when it was already booked. Raises LookupError for an unknown lead."""
    now = now or utcnow()
    with store.session() as s:
        lead = s.get(Lead, lead_id, with_for_update=True)
        if lead is None:
            raise LookupError(lead_id)
        if not lead.claimed_by:
            lead.claimed_by = user
        already = s.scalar(select(func.count()).select_from(Activity).where(
            Activity.lead_id == lead.id, Activity.type == "meeting_booked")) or 0
        if already or lead.stage == "meeting_booked":
            return False
        if "meeting_booked" in playbook.engagement:
            engage(s, playbook, lead, "meeting_booked", {"by": user, "source": "slack"}, now)
        rescore(s, playbook, lead, now)
        restage(playbook, lead, engaged=True)
        if lead.stage != "disqualified":
            lead.stage = "meeting_booked"
        lead.updated_at = now
        return True


def stats_today(store: Store, now: datetime | None = None) -> dict[str, int]:
    now = now or utcnow()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with store.session() as s:
        leads = s.scalar(select(func.count()).select_from(Lead).where(Lead.created_at >= start)) or 0
        sqls = s.scalar(select(func.count()).select_from(Lead).where(Lead.handed_off_at >= start)) or 0
        meetings = s.scalar(select(func.count()).select_from(Meeting).where(Meeting.created_at >= start,
                                                                             Meeting.status != "cancelled")) or 0
    return {"leads": int(leads), "handoffs": int(sqls), "meetings": int(meetings)}
