"""Sales gets the lead: the outbox delivers a handoff to a local Slack-compatible server exactly once,
whatever Slack does; signed button clicks and /sdr update the lead."""
import time
from datetime import datetime

import pytest
from sqlalchemy import select

from bot.store import Lead, OutboxEntry
from bot.turn import Inbound
from fake_slack import sign

from conftest import SLACK_SECRET as SECRET  # noqa: E402  (slack_env: the fixture in conftest)


def hot_lead(sdr, email="dana@acmehealth.example"):
    r = sdr.handle(Inbound(text="Hi, I'm Dana, VP of Sales at Acme Health, a 450 person hospital network. "
                                "We need better forecasting this quarter. How much does it cost?"))
    sdr.handle(Inbound(text=email, session_id=r.session_id))
    assert r.lead["stage"] == "sql"
    return r.lead["id"]


def worker_for(sdr, **kw):
    from integrations.wiring import build_outbox_worker
    w, notes = build_outbox_worker(sdr, **kw)
    return w


def outbox_rows(sdr):
    with sdr.store.session() as s:
        return list(s.scalars(select(OutboxEntry)))


def test_handoff_message_tells_the_rep_the_story(sdr, slack_env):
    lead_id = hot_lead(sdr)
    assert worker_for(sdr).run_once() == {"delivered": 1}
    [call] = slack_env.calls_to("chat.postMessage")
    text = str(call.body["blocks"])
    assert "<@U0MAYA>" in text                                   # the assigned rep is mentioned
    assert "Dana" in text and "VP of Sales" in text and "Acme Health" in text and "450 people" in text
    assert "healthcare" in text and "decision-maker seniority" in text and "Fit" in text
    assert "How much does it cost?" in text                      # what they asked
    assert "https://sdr.example/leads/" + lead_id in text        # the transcript link
    assert "Next step" in text
    assert [e["action_id"] for e in call.body["blocks"][-1]["elements"]] == ["sdr_claim", "sdr_book", "sdr_not_fit"]
    assert call.body["metadata"]["event_payload"]["key"] == f"handoff:{lead_id}"
    [row] = outbox_rows(sdr)
    assert row.status == "delivered" and row.result["ts"]
    with sdr.store.session() as s:
        assert s.get(Lead, lead_id).owner == "maya"
    assert worker_for(sdr).run_once() == {}                      # nothing left: delivered once


def test_round_robin_and_returning_lead(sdr):
    from bot.handoff import assign_rep
    both_working = datetime(2026, 11, 24, 15, 0)   # Tuesday: 10:00 New York, 15:00 London
    with sdr.store.session() as s:
        leads = [Lead(id=f"lead_{i}", email=f"p{i}@x.example", fields={}, field_sources={}, fit_rules={}) for i in range(4)]
        s.add_all(leads)
        s.flush()
        got = []
        for i, lead in enumerate(leads):
            got.append(assign_rep(s, sdr.playbook, lead, now=both_working.replace(minute=i)).id)
            s.flush()
        assert got == ["maya", "tom", "maya", "tom"]
        # the same person back later (same lead, found by email) goes to the rep who owns them
        assert assign_rep(s, sdr.playbook, leads[1], now=both_working.replace(minute=9)).id == "tom"


def test_outside_working_hours_the_rep_is_skipped(sdr):
    from bot.handoff import in_working_hours
    maya, tom = sdr.playbook.reps
    eight_utc = datetime(2026, 11, 24, 10, 0)   # a Tuesday: 10:00 London (Tom in), 05:00 New York (Maya out)
    assert in_working_hours(tom, eight_utc) and not in_working_hours(maya, eight_utc)
    with sdr.store.session() as s:
        from bot.handoff import assign_rep
        lead = Lead(id="lead_x", fields={}, field_sources={}, fit_rules={})
        s.add(lead)
        assert assign_rep(s, sdr.playbook, lead, now=eight_utc).id == "tom"


