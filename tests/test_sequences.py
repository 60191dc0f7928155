"""Nurture sequences (issue 13) on a clock the test controls: delays, action triggers, quiet hours
and weekends in the lead's time zone across daylight-saving changes, the weekly cap across two
sequences, every exit condition, pausing, a content pool that runs out, over-nurturing, a restart
between claim and send, two workers racing for the same due steps (SQLite and the real
PostgreSQL), the dry run, and the playbook's validation naming the sequence, the step and the key.

One SDR with the sample content for the module (building it is slow); each test makes its own
leads. Every instant is fixed (the runner is given `now`), so the tests pass at any hour of any day.
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from conftest import SAMPLE, FakeClock
from sqlalchemy import create_engine, func, select, update

from bot.emails import lead_token
from bot.playbook import DEFAULT_PLAYBOOK, Limits, Playbook, PlaybookError, load_playbook, parse_duration
from bot.sequences import SequenceRunner, enroll, enrolments_view, next_allowed, simulate
from bot.store import (Activity, Base, ContentSent, Enrollment, Lead, Meeting, Message, OutboxEntry, SequenceStepRun,
                       Store, new_id)

T0 = datetime(2026, 12, 1, 15, 0)        # Tue 10:00 in New York
PG = os.environ.get("SDR_TEST_DATABASE_URL")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from bot.settings import Settings
    from bot.turn import SDR

    settings = Settings.from_env(data_dir=str(tmp_path_factory.mktemp("sequences")))
    sdr = SDR(settings, clock=FakeClock(T0))
    sdr.kb.ingest([SAMPLE], progress=False)
    yield sdr
    sdr.store.dispose()


@pytest.fixture
def sdr(world):
    """The module's SDR at T0, with every sequence of earlier tests ended (their leads stay, but
    nothing of theirs is due any more)."""
    world.clock.set(T0)
    with world.store.session() as s:
        s.execute(update(SequenceStepRun).where(SequenceStepRun.status.in_(("scheduled", "paused")))
                  .values(status="cancelled"))
        s.execute(update(Enrollment).where(Enrollment.status == "active").values(status="exited"))
    return world


def default_data() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_PLAYBOOK.read_text(encoding="utf-8"))


def playbook_with(**changes: Any) -> Playbook:
    data = default_data()
    data.update(changes)
    return Playbook.model_validate(data)


def runner(sdr: Any, playbook: Playbook | None = None, store: Store | None = None, worker_id: str | None = None,
           brain: Any = None, **kw: Any) -> SequenceRunner:
    """A runner on the module's content store, with another playbook, store or brain when given."""
    shadow = SimpleNamespace(store=store or sdr.store, playbook=playbook or sdr.playbook, kb=sdr.kb,
                             brain=brain or sdr.rules,
                             settings=sdr.settings, clock=sdr.clock, on_queued=None)
    r = SequenceRunner(shadow, **({"worker_id": worker_id} if worker_id else {}), **kw)
    r._last_scan = T0   # no chat scan unless a test asks
    return r


def new_lead(store: Store, playbook: Playbook, *, at: datetime = T0, stage: str = "engaged", tz: str | None = None,
             industry: str | None = "manufacturing", enrol: bool = True, **fields: Any) -> str:
    lid = new_id("lead")
    email = f"{lid}@example.com"
    f = {"email": email, "name": "Dana Reyes", "need": "improve forecast accuracy", "role": "Sales Manager",
         **({"industry": industry} if industry else {}), **({"timezone": tz} if tz else {}), **fields}
    with store.session() as s:
        lead = Lead(id=lid, email=email, fields=f, field_sources={"email": {"extractor": "form", "verified": True}},
                    stage=stage, score=30.0, created_at=at, updated_at=at)
        s.add(lead)
        s.flush()
        if enrol:
            assert enroll(s, playbook, lead, "form_fill", at)
    return lid


def steps(store: Store, lead_id: str) -> dict[str, SequenceStepRun]:
    with store.session() as s:
        return {r.step_id: r for r in s.scalars(select(SequenceStepRun).where(SequenceStepRun.lead_id == lead_id))}


