"""Tracked events (page views, webinars, email opens, a rep's booking…) and rescoring over time:
the score changes that do not come from a chat message."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from .handoff import queue_handoff
from .inbound import InputError, NotFound
from .leads import lead_view
from .playbook import Playbook
from .scoring import engage, rescore, restage
from .sequences import end_sequences, on_event
from .store import Conversation, Lead, Store, new_id


def _lead_for(s: Any, lead_id: str | None, email: str | None, session_id: str | None, now: datetime) -> Lead:
    if session_id:
        conv = s.get(Conversation, session_id)
        if conv is None:
            raise NotFound(f"no conversation with session id {session_id!r}")
        return s.get(Lead, conv.lead_id)
    if lead_id:
        lead = s.get(Lead, lead_id)
        if lead is None:
            raise NotFound(f"no lead with id {lead_id!r}")
        return lead
    if not email:
        raise InputError("missing_lead", "give lead_id or email")
    email = email.strip().lower()
    lead = s.scalars(select(Lead).where(Lead.email == email)).first()
    if lead is None:
        lead = Lead(id=new_id("lead"), email=email, fields={"email": email},   # a server vouches for it
                    field_sources={"email": {"extractor": "event", "verified": True, "at": now.isoformat()}},
                    created_at=now, updated_at=now)
        s.add(lead)
        s.flush()
    return lead


def record_event(store: Store, playbook: Playbook, event_type: str, *, lead_id: str | None = None,
                 email: str | None = None, session_id: str | None = None,
                 properties: dict[str, Any] | None = None, now: datetime) -> dict[str, Any]:
    """Score one tracked event for a lead (by the session id of its conversation, by id, or by
    email — a new email creates the lead) and
    queue the handoff if it made the lead an SQL. Returns {"lead", "score_changes", "actions"}.
    Raises InputError (unknown_event_type: not in the playbook's `engagement`; missing_lead) or NotFound."""
    if event_type not in playbook.engagement:
        known = ", ".join(sorted(playbook.engagement))
        raise InputError("unknown_event_type", f"event type {event_type!r} is not in the playbook; known types: {known}")
    with store.session() as s:
        lead = _lead_for(s, lead_id, email, session_id, now)
        prev_stage = lead.stage
        change = engage(s, playbook, lead, event_type, properties or {}, now)
        changes = ([change] if change else []) + rescore(s, playbook, lead, now)
        if event_type == "unsubscribe":
            lead.unsubscribed = 1
        restage(playbook, lead, engaged=True)
        on_event(s, playbook, lead, event_type, now)   # an action-based nurture step waiting for this event
        end_sequences(s, playbook, lead, now)           # … unless the event ends the lead's sequences
        actions = []
        if lead.stage == "sql" and prev_stage not in ("sql", "meeting_booked"):
            entry = queue_handoff(s, playbook, lead, "sql", now)
            if entry is not None:
                actions.append({"type": "handoff", "status": entry.status, "reason": "sql", "outbox_id": entry.id})
        lead.updated_at = now
        return {"lead": lead_view(lead, playbook), "score_changes": [c.as_dict() for c in changes], "actions": actions}


def rescore_lead(store: Store, playbook: Playbook, lead_id: str, now: datetime) -> dict[str, Any]:
    """Apply decay (and playbook changes) to one lead as of `now`. Raises NotFound."""
    with store.session() as s:
        lead = s.get(Lead, lead_id)
        if lead is None:
            raise NotFound(f"no lead with id {lead_id!r}")
        changes = rescore(s, playbook, lead, now)
        restage(playbook, lead, engaged=lead.stage != "new")
        return {"lead": lead_view(lead, playbook), "score_changes": [c.as_dict() for c in changes]}