def test_slack_429_then_200_is_delivered_once(sdr, slack_env):
    hot_lead(sdr)
    slack_env.fail("chat.postMessage", {"status": 429, "headers": {"Retry-After": "1"}})
    t = time.monotonic()
    assert worker_for(sdr).run_once() == {"delivered": 1}
    assert time.monotonic() - t >= 0.9                           # waited as Slack asked
    assert [c.status for c in slack_env.calls_to("chat.postMessage")] == [429, 200]
    assert len(slack_env._messages) == 1                          # one message in the channel


def test_slack_down_for_a_while_then_back_is_delivered_once(sdr, slack_env):
    lead_id = hot_lead(sdr)
    slack_env.stop()
    w = worker_for(sdr, quick_tries=2)
    assert w.run_once() == {"pending": 1}                        # kept, not lost
    [row] = outbox_rows(sdr)
    assert row.status == "pending" and row.attempts == 1 and "unreachable" in row.last_error
    slack_env.restart()
    from bot.outbox import retry_entry
    retry_entry(sdr.store, row.id, now=sdr.clock())              # (instead of waiting for the backoff)
    assert w.run_once() == {"delivered": 1}
    assert len(slack_env.calls_to("chat.postMessage")) == 1
    assert outbox_rows(sdr)[0].status == "delivered" and lead_id


def test_a_worker_killed_mid_delivery_is_redelivered_once_after_restart(sdr, slack_env):
    hot_lead(sdr)
    dying = worker_for(sdr, lease_s=0.5)
    [d] = dying.claim()                                          # claimed, then the process dies
    assert worker_for(sdr).run_once() == {}                      # someone else can't take it yet (lease)
    time.sleep(0.6)
    assert worker_for(sdr).run_once() == {"delivered": 1}
    assert len(slack_env.calls_to("chat.postMessage")) == 1


def test_a_crash_after_slack_answered_does_not_post_twice(sdr, slack_env):
    """The message went out but the worker died before writing it down: the retry finds it."""
    hot_lead(sdr)
    w = worker_for(sdr, lease_s=0.5)
    [d] = w.claim()
    w.handlers["handoff"](d)                                     # posted ... and the process dies here
    time.sleep(0.6)
    with sdr.store.session() as s:                               # the restarted worker sees one failed attempt
        row = s.get(OutboxEntry, d.id)
        row.attempts = 1
        row.next_attempt_at = sdr.clock()                        # due now, on the SDR's clock
    assert worker_for(sdr).run_once() == {"delivered": 1}
    assert len(slack_env.calls_to("chat.postMessage")) == 1
    assert outbox_rows(sdr)[0].result.get("deduplicated") is True


def test_bad_channel_is_dead_lettered_with_the_reason(sdr, slack_env):
    hot_lead(sdr)
    slack_env.fail("chat.postMessage", {"ok": False, "error": "channel_not_found"})
    assert worker_for(sdr).run_once() == {"dead": 1}
    assert "channel_not_found" in outbox_rows(sdr)[0].last_error


def test_without_slack_handoffs_wait_visibly(sdr):
    from click.testing import CliRunner

    from integrations.cli import main
    from integrations.wiring import build_outbox_worker
    hot_lead(sdr)
    w, notes = build_outbox_worker(sdr)
    assert w.run_once() == {} and "SLACK_BOT_TOKEN" in notes[0]
    out = CliRunner().invoke(main, ["outbox"]).output
    assert "handoff" in out and "pending" in out


# -- the buttons and /sdr, as Slack sends them: signed HTTP requests to /slack/events ------------------

@pytest.fixture
def slack_app(sdr, slack_env):
    from integrations.wiring import build_web_app
    app = build_web_app(sdr)
    return app.test_client()


def post_signed(client, body, secret=SECRET, timestamp=None):
    headers = sign(body, secret, timestamp=timestamp)
    return client.post("/slack/events", data=body, headers=headers)


def delivered_lead(sdr):
    lead_id = hot_lead(sdr)
    worker_for(sdr).run_once()
    return lead_id


