"""Export and forget a person (GDPR/CCPA): everything held about them, then nothing — not in any
table, not in any file of the data dir — and a suppression entry that does not reveal the address."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.privacy import is_suppressed
from bot.turn import Inbound
from integrations.cli import main

EMAIL = "dana.forget@acmehealth.example"


def known_lead(sdr):
    r = sdr.handle(Inbound(text="Hi, I'm Dana, VP of Sales at Acme Health, a 450 person hospital network. "
                                "We need better forecasting this quarter. How much does it cost?"))
    sdr.handle(Inbound(text=f"reach me at {EMAIL}", session_id=r.session_id))
    import logging
    logging.getLogger("sdr.test").warning("a log line that names %s", EMAIL)   # logs hold it too
    return r.lead["id"]


def files_holding(data_dir, needle: str) -> list[str]:
    return [str(p) for p in data_dir.rglob("*") if p.is_file() and needle.encode() in p.read_bytes().lower()]


def test_export_then_forget_leaves_no_trace_in_the_data_dir(sdr, data_dir):
    from bot.logs import setup_logging
    setup_logging(sdr.settings)
    lead_id = known_lead(sdr)
    r = CliRunner().invoke(main, ["lead", "export", EMAIL])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["lead"]["id"] == lead_id and data["messages"] and data["score_events"] and data["outbox"]
    assert files_holding(data_dir, EMAIL)                                  # it is there before
    r = CliRunner().invoke(main, ["lead", "forget", EMAIL, "--yes"])
    assert r.exit_code == 0 and "rows deleted" in r.output, r.output
    assert files_holding(data_dir, EMAIL) == []                            # and nowhere after: db, WAL, logs
    assert is_suppressed(sdr.store, EMAIL, data_dir) and not is_suppressed(sdr.store, "other@x.example", data_dir)
    assert CliRunner().invoke(main, ["lead", "export", EMAIL]).exit_code == 1   # nothing held any more
    assert CliRunner().invoke(main, ["lead", lead_id]).exit_code == 1


def test_the_privacy_api_needs_the_api_token(sdr):
    from integrations.web.app import create_app
    known_lead(sdr)
    c = create_app(sdr).test_client()
    assert c.get(f"/api/privacy/export?email={EMAIL}").status_code in (401, 403)   # no token configured: never open
    sdr.settings.admin_token = "t0ken-for-tests-0123"
    assert c.get(f"/api/privacy/export?email={EMAIL}").status_code == 401
    auth = {"Authorization": "Bearer t0ken-for-tests-0123"}
    r = c.get(f"/api/privacy/export?email={EMAIL}", headers=auth)
    assert r.status_code == 200 and r.get_json()["email"] == EMAIL
    assert c.post("/api/privacy/forget", json={"email": "nope"}, headers=auth).status_code == 400
    r = c.post("/api/privacy/forget", json={"email": EMAIL}, headers=auth)
    assert r.status_code == 200 and r.get_json()["found"] is True and r.get_json()["deleted"]["leads"] == 1
    assert c.get(f"/api/privacy/export?email={EMAIL}", headers=auth).status_code == 404


# ---------------------------------------------------------------------------------------------
# Every lead that carries the address, and the Slack messages posted about them

from conftest import SLACK_SECRET as SECRET  # noqa: E402  (slack_env: the fixture in conftest)


def handed_off(sdr, fake_slack) -> tuple[str, str, str]:
    """A hot lead whose handoff the outbox really posted to the local Slack: (lead id, channel, ts)."""
    from integrations.wiring import build_outbox_worker
    r = sdr.handle(Inbound(text="Hi, I'm Dana, VP of Sales at Acme Health, a 450 person hospital network. "
                                "We need better forecasting this quarter. How much does it cost?"))
    sdr.handle(Inbound(text=f"reach me at {EMAIL}", session_id=r.session_id))
    worker, _ = build_outbox_worker(sdr)
    assert worker.run_once() == {"delivered": 1}
    [(channel, ts)] = list(fake_slack._messages)
    return r.lead["id"], channel, ts


def test_forget_deletes_the_handoff_message_in_slack(sdr, slack_env):
    from integrations.wiring import forget_person_everywhere
    lead_id, channel, ts = handed_off(sdr, slack_env)
    r = forget_person_everywhere(sdr, EMAIL)
    assert r["found"] and r["lead_ids"] == [lead_id]
    [m] = r["slack_messages"]
    assert m == {"channel": channel, "ts": ts, "deleted": True, "error": None,
                 "link": f"https://fake-workspace.slack.com/archives/{channel}/p{ts.replace('.', '')}"}
    assert slack_env._messages == {}                                        # gone from Slack
    assert [c.body["ts"] for c in slack_env.calls_to("chat.delete")] == [ts]
    assert is_suppressed(sdr.store, EMAIL, sdr.settings.data_dir)


@pytest.mark.parametrize("refusal", [
    {"ok": False, "error": "cant_delete_message"},
    {"ok": False, "error": "missing_scope", "needed": "chat:write", "provided": "channels:history"},
])
def test_a_message_slack_will_not_delete_stays_listed_with_the_error(sdr, slack_env, refusal):
    from integrations.wiring import forget_person_everywhere
    _, channel, ts = handed_off(sdr, slack_env)
    slack_env.fail("chat.delete", refusal)
    r = forget_person_everywhere(sdr, EMAIL)                                # nothing raised
    [m] = r["slack_messages"]
    assert m["deleted"] is False and m["error"].startswith(refusal["error"]) and (m["channel"], m["ts"]) == (channel, ts)
    assert m["link"].endswith(f"/archives/{channel}/p{ts.replace('.', '')}")   # for the operator to remove it
    assert (channel, ts) in slack_env._messages                             # still there, as Slack said
    assert r["found"] and r["deleted"]["leads"] == 1                        # the person is forgotten all the same


def test_slack_down_or_the_message_already_gone_never_raises(sdr, slack_env):
    from integrations.wiring import forget_person_everywhere
    _, channel, ts = handed_off(sdr, slack_env)
    slack_env.stop()                                                        # connection refused
    [m] = forget_person_everywhere(sdr, EMAIL)["slack_messages"]
    assert m["deleted"] is False and "unreachable" in m["error"] and f"channel={channel}" in m["link"]
    slack_env.restart()
    from integrations.slack import SlackConfig
    from integrations.slack.delete import delete_messages
    slack_env._messages.clear()                                             # someone removed it by hand
    [m] = delete_messages(SlackConfig.from_env().client(), [{"channel": channel, "ts": ts}])
    assert m["deleted"] is True and m["error"] is None                      # message_not_found: already gone


def test_rate_limited_delete_waits_as_slack_asks_then_deletes(sdr, slack_env):
    from integrations.wiring import forget_person_everywhere
    _, channel, ts = handed_off(sdr, slack_env)
    slack_env.fail("chat.delete", {"status": 429, "headers": {"Retry-After": "0"}})
    [m] = forget_person_everywhere(sdr, EMAIL)["slack_messages"]
    assert (m["channel"], m["ts"], m["deleted"]) == (channel, ts, True) and [c.status for c in slack_env.calls_to("chat.delete")] == [429, 200]
    assert slack_env._messages == {}


def test_a_handoff_posted_but_never_recorded_is_found_and_deleted(sdr, slack_env):
    """A crash between Slack's answer and the outbox's bookkeeping leaves no ts in the outbox; the
    message carries the lead in its metadata, so forget finds it in the channel and deletes it."""
    from bot.store import OutboxEntry
    from integrations.wiring import forget_person_everywhere
    lead_id, channel, ts = handed_off(sdr, slack_env)
    with sdr.store.session() as s:
        for row in s.scalars(select(OutboxEntry).where(OutboxEntry.lead_id == lead_id)):
            row.result, row.status = {}, "pending"
    [m] = forget_person_everywhere(sdr, EMAIL)["slack_messages"]
    assert (m["channel"], m["ts"], m["deleted"]) == (channel, ts, True) and slack_env._messages == {}


def two_leads_one_address(sdr) -> tuple[str, str, str]:
    """Lead A owns the address (Lead.email); lead B was told it, unverified, in another chat
    (fields["email"] only: the column is unique); lead C's address only looks like it."""
    from bot.store import Conversation, Lead, Message
    with sdr.store.session() as s:
        for lead_id, email, told, src in (
                ("lead_owner", EMAIL, EMAIL, {"verified": True}),
                ("lead_told", None, EMAIL.title(), {"verified": False, "matches_lead": "lead_owner"}),
                ("lead_other", "dana_forget@acmehealth.example", "dana_forget@acmehealth.example", {})):
            s.add(Lead(id=lead_id, email=email, fields={"name": "Dana", "email": told},
                       field_sources={"email": {"extractor": "regex", **src}}, fit_rules={}))
            s.flush()
            s.add(Conversation(id=f"sess_{lead_id}", lead_id=lead_id))
            s.flush()
            s.add(Message(conversation_id=f"sess_{lead_id}", lead_id=lead_id, role="visitor", text=f"I am {told}"))
    return "lead_owner", "lead_told", "lead_other"


