"""CalDAV calendars (Nextcloud, Radicale, Fastmail, iCloud, Baïkal...) through the `caldav` library.

`calendar.caldav_url` is the URL of a rep's calendar collection; `{rep_id}` (and `{email}`) in it
are replaced per rep, e.g. https://dav.example.com/remote.php/dav/calendars/{rep_id}/work/.
The account comes from SDR_CALDAV_USERNAME / SDR_CALDAV_PASSWORD.

Busy = the events in the rep's calendar (all-day events block the rep's whole local day; events
marked TRANSPARENT or CANCELLED don't) plus the meetings in the database. Booking holds the slot
in the database first (so two visitors can't both get it), checks the calendar is still free
there, then saves the event; if that fails the slot is given back.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from bot.booking import Booking, CalendarUnavailable, Slot, SlotTaken, as_utc, working_slots
from bot.store import Store
from integrations.calendar import make_ics, new_uid
from integrations.calendar.local import LocalCalendar, horizon


def _to_utc(value: Any, tz: ZoneInfo) -> datetime:
    """A DTSTART/DTEND value as aware UTC: dates are midnight and floating times are local to `tz`."""
    if isinstance(value, datetime):
        return as_utc(value.replace(tzinfo=tz) if value.tzinfo is None else value)
    if isinstance(value, date):
        return as_utc(datetime.combine(value, time(0), tzinfo=tz))
    raise ValueError(f"not a date or datetime: {value!r}")


def event_interval(comp: Any, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    """(start, end) in UTC of a VEVENT that makes the rep busy, else None."""
    if str(comp.get("status", "")).upper() == "CANCELLED" or str(comp.get("transp", "")).upper() == "TRANSPARENT":
        return None
    if comp.get("dtstart") is None:
        return None
    raw_start = comp.decoded("dtstart")
    start = _to_utc(raw_start, tz)
    if comp.get("dtend") is not None:
        end = _to_utc(comp.decoded("dtend"), tz)
    elif comp.get("duration") is not None:
        end = start + comp.decoded("duration")
    elif isinstance(raw_start, datetime):
        end = start
    else:   # an all-day event without an end is one day long
        end = _to_utc(raw_start + timedelta(days=1), tz)
    return start, max(start, end)


class CalDAVCalendar:
    name = "caldav"

    def __init__(self, store: Store, cal: Any, *, url: str, username: str | None, password: str | None,
                 timeout: float = 15):
        self.cal, self.url, self.username, self.password, self.timeout = cal, url, username, password, timeout
        self.db = LocalCalendar(store, cal)

    def calendar_url(self, rep: Any) -> str:
        return self.url.replace("{rep_id}", rep.id).replace("{email}", rep.email)

    def _client(self, rep: Any) -> Any:
        import caldav
        return caldav.DAVClient(url=self.calendar_url(rep), username=self.username or None,
                                password=self.password if self.username else None,
                                timeout=int(self.timeout), enable_rfc6764=False)

    def _remote_busy(self, rep: Any, start_utc: datetime, end_utc: datetime) -> list[tuple[datetime, datetime]]:
        tz = ZoneInfo(rep.timezone)
        try:
            with self._client(rep) as client:
                calendar = client.calendar(url=self.calendar_url(rep))
                events = calendar.search(start=as_utc(start_utc), end=as_utc(end_utc), event=True, expand=True)
                out = []
                for ev in events:
                    iv = event_interval(ev.icalendar_component, tz)
                    if iv and iv[0] < as_utc(end_utc) and iv[1] > as_utc(start_utc):
                        out.append(iv)
                return out
        except Exception as e:  # noqa: BLE001 - any transport or server error: the calendar is unavailable
            raise CalendarUnavailable(f"CalDAV calendar {self.calendar_url(rep)} could not be read: {e}") from e

    # -- the CalendarBackend interface --------------------------------------------------------

    def busy(self, rep: Any, start_utc: datetime, end_utc: datetime) -> list[tuple[datetime, datetime]]:
        return sorted(self._remote_busy(rep, start_utc, end_utc) + self.db.busy(rep, start_utc, end_utc))

    def free_slots(self, rep: Any, now_utc: datetime) -> list[Slot]:
        return working_slots(rep, now_utc, self.cal, self.busy(rep, *horizon(now_utc, self.cal)))

    def book(self, rep: Any, slot: Slot, attendee: Mapping[str, Any], title: str, description: str = "",
             *, lead_id: str) -> Booking:
        held = self.db.held_by(rep, slot, lead_id)   # a retry after a crash: the meeting it already holds
        if held is not None:
            return held
        uid = new_uid()
        common = dict(uid=uid, slot=slot, title=title, description=description, organizer_email=rep.email,
                      organizer_name=rep.name, attendee=attendee)
        invite = make_ics(**common)                 # METHOD:REQUEST, for the attendee
        stored = make_ics(**common, method=None)    # a calendar object resource carries no METHOD
        mid = self.db.reserve(rep, slot, lead_id=lead_id, timezone=attendee.get("timezone") or "UTC",
                              status="pending", backend=self.name, external_id=uid, ics=invite)
        try:
            if self._remote_busy(rep, slot.start, slot.end):
                raise SlotTaken(f"{rep.id}'s calendar is busy at {slot.start.isoformat()}")
            try:
                with self._client(rep) as client:
                    client.calendar(url=self.calendar_url(rep)).add_event(stored)
            except Exception as e:  # noqa: BLE001
                raise CalendarUnavailable(f"CalDAV calendar {self.calendar_url(rep)} refused the event: {e}") from e
        except BaseException:
            self.db.release(mid)
            raise
        self.db.confirm(mid, status="booked")
        return Booking(status="booked", external_id=uid, ics=invite, meeting_id=mid)
