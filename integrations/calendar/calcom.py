"""Cal.com through its API v2: free slots of one event type, and bookings of it.

    GET  {api}/v2/slots?eventTypeId=..&start=..&end=..&timeZone=UTC     cal-api-version: 2024-09-04
         -> {"status": "success", "data": {"2026-11-26": [{"start": "2026-11-26T14:00:00.000Z"}, ...]}}
    POST {api}/v2/bookings                                             cal-api-version: 2024-08-13
         {"start": "2026-11-26T14:00:00Z", "eventTypeId": 123,
          "attendee": {"name": .., "email": .., "timeZone": ..}}
         -> {"status": "success", "data": {"uid": .., "status": "accepted" | "pending", ...}}

Authorization: Bearer CALCOM_API_KEY. An event type that needs the host's confirmation answers
"pending": the meeting is recorded as pending. A slot someone else took answers 409 (or a 400
saying no host is available) and becomes SlotTaken. Cal.com sends its own invitations; the .ics
returned here is the same meeting for our records.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping

import httpx

from bot.booking import Booking, CalendarUnavailable, Slot, SlotTaken, as_utc
from bot.store import Store
from integrations.calendar import make_ics
from integrations.calendar.local import LocalCalendar, horizon

SLOTS_API_VERSION = "2024-09-04"
BOOKINGS_API_VERSION = "2024-08-13"
_TAKEN_HINTS = ("no_available_users_found", "no available users", "already has booking", "already booked",
                "not available", "slot is taken")


def _iso_z(dt: datetime) -> str:
    return as_utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(s: str) -> datetime:
    return as_utc(datetime.fromisoformat(s.replace("Z", "+00:00")))


def _error_text(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return " ".join(str(err.get(k, "")) for k in ("code", "message", "details") if err.get(k)).strip() or str(body)[:300]
    return (str(body.get("message")) if isinstance(body, dict) and body.get("message") else str(body))[:300]


class CalcomCalendar:
    name = "calcom"

    def __init__(self, store: Store, cal: Any, *, api_key: str, api_url: str = "https://api.cal.com",
                 event_type_id: int, timeout: float = 10, transport: httpx.BaseTransport | None = None):
        self.cal, self.api_key, self.event_type_id, self.timeout = cal, api_key, int(event_type_id), timeout
        self.api_url = api_url.rstrip("/")
        if self.api_url.endswith("/v2"):
            self.api_url = self.api_url[:-3]
        self.transport = transport
        self.db = LocalCalendar(store, cal)

    def _request(self, method: str, path: str, version: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}", "cal-api-version": version,
                   "Accept": "application/json"}
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
                r = client.request(method, f"{self.api_url}{path}", headers=headers, **kwargs)
        except httpx.HTTPError as e:
            raise CalendarUnavailable(f"Cal.com ({self.api_url}) could not be reached: {e}") from e
        if r.status_code in (401, 403):
            raise CalendarUnavailable(f"Cal.com refused the API key (HTTP {r.status_code}): check CALCOM_API_KEY "
                                      f"and that it can use event type {self.event_type_id}")
        return r

    # -- the CalendarBackend interface --------------------------------------------------------

    def free_slots(self, rep: Any, now_utc: datetime) -> list[Slot]:
        now = as_utc(now_utc)
        earliest = now + timedelta(hours=float(self.cal.min_notice_hours))
        end = now + timedelta(days=int(self.cal.days_ahead) + 1)
        r = self._request("GET", "/v2/slots", SLOTS_API_VERSION, params={
            "eventTypeId": self.event_type_id, "start": _iso_z(earliest), "end": _iso_z(end), "timeZone": "UTC"})
        if r.status_code != 200:
            raise CalendarUnavailable(f"Cal.com slots failed (HTTP {r.status_code}): {_error_text(r)}")
        data = (r.json() or {}).get("data") or {}
        length = timedelta(minutes=int(self.cal.slot_minutes))
        busy = self.db.busy(rep, *horizon(now, self.cal))
        out: list[Slot] = []
        for day_slots in data.values():
            for item in day_slots or []:
                start = _parse_time(item["start"])
                stop = _parse_time(item["end"]) if item.get("end") else start + length
                if start < earliest or any(start < b1 and b0 < stop for b0, b1 in busy):
                    continue
                out.append(Slot(start, stop, rep.id))
        return sorted(set(out), key=lambda s: s.start)

    def book(self, rep: Any, slot: Slot, attendee: Mapping[str, Any], title: str, description: str = "",
             *, lead_id: str) -> Booking:
        held = self.db.held_by(rep, slot, lead_id)   # a retry after a crash: the meeting it already holds
        if held is not None:
            return held
        tz = attendee.get("timezone") or "UTC"
        mid = self.db.reserve(rep, slot, lead_id=lead_id, timezone=tz, status="pending", backend=self.name)
        try:
            body: dict[str, Any] = {
                "start": _iso_z(slot.start),
                "eventTypeId": self.event_type_id,
                "attendee": {"name": attendee.get("name") or attendee.get("email") or "Guest",
                             "email": attendee["email"], "timeZone": tz},
                "metadata": {"lead_id": lead_id, "rep_id": rep.id},
            }
            if description:
                body["bookingFieldsResponses"] = {"notes": description[:1000]}
            r = self._request("POST", "/v2/bookings", BOOKINGS_API_VERSION, json=body)
            if r.status_code == 409:
                raise SlotTaken(f"Cal.com: the slot at {slot.start.isoformat()} is taken ({_error_text(r)})")
            if r.status_code == 400 and any(h in _error_text(r).lower() for h in _TAKEN_HINTS):
                raise SlotTaken(f"Cal.com: the slot at {slot.start.isoformat()} is no longer available ({_error_text(r)})")
            if r.status_code not in (200, 201):
                raise CalendarUnavailable(f"Cal.com booking failed (HTTP {r.status_code}): {_error_text(r)}")
            data = (r.json() or {}).get("data") or {}
            if isinstance(data, list):          # a recurring event type answers a list
                data = data[0] if data else {}
            state = str(data.get("status", "accepted")).lower()
            if state not in ("accepted", "pending"):
                raise CalendarUnavailable(f"Cal.com answered a booking with status {state!r}")
        except BaseException:
            self.db.release(mid)
            raise
        status = "pending" if state == "pending" else "booked"
        uid = str(data.get("uid") or data.get("id") or "")
        ics = make_ics(uid=f"{uid}@cal.com" if uid else f"{mid}@open-sdr", slot=slot, title=title,
                       description=description, organizer_email=rep.email, organizer_name=rep.name,
                       attendee=attendee, status="TENTATIVE" if status == "pending" else "CONFIRMED")
        self.db.confirm(mid, status=status, external_id=uid or None, ics=ics)
        return Booking(status=status, external_id=uid or None, ics=ics, meeting_id=mid)