def emails(store: Store, lead_id: str) -> list[OutboxEntry]:
    with store.session() as s:
        return list(s.scalars(select(OutboxEntry).where(OutboxEntry.lead_id == lead_id, OutboxEntry.kind == "email")
                              .order_by(OutboxEntry.id)))


def enrolment(store: Store, lead_id: str) -> Enrollment:
    with store.session() as s:
        return s.scalars(select(Enrollment).where(Enrollment.lead_id == lead_id)).one()


def run_days(r: SequenceRunner, start: datetime, days: int, step_minutes: int = 60) -> None:
    t = start
    while t <= start + timedelta(days=days):
        r.run_once(t)
        t += timedelta(minutes=step_minutes)


# -- the playbook ---------------------------------------------------------------------------------


def test_the_default_playbook_ships_new_inbound_with_its_templates():
    pb = load_playbook()
    seq = pb.sequence("new_inbound")
    assert seq is not None and seq.enroll.on == ["form_fill", "chat_ended_unqualified"]
    assert [s.id for s in seq.steps] == ["awareness_read", "consideration_read", "check_in", "roi_after_pricing", "breakup"]
    assert seq.steps[0].after == timedelta(days=1) and seq.steps[4].when.quiet_for == timedelta(days=14)
    assert {"replied", "sql", "meeting_booked", "unsubscribed", "bounced", "human"} <= set(seq.exit.on)
    assert pb.limits.emails_per_lead_per_week == 2 and pb.limits.quiet_hours == "20:00-08:00"


@pytest.mark.parametrize("raw, minutes", [("30m", 30), ("2h", 120), ("3d", 4320), ("2w", 20160)])
def test_durations(raw, minutes):
    assert parse_duration(raw) == timedelta(minutes=minutes)


@pytest.mark.parametrize("raw", ["3 days", "0d", "-1d", "1.5d", "d", "", True])
def test_bad_durations_say_the_form(raw):
    with pytest.raises(ValueError, match="30m, 2h, 3d"):
        parse_duration(raw)


def write(tmp_path, data: dict[str, Any]) -> str:
    p = tmp_path / "playbook.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(p)


def test_a_typo_names_the_file_the_sequence_the_step_and_the_key(tmp_path):
    data = default_data()
    data["sequences"][0]["steps"][2] = {"id": "check_in", "after": "4d", "send": "template", "tempalte": "check_in"}
    path = write(tmp_path, data)
    with pytest.raises(PlaybookError) as e:
        load_playbook(path)
    msg = str(e.value)
    assert path in msg and "sequences[1 new_inbound].steps[3 check_in].tempalte" in msg


@pytest.mark.parametrize("step, words", [
    ({"after": "3 days", "send": "content"}, "not a duration"),
    ({"after": "1d", "send": "template", "template": "brekup"}, "'brekup' is not in prompts/follow_up.yaml"),
    ({"when": {"event": "pricing_page_veiw"}, "send": "content"}, "'pricing_page_veiw' is not an engagement event"),
    ({"after": "1d", "when": {"quiet_for": "2d"}, "send": "content"}, "exactly one of after"),
    ({"after": "1d", "send": "content", "stage": "awarness"}, "stage"),
])
def test_bad_steps_are_refused_with_what_to_fix(tmp_path, step, words):
    data = default_data()
    data["sequences"][0]["steps"].append(step)
    with pytest.raises(PlaybookError, match="sequences") as e:
        load_playbook(write(tmp_path, data))
    assert words in str(e.value)


def test_limits_are_validated(tmp_path):
    for limits, words in [({"quiet_hours": "8pm-8am"}, "20:00-08:00"), ({"timezone": "Mars/Olympus"}, "IANA")]:
        data = default_data()
        data["limits"] = limits
        with pytest.raises(PlaybookError, match="limits") as e:
            load_playbook(write(tmp_path, data))
        assert words in str(e.value)


# -- timing and courtesy ---------------------------------------------------------------------------


