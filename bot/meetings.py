"""Meetings in the conversation: book the time the visitor picked, or offer three concrete times.

Three small steps around the calendar call, so no database transaction is open while a calendar
(CalDAV, Cal.com) answers:
  `request_meeting` (in the turn's transaction: is a meeting wanted now, with which rep),
  `run_meeting` (calendar calls: book or find free slots → a frozen `MeetingOutcome`),
  `record_meeting` (one transaction: offered slots in the conversation, the booking scored once,
  the rep's invitation and the handoff queued in the outbox).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from sqlalchemy import select

from .booking import (Booking, CalendarBackend, CalendarUnavailable, Slot, SlotTaken, as_utc, choose_offer, format_offer,
                      in_window, meeting_window, window_start_utc)
from .handoff import assign_rep, queue_handoff
from .outbox import enqueue
from .places import timezone_from_text, zone_answer  # noqa: F401  (zone_answer: re-exported for the turn)
from .playbook import Playbook
from .policy import Decision
from .scoring import engage, rescore
from .sequences import end_sequences
from .store import Conversation, Lead, Message

OFFER_VALID_TURNS = 4   # a pick refers to times offered at most this many turns ago


@dataclass(frozen=True)
class MeetingRequest:
    """A meeting is this reply's business: book `pick`, or offer slots of `rep` (`want_slots`)."""
    rep: Any
    pick: Slot | None
    want_slots: bool
    asked: tuple[str, ...] = ()   # the visitor's latest words, newest first: when they want to meet ("next month")


@dataclass(frozen=True)
class MeetingOutcome:
    """What the calendar did this turn (all empty when no meeting was in play)."""
    rep_name: str | None = None
    picked: bool = False                  # the visitor chose one of the offered times
    offer: tuple[Slot, ...] = ()          # the times offered now
    slots_text: str | None = None         # those times, as the visitor reads them
    booking: Booking | None = None
    booked_slot: Slot | None = None
    booked_text: str | None = None        # "Thu 27 Nov, 2:00 pm (Europe/Berlin)"
    booked_pending: bool = False          # the calendar holds it until the rep confirms
    ics_url: str | None = None
    slot_taken: bool = False              # the picked time went to someone else a moment ago
    calendar_down: bool = False           # the calendar could not be reached; the rep follows up


def _zone_name(name: Any) -> str | None:
    try:
        return str(ZoneInfo(name)) if isinstance(name, str) and name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def visitor_timezone(visitor: dict[str, Any], state: dict[str, Any], text: str = "") -> str:
    """The visitor's IANA time zone, in this order: what the channel sent (`visitor["timezone"]`),
    a place or zone named in this message `text` ("I'm in Melbourne", "we're on Pacific time"),
    what the conversation knew (`state["visitor_tz"]`, which the turn keeps, so a zone said once
    holds for later turns), else UTC."""
    sent = _zone_name(visitor.get("timezone"))
    if sent:
        return sent
    said = timezone_from_text(text) if text else None
    return said[0] if said else _zone_name(state.get("visitor_tz")) or "UTC"


def offered_slots(state: dict[str, Any], turn: int) -> list[Slot]:
    """The times offered in this conversation that a message on `turn` may still pick from."""
    offered = state.get("offered_slots") or []
    if not offered or turn - int(state.get("offered_turn", 0)) > OFFER_VALID_TURNS:
        return []
    return [Slot.from_dict(x) for x in offered]


def request_meeting(s: Session, playbook: Playbook, calendar: CalendarBackend | None, lead: Lead,
                    decision: Decision, pick: Slot | None, now: datetime) -> MeetingRequest | None:
    """Whether this reply books or offers times, and with which rep (assigned now, round robin).
    None when there is no calendar, no rep, a disqualified or unsubscribed lead, or no meeting asked."""
    if calendar is None or not playbook.reps or lead.stage == "disqualified" or decision.mode == "refuse":
        return None
    want_slots = pick is None and (decision.offer_meeting or decision.book) and not lead.unsubscribed
    if pick is None and not want_slots:
        return None
    asked: tuple[str, ...] = ()
    if want_slots:   # this message, else the one before ("can we talk early January?" … "yes")
        asked = tuple(s.scalars(select(Message.text).where(Message.lead_id == lead.id, Message.role == "visitor")
                                .order_by(Message.id.desc()).limit(2)))
    return MeetingRequest(rep=assign_rep(s, playbook, lead, now), pick=pick, want_slots=want_slots, asked=asked)


