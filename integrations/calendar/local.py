"""The offline calendar: a rep is busy when the database has a booked or pending meeting for them.

Booking inserts a `Meeting` row; the (rep_id, start) unique constraint makes the loser of two
concurrent bookings of the same slot fail, which is reported as SlotTaken. The invitation is an
.ics (METHOD:REQUEST) kept in `Meeting.ics` for whoever sends it.

The other backends use `reserve` / `confirm` / `release` here to hold the slot in the database
while they talk to their calendar service.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.booking import Booking, Slot, SlotTaken, as_utc, working_slots
from bot.store import Meeting, Store
from integrations.calendar import make_ics, new_uid

ACTIVE = ("booked", "pending")


def _naive(dt: datetime) -> datetime:
    return as_utc(dt).replace(tzinfo=None)


def horizon(now_utc: datetime, cal: Any) -> tuple[datetime, datetime]:
    """The UTC window that covers every slot `working_slots` can offer (a day of slack each side)."""
    now = as_utc(now_utc)
    return now - timedelta(days=1), now + timedelta(days=int(cal.days_ahead) + 2)


class LocalCalendar:
    name = "local"

    def __init__(self, store: Store, cal: Any):
        self.store, self.cal = store, cal

    # -- the CalendarBackend interface --------------------------------------------------------

    def busy(self, rep: Any, start_utc: datetime, end_utc: datetime) -> list[tuple[datetime, datetime]]:
        with self.store.session() as s:
            rows = s.execute(select(Meeting.start, Meeting.end).where(
                Meeting.rep_id == rep.id, Meeting.status.in_(ACTIVE),
                Meeting.start < _naive(end_utc), Meeting.end > _naive(start_utc))).all()
        return [(as_utc(a), as_utc(b)) for a, b in rows]

    def free_slots(self, rep: Any, now_utc: datetime) -> list[Slot]:
        return working_slots(rep, now_utc, self.cal, self.busy(rep, *horizon(now_utc, self.cal)))

    def book(self, rep: Any, slot: Slot, attendee: Mapping[str, Any], title: str, description: str = "",
             *, lead_id: str) -> Booking:
        held = self.held_by(rep, slot, lead_id)
        if held is not None:
            return held
        uid = new_uid()
        ics = make_ics(uid=uid, slot=slot, title=title, description=description, organizer_email=rep.email,
                       organizer_name=rep.name, attendee=attendee)
        mid = self.reserve(rep, slot, lead_id=lead_id, timezone=attendee.get("timezone") or "UTC",
                           status="booked", backend=self.name, external_id=uid, ics=ics)
        return Booking(status="booked", external_id=uid, ics=ics, meeting_id=mid)

    # -- holding a slot in the database (shared with the other backends) ---------------------

    def held_by(self, rep: Any, slot: Slot, lead_id: str) -> Booking | None:
        """The booking this lead already holds at this slot, or None. A turn books before its commit
        (bot/assess.py): when a crash falls in between, the visitor's retry asks for the same slot
        again and gets the meeting it already holds — not "that time was just taken", and no
        second booking with the calendar service."""
        if slot.rep_id != rep.id:
            return None   # not this rep's slot: `reserve` says so (ValueError)
        with self.store.session(readonly=True) as s:
            m = s.scalars(select(Meeting).where(Meeting.rep_id == rep.id, Meeting.start == _naive(slot.start),
                                                Meeting.lead_id == lead_id, Meeting.status.in_(ACTIVE))).first()
            if m is None:
                return None
            return Booking(status=m.status, external_id=m.external_id, ics=m.ics or "", meeting_id=m.id)

    def reserve(self, rep: Any, slot: Slot, *, lead_id: str, timezone: str = "UTC", status: str = "pending",
                backend: str = "local", external_id: str | None = None, ics: str | None = None) -> int:
        """Insert the meeting row; SlotTaken if the rep already has a meeting at that start (the unique
        constraint decides races) or one overlapping it."""
        if slot.rep_id != rep.id:
            raise ValueError(f"slot is for rep {slot.rep_id!r}, not {rep.id!r}")
        start, end = _naive(slot.start), _naive(slot.end)
        values = dict(lead_id=lead_id, rep_id=rep.id, start=start, end=end, timezone=timezone, status=status,
                      backend=backend, external_id=external_id, ics=ics)
        try:
            with self.store.session() as s:
                clash = s.execute(select(Meeting.id).where(
                    Meeting.rep_id == rep.id, Meeting.status.in_(ACTIVE), Meeting.start != start,
                    Meeting.start < end, Meeting.end > start).limit(1)).first()
                if clash:
                    raise SlotTaken(f"{rep.id} already has a meeting overlapping {slot.start.isoformat()}")
                m = Meeting(**values)
                s.add(m)
                s.flush()
                return m.id
        except IntegrityError:
            pass
        # the (rep_id, start) row exists: reuse it only if that meeting was cancelled
        with self.store.session() as s:
            res = s.execute(update(Meeting).where(Meeting.rep_id == rep.id, Meeting.start == start,
                                                  Meeting.status == "cancelled").values(**values))
            if res.rowcount == 1:
                return s.execute(select(Meeting.id).where(Meeting.rep_id == rep.id, Meeting.start == start)).scalar_one()
        raise SlotTaken(f"{rep.id} is already booked at {slot.start.isoformat()}")

    def confirm(self, meeting_id: int, *, status: str, external_id: str | None = None, ics: str | None = None) -> None:
        with self.store.session() as s:
            m = s.get(Meeting, meeting_id)
            if m is None:
                return
            m.status = status
            if external_id is not None:
                m.external_id = external_id
            if ics is not None:
                m.ics = ics

    def release(self, meeting_id: int) -> None:
        """Give the slot back (the calendar service refused or failed)."""
        with self.store.session() as s:
            m = s.get(Meeting, meeting_id)
            if m is not None:
                m.status = "cancelled"