def test_steps_come_after_their_delays_and_a_weekend_moves_to_monday_8am(sdr):
    lid = new_lead(sdr.store, sdr.playbook)
    r = runner(sdr)
    assert r.run_once(T0 + timedelta(hours=23, minutes=59)) == {}
    assert r.run_once(T0 + timedelta(days=1)) == {"sent": 1}
    (mail,) = emails(sdr.store, lid)
    assert mail.payload["step"] == "awareness_read" and mail.payload["kind"] == "sequence"
    assert mail.idempotency_key.startswith("sequence:")
    url = steps(sdr.store, lid)["awareness_read"].url
    with sdr.store.session() as s:
        assert s.scalars(select(ContentSent.url).where(ContentSent.lead_id == lid)).all() == [url]
    assert "/t/c/" in mail.payload["links"][0]["url"] and mail.payload["open_pixel_url"].endswith(".gif")
    nxt = steps(sdr.store, lid)["consideration_read"]
    assert nxt.scheduled_for == datetime(2026, 12, 5, 15, 0)          # Saturday: 3 days after
    assert r.run_once(datetime(2026, 12, 5, 15, 0)) == {"moved": 1}
    moved = steps(sdr.store, lid)["consideration_read"]
    assert moved.due_at == datetime(2026, 12, 7, 13, 0)               # Monday 08:00 in New York (EST)
    assert "weekend in America/New_York" in moved.reason


def test_quiet_hours_and_weekends_across_daylight_saving_changes():
    lim = Limits()
    ny, berlin = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")
    # Friday 22:00 EDT, the weekend of the change to EST: Monday 08:00 EST is 13:00 UTC (not 12:00)
    assert next_allowed(datetime(2026, 10, 31, 2, 0), ny, lim)[0] == datetime(2026, 11, 2, 13, 0)
    weekdays_too = Limits(skip_weekends=False)
    # Saturday 21:00 EDT → Sunday 08:00, after the clocks went back: 13:00 UTC
    assert next_allowed(datetime(2026, 11, 1, 1, 0), ny, weekdays_too)[0] == datetime(2026, 11, 1, 13, 0)
    # spring forward: Saturday 22:00 EST → Sunday 08:00 EDT = 12:00 UTC
    assert next_allowed(datetime(2027, 3, 14, 3, 0), ny, weekdays_too)[0] == datetime(2027, 3, 14, 12, 0)
    # Berlin: Saturday 21:30 CEST (the night of the change) → Sunday 08:00 CET = 07:00 UTC
    at, why = next_allowed(datetime(2026, 10, 24, 19, 30), berlin, weekdays_too)
    assert at == datetime(2026, 10, 25, 7, 0) and "quiet hours 20:00-08:00 in Europe/Berlin" in why
    # allowed already: unchanged, no reason
    assert next_allowed(datetime(2026, 12, 1, 15, 0), ny, lim) == (datetime(2026, 12, 1, 15, 0), None)
    # quiet hours that do not cross midnight
    lunch = Limits(quiet_hours="12:00-13:00", skip_weekends=False)
    assert next_allowed(datetime(2026, 12, 1, 17, 30), ny, lunch)[0] == datetime(2026, 12, 1, 18, 0)


def test_the_leads_own_time_zone_rules_quiet_hours(sdr):
    lid = new_lead(sdr.store, sdr.playbook, tz="Asia/Tokyo")
    r = runner(sdr)
    assert r.run_once(T0 + timedelta(days=1)) == {"moved": 1}          # Wed 00:00 in Tokyo
    st = steps(sdr.store, lid)["awareness_read"]
    assert st.due_at == datetime(2026, 12, 2, 23, 0) and "Asia/Tokyo" in st.reason   # Thu 08:00 in Tokyo
    assert r.run_once(st.due_at) == {"sent": 1}


def test_never_in_quiet_hours_nor_weekends_over_a_month(sdr):
    lid = new_lead(sdr.store, sdr.playbook, at=datetime(2026, 12, 4, 23, 30))   # Fri 18:30 in New York
    run_days(runner(sdr), datetime(2026, 12, 4, 23, 30), 30, step_minutes=30)
    sent = emails(sdr.store, lid)
    assert len(sent) >= 3
    for m in sent:
        local = m.created_at.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo("America/New_York"))
        assert local.weekday() < 5 and 8 <= local.hour < 20, local


