"""Meeting booking: slots in the rep's hours shown in the visitor's zone, picks in plain words, DST,
the double-booking race, the .ics, and the three calendars (local, CalDAV on a real Radicale,
Cal.com on a local fake)."""
from __future__ import annotations

import ast
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.booking import (Booking, CalendarUnavailable, Slot, SlotTaken, choose_offer, format_offer, parse_pick,
                         working_slots)
from bot.playbook import Calendar, Playbook, Rep
from bot.store import Lead, Meeting, Store, new_id
from fake_calcom import FakeCalcom, fake_calcom  # noqa: F401  (fixture)

UTC = timezone.utc
ROOT = Path(__file__).resolve().parent.parent

MAYA = Rep(id="maya", name="Maya Chen", email="maya@pipelark.example", timezone="America/New_York",
           working_hours="09:00-17:00")
TOM = Rep(id="tom", name="Tom Okafor", email="tom@pipelark.example", timezone="Europe/London",
          working_hours="09:00-17:30")
CAL = Calendar(slot_minutes=30, min_notice_hours=4, days_ahead=10)
VISITOR = {"name": "Ada Lovelace", "email": "ada@example.org", "timezone": "Europe/Berlin"}


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.fixture
def store(settings: Any) -> Iterator[Store]:
    settings.ensure_dirs()
    s = Store(settings.database_url)
    yield s
    s.dispose()


PG = os.environ.get("SDR_TEST_DATABASE_URL")


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: Any, settings: Any) -> Iterator[Store]:
    """The same tests on SQLite and, when SDR_TEST_DATABASE_URL is set (.ci/run sets it), PostgreSQL."""
    if request.param == "sqlite":
        settings.ensure_dirs()
        url = settings.database_url
    else:
        if not PG:
            pytest.skip("set SDR_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) "
                        "to run this on PostgreSQL; .ci/run does")
        from sqlalchemy import create_engine

        from bot.store import Base
        eng = create_engine(PG)
        Base.metadata.drop_all(eng)
        eng.dispose()
        url = PG
    s = Store(url)
    yield s
    s.dispose()


def make_lead(store: Store, email: str | None = None) -> str:
    lid = new_id("lead")
    with store.session() as s:
        s.add(Lead(id=lid, email=email))
    return lid


def playbook(**calendar: Any) -> Playbook:
    return Playbook(reps=[MAYA, TOM], calendar=Calendar(**{"slot_minutes": 30, "min_notice_hours": 4,
                                                           "days_ahead": 10, **calendar}))


# ---------------------------------------------------------------------------------------------
# Slots and offers (pure)

NOW = utc(2026, 11, 23, 12, 0)   # Mon 23 Nov 2026, 07:00 in New York


def test_slots_lie_in_the_reps_working_hours_notice_and_horizon() -> None:
    slots = working_slots(MAYA, NOW, CAL, [])
    ny = ZoneInfo("America/New_York")
    assert slots, "a rep with working hours has slots"
    assert slots[0].start == utc(2026, 11, 23, 16, 0)          # 07:00 + 4 h notice -> 11:00 EST
    for s in slots:
        local_start, local_end = s.start.astimezone(ny), s.end.astimezone(ny)
        assert local_start.weekday() < 5, s                   # mon-fri only
        assert (9, 0) <= (local_start.hour, local_start.minute) and (local_end.hour, local_end.minute) <= (17, 0), s
        assert s.end - s.start == timedelta(minutes=30)
        assert s.start >= NOW + timedelta(hours=4)
        assert s.start.tzinfo == UTC and s.rep_id == "maya"
    assert max(s.start for s in slots).astimezone(ny).date() <= (NOW.astimezone(ny) + timedelta(days=10)).date()
    assert len({s.start for s in slots}) == len(slots)
    # Thu 3 Dec is the last working day in the 10-day horizon: 16 slots of 30 min
    assert sum(1 for s in slots if s.start.astimezone(ny).day == 3) == 16


