"""A local Cal.com API v2 for tests: real HTTP on 127.0.0.1, the documented request and response shapes.

    GET  /v2/slots?eventTypeId=&start=&end=&timeZone=     (cal-api-version: 2024-09-04)
         -> 200 {"status": "success", "data": {"YYYY-MM-DD": [{"start": "<ISO with offset>"}]}}
    POST /v2/bookings                                     (cal-api-version: 2024-08-13)
         {"start": "<UTC ISO>", "eventTypeId": N, "attendee": {"name", "email", "timeZone"}, ...}
         -> 201 {"status": "success", "data": {"id", "uid", "status": "accepted"|"pending", "start", "end", ...}}

Usage::

    def test_x(fake_calcom):
        fake_calcom.add_slots(datetime(2026, 11, 26, 14, tzinfo=timezone.utc), ...)
        fake_calcom.requires_confirmation = True      # bookings answer "pending"
        fake_calcom.taken.add(some_start)             # that start answers 409
        ... CalcomCalendar(..., api_url=fake_calcom.url, api_key=fake_calcom.api_key, event_type_id=fake_calcom.event_type_id)
        fake_calcom.requests[-1]  # {"method", "path", "args", "headers", "json"}

Wrong key -> 401; wrong or missing cal-api-version, unknown event type, or a malformed body -> 400,
each with Cal.com's error shape {"status": "error", "error": {"code", "message"}}. A booked start
leaves the free slots, and booking it again answers 409.
"""
from __future__ import annotations

import itertools
import json
import secrets
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest
from werkzeug.wrappers import Request, Response

from http_fake import HttpFake, json_response, serving

SLOTS_VERSION = "2024-09-04"
BOOKINGS_VERSION = "2024-08-13"


def _utc(s: str) -> datetime:
    d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if d.tzinfo is None:   # a bare date or naive time is UTC
        d = d.replace(tzinfo=timezone.utc)
    return d.astimezone(timezone.utc)


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"status": "error", "timestamp": datetime.now(timezone.utc).isoformat(),
                          "path": "", "error": {"code": code, "message": message}})


class FakeCalcom(HttpFake):
    """Started on construction; ``.url`` is the API base."""

    def __init__(self) -> None:
        super().__init__()
        self.api_key = "cal_test_" + secrets.token_hex(6)
        self.event_type_id = 4242
        self.length_minutes = 30
        self.slots: set[datetime] = set()             # free starts, aware UTC
        self.taken: set[datetime] = set()             # starts that answer 409 (someone else got them)
        self.requires_confirmation = False            # True: bookings answer status "pending"
        self.bookings: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self.start()

    def add_slots(self, *starts: datetime) -> None:
        self.slots.update(s.astimezone(timezone.utc) for s in starts)

    # -- the WSGI app ------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        body = None
        if req.data:
            try:
                body = json.loads(req.data)
            except ValueError:
                body = req.data.decode("utf-8", "replace")
        with self._lock:
            self.requests.append({"method": req.method, "path": req.path, "args": dict(req.args),
                                  "headers": {k.lower(): v for k, v in req.headers.items()}, "json": body})
        if req.headers.get("Authorization") != f"Bearer {self.api_key}":
            resp = _error(401, "UnauthorizedException", "Invalid API Key")
        elif req.method == "GET" and req.path == "/v2/slots":
            resp = self._slots(req)
        elif req.method == "POST" and req.path == "/v2/bookings":
            resp = self._book(req, body)
        else:
            resp = _error(404, "NotFoundException", f"Cannot {req.method} {req.path}")
        return resp

    def _slots(self, req: Request) -> Response:
        if req.headers.get("cal-api-version") != SLOTS_VERSION:
            return _error(400, "BadRequestException", f"slots need cal-api-version: {SLOTS_VERSION}")
        a = req.args
        if str(a.get("eventTypeId")) != str(self.event_type_id):
            return _error(400, "BadRequestException", "unknown eventTypeId")
        try:
            start, end = _utc(a["start"]), _utc(a["end"])
            tz = ZoneInfo(a.get("timeZone") or "UTC")
        except (KeyError, ValueError) as e:
            return _error(400, "BadRequestException", f"bad query: {e}")
        data: dict[str, list[dict[str, str]]] = {}
        with self._lock:
            free = sorted(s for s in self.slots if start <= s < end and s not in self.taken)
        for s in free:
            local = s.astimezone(tz)
            data.setdefault(local.date().isoformat(), []).append(
                {"start": local.isoformat(timespec="milliseconds")})
        return json_response(200, {"status": "success", "data": data})

    def _book(self, req: Request, body: Any) -> Response:
        if req.headers.get("cal-api-version") != BOOKINGS_VERSION:
            return _error(400, "BadRequestException", f"bookings need cal-api-version: {BOOKINGS_VERSION}")
        if not isinstance(body, dict):
            return _error(400, "BadRequestException", "body must be JSON")
        att = body.get("attendee")
        if body.get("eventTypeId") != self.event_type_id:
            return _error(400, "BadRequestException", "eventTypeId must be the event type's id (a number)")
        if not isinstance(att, dict) or not all(isinstance(att.get(k), str) and att.get(k) for k in ("name", "email", "timeZone")):
            return _error(400, "BadRequestException", "attendee needs name, email and timeZone")
        try:
            start = _utc(body["start"])
            ZoneInfo(att["timeZone"])
        except (KeyError, ValueError) as e:
            return _error(400, "BadRequestException", f"bad start or timeZone: {e}")
        if not str(body["start"]).endswith("Z"):
            return _error(400, "BadRequestException", "start must be in UTC (ending in Z)")
        with self._lock:
            if start in self.taken:
                return _error(409, "ConflictException", "User either already has booking at this time or is not available")
            if start not in self.slots:
                return _error(400, "BadRequestException", "no_available_users_found_error")
            self.slots.discard(start)
            self.taken.add(start)
            booking_id = next(self._ids)
            booking = {
                "id": booking_id, "uid": f"uid{booking_id}{secrets.token_hex(4)}",
                "title": f"Meeting between host and {att['name']}",
                "status": "pending" if self.requires_confirmation else "accepted",
                "start": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "end": (start + timedelta(minutes=self.length_minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "duration": self.length_minutes, "eventTypeId": self.event_type_id,
                "attendees": [{"name": att["name"], "email": att["email"], "timeZone": att["timeZone"]}],
                "metadata": body.get("metadata") or {},
            }
            self.bookings.append(booking)
        return json_response(201, {"status": "success", "data": booking})


@pytest.fixture
def fake_calcom() -> Iterator[FakeCalcom]:
    yield from serving(FakeCalcom())