def test_weekly_cap_across_two_sequences(sdr):
    seqs = default_data()["sequences"]
    fast = [{"id": "fast_a", "enroll": {"on": ["form_fill"]}, "exit": {"unengaged_after": None},
             "steps": [{"after": "1h", "send": "template", "template": "check_in"},
                       {"after": "1h", "send": "content", "stage": "awareness"},
                       {"after": "1h", "send": "content", "stage": "consideration"}]},
            {"id": "fast_b", "enroll": {"on": ["form_fill"]}, "exit": {"unengaged_after": None},
             "steps": [{"after": "2h", "send": "template", "template": "check_in"},
                       {"after": "1h", "send": "content", "stage": "consideration"}]}]
    pb = playbook_with(sequences=fast + seqs[:0], limits={"emails_per_lead_per_week": 2, "quiet_hours": None,
                                                          "skip_weekends": False})
    lid = new_lead(sdr.store, pb)
    r = runner(sdr, pb)
    run_days(r, T0, 21, step_minutes=60)
    sent = sorted(m.created_at for m in emails(sdr.store, lid))
    assert len(sent) == 5                                              # every step went, in time
    for i, at in enumerate(sent):
        assert sum(1 for b in sent if at <= b < at + timedelta(days=7)) <= 2, sent
    moved = [st for st in steps(sdr.store, lid).values() if (st.reason or "").startswith("moved: weekly cap")]
    assert moved                                                       # …and the wait was explained


def test_first_touches_and_replies_do_not_count_against_the_cap(sdr):
    from bot.emails import queue_email

    pb = playbook_with(limits={"emails_per_lead_per_week": 1, "quiet_hours": None, "skip_weekends": False})
    lid = new_lead(sdr.store, pb)
    with sdr.store.session() as s:
        lead = s.get(Lead, lid)
        for i, kind in enumerate(["first_touch", "reply", "reply"]):
            queue_email(s, lead, key=f"x:{lid}:{i}", subject="s", content={"paragraphs": ["p"]}, now=T0, sender="a@b.example",
                        reply_to_template=None, public_url="http://x", kind=kind)
    assert runner(sdr, pb).run_once(T0 + timedelta(days=1)) == {"sent": 1}


# -- triggers, content ------------------------------------------------------------------------------


def test_an_action_step_runs_once_when_the_lead_does_its_event(sdr):
    lid = new_lead(sdr.store, sdr.playbook)
    sdr.record_event("pricing_page_view", lead_id=lid, at=T0 + timedelta(hours=2))
    sdr.record_event("pricing_page_view", lead_id=lid, at=T0 + timedelta(hours=3))
    roi = steps(sdr.store, lid)["roi_after_pricing"]
    assert roi.status == "scheduled" and roi.due_at == T0 + timedelta(hours=2)
    assert runner(sdr).run_once(T0 + timedelta(hours=3)) == {"sent": 1}
    assert steps(sdr.store, lid)["roi_after_pricing"].url == "https://pipelark.example/roi-calculator"
    assert len([s for s in steps(sdr.store, lid) if s == "roi_after_pricing"]) == 1


def test_never_a_piece_twice_and_a_pool_that_runs_out_skips_with_the_reason(sdr):
    lid = new_lead(sdr.store, sdr.playbook)
    awareness = {"https://pipelark.example/guides/forecast-accuracy", "https://pipelark.example/guides/crm-hygiene-playbook",
                 "https://pipelark.example/about"}
    with sdr.store.session() as s:   # sent earlier, in chat or by email: the whole awareness pool
        for url in awareness:
            s.add(ContentSent(lead_id=lid, url=url, title="t", type="guide", at=T0))
    r = runner(sdr)
    assert r.run_once(T0 + timedelta(days=1)) == {"skipped": 1}
    st = steps(sdr.store, lid)
    assert st["awareness_read"].status == "skipped" and "no unsent awareness" in st["awareness_read"].reason
    assert emails(sdr.store, lid) == []                                 # no filler mail
    assert st["consideration_read"].status == "scheduled"               # the sequence goes on
    run_days(r, T0 + timedelta(days=1), 20)
    with sdr.store.session() as s:
        urls = s.scalars(select(ContentSent.url).where(ContentSent.lead_id == lid)).all()
    assert len(urls) == len(set(urls))