def test_every_lead_that_carries_the_address_is_exported_and_forgotten(sdr, data_dir):
    from bot.logs import setup_logging
    from bot.privacy import export_person
    from bot.store import Lead
    from integrations.wiring import forget_person_everywhere
    setup_logging(sdr.settings)
    owner, told, other = two_leads_one_address(sdr)
    data = export_person(sdr.store, EMAIL.upper())                          # any case
    assert data["lead"]["id"] == owner and [lead["id"] for lead in data["leads"]] == [owner, told]
    assert {m["lead_id"] for m in data["messages"]} == {owner, told} and len(data["conversations"]) == 2
    r = CliRunner().invoke(main, ["lead", "export", EMAIL])
    assert r.exit_code == 0 and [lead["id"] for lead in json.loads(r.output)["leads"]] == [owner, told]
    assert files_holding(data_dir, EMAIL)
    r = forget_person_everywhere(sdr, EMAIL)
    assert r["found"] and sorted(r["lead_ids"]) == sorted([owner, told]) and r["deleted"]["leads"] == 2
    assert r["deleted"]["messages"] == 2 and r["deleted"]["conversations"] == 2 and r["slack_messages"] == []
    assert files_holding(data_dir, EMAIL) == []                             # no file of the data dir holds it
    with sdr.store.session() as s:
        assert [lead.id for lead in s.scalars(select(Lead))] == [other]     # a look-alike address is someone else
    assert export_person(sdr.store, EMAIL) is None