def run_meeting(calendar: CalendarBackend, playbook: Playbook, req: MeetingRequest, attendee: dict[str, Any],
                tz: str, lead_id: str, now: datetime, public_url: str | None) -> MeetingOutcome:
    """Book the picked time (a taken one gets fresh times), or offer three free ones in the
    visitor's time zone `tz`. Calendar errors become flags on the outcome, never exceptions."""
    rep, booking, taken, down, want_slots = req.rep, None, False, False, req.want_slots
    company = playbook.company.name
    if req.pick is not None:
        try:
            booking = calendar.book(rep, req.pick, attendee, title=f"{company} intro call",
                                    description=f"Booked by the {company} website assistant.", lead_id=lead_id)
        except SlotTaken:
            taken, want_slots = True, True
        except CalendarUnavailable:
            down = True
    offer: list[Slot] = []
    if want_slots:
        try:
            offer = _offer(calendar, rep, req.asked, tz, now)
        except CalendarUnavailable:
            down = True
    return MeetingOutcome(
        rep_name=rep.name if rep else None, picked=req.pick is not None, offer=tuple(offer),
        slots_text=format_offer(offer, tz) if offer else None, booking=booking,
        booked_slot=req.pick if booking else None,
        booked_text=f"{req.pick.label(tz)} ({tz})" if booking and req.pick else None,
        booked_pending=bool(booking and booking.status == "pending"),
        ics_url=f"{public_url or ''}/meetings/{booking.meeting_id}.ics?lead={lead_id}" if booking else None,
        slot_taken=taken, calendar_down=down)


def _offer(calendar: CalendarBackend, rep: Any, asked: tuple[str, ...], tz: str, now: datetime) -> list[Slot]:
    """Three free times: in the window the visitor asked for, read on their calendar ("next month",
    "in 2 weeks", "after the 15th"), else the soonest. A window with nothing free gets the first
    free times after its start."""
    today = as_utc(now).astimezone(ZoneInfo(tz) if _zone_name(tz) else ZoneInfo("UTC")).date()
    window = next((w for w in (meeting_window(t, today) for t in asked) if w is not None), None)
    if window is None:
        return choose_offer(calendar.free_slots(rep, as_utc(now)), tz)
    free = calendar.free_slots(rep, window_start_utc(window, tz, now))
    return choose_offer(in_window(free, window, tz) or free, tz)


def record_meeting(s: Session, playbook: Playbook, out: MeetingOutcome, rep: Any, conv: Conversation, lead: Lead,
                   attendee: dict[str, Any], tz: str, turn: int, now: datetime) -> list[dict[str, Any]]:
    """Persist the outcome in the open transaction; returns the actions to report for this turn."""
    state = dict(conv.state or {})
    actions: list[dict[str, Any]] = []
    if out.offer:
        state["offered_slots"] = [x.to_dict() for x in out.offer]
        state["offered_turn"] = turn
        state["offered_tz"] = tz
        actions.append({"type": "offer_slots", "rep": rep.name, "timezone": tz,
                        "slots": [{"start": x.to_dict()["start"], "label": x.label(tz)} for x in out.offer]})
    if out.booking is not None and out.booked_slot is not None:
        state.pop("offered_slots", None)
        _booked(s, playbook, out, rep, lead, attendee, now)
        actions.append({"type": "meeting", "status": out.booking.status, "rep": rep.name,
                        "start": out.booked_slot.to_dict()["start"], "label": out.booked_text, "ics_url": out.ics_url})
    conv.state = state
    return actions


def _booked(s: Session, playbook: Playbook, out: MeetingOutcome, rep: Any, lead: Lead, attendee: dict[str, Any],
            now: datetime) -> None:
    """A booked meeting: scored once, the stage moves to meeting_booked, nurture sequences end, the
    rep's invitation and (if not yet) the handoff are queued."""
    booking = out.booking
    assert booking is not None
    if lead.stage != "meeting_booked":
        if "meeting_booked" in playbook.engagement:
            engage(s, playbook, lead, "meeting_booked", {"meeting_id": booking.meeting_id, "rep": rep.id}, now)
        rescore(s, playbook, lead, now)
        lead.stage = "meeting_booked"
    end_sequences(s, playbook, lead, now)   # a booked meeting ends nurturing at once
    enqueue(s, kind="meeting_invite", key=f"invite:{booking.meeting_id}", lead_id=lead.id, now=now,
            payload={"meeting_id": booking.meeting_id, "rep": rep.id, "rep_email": rep.email,
                     "attendee": attendee, "status": booking.status})
    if lead.handed_off_at is None:
        queue_handoff(s, playbook, lead, "meeting_requested", now)