def test_over_nurturing_ends_the_sequence_with_the_reason(sdr):
    data = default_data()
    data["sequences"][0]["exit"]["unengaged_after"] = 2
    pb = Playbook.model_validate(data)
    lid = new_lead(sdr.store, pb)
    run_days(runner(sdr, pb), T0, 20)
    enr = enrolment(sdr.store, lid)
    assert enr.status == "exited" and enr.end_reason == "over-nurturing: 2 emails with no open, click or reply"
    assert len(emails(sdr.store, lid)) == 2 and steps(sdr.store, lid)["breakup"].status == "cancelled"
    opened = new_lead(sdr.store, pb)
    with sdr.store.session() as s:
        s.add(Activity(lead_id=opened, type="email_open", properties={}, at=T0 + timedelta(days=2)))
    run_days(runner(sdr, pb), T0, 20)
    enr = enrolment(sdr.store, opened)   # engaged: every step went, the breakup (the last word) last
    assert enr.status == "completed" and len(emails(sdr.store, opened)) == 4


# -- exits and pauses ---------------------------------------------------------------------------------


def _replied(sdr, lid):
    with sdr.store.session() as s:
        from bot.store import Conversation
        s.add(Conversation(id=f"c_{lid}", lead_id=lid, channel="web", state={}))
        s.flush()
        s.add(Message(conversation_id=f"c_{lid}", lead_id=lid, role="visitor", text="hi", meta={"channel": "web"},
                      at=T0 + timedelta(hours=1)))


def _sql(sdr, lid):
    with sdr.store.session() as s:
        lead = s.get(Lead, lid)
        lead.stage, lead.score = "sql", 60.0


def _meeting(sdr, lid):
    with sdr.store.session() as s:
        s.add(Meeting(lead_id=lid, rep_id=f"rep_{lid}", start=T0 + timedelta(days=3),   # a rep of its own: no slot clash
                      end=T0 + timedelta(days=3, minutes=30)))


def _unsubscribed(sdr, lid):
    with sdr.store.session() as s:
        token = lead_token(s, lid, T0, "unsubscribe")
    assert sdr.unsubscribe(token)


def _bounced(sdr, lid):
    sdr.mark_bounced(lid, f"{lid}@example.com", "550 5.1.1 no such user")


def _human(sdr, lid):
    with sdr.store.session() as s:
        s.get(Lead, lid).human_requested_at = T0


def _handed_off(sdr, lid):
    from bot.handoff import queue_handoff

    with sdr.store.session() as s:
        assert queue_handoff(s, sdr.playbook, s.get(Lead, lid), "meeting_requested", T0 + timedelta(hours=1))


def _disqualified(sdr, lid):
    with sdr.store.session() as s:
        lead = s.get(Lead, lid)
        lead.stage, lead.disqualified_reason = "disqualified", "competitor"


@pytest.mark.parametrize("condition, words", [
    (_replied, "replied"), (_sql, "SQL"), (_meeting, "meeting"), (_unsubscribed, "unsubscribed"),
    (_bounced, "bounced"), (_human, "person"), (_handed_off, "rep"), (_disqualified, "disqualified")])
def test_each_exit_condition_ends_the_sequence_before_anything_else_is_sent(sdr, condition, words):
    lid = new_lead(sdr.store, sdr.playbook)
    condition(sdr, lid)
    run_days(runner(sdr), T0, 20)
    assert emails(sdr.store, lid) == []
    enr = enrolment(sdr.store, lid)
    assert enr.status == "exited" and words in enr.end_reason
    assert {st.status for st in steps(sdr.store, lid).values()} == {"cancelled"}