def test_busy_intervals_remove_only_the_slots_they_overlap() -> None:
    busy = [(utc(2026, 11, 24, 15, 15), utc(2026, 11, 24, 16, 0)),   # Tue 10:15-11:00 EST
            (datetime(2026, 11, 25, 14, 0), datetime(2026, 11, 25, 22, 0))]   # naive = UTC: all Wed
    starts = {s.start for s in working_slots(MAYA, NOW, CAL, busy)}
    assert utc(2026, 11, 24, 15, 0) not in starts and utc(2026, 11, 24, 15, 30) not in starts
    assert utc(2026, 11, 24, 14, 30) in starts and utc(2026, 11, 24, 16, 0) in starts
    assert not any(s.date() == datetime(2026, 11, 25).date() for s in starts)


def test_offer_in_the_visitors_zone_berlin_and_kolkata() -> None:
    slots = working_slots(MAYA, NOW, CAL, [])
    berlin = choose_offer(slots, "Europe/Berlin")
    assert [s.label("Europe/Berlin") for s in berlin] == ["Mon 23 Nov, 5:00 pm", "Tue 24 Nov, 3:00 pm",
                                                          "Wed 25 Nov, 3:00 pm"]
    assert format_offer(berlin, "Europe/Berlin") == (
        "Here are three times (Europe/Berlin): 1) Mon 23 Nov, 5:00 pm 2) Tue 24 Nov, 3:00 pm "
        "3) Wed 25 Nov, 3:00 pm — which suits you?")
    # New York 9-17 is 19:30-03:30 in Kolkata: no slot in 9-18 there, so the ones nearest to it
    kolkata = choose_offer(slots, "Asia/Kolkata")
    assert [s.label("Asia/Kolkata") for s in kolkata] == ["Mon 23 Nov, 9:30 pm", "Tue 24 Nov, 7:30 pm",
                                                          "Wed 25 Nov, 7:30 pm"]
    for offer in (berlin, kolkata):
        assert len({s.start.date() for s in offer}) == 3     # three different days
        assert set(offer) <= set(slots)                       # only real slots: inside Maya's hours
    assert choose_offer(slots, "America/New_York")[0].label("America/New_York") == "Mon 23 Nov, 11:00 am"


def test_offer_prefers_visitor_daytime_and_spreads_within_few_days() -> None:
    # a rep working 06:00-22:00 in UTC: for Berlin the first slot each day is 7:00, outside 9-18
    early = Rep(id="e", name="E", email="e@x.example", timezone="UTC", working_hours="06:00-22:00")
    slots = working_slots(early, utc(2026, 11, 23, 0, 0), CAL, [])
    offer = choose_offer(slots, "Europe/Berlin")
    assert [s.label("Europe/Berlin") for s in offer] == ["Mon 23 Nov, 9:00 am", "Tue 24 Nov, 9:00 am",
                                                         "Wed 25 Nov, 9:00 am"]
    # only one day left: three slots from that day, spread out
    one_day = [s for s in slots if s.start.date() == datetime(2026, 11, 24).date()]
    offer = choose_offer(one_day, "Europe/Berlin")
    assert len(offer) == 3
    assert all(b.start - a.start >= timedelta(hours=2) for a, b in zip(offer, offer[1:]))
    assert choose_offer([], "Europe/Berlin") == []
    assert "couldn't find" in format_offer([], "Europe/Berlin")
    assert format_offer(offer[:1], "Europe/Berlin").startswith("Here is a time (Europe/Berlin): 1) Tue 24 Nov")


def test_slot_round_trips_through_json_state() -> None:
    s = Slot(utc(2026, 11, 26, 13, 0), utc(2026, 11, 26, 13, 30), "maya")
    assert Slot.from_dict(s.to_dict()) == s
    assert Slot(datetime(2026, 11, 26, 13, 0), datetime(2026, 11, 26, 13, 30), "maya") == s   # naive = UTC


# ---------------------------------------------------------------------------------------------
# DST


