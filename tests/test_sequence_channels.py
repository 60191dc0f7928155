"""Nurture sequences through every channel they reach (bot/sequences.py): real emails on a real
local SMTP server (tests/smtp_server.py) sent by the outbox worker of the composition root
(integrations/wiring.build_outbox_worker, whose job runs the due steps), the tracked link and the
one-click unsubscribe of the web app, an email reply, the `sdr` CLI (worker --once --now,
sequences list|show|simulate, lead pause|resume) and the leads API (GET /api/leads/<id>,
POST /api/leads/<id>/pause|resume).

One SDR (sample content ingested), its web app and one SMTP server for the module: building the SDR
is slow. Each test makes its own lead (its own address) and reads only the mail sent to it.

Time: the SDR runs on a FakeClock. Every test starts at Tue 2026-12-01 15:00 UTC (10:00 in New
York, the playbook's default time zone) and moves the clock itself, every half hour (to hh:15 and
hh:45, so a step due on the hour is sent within that hour), so the tests pass at any wall-clock hour of any day
(try SDR_TEST_FAKE_NOW=2026-12-05T19:45:00Z). With the default playbook, a form fill below SQL at
that instant gets: the awareness piece on Wed 12-02 15:00 UTC; the consideration piece due Sat
12-05, moved to Mon 12-07 13:00 UTC (08:00 New York: weekend, then quiet hours); the check-in on
Fri 12-11 13:00; the break-up on Tue 12-15 15:00 (quiet for 14 days); then nothing.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from conftest import API_TOKEN, SAMPLE, FakeClock
from smtp_server import SmtpServer
from sqlalchemy import select

from bot.sequences import simulate
from bot.store import Lead, OutboxEntry, SequenceStepRun
from integrations.cli import main as cli
from integrations.email.inbound_parse import InboundEmail
from integrations.forms.form_fill import FormFill
from integrations.web.access import signin_code
from integrations.wiring import build_outbox_worker, build_web_app

START = datetime(2026, 12, 1, 15, 0)          # Tue, 10:00 in New York
NY = ZoneInfo("America/New_York")
PUBLIC = "https://sdr.pipelark.example"
SENDER = "Lark at Pipelark <lark@pipelark.example>"
SEQ = "new_inbound"
STEPS = ["awareness_read", "consideration_read", "check_in", "breakup"]
# what the default playbook sends after a form fill at START (UTC, to the hour)
PLAN_HOURS = [datetime(2026, 12, 2, 15), datetime(2026, 12, 7, 13), datetime(2026, 12, 11, 13), datetime(2026, 12, 15, 15)]

DANA = {"first_name": "Dana", "company": "Ironworks", "job_title": "Account Executive", "company_size": "60",
        "industry": "manufacturing", "message": "Just researching how to improve forecast accuracy."}


# ---------------------------------------------------------------------------------------------
# the module's world: one SMTP server, one SDR on a FakeClock, its web app


def unique(address: str) -> str:
    """The address with a tag of this run: the module's SDR lives across SDR_TEST_FAKE_NOW's reruns
    of a test, and a second run must meet a new lead, not the first run's."""
    local, _, domain = address.partition("@")
    return f"{local}.{uuid.uuid4().hex[:8]}@{domain}"


@pytest.fixture(scope="module")
def mail() -> Any:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="module")
def world(tmp_path_factory: Any, mail: Any, module_clock: FakeClock) -> Any:
    from bot.settings import Settings
    from bot.turn import SDR

    settings = Settings.from_env(data_dir=str(tmp_path_factory.mktemp("sequence-channels")), admin_token=API_TOKEN,
                                 smtp_url=mail.url, email_from=SENDER, public_url=PUBLIC)
    sdr = SDR(settings, clock=module_clock)
    sdr.kb.ingest([SAMPLE], progress=False)
    sdr.warm()   # places, languages, intents: loaded now, not during a test's first turn (its clock ticks)
    app = build_web_app(sdr, settings)
    app.testing = True
    worker, _ = build_outbox_worker(sdr, settings)
    yield sdr, app, worker
    sdr.store.dispose()


@pytest.fixture
def sdr(world: Any, module_clock: FakeClock) -> Any:
    module_clock.set(START)
    return world[0]


@pytest.fixture
def app(world: Any) -> Any:
    return world[1]


@pytest.fixture
def worker(world: Any) -> Any:
    return world[2]


# ---------------------------------------------------------------------------------------------
# helpers