def test_a_chat_reply_ends_the_sequence_at_once_and_stops_a_queued_email(sdr):
    """The turn itself ends the sequence (no worker needed), and an email queued before the reply
    is held back at send time (the gate)."""
    from bot.turn import Inbound

    r = runner(sdr)
    out = sdr.handle(Inbound(text="Hi, I'm Dana. We're a 60-person team looking at forecasting.", session_id=None,
                             visitor={"email": f"dana.{uuid.uuid4().hex[:8]}@example.com"}, verified=True, at=T0))
    lid = out.lead["id"]
    with sdr.store.session() as s:
        lead = s.get(Lead, lid)
        lead.stage = "engaged"
        assert enroll(s, sdr.playbook, lead, "chat_ended_unqualified", T0 + timedelta(hours=1))
    assert r.run_once(T0 + timedelta(days=1, hours=1)) == {"sent": 1}
    (mail,) = emails(sdr.store, lid)
    sdr.handle(Inbound(text="Thanks, that guide was useful", session_id=out.session_id, at=T0 + timedelta(days=1, hours=2)))
    enr = enrolment(sdr.store, lid)
    assert enr.status == "exited" and enr.end_reason == "the lead replied"
    sdr.clock.set(T0 + timedelta(days=1, hours=3))
    assert sdr.email_gate(lid, mail.payload["to"], mail.payload["enrollment_id"]).startswith("the sequence ended")
    run_days(r, T0 + timedelta(days=1, hours=3), 20)
    assert len(emails(sdr.store, lid)) == 1


def test_pausing_stops_the_sequence_until_resumed(sdr):
    lid = new_lead(sdr.store, sdr.playbook)
    assert sdr.pause_nurture(lid, by="test")
    r = runner(sdr)
    run_days(r, T0, 5)
    assert emails(sdr.store, lid) == [] and steps(sdr.store, lid)["awareness_read"].status == "paused"
    with sdr.store.session() as s:
        view = enrolments_view(s, sdr.playbook, lid)
    assert view["paused"] and view["enrolments"][0]["next_step"] == "awareness_read"
    sdr.clock.set(T0 + timedelta(days=6, hours=1))                      # Monday
    assert sdr.resume_nurture(lid)
    assert r.run_once(T0 + timedelta(days=6, hours=1, minutes=1)) == {"sent": 1}
    assert not sdr.pause_nurture("lead_nope")


# -- words ------------------------------------------------------------------------------------------


def model_brain(sdr, fake_openai):
    from bot.brain import FallbackBrain
    from integrations.llm import LLMConfig, build_chat_model
    from integrations.llm.model_brain import ModelBrain

    cfg = LLMConfig(provider="openai", model="local", base_url=fake_openai.base_url, api_key="test")
    return FallbackBrain(ModelBrain(sdr.playbook, build_chat_model(cfg, 5.0), model_name="local"), sdr.rules)


def test_a_configured_model_writes_the_nurture_email_from_the_piece(sdr, fake_openai):
    lid = new_lead(sdr.store, sdr.playbook)
    words = "Dana, the guide below walks through how RevOps teams measure forecast accuracy.\n\nWorth a look?"
    fake_openai.script({"content": words})
    assert runner(sdr, brain=model_brain(sdr, fake_openai)).run_once(T0 + timedelta(days=1)) == {"sent": 1}
    (mail,) = emails(sdr.store, lid)
    assert mail.payload["writer"] == "model" and mail.payload["paragraphs"] == [
        "Dana, the guide below walks through how RevOps teams measure forecast accuracy.", "Worth a look?"]
    assert mail.payload["greeting"] == "Hi Dana," and "automated assistant" in mail.payload["signoff"]
    prompt = json.dumps(fake_openai.requests[0]["messages"])
    assert "nurture email" in prompt and "PIECE" in prompt and mail.payload["links"][0]["title"] in prompt
    assert f"{lid}@example.com" not in prompt                       # the address is not the model's business


@pytest.mark.parametrize("answer", [
    {"content": "Teams like Acme Corp cut forecast error by 73% in 2 weeks. Want the numbers?"},   # invented facts
    {"content": "Is forecasting a priority? Who owns it? When do you plan to decide?"},            # three questions
    {"status": 500}])