def test_dst_change_keeps_working_hours_in_local_time() -> None:
    # Europe/London leaves summer time on Sun 25 Oct 2026: 09:00 local is 08:00 UTC before, 09:00 after
    slots = working_slots(TOM, utc(2026, 10, 23, 0, 0), CAL, [])
    fri = [s for s in slots if s.start.date() == datetime(2026, 10, 23).date()]
    mon = [s for s in slots if s.start.date() == datetime(2026, 10, 26).date()]
    assert fri[0].start == utc(2026, 10, 23, 8, 0) and fri[-1].end == utc(2026, 10, 23, 16, 30)
    assert mon[0].start == utc(2026, 10, 26, 9, 0) and mon[-1].end == utc(2026, 10, 26, 17, 30)
    assert len(fri) == len(mon) == 17
    assert mon[0].label("Europe/London") == "Mon 26 Oct, 9:00 am"
    # a visitor in New York (which changes a week later, 1 Nov) sees London 9:00 as 4:00 then 5:00 am
    assert mon[0].label("America/New_York") == "Mon 26 Oct, 5:00 am"
    assert fri[0].label("America/New_York") == "Fri 23 Oct, 4:00 am"
    # a New York rep seen from Berlin: 9:00 EDT is 14:00 in Berlin in the gap week, 15:00 after it
    ny = working_slots(MAYA, utc(2026, 10, 26, 0, 0), CAL, [])
    firsts = {s.start.astimezone(ZoneInfo("America/New_York")).date(): s for s in reversed(ny)}
    assert firsts[datetime(2026, 10, 27).date()].label("Europe/Berlin") == "Tue 27 Oct, 2:00 pm"
    assert firsts[datetime(2026, 11, 3).date()].label("Europe/Berlin") == "Tue 3 Nov, 3:00 pm"


def test_booking_across_the_dst_change(store: Store) -> None:
    from icalendar import Calendar as ICal

    from integrations.calendar import make_calendar
    backend = make_calendar(playbook(), store)
    slots = backend.free_slots(TOM, utc(2026, 10, 23, 0, 0))
    monday_9 = next(s for s in slots if s.start.astimezone(ZoneInfo("Europe/London")).date().day == 26)
    assert monday_9.start == utc(2026, 10, 26, 9, 0)
    booking = backend.book(TOM, monday_9, VISITOR, "Pipelark intro", lead_id=make_lead(store))
    ev = ICal.from_ical(booking.ics).walk("VEVENT")[0]
    assert ev.decoded("dtstart") == utc(2026, 10, 26, 9, 0)
    assert "DTSTART:20261026T090000Z" in booking.ics


# ---------------------------------------------------------------------------------------------
# What the visitor picked

# Offered (Europe/Berlin): 1) Thu 26 Nov, 2:00 pm  2) Fri 27 Nov, 10:00 am  3) Mon 30 Nov, 10:30 am
OFFERED = [Slot(utc(2026, 11, 26, 13, 0), utc(2026, 11, 26, 13, 30), "maya"),
           Slot(utc(2026, 11, 27, 9, 0), utc(2026, 11, 27, 9, 30), "maya"),
           Slot(utc(2026, 11, 30, 9, 30), utc(2026, 11, 30, 10, 0), "maya")]
PICK_NOW = utc(2026, 11, 26, 7, 0)   # Thu 26 Nov, 8:00 in Berlin: "tomorrow" is Friday