def drain(worker: Any) -> dict[str, int]:
    """Run the worker until nothing is left to do as of the clock: deliver, run due steps, deliver
    the emails they queued."""
    total: dict[str, int] = {}
    for _ in range(20):
        counts = worker.run_once()
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        if not counts:
            return total
    raise AssertionError(f"the worker never went idle: {total}")


def form_fill(sdr: Any, worker: Any, email: str) -> str:
    """A generic form fill asking for the guide, from a lead who stays below SQL; its first touch
    delivered. The lead id."""
    fill = FormFill(source="generic", event_id=f"evt-{email}", fields={"email": email, **DANA},
                    form_name="Get the forecasting guide")   # a download (forms.generic.by_form): a demo request goes to a rep
    assert sdr.receive_form(fill) == {"accepted": True, "duplicate": False}
    drain(worker)
    with sdr.store.session() as s:
        lead = s.scalars(select(Lead).where(Lead.email == email)).one()
        assert lead.stage in ("engaged", "mql") and lead.handed_off_at is None, (lead.stage, lead.score)
        return lead.id


def mails_to(mail: Any, email: str) -> list[Any]:
    with mail.lock:
        return [m for m in mail.messages if email in m.rcpt_tos]


def mid(m: Any) -> str:
    """A received message's Message-ID (its header may be folded)."""
    return str((m.message if hasattr(m, "message") else m)["Message-ID"]).strip()


def kinds(sdr: Any, lead_id: str) -> dict[str, dict[str, Any]]:
    """Message-ID -> the outbox payload of every email queued for the lead."""
    with sdr.store.session() as s:
        return {e.payload["message_id"]: dict(e.payload) for e in s.scalars(
            select(OutboxEntry).where(OutboxEntry.lead_id == lead_id, OutboxEntry.kind == "email"))}


def nurture_mails(sdr: Any, mail: Any, lead_id: str, email: str) -> list[Any]:
    k = kinds(sdr, lead_id)
    return [m for m in mails_to(mail, email) if k.get(mid(m), {}).get("kind") == "sequence"]


def run_hours(clock: FakeClock, worker: Any, start: datetime, hours: int, mail: Any = None,
              email: str | None = None) -> list[tuple[datetime, Any]]:
    """Move the clock from the hour of `start` for `hours` hours, to hh:15 and hh:45 of each, draining
    the worker each time; the mails to `email` that arrived, with the clock when they did. (Every
    half hour: a step due on the hour goes within it, and so does the next one, due a few days after
    the minute the first one really went.)"""
    seen = len(mails_to(mail, email)) if mail is not None else 0
    arrived = []
    for half in range(hours * 2):
        at = clock.set(start.replace(minute=15, second=0, microsecond=0) + timedelta(minutes=30 * half))
        drain(worker)
        if mail is not None:
            got = mails_to(mail, email)
            arrived += [(at, m) for m in got[seen:]]
            seen = len(got)
    return arrived