def test_claim_and_double_claim(sdr, slack_env, slack_app):
    lead_id = delivered_lead(sdr)
    slack_env.add_user("U0MAYA", "maya", "maya@pipelark.example", "America/New_York") if hasattr(slack_env, "add_user") else None
    r = post_signed(slack_app, slack_env.block_action_body("sdr_claim", user_id="U0MAYA"))
    assert r.status_code == 200
    [update] = slack_env.wait_for("chat.update")
    assert "Claimed by <@U0MAYA>" in str(update.body["blocks"])
    with sdr.store.session() as s:
        assert s.get(Lead, lead_id).claimed_by == "U0MAYA"
    r = post_signed(slack_app, slack_env.block_action_body("sdr_claim", user_id="U0TOM"))
    assert r.status_code == 200
    [eph] = slack_env.wait_for("chat.postEphemeral")
    assert eph.body["user"] == "U0TOM" and "<@U0MAYA> already claimed" in eph.body["text"]
    with sdr.store.session() as s:
        assert s.get(Lead, lead_id).claimed_by == "U0MAYA"


def test_not_a_fit_button(sdr, slack_env, slack_app):
    lead_id = delivered_lead(sdr)
    assert post_signed(slack_app, slack_env.block_action_body("sdr_not_fit", user_id="U0TOM")).status_code == 200
    slack_env.wait_for("chat.update")
    detail = sdr.lead_detail(lead_id)
    assert detail["stage"] == "disqualified" and detail["score"] == 0
    assert detail["score_events"][-1]["rule"] == "rep.not_a_fit" and "not a fit" in detail["score_events"][-1]["reason"]
    assert abs(sum(e["points"] for e in detail["score_events"]) - detail["score"]) < 0.1
    assert post_signed(slack_app, slack_env.block_action_body("sdr_not_fit", user_id="U0MAYA")).status_code == 200
    [eph] = slack_env.wait_for("chat.postEphemeral")                    # a second click: told, nothing changes
    assert eph.body["user"] == "U0MAYA" and "already marked not a fit" in eph.body["text"]
    assert sdr.lead_detail(lead_id)["score_events"] == detail["score_events"] and len(slack_env.calls_to("chat.update")) == 1


def test_book_meeting_button(sdr, slack_env, slack_app):
    lead_id = delivered_lead(sdr)
    assert post_signed(slack_app, slack_env.block_action_body("sdr_book", user_id="U0MAYA")).status_code == 200
    [update] = slack_env.wait_for("chat.update")
    assert "booking the meeting" in str(update.body["blocks"])
    detail = sdr.lead_detail(lead_id)
    assert detail["stage"] == "meeting_booked" and any(e["rule"] == "engagement.meeting_booked" for e in detail["score_events"])
    assert post_signed(slack_app, slack_env.block_action_body("sdr_book", user_id="U0TOM")).status_code == 200
    [eph] = slack_env.wait_for("chat.postEphemeral")                    # booked twice? scored once, clicker told
    assert eph.body["user"] == "U0TOM" and "already booked" in eph.body["text"]
    again = sdr.lead_detail(lead_id)
    assert [e["rule"] for e in again["score_events"]].count("engagement.meeting_booked") == 1
    assert again["score"] == detail["score"] and len(slack_env.calls_to("chat.update")) == 1