@pytest.mark.parametrize("text, expected", [
    ("the second one", 2), ("2", 2), ("#3", 3), ("option 1", 1), ("first", 1), ("the last one", 3),
    ("Option two please", 2), ("3 please", 3), ("The 2nd works", 2), ("number 1", 1),
    ("Thursday 2pm works", 1), ("thu at 14:00", 1), ("Thursday 2 pm", 1), ("thurs @ 2", 1),
    ("tomorrow at 10", 2), ("Tomorrow 10am is perfect", 2), ("10:30am on Monday", 3),
    ("Monday 10.30", 3), ("27 Nov 10am", 2), ("Nov 27th at 10:00", 2), ("26 November, 2pm", 1),
    ("friday", 2), ("monday morning works", 3), ("Thursday afternoon", 1), ("today at 2pm", 1),
    ("let's do the first one on Thursday", 1), ("on the 27th", 2), ("Thu 26th at 2", 1), ("the 30th at 10:30", 3),
    ("2pm Thursday", 1), ("Let's go with option 3", 3), ("the third", 3), ("Can we do Friday?", 2),
    # nothing, or not exactly one
    ("none of those work", None), ("Neither, sorry", None), ("I can't do any of them", None),
    ("Do you have other times?", None), ("Tuesday 3pm", None), ("5", None), ("4pm", None),
    ("morning", None), ("the second one on Monday", None), ("first or second", None),
    ("what's the price?", None), ("", None), ("Thursday doesn't work", None), ("30 Nov 2pm", None),
    ("I'm free Friday but not Monday", None), ("noon thursday", None), ("the 28th", None),
])
def test_parse_pick(text: str, expected: int | None) -> None:
    got = parse_pick(text, OFFERED, "Europe/Berlin", PICK_NOW)
    assert got == (OFFERED[expected - 1] if expected else None), text


def test_parse_pick_reads_times_in_the_visitors_zone() -> None:
    # the same slot is Thu 6:30 pm in Kolkata
    assert parse_pick("Thursday 6:30pm", OFFERED, "Asia/Kolkata", PICK_NOW) == OFFERED[0]
    assert parse_pick("Thursday 2pm", OFFERED, "Asia/Kolkata", PICK_NOW) is None
    # one slot offered: a plain yes takes it
    assert parse_pick("yes, sounds good", OFFERED[:1], "Europe/Berlin", PICK_NOW) == OFFERED[0]
    assert parse_pick("yes, sounds good", OFFERED, "Europe/Berlin", PICK_NOW) is None
    assert parse_pick("2", [], "Europe/Berlin", PICK_NOW) is None


# ---------------------------------------------------------------------------------------------
# The local calendar: the race, the .ics


def test_double_booking_race_has_exactly_one_winner(any_store: Store) -> None:
    store = any_store
    from integrations.calendar.local import LocalCalendar
    backend = LocalCalendar(store, CAL)
    now = NOW
    slots = backend.free_slots(MAYA, now)
    leads = [make_lead(store, f"v{i}@example.org") for i in range(2)]
    for target in slots[:5]:      # five races, each on its own slot
        barrier = threading.Barrier(2)
        results: list[Any] = []

        def attempt(i: int) -> None:
            barrier.wait()
            try:
                results.append(backend.book(MAYA, target, {"name": f"V{i}", "email": f"v{i}@example.org",
                                                           "timezone": "Europe/Berlin"},
                                            "Intro", lead_id=leads[i]))
            except SlotTaken as e:
                results.append(e)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(type(r).__name__ for r in results) == ["Booking", "SlotTaken"], results
    with store.session() as s:
        rows = s.execute(select(Meeting).where(Meeting.rep_id == "maya")).scalars().all()
    assert len(rows) == 5 and {r.status for r in rows} == {"booked"}
    assert {r.start for r in rows} == {t.start.replace(tzinfo=None) for t in slots[:5]}
    # a third visitor is not offered the taken slots
    fresh = backend.free_slots(MAYA, now)
    assert not set(slots[:5]) & set(fresh)
    offer = choose_offer(fresh, "America/New_York")
    assert slots[0] not in offer and len(offer) == 3
    assert offer[0] == slots[5]                      # the next free one that day (11:00-13:30 went)
    # and booking a taken slot later still fails for anyone else …
    with pytest.raises(SlotTaken):
        backend.book(MAYA, slots[0], VISITOR, "Intro", lead_id=make_lead(store, "v3@example.org"))
    # … while the lead holding it gets its own meeting back (a retry after a crash: bot/assess.py)
    with store.session() as s:
        holder, held_id = s.execute(select(Meeting.lead_id, Meeting.id).where(
            Meeting.rep_id == "maya", Meeting.start == slots[0].start.replace(tzinfo=None))).one()
    assert backend.book(MAYA, slots[0], VISITOR, "Intro", lead_id=holder).meeting_id == held_id