def test_an_ungrounded_or_failed_model_email_falls_back_to_the_template(sdr, fake_openai, answer):
    lid = new_lead(sdr.store, sdr.playbook)
    fake_openai.default = answer
    assert runner(sdr, brain=model_brain(sdr, fake_openai)).run_once(T0 + timedelta(days=1)) == {"sent": 1}
    (mail,) = emails(sdr.store, lid)
    text = " ".join(mail.payload["paragraphs"])
    assert mail.payload["writer"] == "template" and "73%" not in text and "Acme" not in text
    assert (mail.payload["question"] or "").count("?") <= 1 and "?" not in text


def test_a_chat_that_went_quiet_is_enrolled_only_with_a_verified_address(sdr):
    """An address typed into the chat could be anyone's: nurture never mails it. A visitor the site
    identified (a verified email) whose chat went quiet below SQL is enrolled, once."""
    from bot.sequences import enrol_ended_chats
    from bot.turn import Inbound

    typed = sdr.handle(Inbound(text=f"Hi, I'm Ravi, victim.{uuid.uuid4().hex[:8]}@quietco.example. Just looking at forecasting tools.", at=T0))
    known = sdr.handle(Inbound(text="Just looking at forecasting tools.", visitor={"email": f"ravi.{uuid.uuid4().hex[:8]}@quietco.example"},
                               verified=True, at=T0))
    assert enrol_ended_chats(sdr.store, sdr.playbook, T0 + timedelta(minutes=29)) == 0      # still chatting
    assert enrol_ended_chats(sdr.store, sdr.playbook, T0 + timedelta(minutes=31)) == 1
    assert enrolment(sdr.store, known.lead["id"]).trigger == "chat_ended_unqualified"
    with sdr.store.session() as s:
        assert s.scalars(select(Enrollment).where(Enrollment.lead_id == typed.lead["id"])).first() is None
    assert enrol_ended_chats(sdr.store, sdr.playbook, T0 + timedelta(minutes=40)) == 0      # once
    plan = simulate(sdr, "new_inbound", typed.lead["id"], 30, T0)                           # the dry run says why
    assert plan["events"][0]["skipped"].startswith("the lead's email address is unverified")


def test_a_step_due_with_the_breakup_goes_first_and_emails_keep_a_day_apart(sdr):
    pb = playbook_with(limits={"emails_per_lead_per_week": 5, "quiet_hours": None, "skip_weekends": False})
    lid = new_lead(sdr.store, pb)
    r = runner(sdr, pb)
    with sdr.store.session() as s:   # the check-in was held back until the breakup's day
        s.execute(update(SequenceStepRun).where(SequenceStepRun.lead_id == lid,
                                                SequenceStepRun.step_id == "awareness_read")
                  .values(due_at=T0 + timedelta(days=14), scheduled_for=T0 + timedelta(days=14)))
    run_days(r, T0 + timedelta(days=14), 10)
    sent = [(m.payload["step"], m.created_at) for m in emails(sdr.store, lid)]
    assert [step for step, _ in sent] == ["awareness_read", "consideration_read", "check_in", "breakup"]
    assert all(b - a >= timedelta(days=1) for (_, a), (_, b) in zip(sent, sent[1:]))


def test_forgetting_a_person_removes_their_sequences(sdr):
    from bot.privacy import forget_person

    lid = new_lead(sdr.store, sdr.playbook)
    runner(sdr).run_once(T0 + timedelta(days=1))
    sdr.pause_nurture(lid)
    r = forget_person(sdr.store, f"{lid}@example.com", sdr.settings.data_dir, sdr.settings.log_dir)
    assert r["deleted"]["sequence_enrollments"] == 1 and r["deleted"]["sequence_steps"] >= 2
    assert r["deleted"]["nurture_pauses"] == 1 and steps(sdr.store, lid) == {}


# -- workers ------------------------------------------------------------------------------------------


