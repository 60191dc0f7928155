"""Calendars the SDR books meetings in: local (offline), CalDAV, Cal.com.

Every backend answers the same two questions (`CalendarBackend`, defined in the core so the turn
can use it without importing this package):

    free_slots(rep, now_utc) -> list[Slot]
    book(rep, slot, attendee, title, description, *, lead_id) -> Booking   # raises SlotTaken

and records the meeting in the `meetings` table, whose (rep_id, start) unique constraint is what
keeps two visitors from getting the same slot, whatever the calendar behind it does.

`make_calendar(playbook, store, settings=...)` picks the backend from `playbook.calendar.backend`; the
secrets come from the settings (bot/settings.py): SDR_CALDAV_USERNAME / SDR_CALDAV_PASSWORD, CALCOM_API_KEY.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any, Mapping

from bot.booking import Booking, CalendarBackend, CalendarUnavailable, Slot, SlotTaken

__all__ = ["Booking", "CalendarBackend", "CalendarConfigError", "CalendarUnavailable", "Slot", "SlotTaken",
           "make_calendar", "make_ics", "new_uid"]


class CalendarConfigError(ValueError):
    """The playbook or the environment lacks what the chosen calendar backend needs."""


def new_uid() -> str:
    return f"{secrets.token_hex(12)}@open-sdr"


def make_ics(*, uid: str, slot: Slot, title: str, description: str, organizer_email: str,
             organizer_name: str | None, attendee: Mapping[str, Any], method: str | None = "REQUEST",
             status: str = "CONFIRMED") -> str:
    """An iCalendar VCALENDAR with one VEVENT, times in UTC. `method="REQUEST"` makes it an invitation
    (iTIP); `method=None` gives the plain calendar object a CalDAV server stores."""
    from icalendar import Calendar, Event, vCalAddress, vText

    cal = Calendar()
    cal.add("prodid", "-//open-sdr//booking//EN")
    cal.add("version", "2.0")
    if method:
        cal.add("method", method)
    ev = Event()
    ev.add("uid", uid)
    ev.add("dtstamp", datetime.now(timezone.utc).replace(microsecond=0))
    ev.add("dtstart", slot.start.astimezone(timezone.utc))
    ev.add("dtend", slot.end.astimezone(timezone.utc))
    ev.add("summary", title)
    if description:
        ev.add("description", description)
    ev.add("status", status)
    ev.add("sequence", 0)
    org = vCalAddress(f"mailto:{organizer_email}")
    if organizer_name:
        org.params["cn"] = vText(organizer_name)
    ev.add("organizer", org)
    if attendee.get("email"):
        att = vCalAddress(f"mailto:{attendee['email']}")
        if attendee.get("name"):
            att.params["cn"] = vText(attendee["name"])
        att.params["role"] = vText("REQ-PARTICIPANT")
        att.params["partstat"] = vText("NEEDS-ACTION")
        att.params["rsvp"] = vText("TRUE")
        ev.add("attendee", att)
    cal.add_component(ev)
    return cal.to_ical().decode("utf-8")


def _secrets(settings: Any) -> dict[str, str | None]:
    if settings is None:
        from bot.settings import Settings

        settings = Settings.from_env()
    return {"SDR_CALDAV_USERNAME": settings.caldav_username, "SDR_CALDAV_PASSWORD": settings.secret("caldav_password"),
            "CALCOM_API_KEY": settings.secret("calcom_api_key")}


def make_calendar(playbook: Any, store: Any, env: Mapping[str, str] | None = None, *,
                  settings: Any = None) -> CalendarBackend:
    """The backend named by `playbook.calendar.backend`; raises CalendarConfigError naming what to set.
    The secrets come from `settings` (default: the environment as it is now), or from `env`, a mapping
    of variable names to values (tests)."""
    if env is None:
        env = {k: v for k, v in _secrets(settings).items() if v is not None}
    cal = playbook.calendar
    backend = cal.backend
    if backend == "local":
        from integrations.calendar.local import LocalCalendar
        return LocalCalendar(store, cal)
    if backend == "caldav":
        if not cal.caldav_url:
            raise CalendarConfigError(
                "calendar.backend is caldav but calendar.caldav_url is not set in the playbook "
                "(the URL of each rep's calendar collection; {rep_id} is replaced by the rep's id)")
        username, password = env.get("SDR_CALDAV_USERNAME"), env.get("SDR_CALDAV_PASSWORD")
        missing = [n for n, v in (("SDR_CALDAV_USERNAME", username), ("SDR_CALDAV_PASSWORD", password)) if v is None]
        if missing:
            raise CalendarConfigError(
                f"calendar.backend is caldav: set {' and '.join(missing)} in the environment "
                "(the CalDAV account; an empty SDR_CALDAV_PASSWORD is allowed for a server without a password)")
        from integrations.calendar.caldav_backend import CalDAVCalendar
        return CalDAVCalendar(store, cal, url=cal.caldav_url, username=username, password=password)
    if backend == "calcom":
        key = env.get("CALCOM_API_KEY")
        if not key:
            raise CalendarConfigError("calendar.backend is calcom: set CALCOM_API_KEY in the environment "
                                      "(a Cal.com API key, Settings → Developer → API keys)")
        if not cal.calcom_event_type_id:
            raise CalendarConfigError("calendar.backend is calcom but calendar.calcom_event_type_id is not set "
                                      "in the playbook (the id of the Cal.com event type to book)")
        from integrations.calendar.calcom import CalcomCalendar
        return CalcomCalendar(store, cal, api_key=key, api_url=cal.calcom_api_url,
                              event_type_id=int(cal.calcom_event_type_id))
    raise CalendarConfigError(f"calendar.backend {backend!r}: use local, caldav or calcom")