def test_overlapping_and_cancelled_meetings(any_store: Store) -> None:
    store = any_store
    from integrations.calendar.local import LocalCalendar
    backend = LocalCalendar(store, CAL)
    lead = make_lead(store)
    hour = Slot(utc(2026, 11, 24, 15, 0), utc(2026, 11, 24, 16, 0), "maya")
    first = backend.book(MAYA, hour, VISITOR, "Long intro", lead_id=lead)
    half = Slot(utc(2026, 11, 24, 15, 30), utc(2026, 11, 24, 16, 0), "maya")
    with pytest.raises(SlotTaken):          # a different start, but inside the hour booked
        backend.book(MAYA, half, VISITOR, "Intro", lead_id=lead)
    other_rep = Slot(hour.start, hour.end, "tom")
    assert backend.book(TOM, other_rep, VISITOR, "Intro", lead_id=lead).status == "booked"
    backend.release(first.meeting_id)        # cancelled: the slot can be booked again
    again = backend.book(MAYA, hour, VISITOR, "Intro again", lead_id=lead)
    assert again.meeting_id == first.meeting_id and again.external_id != first.external_id
    with pytest.raises(ValueError):
        backend.book(MAYA, other_rep, VISITOR, "Intro", lead_id=lead)   # a slot of another rep


def test_invitation_ics_parses_back_with_utc_times_and_attendee(store: Store) -> None:
    from icalendar import Calendar as ICal

    from integrations.calendar.local import LocalCalendar
    backend = LocalCalendar(store, CAL)
    lead = make_lead(store, "ada@example.org")
    slot = OFFERED[0]
    booking = backend.book(MAYA, slot, VISITOR, "Pipelark × Ada: forecasting", "Wants forecasting; 200 people.",
                           lead_id=lead)
    assert isinstance(booking, Booking) and booking.status == "booked"
    cal = ICal.from_ical(booking.ics)
    assert str(cal["method"]) == "REQUEST" and str(cal["version"]) == "2.0"
    (ev,) = cal.walk("VEVENT")
    assert ev.decoded("dtstart") == utc(2026, 11, 26, 13, 0) and ev.decoded("dtstart").utcoffset() == timedelta(0)
    assert ev.decoded("dtend") == utc(2026, 11, 26, 13, 30)
    assert str(ev["uid"]) == booking.external_id
    assert str(ev["summary"]) == "Pipelark × Ada: forecasting"
    assert str(ev["description"]) == "Wants forecasting; 200 people."
    assert str(ev["organizer"]).lower() == "mailto:maya@pipelark.example"
    assert str(ev["attendee"]).lower() == "mailto:ada@example.org"
    assert ev["attendee"].params["CN"] == "Ada Lovelace" and ev["attendee"].params["RSVP"] == "TRUE"
    with store.session() as s:
        m = s.get(Meeting, booking.meeting_id)
        assert m.ics == booking.ics and m.lead_id == lead and m.timezone == "Europe/Berlin"
        assert m.start == datetime(2026, 11, 26, 13, 0) and m.end == datetime(2026, 11, 26, 13, 30)
        assert m.backend == "local" and m.status == "booked"