def test_a_restart_between_claim_and_send_sends_once(sdr):
    lid = new_lead(sdr.store, sdr.playbook)
    due = T0 + timedelta(days=1)
    dead = runner(sdr, worker_id="dies-after-claim", lease_s=60)
    assert len(dead.claim(due)) == 1                                    # …and the process dies here
    other = runner(sdr, worker_id="another")
    assert other.run_once(due + timedelta(seconds=30)) == {}            # the lease holds
    assert other.run_once(due + timedelta(seconds=61)) == {"sent": 1}   # the lease ended: done once
    (row_id,) = [st.id for st in steps(sdr.store, lid).values() if st.step_id == "awareness_read"]
    assert dead.run_step(row_id, due + timedelta(seconds=62)).status == "lost"
    assert len(emails(sdr.store, lid)) == 1


def _race(sdr, store: Store, pb: Playbook, n: int) -> None:
    lids = [new_lead(store, pb) for _ in range(n)]
    due = T0 + timedelta(days=1)
    runners = [runner(sdr, pb, store, worker_id=f"w{i}") for i in range(2)]
    start = threading.Barrier(2)

    def work(r: SequenceRunner) -> None:
        start.wait()
        while r.run_once(due, limit=3):
            pass

    threads = [threading.Thread(target=work, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    with store.session() as s:
        keys = s.execute(select(OutboxEntry.idempotency_key, func.count()).where(
            OutboxEntry.kind == "email", OutboxEntry.lead_id.in_(lids)).group_by(OutboxEntry.idempotency_key)).all()
        sent = s.scalars(select(func.count()).select_from(SequenceStepRun).where(
            SequenceStepRun.status == "sent", SequenceStepRun.lead_id.in_(lids))).one()
    assert [k for k, c in keys if c > 1] == []                          # 0 duplicates
    assert len(keys) == sent == n                                       # every due step done once
    assert {lid for lid in lids} == {lid for lid in lids if len(emails(store, lid)) == 1}


def test_two_workers_racing_do_each_due_step_once_on_sqlite(sdr):
    _race(sdr, sdr.store, sdr.playbook, 24)


@pytest.mark.skipif(not PG, reason="set SDR_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) "
                    "to race on PostgreSQL; .ci/run does")
def test_two_workers_racing_do_each_due_step_once_on_postgresql(sdr):
    eng = create_engine(PG)
    Base.metadata.drop_all(eng)
    eng.dispose()
    store = Store(PG)
    try:
        _race(sdr, store, sdr.playbook, 24)
    finally:
        store.dispose()


# -- the dry run -------------------------------------------------------------------------------------


def test_simulate_shows_the_plan_and_changes_nothing(sdr):
    lid = new_lead(sdr.store, sdr.playbook, enrol=False)
    with sdr.store.session() as s:
        before = {m.__tablename__: s.scalars(select(func.count()).select_from(m)).one()
                  for m in (Enrollment, SequenceStepRun, OutboxEntry, ContentSent)}
    plan = simulate(sdr, "new_inbound", lid, 30, T0)
    with sdr.store.session() as s:
        after = {m.__tablename__: s.scalars(select(func.count()).select_from(m)).one()
                 for m in (Enrollment, SequenceStepRun, OutboxEntry, ContentSent)}
    assert before == after and plan["enrolled"] is False
    assert [(e["at"], e["step"]) for e in plan["events"]] == [
        ("2026-12-02T15:00:00Z", "awareness_read"), ("2026-12-07T13:00:00Z", "consideration_read"),
        ("2026-12-11T13:00:00Z", "check_in"), ("2026-12-15T15:00:00Z", "breakup")]
    assert all(set(e) == {"at", "step", "url", "skipped"} for e in plan["events"])
    urls = [e["url"] for e in plan["events"] if e["url"]]
    assert len(urls) == 2 == len(set(urls))
    assert plan["not_simulated"] == ["roi_after_pricing: only if the lead does pricing_page_view"]
    # the real run, on the same clock, sends the same plan
    with sdr.store.session() as s:
        enroll(s, sdr.playbook, s.get(Lead, lid), "form_fill", T0)
    run_days(runner(sdr), T0, 30)
    real = [(m.created_at.isoformat()[:13], m.payload["step"]) for m in emails(sdr.store, lid)]
    assert real == [(e["at"][:13], e["step"]) for e in plan["events"]]