def test_bad_and_stale_signatures_are_401(sdr, slack_env, slack_app):
    delivered_lead(sdr)
    body = slack_env.block_action_body("sdr_claim", user_id="U0MAYA")
    assert post_signed(slack_app, body, secret="wrong").status_code == 401
    assert post_signed(slack_app, body, timestamp=int(time.time()) - 600).status_code == 401
    assert slack_app.post("/slack/events", data=body,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 401
    assert slack_env.calls_to("chat.update") == []


def test_slash_command_lead_and_stats(sdr, slack_env, slack_app):
    delivered_lead(sdr)
    r = post_signed(slack_app, slack_env.slash_command_body("/sdr", "lead dana@acmehealth.example"))
    assert r.status_code == 200
    deadline = time.monotonic() + 5
    while not slack_env.responses and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Acme Health" in str(slack_env.responses[-1])
    r = post_signed(slack_app, slack_env.slash_command_body("/sdr", "stats"))
    while len(slack_env.responses) < 2 and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    assert "handed off" in str(slack_env.responses[-1])


def test_a_click_keeps_why_the_lead_was_handed_off(sdr, slack_env, slack_app):
    r = sdr.handle(Inbound(text="can I talk to a person? I'm jo@example.org"))
    assert worker_for(sdr).run_once() == {"delivered": 1}
    assert "asked to talk to a person" in str(slack_env.calls_to("chat.postMessage")[0].body["blocks"])
    post_signed(slack_app, slack_env.block_action_body("sdr_claim", user_id="U0TOM"))
    [update] = slack_env.wait_for("chat.update")
    assert "asked to talk to a person" in str(update.body["blocks"]) and r.lead["id"]


HOSTILE_NAME = "Eve <!channel> <@U0TOM> *bold*"
HOSTILE_COMPANY = "<https://evil.example|verify your session>"


def test_visitor_text_cannot_write_markup_into_the_sales_channel(sdr, slack_env):
    """A name, company, need or question that looks like Slack markup is shown, never acted on:
    no channel ping, no mention, no disguised link (Slack's escaping rules: & < >)."""
    r = sdr.handle(Inbound(text="I'm VP of Sales at a 450 person hospital network. We need better forecasting "
                                "this quarter <!here>. How much does it cost? <https://evil.example|click>",
                           visitor={"name": HOSTILE_NAME, "company": HOSTILE_COMPANY, "email": "eve@evil.example"}))
    assert r.lead["stage"] == "sql"
    assert worker_for(sdr).run_once() == {"delivered": 1}
    [call] = slack_env.calls_to("chat.postMessage")
    body = call.body
    assert body["unfurl_links"] is False and body["unfurl_media"] is False
    def texts(kind):
        for b in body["blocks"]:
            for t in [b.get("text")] + list(b.get("fields") or []) + list(b.get("elements") or []):
                if isinstance(t, dict) and t.get("type") == kind:
                    yield t["text"]
    parsed = [str(body["text"])] + list(texts("mrkdwn"))                  # what Slack reads markup in
    for raw in ("<!channel>", "<!here>", "<@U0TOM>", "<https://evil.example"):
        assert not any(raw in t for t in parsed), raw
    assert "&lt;!channel&gt;" in body["text"]                               # the fallback text escaped
    assert not any("Eve" in t or "verify your session" in t for t in parsed[1:])   # visitor words: plain text
    plain = list(texts("plain_text"))
    assert any(HOSTILE_NAME in t and HOSTILE_COMPANY in t for t in plain)
    assert any("<!here>" in t for t in plain)                             # shown as written, never acted on
    everything = str(body["blocks"])
    assert "<@U0MAYA>" in everything                                      # our own mention still works


@pytest.mark.parametrize("path", ["/slack/events", "/slack/actions", "/slack/commands"])
def test_bad_slack_requests_are_4xx_before_anything_is_parsed(sdr, slack_env, slack_app, path):
    for headers, body in [({"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}, b"payload=%7B"),
                          ({"Content-Type": "application/json"}, b"{"),
                          ({"X-Slack-Request-Timestamp": "99999999999999999999", "X-Slack-Signature": "v0=1"}, b"x=1"),
                          ({}, b"\xff\xfe")]:
        r = slack_app.post(path, data=body, headers=headers)
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "bad_signature", (headers, r.data)
    body = "payload=%7B%22type%22%3A"                                  # signed, but not a payload anyone can read
    r = slack_app.post(path, data=body, headers={**sign(body, SECRET), "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "bad_slack_request", r.data


def test_slack_that_accepts_but_answers_after_the_timeout_gets_one_message(sdr, slack_env):
    """The post reached Slack but the answer came after the client gave up: the in-process retry
    looks the key up (message metadata) before posting again."""
    import dataclasses

    from integrations.slack import SlackConfig, SlackHandoff
    hot_lead(sdr)
    cfg = dataclasses.replace(SlackConfig.from_env(sdr.playbook), timeout_s=0.5)
    w = worker_for(sdr)
    w.handlers["handoff"] = SlackHandoff(sdr, cfg)
    slack_env.fail("chat.postMessage", {"delay": 1.5})           # accepted now, answered in 1.5 s
    assert w.run_once() == {"delivered": 1}
    assert len(slack_env._messages) == 1                          # one message in the channel
    assert outbox_rows(sdr)[0].result.get("deduplicated") is True


KILLED_WORKER = """
import os, signal, sys
sys.path[:0] = [{root!r}, {tests!r}]
from bot.settings import Settings
from integrations.wiring import build_outbox_worker, build_sdr
sdr = build_sdr(Settings.from_env(), load_knowledge=False)
w, _ = build_outbox_worker(sdr, lease_s=1.0)
handoff = w.handlers["handoff"]
def post_then_die(d):
    handoff(d)                                 # Slack has the message ...
    os.kill(os.getpid(), signal.SIGKILL)       # ... and the worker dies before writing it down
w.handlers["handoff"] = post_then_die
w.run_once()
"""


def test_a_worker_killed_with_sigkill_after_posting_leaves_one_message(sdr, slack_env, tmp_path):
    """kill -9 between Slack's answer and the commit: the attempt was recorded before the call
    (write-ahead), so the next worker looks before posting. One message for one lead."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path
    hot_lead(sdr)
    script = tmp_path / "worker.py"
    root = Path(__file__).resolve().parent.parent
    script.write_text(KILLED_WORKER.format(root=str(root), tests=str(root / "tests")))
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-800:]
    assert len(slack_env._messages) == 1
    [row] = outbox_rows(sdr)
    assert row.status == "pending" and row.attempts == 1          # counted before the call, never finished
    time.sleep(1.1)                                                # the dead worker's lease runs out
    from bot.store import utcnow
    sdr.clock = utcnow                                             # the killed process leased on the wall clock
    assert worker_for(sdr).run_once() == {"delivered": 1}
    assert len(slack_env._messages) == 1 and outbox_rows(sdr)[0].result.get("deduplicated") is True


# ---------------------------------------------------------------------------------------------
# Exactly once when the channel moved on: the look-up pages back to the entry's creation


def slack_clock(clock, skew_s=0.0):
    """Slack's clock (epoch seconds) following the test's clock, `skew_s` off it."""
    from datetime import timezone
    return lambda: clock().replace(tzinfo=timezone.utc).timestamp() + skew_s


def chatter(fake, channel, n, decoy_key):
    """`n` newer messages in `channel`: plain ones, and decoys that nearly carry the key."""
    from slack_sdk import WebClient
    client = WebClient(token=fake.token, base_url=fake.base_url, retry_handlers=[])
    for i in range(n):
        meta = None
        if i % 50 == 0:      # near misses: another event type with the same key, the same type with another key
            meta = ({"event_type": "sdr_other", "event_payload": {"key": decoy_key}} if i % 100 == 0 else
                    {"event_type": "sdr_handoff" if decoy_key.startswith("handoff") else "sdr_meeting_invite",
                     "event_payload": {"key": decoy_key + "0"}})
        client.chat_postMessage(channel=channel, text=f"chatter {i}", **({"metadata": meta} if meta else {}))


def first_attempt_cut_off(sdr, kind):
    """Claim the entry and post it, then "die": the entry is left as a restarted worker finds it."""
    w = worker_for(sdr, lease_s=0.5)
    w.handlers = {kind: w.handlers[kind]}
    [d] = w.claim()
    first = w.handlers[kind](d)                                  # Slack has it ... and the process dies here
    return d, first


def due_again(sdr, entry_id):
    time.sleep(0.6)                                              # the dead worker's lease runs out
    with sdr.store.session() as s:
        row = s.get(OutboxEntry, entry_id)
        row.next_attempt_at = sdr.clock()


def keyed(fake, event_type, key):
    return [m for m in fake._messages.values()
            if (m.get("metadata") or {}).get("event_type") == event_type
            and ((m.get("metadata") or {}).get("event_payload") or {}).get("key") == key]


def test_a_handoff_cut_off_by_a_crash_is_found_behind_250_newer_messages(sdr, slack_env, clock):
    """The first post reached Slack, the worker died before writing it down, and by the retry 250
    messages came after it (more than a page): the look-up pages back and posts nothing."""
    slack_env.clock = slack_clock(clock, skew_s=-1200)           # Slack's clock 20 minutes behind ours
    slack_env.history_needs_id = True                            # as Slack: a conversation ID, not #name
    lead_id = hot_lead(sdr)
    d, first = first_attempt_cut_off(sdr, "handoff")
    clock.advance(minutes=3)
    chatter(slack_env, "#sales-handoffs", 250, decoy_key=d.idempotency_key)
    due_again(sdr, d.id)
    assert worker_for(sdr).run_once() == {"delivered": 1}
    [msg] = keyed(slack_env, "sdr_handoff", f"handoff:{lead_id}")
    [row] = [r for r in outbox_rows(sdr) if r.kind == "handoff"]
    assert row.result["deduplicated"] is True and row.result["ts"] == msg["ts"] == first["ts"]
    assert row.result["channel"] == first["channel"]
    pages = slack_env.calls_to("conversations.history")
    assert len(pages) == 2 and "cursor" not in pages[0].body and pages[1].body["cursor"]
    assert all(p.body["channel"] == first["channel"] for p in pages)          # resolved from the name
    with sdr.store.session() as s:
        created = s.get(OutboxEntry, d.id).created_at
    assert float(pages[0].body["oldest"]) == pytest.approx(slack_clock(lambda: created)() - 3600, abs=1e-3)
    assert len(slack_env.calls_to("chat.postMessage")) == 1 + 250


def add_invite(sdr):
    from bot.outbox import enqueue
    from bot.store import Meeting
    lead_id = hot_lead(sdr)
    now = sdr.clock()
    with sdr.store.session() as s:
        m = Meeting(lead_id=lead_id, rep_id="maya", start=datetime(2026, 1, 15, 16, 0), end=datetime(2026, 1, 15, 16, 30),
                    timezone="America/New_York", status="booked")
        s.add(m)
        s.flush()
        enqueue(s, kind="meeting_invite", key=f"invite:{m.id}", lead_id=lead_id, now=now,
                payload={"meeting_id": m.id, "rep": "maya", "status": "booked"})
        return m.id


def test_a_meeting_invite_cut_off_by_a_crash_is_not_posted_again(sdr, slack_env, clock):
    """Same for the rep's invitation (a DM): its message carries its key, and the retry finds it."""
    slack_env.clock = slack_clock(clock)
    slack_env.history_needs_id = True
    meeting_id = add_invite(sdr)
    d, first = first_attempt_cut_off(sdr, "meeting_invite")
    assert first["channel"] == "D0MAYA"                                        # Maya's DM
    clock.advance(minutes=1)
    chatter(slack_env, "U0MAYA", 250, decoy_key=d.idempotency_key)
    due_again(sdr, d.id)
    w = worker_for(sdr)
    w.handlers = {"meeting_invite": w.handlers["meeting_invite"]}
    assert w.run_once() == {"delivered": 1}
    [msg] = keyed(slack_env, "sdr_meeting_invite", f"invite:{meeting_id}")
    assert "Invitation:" in msg["text"]
    [row] = [r for r in outbox_rows(sdr) if r.kind == "meeting_invite"]
    assert row.result["deduplicated"] is True and row.result["ts"] == first["ts"]
    assert [c.body["users"] for c in slack_env.calls_to("conversations.open")] == ["U0MAYA"]
    assert {c.body["channel"] for c in slack_env.calls_to("conversations.history")} == {"D0MAYA"}


def test_a_look_up_that_finds_nothing_posts_exactly_once(sdr, slack_env, clock):
    """An earlier try may have posted (it was cut off) but did not: after paging through everything
    since the entry was created, the message is posted once, with its key."""
    slack_env.clock = slack_clock(clock)
    slack_env.history_needs_id = True
    lead_id = hot_lead(sdr)
    w = worker_for(sdr, lease_s=0.5)
    [d] = w.claim()                                              # claimed, and the process died before posting
    chatter(slack_env, "#sales-handoffs", 250, decoy_key=d.idempotency_key)
    due_again(sdr, d.id)
    assert worker_for(sdr).run_once() == {"delivered": 1}
    [msg] = keyed(slack_env, "sdr_handoff", f"handoff:{lead_id}")
    [row] = outbox_rows(sdr)
    assert "deduplicated" not in row.result and row.result["ts"] == msg["ts"]
    pages = slack_env.calls_to("conversations.history")
    assert len(pages) == 2 and slack_env.calls_to("conversations.history")[-1].response["has_more"] is False


def test_a_look_up_that_cannot_reach_the_entry_s_creation_posts_nothing(sdr, slack_env, clock, monkeypatch):
    """More pages than the cap since the entry was created: unknown, so RetryLater, never a blind post."""
    import integrations.slack as slack
    from bot.outbox import RetryLater
    monkeypatch.setattr(slack, "LOOKUP_MAX_PAGES", 1)
    slack_env.clock = slack_clock(clock)
    hot_lead(sdr)
    w = worker_for(sdr, lease_s=0.5)
    [d] = w.claim()
    d.attempts = 1                                               # an earlier attempt may have posted
    chatter(slack_env, "#sales-handoffs", 250, decoy_key=d.idempotency_key)
    with pytest.raises(RetryLater, match="could not tell"):
        w.handlers["handoff"](d)
    assert len(slack_env.calls_to("chat.postMessage")) == 250


def test_fake_slack_history_pages_like_slack(fake_slack):
    """The stand-in's conversations.history: newest first, limit + cursor, oldest/latest exclusive
    unless inclusive, metadata only when asked."""
    from slack_sdk import WebClient
    fake_slack.clock = lambda: 1_800_000_000.0                   # a clock standing still: ts still increase
    c = WebClient(token=fake_slack.token, base_url=fake_slack.base_url, retry_handlers=[])
    ts = [c.chat_postMessage(channel="#x", text=str(i), metadata={"event_type": "e", "event_payload": {"key": str(i)}})["ts"]
          for i in range(5)]
    assert ts == sorted(ts, key=float) and len(set(ts)) == 5 and ts[0] == "1800000000.000000"
    cid = c.chat_postMessage(channel="#x", text="x")["channel"]
    c.chat_delete(channel=cid, ts=c.conversations_history(channel=cid, limit=1)["messages"][0]["ts"])
    first = c.conversations_history(channel=cid, limit=2)
    assert [m["text"] for m in first["messages"]] == ["4", "3"] and first["has_more"] is True
    assert "metadata" not in first["messages"][0]
    rest = c.conversations_history(channel=cid, limit=2, cursor=first["response_metadata"]["next_cursor"],
                                   include_all_metadata=True)
    assert [m["metadata"]["event_payload"]["key"] for m in rest["messages"]] == ["2", "1"] and rest["has_more"]
    last = c.conversations_history(channel=cid, limit=2, cursor=rest["response_metadata"]["next_cursor"])
    assert [m["text"] for m in last["messages"]] == ["0"] and last["has_more"] is False
    assert [m["text"] for m in c.conversations_history(channel=cid, oldest=ts[1], latest=ts[3])["messages"]] == ["2"]
    assert [m["text"] for m in c.conversations_history(channel=cid, oldest=ts[1], latest=ts[3],
                                                        inclusive=True)["messages"]] == ["3", "2", "1"]
    from slack_sdk.errors import SlackApiError
    with pytest.raises(SlackApiError, match="invalid_cursor"):
        c.conversations_history(channel=cid, cursor="bm9wZQ==")
    fake_slack.history_needs_id = True
    with pytest.raises(SlackApiError, match="channel_not_found"):
        c.conversations_history(channel="#x")