def test_make_calendar_says_what_to_set(store: Store) -> None:
    from integrations.calendar import CalendarConfigError, make_calendar
    assert make_calendar(playbook(), store, env={}).name == "local"
    with pytest.raises(CalendarConfigError, match="caldav_url"):
        make_calendar(playbook(backend="caldav"), store, env={})
    with pytest.raises(CalendarConfigError, match="SDR_CALDAV_USERNAME and SDR_CALDAV_PASSWORD"):
        make_calendar(playbook(backend="caldav", caldav_url="http://127.0.0.1:1/{rep_id}/"), store, env={})
    with pytest.raises(CalendarConfigError, match="SDR_CALDAV_PASSWORD"):
        make_calendar(playbook(backend="caldav", caldav_url="http://127.0.0.1:1/"), store,
                      env={"SDR_CALDAV_USERNAME": "u"})
    with pytest.raises(CalendarConfigError, match="CALCOM_API_KEY"):
        make_calendar(playbook(backend="calcom", calcom_event_type_id=1), store, env={})
    with pytest.raises(CalendarConfigError, match="calcom_event_type_id"):
        make_calendar(playbook(backend="calcom"), store, env={"CALCOM_API_KEY": "k"})
    assert make_calendar(playbook(backend="calcom", calcom_event_type_id=1), store,
                         env={"CALCOM_API_KEY": "k"}).name == "calcom"