def text_and_html(m: Any) -> tuple[str, str]:
    return tuple(m.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html"))  # type: ignore[return-value]


def tracked_links(text: str) -> list[tuple[str, str]]:
    """(path, content URL) of every tracked link /t/c/<token>?u=<url> in `text`."""
    out = []
    for url in re.findall(r"https?://[^\s<>\"']+/t/c/[0-9a-f]+\?u=[^\s<>\"']+", text):
        url = url.replace("&amp;", "&")
        parts = urlsplit(url)
        (target,) = parse_qs(parts.query)["u"]
        out.append((f"{parts.path}?{parts.query}", target))
    return out


def enrolment(sdr: Any, lead_id: str) -> dict[str, Any]:
    (e,) = sdr.lead_detail(lead_id)["nurture"]["enrolments"]
    return e


def in_reply(email: str, to_mail: Any, text: str) -> InboundEmail:
    m = to_mail.message
    token = re.search(r"lark\+([0-9a-f]{32})@pipelark\.example", str(m["Reply-To"])).group(1)
    return InboundEmail(provider="raw", message_id=f"<reply-{token[:8]}@ironworks.example>", from_addr=email,
                        from_name="Dana", to=[m["Reply-To"].addresses[0].addr_spec], subject="Re: " + str(m["Subject"]),
                        text=text, full_text=text, in_reply_to=mid(m),
                        references=[mid(m)], reply_token=token, auto_reply=False, bounce=False)


def hour(at: datetime | str) -> datetime:
    if isinstance(at, str):
        at = datetime.fromisoformat(at).replace(tzinfo=None)
    return at.replace(minute=0, second=0, microsecond=0)


def pixel(html: str) -> str | None:
    found = re.search(rf'<img src="{re.escape(PUBLIC)}/t/o/([0-9a-f]{{32}})\.gif"', html)
    return found.group(1) if found else None


def assert_courteous(at: datetime, what: str) -> None:
    """Not in quiet hours (20:00-08:00) nor on a weekend in America/New_York."""
    local = at.replace(tzinfo=ZoneInfo("UTC")).astimezone(NY)
    assert local.weekday() < 5 and 8 <= local.hour < 20, f"{what} arrived at {local:%a %Y-%m-%d %H:%M} in New York"


def step_row(sdr: Any, lead_id: str, step: str) -> SequenceStepRun:
    with sdr.store.session() as s:
        row = s.scalars(select(SequenceStepRun).where(SequenceStepRun.lead_id == lead_id,
                                                      SequenceStepRun.step_id == step)).one()
        s.expunge(row)
        return row


# ---------------------------------------------------------------------------------------------
# 1. the plan, by real email


def test_the_emails_that_arrive_are_exactly_the_first_touch_and_the_simulated_plan(sdr, worker, mail, module_clock):
    email = unique("dana.plan@ironworks.example")
    lead_id = form_fill(sdr, worker, email)
    (first,) = mails_to(mail, email)
    assert kinds(sdr, lead_id)[mid(first)]["kind"] == "first_touch"
    e = enrolment(sdr, lead_id)
    assert (e["sequence"], e["status"], e["trigger"], e["next_step"]) == (SEQ, "active", "form_fill", "awareness_read")

    plan = simulate(sdr, SEQ, lead_id, 20, sdr.clock())     # before the clock moves
    events = plan["events"]
    assert plan["enrolled"] is True and [x["step"] for x in events] == STEPS, events
    assert all(x["skipped"] is None for x in events), events
    assert [hour(x["at"]) for x in events] == PLAN_HOURS
    assert [bool(x["url"]) for x in events] == [True, True, False, False]     # two pieces, then two template emails
    assert enrolment(sdr, lead_id)["steps"] == e["steps"]                      # the dry run changed nothing

    arrived = run_hours(module_clock, worker, START, 20 * 24, mail, email)
    payloads = kinds(sdr, lead_id)
    assert [payloads[mid(m)]["kind"] for _, m in arrived] == ["sequence"] * 4
    assert len(mails_to(mail, email)) == 5                                     # the first touch + the plan, nothing else
    first_text = text_and_html(first.message)[0]
    pieces = re.findall(r"https://pipelark\.example/[^\s<>\"']+", first_text)  # the first touch's piece
    for (at, got), planned in zip(arrived, events):
        m, p = got.message, payloads[mid(got)]
        assert p["step"] == planned["step"] and p["sequence"] == SEQ
        assert hour(at) == hour(planned["at"]), (planned, at)
        date = datetime.fromisoformat(m["Date"].datetime.isoformat()).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
        assert hour(date) == hour(planned["at"])
        assert_courteous(at, planned["step"])
        assert got.rcpt_tos == [email]
        unsubscribe = p["unsubscribe_url"]
        assert unsubscribe.startswith(f"{PUBLIC}/unsubscribe/")
        assert str(m["List-Unsubscribe"]).strip() == f"<{unsubscribe}>"
        assert str(m["List-Unsubscribe-Post"]).strip() == "List-Unsubscribe=One-Click"
        text, html = text_and_html(m)
        assert f"Unsubscribe: {unsubscribe}" in text and f'href="{unsubscribe}"' in html   # the footer link
        assert pixel(html) is not None and "/t/o/" not in text
        links = tracked_links(text)
        if planned["url"]:
            assert [target for _, target in links] == [planned["url"]], links
            assert [target for _, target in tracked_links(html)] == [planned["url"]]
            assert links[0][0] == f"/t/c/{pixel(html)}?u={quote(planned['url'], safe='')}"   # the same tracking token
            pieces.append(planned["url"])
        else:
            assert links == []                      # a template email links no piece
    nurture_at = [at for at, _ in arrived]
    for t in nurture_at:
        assert sum(1 for u in nurture_at if t - timedelta(days=7) < u <= t) <= 2, nurture_at
    assert_courteous(START, "the first touch")
    assert len(pieces) == len(set(pieces)) == 3, pieces                       # no piece twice, by any email
    done = enrolment(sdr, lead_id)
    assert done["status"] == "completed" and done["emails_sent"] == 4 and done["next_step"] is None
    moved = step_row(sdr, lead_id, "consideration_read")                      # due on Saturday, sent on Monday
    assert moved.scheduled_for.weekday() == 5 and moved.reason.startswith("moved: weekend in America/New_York"), moved.reason


# ---------------------------------------------------------------------------------------------
# 2. a tracked click


def test_a_tracked_click_from_a_delivered_email_redirects_and_scores(sdr, worker, app, mail, module_clock):
    email = unique("dana.click@ironworks.example")
    lead_id = form_fill(sdr, worker, email)
    arrived = run_hours(module_clock, worker, START, 26, mail, email)
    [(_, got)] = arrived
    [(path, target)] = tracked_links(text_and_html(got.message)[0])
    web = app.test_client()                       # the reader's browser: no token, no cookie
    points = sdr.playbook.engagement["email_click"].points
    sdr.rescore(lead_id)                          # decayed to now, as the click's own rescore does
    before = sdr.lead_detail(lead_id)["score"]
    r = web.get(path)
    assert r.status_code == 302 and r.headers["Location"] == target
    after = sdr.lead_detail(lead_id)
    assert after["score"] == pytest.approx(before + points, abs=0.05)
    assert [x["points"] for x in after["score_events"] if x["rule"] == "engagement.email_click"] == [pytest.approx(points)]

    tampered = path.split("?u=")[0] + "?u=" + quote("https://evil.example/phish", safe="")
    r = web.get(tampered)
    assert r.status_code == 400 and "Location" not in r.headers
    assert sdr.lead_detail(lead_id)["score"] == after["score"]
    assert [x["rule"] for x in sdr.lead_detail(lead_id)["score_events"]] == [x["rule"] for x in after["score_events"]]


# ---------------------------------------------------------------------------------------------
# 3. stop the moment they reply, or unsubscribe


def test_a_reply_ends_the_sequence_and_no_nurture_email_follows(sdr, worker, mail, module_clock):
    email = unique("dana.reply@ironworks.example")
    lead_id = form_fill(sdr, worker, email)
    [(at, nurture)] = run_hours(module_clock, worker, START, 26, mail, email)
    assert kinds(sdr, lead_id)[mid(nurture)]["step"] == "awareness_read"
    module_clock.set(at + timedelta(minutes=20))
    reply = in_reply(email, nurture, "Thanks, that guide was useful. We're still comparing a few options.")
    assert sdr.receive_email(reply)["duplicate"] is False
    drain(worker)
    e = enrolment(sdr, lead_id)
    assert e["status"] == "exited" and "repl" in (e["end_reason"] or ""), e
    assert all(st["status"] in ("sent", "cancelled") for st in e["steps"]), e["steps"]
    run_hours(module_clock, worker, at + timedelta(hours=1), 20 * 24)
    assert len(nurture_mails(sdr, mail, lead_id, email)) == 1                 # the one before the reply
    others = [kinds(sdr, lead_id)[mid(m)]["kind"] for m in mails_to(mail, email)]
    assert others.count("sequence") == 1 and set(others) <= {"first_touch", "sequence", "reply"}, others


def test_a_reply_after_the_step_queued_its_email_stops_that_email_at_send_time(sdr, worker, mail, module_clock):
    from bot.outbox import OutboxWorker
    from bot.sequences import SequenceRunner

    email = unique("dana.race@ironworks.example")
    lead_id = form_fill(sdr, worker, email)
    (first,) = mails_to(mail, email)
    module_clock.set(datetime(2026, 12, 2, 15, 15))
    SequenceRunner(sdr).run_once()                       # the awareness step queues its email; not sent yet
    with sdr.store.session() as s:
        (queued,) = [e.id for e in s.scalars(select(OutboxEntry).where(OutboxEntry.lead_id == lead_id,
                                                                         OutboxEntry.status == "pending"))
                     if e.kind == "email" and e.payload.get("kind") == "sequence"]
    assert sdr.receive_email(in_reply(email, first, "Thanks. Quick one: does it work with NetSuite?"))["duplicate"] is False
    OutboxWorker(sdr.store, {"email_in": sdr.work_email_in}, clock=sdr.clock).run_once()   # the reply's turn only
    drain(worker)                                        # now the queued nurture email comes up for sending
    with sdr.store.session() as s:
        entry = s.get(OutboxEntry, queued)
        assert entry.status == "skipped" and "repl" in str(entry.result.get("skipped")), (entry.status, entry.result)
    assert nurture_mails(sdr, mail, lead_id, email) == []
    e = enrolment(sdr, lead_id)
    assert e["status"] == "exited" and "repl" in (e["end_reason"] or "")


def test_a_one_click_unsubscribe_from_the_footer_ends_the_sequence_and_all_email(sdr, worker, app, mail, module_clock):
    email = unique("dana.unsub@ironworks.example")
    lead_id = form_fill(sdr, worker, email)
    [(at, nurture)] = run_hours(module_clock, worker, START, 26, mail, email)
    text = text_and_html(nurture.message)[0]
    url = re.search(r"Unsubscribe: (\S+)", text).group(1)
    assert str(nurture.message["List-Unsubscribe"]).strip() == f"<{url}>"
    module_clock.set(at + timedelta(minutes=20))
    r = app.test_client().post(url.replace(PUBLIC, ""), data={"List-Unsubscribe": "One-Click"})   # RFC 8058
    assert r.status_code == 200
    drain(worker)
    e = enrolment(sdr, lead_id)
    assert e["status"] == "exited" and "unsubscribed" in (e["end_reason"] or ""), e
    count = len(mails_to(mail, email))
    run_hours(module_clock, worker, at + timedelta(hours=1), 20 * 24)
    assert len(mails_to(mail, email)) == count == 2                           # the first touch and the one piece


# ---------------------------------------------------------------------------------------------
# 4. the CLI


def invoke(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_the_cli_runs_shows_simulates_pauses_and_resumes(make_sdr, clock, smtp_server, data_dir):
    sdr = make_sdr(settings={"smtp_url": smtp_server.url, "public_url": PUBLIC, "email_from": SENDER})
    sdr.warm()
    worker, _ = build_outbox_worker(sdr, sdr.settings)
    env = {"SDR_DATA_DIR": str(data_dir), "SDR_SMTP_URL": smtp_server.url, "SDR_PUBLIC_URL": PUBLIC,
           "SDR_EMAIL_FROM": SENDER}
    email = unique("dana.cli@ironworks.example")
    clock.set(START)
    lead_id = form_fill(sdr, worker, email)
    assert len(smtp_server.messages) == 1                                     # the first touch
    due = step_row(sdr, lead_id, "awareness_read").due_at
    assert due < datetime(2026, 12, 2, 15, 0, 30), due                         # the form fill took seconds

    r = invoke("worker", "--once", "--now", "2026-12-02T15:00:30Z", env=env)
    assert r.exit_code == 0, r.output
    assert "as of 2026-12-02 15:00:30 UTC" in r.output and "1 sent" in r.output and "1 delivered" in r.output
    assert len(smtp_server.messages) == 2
    awareness = smtp_server.messages[1]
    assert awareness.rcpt_tos == [email]
    p = kinds(sdr, lead_id)[mid(awareness)]
    assert (p["kind"], p["step"]) == ("sequence", "awareness_read")
    r = invoke("worker", "--once", "--now", "2026-12-02T15:00:30Z", env=env)
    assert r.exit_code == 0 and "nothing was due" in r.output, r.output
    assert len(smtp_server.messages) == 2

    r = invoke("sequences", "simulate", SEQ, "--lead", email, "--json", "--days", "30", "--now", "2026-12-02T15:00:30Z",
               env=env)
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    assert isinstance(plan, list) and plan and all(isinstance(x, dict) and set(x) == {"at", "step", "url", "skipped"}
                                                  for x in plan), plan
    assert [x["step"] for x in plan] == STEPS[1:] and all(x["skipped"] is None for x in plan), plan
    assert [hour(x["at"]) for x in plan] == PLAN_HOURS[1:]
    consideration = plan[0]["url"]
    assert consideration and consideration != step_row(sdr, lead_id, "awareness_read").url

    r = invoke("sequences", "show", SEQ, env=env)
    assert r.exit_code == 0 and all(st.id in r.output for st in sdr.playbook.sequence(SEQ).steps), r.output
    r = invoke("sequences", "list", env=env)
    assert r.exit_code == 0 and SEQ in r.output, r.output
    assert f"{len(sdr.playbook.sequence(SEQ).steps)} steps" in r.output and "1 active" in r.output
    r = invoke("sequences", "show", "nope", env=env)
    assert r.exit_code != 0 and "nope" in r.output and SEQ in r.output, r.output

    r = invoke("lead", "pause", email, env=env)
    assert r.exit_code == 0 and "paused" in r.output, r.output
    r = invoke("worker", "--once", "--now", "2026-12-07T13:00:30Z", env=env)   # when the next step would go
    assert r.exit_code == 0 and "nothing was due" in r.output, r.output
    assert len(smtp_server.messages) == 2
    held = step_row(sdr, lead_id, "consideration_read")
    assert held.status == "paused" and held.done_at is None

    r = invoke("lead", "resume", email, env=env)
    assert r.exit_code == 0 and "resumed" in r.output, r.output
    assert step_row(sdr, lead_id, "consideration_read").status == "scheduled"
    at = datetime(2026, 12, 7, 13, 0, 30)
    for _ in range(4):      # resumed on the wall clock: due then, or later if the wall clock is past it
        at = max(at, step_row(sdr, lead_id, "consideration_read").due_at + timedelta(seconds=30))
        r = invoke("worker", "--once", "--now", at.isoformat() + "Z", env=env)
        assert r.exit_code == 0, r.output
        if len(smtp_server.messages) > 2:
            break
    assert len(smtp_server.messages) == 3, r.output
    sent = smtp_server.messages[2]
    p = kinds(sdr, lead_id)[mid(sent)]
    assert (p["step"], sent.rcpt_tos) == ("consideration_read", [email])
    assert [t for _, t in tracked_links(text_and_html(sent.message)[0])] == [consideration]


# ---------------------------------------------------------------------------------------------
# 5. the leads API


def test_the_api_shows_the_enrolment_and_pauses_and_resumes_it(sdr, worker, app, mail, module_clock):
    email = unique("dana.api@ironworks.example")
    lead_id = form_fill(sdr, worker, email)
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_TOKEN}"
    r = api.get(f"/api/leads/{lead_id}")
    assert r.status_code == 200
    n = r.get_json()["nurture"]
    assert n["paused"] is False
    (e,) = n["enrolments"]
    assert (e["sequence"], e["status"], e["end_reason"], e["next_step"]) == (SEQ, "active", None, "awareness_read")
    assert e["next_due_at"].startswith("2026-12-02T15:0") and e["next_due_at"].endswith("Z")
    assert {st["step"]: st["status"] for st in e["steps"]} == {"awareness_read": "scheduled", "breakup": "scheduled"}

    stranger = app.test_client()
    assert stranger.post(f"/api/leads/{lead_id}/pause").status_code == 401
    operator = app.test_client()
    assert operator.get(f"/signin?code={signin_code(app.secret_key)}").status_code == 303
    assert operator.get(f"/api/leads/{lead_id}").status_code == 200              # a real signed-in cookie: it reads
    r = operator.post(f"/api/leads/{lead_id}/pause")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"   # but a cookie alone changes nothing
    assert api.get(f"/api/leads/{lead_id}").get_json()["nurture"]["paused"] is False

    page = operator.get(f"/leads/{lead_id}").get_data(as_text=True)              # the team page shows it too
    assert "<h2>Nurture" in page and "awareness_read" in page and "scheduled" in page

    r = api.post(f"/api/leads/{lead_id}/pause")
    assert r.status_code == 200
    body = r.get_json()
    assert body["lead_id"] == lead_id and body["nurture"]["paused"] is True
    assert {st["status"] for st in body["nurture"]["enrolments"][0]["steps"]} == {"paused"}
    assert api.get(f"/api/leads/{lead_id}").get_json()["nurture"]["paused"] is True
    assert "· paused</span>" in operator.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert run_hours(module_clock, worker, START, 26, mail, email) == []        # paused: the awareness piece waits
    assert api.post("/api/leads/lead_nope/pause").status_code == 404
    assert api.post("/api/leads/lead_nope/resume").status_code == 404

    r = api.post(f"/api/leads/{lead_id}/resume")
    assert r.status_code == 200 and r.get_json()["nurture"]["paused"] is False
    (e,) = r.get_json()["nurture"]["enrolments"]
    assert e["status"] == "active" and e["next_step"] == "awareness_read"
    assert [st["step"] for st in e["steps"] if st["status"] == "scheduled"] == ["awareness_read", "breakup"]
    [(_, got)] = run_hours(module_clock, worker, module_clock(), 2, mail, email)  # resumed: it goes
    assert kinds(sdr, lead_id)[mid(got)]["step"] == "awareness_read"
