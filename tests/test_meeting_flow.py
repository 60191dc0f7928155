"""In the chat: a qualified lead is offered three real times in their own time zone, picks one in
plain words, is booked, gets an .ics, and the lead becomes meeting_booked — once.

Every turn here runs on the test's clock (conftest: make_sdr), never on the wall clock: which
reps are at work, and so who gets the lead and which times are offered, depends on the hour.
"""
from datetime import datetime, timezone

import pytest
from icalendar import Calendar

from conftest import api_client, chat


# Tue 13 Jan 2026 15:00 UTC: 10:00 in New York (Maya at work), 15:00 in London (Tom at work).
BOTH_AT_WORK = datetime(2026, 1, 13, 15, 0)
# Tue 13 Jan 2026 10:00 UTC: 10:00 in London (Tom at work), 05:00 in New York (Maya not yet).
ONLY_TOM_AT_WORK = datetime(2026, 1, 13, 10, 0)


@pytest.fixture
def booking_client(sdr, clock):
    from integrations.calendar import make_calendar
    from integrations.web.app import create_app
    clock.set(BOTH_AT_WORK)
    sdr.calendar = make_calendar(sdr.playbook, sdr.store)
    sdr.settings.public_url = "http://127.0.0.1:8000"
    c = api_client(create_app(sdr), sdr)   # a server-side client: it sees the lead's stage
    c.sdr = sdr
    return c


def test_qualify_offer_pick_book(booking_client):
    c = booking_client
    d = chat(c, "I'm the CRO of a 600 person company; we need better forecasting this quarter",
             visitor={"timezone": "Europe/Berlin"})
    offer = next(a for a in d["actions"] if a["type"] == "offer_slots")
    assert len(offer["slots"]) == 3 and offer["timezone"] == "Europe/Berlin"
    assert "(Europe/Berlin)" in d["reply"] and "which suits you?" in d["reply"]
    assert d["reply"].count("?") == 1
    d = chat(c, "the second one works, I'm at cro@bigco.example", d["session_id"])
    meeting = next(a for a in d["actions"] if a["type"] == "meeting")
    assert meeting["status"] == "booked" and meeting["start"] == offer["slots"][1]["start"]
    assert d["lead"]["stage"] == "meeting_booked" and "booked" in d["reply"]
    assert meeting["ics_url"].startswith("http://127.0.0.1:8000/meetings/")
    path = meeting["ics_url"].split("8000")[1]
    r = c.get(path)
    assert r.status_code == 200 and r.mimetype == "text/calendar"
    ev = Calendar.from_ical(r.data).walk("VEVENT")[0]
    assert ev.decoded("dtstart").astimezone(timezone.utc).isoformat().startswith(meeting["start"][:16])
    assert c.get(path.split("?")[0] + "?lead=lead_someoneelse").status_code == 404
    detail = c.get(f"/api/leads/{d['lead']['id']}").get_json()
    assert any(e["rule"] == "engagement.meeting_booked" for e in detail["score_events"])
    kinds = [a["type"] for a in detail["actions"]]
    assert kinds.count("handoff") == 1 and kinds.count("meeting_invite") == 1


def test_a_taken_slot_gets_fresh_times(booking_client, clock):
    """Two leads race for the same rep's first time: at an hour when only Tom works, both are his."""
    clock.set(ONLY_TOM_AT_WORK)
    c = booking_client
    first = chat(c, "I'm the CEO of a 900 person company, we need forecasting now", visitor={"timezone": "UTC"})
    second = chat(c, "I'm the VP of Sales at a 700 person company, we need forecasting now", visitor={"timezone": "UTC"})
    s1 = next(a for a in first["actions"] if a["type"] == "offer_slots")["slots"]
    s2 = next(a for a in second["actions"] if a["type"] == "offer_slots")["slots"]
    assert s1[0]["start"] == s2[0]["start"]                      # both were offered the same first time
    chat(c, "the first one", first["session_id"])
    d = chat(c, "the first one", second["session_id"])           # too late
    assert "just taken" in d["reply"]
    fresh = next(a for a in d["actions"] if a["type"] == "offer_slots")["slots"]
    assert s1[0]["start"] not in [x["start"] for x in fresh]
    assert not any(a["type"] == "meeting" for a in d["actions"])


def test_a_crash_after_booking_and_before_the_commit_books_once_on_the_retry(booking_client, monkeypatch):
    """The calendar books before the turn's one commit (bot/assess.py). When the process dies in
    between, the retry of that message gets the meeting the lead already holds: booked, the invite
    queued once — never "that time was just taken" for the visitor's own slot, never two meetings."""
    import bot.turn
    c = booking_client
    d = chat(c, "I'm the CRO of a 600 person company; we need better forecasting this quarter",
             visitor={"timezone": "Europe/Berlin"})
    offer = next(a for a in d["actions"] if a["type"] == "offer_slots")
    real = bot.turn.commit_turn

    def killed(*a, **kw):
        raise KeyboardInterrupt("killed before the commit")
    monkeypatch.setattr(bot.turn, "commit_turn", killed)
    with pytest.raises(KeyboardInterrupt):
        c.post("/api/chat", json={"message": "the second one works, I'm at cro@bigco.example",
                                  "session_id": d["session_id"], "message_id": "pick-1"})
    monkeypatch.setattr(bot.turn, "commit_turn", real)
    d = chat(c, "the second one works, I'm at cro@bigco.example", d["session_id"], message_id="pick-1")
    meeting = next(a for a in d["actions"] if a["type"] == "meeting")
    assert meeting["start"] == offer["slots"][1]["start"] and "just taken" not in d["reply"]
    assert d["lead"]["stage"] == "meeting_booked"
    detail = c.get(f"/api/leads/{d['lead']['id']}").get_json()
    assert [a["type"] for a in detail["actions"]].count("meeting_invite") == 1
    from bot.store import Meeting
    with c.sdr.store.session(readonly=True) as s:
        assert len(s.query(Meeting).all()) == 1


def test_without_a_calendar_the_meeting_offer_stays_generic(client):
    d = chat(client, "I'm the CRO of a 600 person company; we need better forecasting this quarter")
    assert any(a["type"] == "offer_meeting" for a in d["actions"])
    assert not any(a["type"] == "offer_slots" for a in d["actions"])


def test_the_rep_gets_the_invitation_in_slack(booking_client, monkeypatch, fake_slack):
    monkeypatch.setenv("SLACK_BOT_TOKEN", fake_slack.token)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("SLACK_API_URL", fake_slack.base_url)
    from integrations.wiring import build_outbox_worker as make_outbox_worker
    c = booking_client
    d = chat(c, "I'm the CRO of a 600 person company; we need better forecasting this quarter",
             visitor={"timezone": "America/Chicago"})
    d = chat(c, "the first one", d["session_id"])
    assert any(a["type"] == "meeting" for a in d["actions"])
    w, _ = make_outbox_worker(c.sdr)
    assert w.run_once() == {"delivered": 2}                      # the handoff and the invitation
    texts = [str(call.body.get("text")) for call in fake_slack.calls_to("chat.postMessage")]
    invite = next(t for t in texts if "Meeting booked" in t)
    assert "/meetings/" in invite and "America/Chicago" in invite