def test_core_imports_no_integration_or_client() -> None:
    tree = ast.parse((ROOT / "bot" / "booking.py").read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    roots = {n.split(".")[0] for n in names}
    assert not roots & {"integrations", "httpx", "requests", "urllib", "caldav", "icalendar", "niquests", "sqlalchemy"}


# ---------------------------------------------------------------------------------------------
# CalDAV against a real Radicale server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[str]:
    if importlib.util.find_spec("radicale") is None:
        pytest.skip("radicale is not installed (pip install -e '.[dev]'): the CalDAV test needs a real server")
    port = _free_port()
    log = open(tmp_path / "radicale.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", "", "--server-hosts", f"127.0.0.1:{port}",
         "--storage-filesystem-folder", str(tmp_path / "collections"), "--auth-type", "none",
         "--rights-type", "owner_only", "--logging-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"radicale exited: {(tmp_path / 'radicale.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("radicale did not start in 20 s")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_caldav_books_into_a_real_radicale_and_the_slot_turns_busy(radicale: str, store: Store) -> None:
    import caldav
    from icalendar import Calendar as ICal

    from integrations.calendar import make_calendar
    from integrations.calendar.caldav_backend import CalDAVCalendar

    with caldav.DAVClient(url=radicale, username="alice", password="pw", enable_rfc6764=False) as c:
        remote = c.principal().make_calendar(name="Maya", cal_id="maya")
        # something Maya put in her calendar herself: Tue 24 Nov 10:00-11:00 New York
        remote.add_event("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
                         "UID:dentist@example\r\nDTSTAMP:20261101T000000Z\r\n"
                         "DTSTART;TZID=America/New_York:20261124T100000\r\n"
                         "DTEND;TZID=America/New_York:20261124T110000\r\n"
                         "SUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    pb = playbook(backend="caldav", caldav_url=radicale + "/alice/{rep_id}/")
    backend = make_calendar(pb, store, env={"SDR_CALDAV_USERNAME": "alice", "SDR_CALDAV_PASSWORD": "pw"})
    assert isinstance(backend, CalDAVCalendar)

    slots = backend.free_slots(MAYA, NOW)
    starts = {s.start for s in slots}
    assert utc(2026, 11, 24, 15, 0) not in starts and utc(2026, 11, 24, 15, 30) not in starts   # the dentist
    assert utc(2026, 11, 24, 14, 30) in starts and utc(2026, 11, 24, 16, 0) in starts

    target = next(s for s in slots if s.start == utc(2026, 11, 25, 15, 0))
    booking = backend.book(MAYA, target, VISITOR, "Pipelark intro", "Forecasting", lead_id=make_lead(store))
    assert booking.status == "booked" and booking.external_id

    # the event is on the server, with our UID and the right UTC times, stored without METHOD
    with caldav.DAVClient(url=radicale, username="alice", password="pw", enable_rfc6764=False) as c:
        found = c.calendar(url=radicale + "/alice/maya/").search(
            start=utc(2026, 11, 25), end=utc(2026, 11, 26), event=True)
        assert len(found) == 1
        comp = found[0].icalendar_component
        assert str(comp["uid"]) == booking.external_id
        assert comp.decoded("dtstart") == utc(2026, 11, 25, 15, 0)
        assert "METHOD" not in found[0].data
    assert str(ICal.from_ical(booking.ics)["method"]) == "REQUEST"

    # the server itself now reports the slot busy (not just our database)
    remote_busy = backend._remote_busy(MAYA, utc(2026, 11, 25), utc(2026, 11, 26))
    assert (utc(2026, 11, 25, 15, 0), utc(2026, 11, 25, 15, 30)) in remote_busy
    assert target not in backend.free_slots(MAYA, NOW)

    # a slot the calendar shows busy (the dentist) is refused, and the database hold is given back
    dentist = Slot(utc(2026, 11, 24, 15, 0), utc(2026, 11, 24, 15, 30), "maya")
    with pytest.raises(SlotTaken):
        backend.book(MAYA, dentist, VISITOR, "Intro", lead_id=make_lead(store))
    with store.session() as s:
        statuses = {m.start: m.status for m in s.execute(select(Meeting)).scalars()}
    assert statuses == {datetime(2026, 11, 25, 15, 0): "booked", datetime(2026, 11, 24, 15, 0): "cancelled"}
    # and the same slot twice is refused by the database
    with pytest.raises(SlotTaken):
        backend.book(MAYA, target, VISITOR, "Intro", lead_id=make_lead(store))


def test_caldav_unreachable_is_calendar_unavailable(store: Store) -> None:
    from integrations.calendar.caldav_backend import CalDAVCalendar
    backend = CalDAVCalendar(store, CAL, url=f"http://127.0.0.1:{_free_port()}/alice/{{rep_id}}/",
                             username="alice", password="pw", timeout=2)
    with pytest.raises(CalendarUnavailable):
        backend.free_slots(MAYA, NOW)
    with pytest.raises(CalendarUnavailable):
        backend.book(MAYA, OFFERED[0], VISITOR, "Intro", lead_id=make_lead(store))
    with store.session() as s:      # nothing left holding the slot
        assert {m.status for m in s.execute(select(Meeting)).scalars()} == {"cancelled"}


# ---------------------------------------------------------------------------------------------
# Cal.com against a local fake of its API v2


def calcom_backend(fake: FakeCalcom, store: Store) -> Any:
    from integrations.calendar import make_calendar
    pb = playbook(backend="calcom", calcom_api_url=fake.url, calcom_event_type_id=fake.event_type_id)
    return make_calendar(pb, store, env={"CALCOM_API_KEY": fake.api_key})


def test_calcom_slots_query_and_headers(fake_calcom: FakeCalcom, store: Store) -> None:
    fake_calcom.add_slots(utc(2026, 11, 23, 14, 0),      # too soon: within the 4 h notice
                          utc(2026, 11, 24, 14, 0), utc(2026, 11, 24, 14, 30), utc(2026, 11, 25, 20, 0))
    backend = calcom_backend(fake_calcom, store)
    slots = backend.free_slots(MAYA, NOW)
    assert [s.start for s in slots] == [utc(2026, 11, 24, 14, 0), utc(2026, 11, 24, 14, 30), utc(2026, 11, 25, 20, 0)]
    assert all(s.end - s.start == timedelta(minutes=30) and s.rep_id == "maya" for s in slots)
    (req,) = fake_calcom.requests
    assert req["method"] == "GET" and req["path"] == "/v2/slots"
    assert req["headers"]["cal-api-version"] == "2024-09-04"
    assert req["headers"]["authorization"] == f"Bearer {fake_calcom.api_key}"
    assert req["args"]["eventTypeId"] == str(fake_calcom.event_type_id)
    assert req["args"]["start"] == "2026-11-23T16:00:00Z"           # now + notice, UTC
    assert req["args"]["end"] == "2026-12-04T12:00:00Z"             # now + days_ahead + 1
    assert req["args"]["timeZone"] == "UTC"
    assert [s.label("Asia/Kolkata") for s in choose_offer(slots, "Asia/Kolkata")] == [
        "Tue 24 Nov, 7:30 pm", "Tue 24 Nov, 8:00 pm", "Thu 26 Nov, 1:30 am"]


def test_calcom_booking_body_and_status(fake_calcom: FakeCalcom, store: Store) -> None:
    fake_calcom.add_slots(utc(2026, 11, 24, 14, 0), utc(2026, 11, 24, 15, 0))
    backend = calcom_backend(fake_calcom, store)
    first, second = backend.free_slots(MAYA, NOW)
    lead = make_lead(store, "ada@example.org")
    booking = backend.book(MAYA, first, VISITOR, "Pipelark intro", "Forecasting for 200 reps", lead_id=lead)
    assert booking.status == "booked" and booking.external_id == fake_calcom.bookings[0]["uid"]
    req = fake_calcom.requests[-1]
    assert req["method"] == "POST" and req["path"] == "/v2/bookings"
    assert req["headers"]["cal-api-version"] == "2024-08-13"
    assert req["headers"]["authorization"] == f"Bearer {fake_calcom.api_key}"
    body = req["json"]
    assert body["start"] == "2026-11-24T14:00:00Z" and body["eventTypeId"] == fake_calcom.event_type_id
    assert body["attendee"] == {"name": "Ada Lovelace", "email": "ada@example.org", "timeZone": "Europe/Berlin"}
    assert body["metadata"] == {"lead_id": lead, "rep_id": "maya"}
    with store.session() as s:
        m = s.get(Meeting, booking.meeting_id)
        assert (m.status, m.backend, m.external_id) == ("booked", "calcom", booking.external_id)

    # an event type that needs the host's confirmation: pending
    fake_calcom.requires_confirmation = True
    pending = backend.book(MAYA, second, VISITOR, "Pipelark intro", lead_id=lead)
    assert pending.status == "pending"
    assert "STATUS:TENTATIVE" in pending.ics
    with store.session() as s:
        assert s.get(Meeting, pending.meeting_id).status == "pending"
    assert backend.free_slots(MAYA, NOW) == []


def test_calcom_taken_slot_is_slot_taken_and_frees_the_hold(fake_calcom: FakeCalcom, store: Store) -> None:
    start = utc(2026, 11, 24, 14, 0)
    fake_calcom.add_slots(start, utc(2026, 11, 24, 16, 0))
    backend = calcom_backend(fake_calcom, store)
    slot = backend.free_slots(MAYA, NOW)[0]
    fake_calcom.taken.add(start)            # someone books it on Cal.com between offer and pick
    with pytest.raises(SlotTaken):
        backend.book(MAYA, slot, VISITOR, "Intro", lead_id=make_lead(store))
    assert fake_calcom.requests[-1]["path"] == "/v2/bookings"
    with store.session() as s:
        assert [m.status for m in s.execute(select(Meeting)).scalars()] == ["cancelled"]
    assert [s.start for s in backend.free_slots(MAYA, NOW)] == [utc(2026, 11, 24, 16, 0)]
    # a start Cal.com never offered: 400 no_available_users_found -> SlotTaken too
    with pytest.raises(SlotTaken):
        backend.book(MAYA, Slot(utc(2026, 11, 24, 18, 0), utc(2026, 11, 24, 18, 30), "maya"), VISITOR, "Intro",
                     lead_id=make_lead(store))


def test_calcom_bad_key_is_calendar_unavailable(fake_calcom: FakeCalcom, store: Store) -> None:
    from integrations.calendar.calcom import CalcomCalendar
    backend = CalcomCalendar(store, CAL, api_key="wrong", api_url=fake_calcom.url,
                             event_type_id=fake_calcom.event_type_id)
    with pytest.raises(CalendarUnavailable, match="CALCOM_API_KEY"):
        backend.free_slots(MAYA, NOW)
    with pytest.raises(CalendarUnavailable, match="CALCOM_API_KEY"):
        backend.book(MAYA, OFFERED[0], VISITOR, "Intro", lead_id=make_lead(store))
