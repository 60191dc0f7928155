"""A whole email thread through real parts (issue 12): a signed form fill → the first touch arrives
on a real local SMTP server (aiosmtpd) → the prospect replies by the signed inbound webhook with
quoted history → answered in the same thread, fields merged, score up → "please stop emailing me" →
unsubscribed, nothing more sent; one-click unsubscribe (RFC 8058) from the link; a 5xx bounces."""
from __future__ import annotations

import base64
import json
import re
from email.utils import make_msgid

import pytest
from pydantic import SecretStr

from integrations.forms.generic_form import sign_generic
from integrations.wiring import build_outbox_worker, build_web_app

FORM_SECRET = "form-secret-0123456789"
AUTH = "postmark:inbound-pass-123"
SENDER = "Lark at Pipelark <lark@pipelark.example>"


@pytest.fixture
def mail_sdr(make_sdr, smtp_server):
    sdr = make_sdr(settings={"form_secret": SecretStr(FORM_SECRET), "inbound_email_auth": SecretStr(AUTH),
                             "smtp_url": smtp_server.url, "email_from": SENDER,
                             "public_url": "https://sdr.pipelark.example"})
    return sdr


def post_form(client, sdr, fields: dict) -> dict:
    body = json.dumps(fields).encode()
    t = int(sdr.clock().timestamp())
    r = client.post("/webhooks/forms/generic", data=body, content_type="application/json",
                    headers={"X-SDR-Signature": sign_generic(FORM_SECRET, body, t)})
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def post_raw_email(client, raw: bytes, auth: str = AUTH):
    return client.post("/webhooks/email/raw", data=raw, content_type="message/rfc822",
                       headers={"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()})


def drain(worker) -> None:
    for _ in range(10):
        if not worker.run_once():
            return


def reply(to: str, in_reply_to: str, references: str, text: str, subject: str = "Re: Your demo request — Pipelark",
          sender: str = "Ana López <ana.lopez@acme-health.example>") -> bytes:
    quoted = "On Tue, 1 Dec 2026 at 15:00, Lark <lark@pipelark.example> wrote:\n> Hi Ana,\n> Thanks for asking for a demo\n"
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {make_msgid(domain='acme-health.example')}\r\n"
            f"In-Reply-To: {in_reply_to}\r\nReferences: {references}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\r\n{quoted}").encode()


def test_form_fill_first_touch_reply_in_thread_then_stop(mail_sdr, smtp_server):
    sdr = mail_sdr
    app = build_web_app(sdr, sdr.settings)
    worker, _ = build_outbox_worker(sdr, sdr.settings)
    client = app.test_client()
    fields = {"email": "ana.lopez@acme-health.example", "first_name": "Ana", "last_name": "López <b>",
              "company": "Acme Health", "job_title": "Head of RevOps", "industry": "healthcare",
              "message": "Do you integrate with Salesforce? <script>alert(1)</script>", "utm_source": "linkedin"}
    assert post_form(client, sdr, fields) == {"accepted": True, "duplicate": False}
    assert post_form(client, sdr, fields)["duplicate"] is True             # a provider retry: nothing new
    drain(worker)
    (first,) = smtp_server.wait_for(1)
    m = first.message
    assert first.rcpt_tos == ["ana.lopez@acme-health.example"]
    token = re.search(r"lark\+([0-9a-f]{32})@pipelark\.example", m["Reply-To"]).group(1)
    unsubscribe = re.fullmatch(r"<https://sdr\.pipelark\.example/unsubscribe/([0-9a-f]{32})>", m["List-Unsubscribe"].strip())
    assert unsubscribe and unsubscribe.group(1) != token          # holding the link never lets anyone write into the thread
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["Message-ID"] and m["In-Reply-To"] is None
    text = m.get_body(("plain",)).get_content()
    html = m.get_body(("html",)).get_content()
    assert text.startswith("Hi Ana,") and "Salesforce" in text and "548 Market St" in text
    assert "<script>" not in html
    assert "https://pipelark.example/" in text                                  # one piece that fits, linked
    first_id = m["Message-ID"]

    # The reply, by the signed inbound webhook, with Gmail-style quoted history
    r = post_raw_email(client, reply(m["Reply-To"], first_id, first_id,
                                     "Thanks! We're about 300 people & want to start this quarter. <script>x()</script>"))
    assert r.status_code == 200 and r.get_json()["duplicate"] is False
    drain(worker)
    first_two = smtp_server.wait_for(2)
    answer = first_two[1].message
    assert answer["In-Reply-To"] and answer["In-Reply-To"] != first_id
    assert first_id in answer["References"] and answer["Subject"].startswith("Re:")
    quoted_html = answer.get_body(("html",)).get_content()
    assert "<script>x()" not in quoted_html and "&lt;script&gt;x()" in quoted_html   # what they wrote, escaped
    (row,) = [x["lead"] for x in sdr.store.list_leads()]
    d = sdr.lead_detail(row.id)
    assert d["fields"]["company_size"] == 300 and d["fields"]["timeline"] == "this_quarter"
    assert any(e["rule"] == "engagement.email_reply" for e in d["score_events"])
    email_msgs = [x for x in d["messages"] if x["channel"] == "email"]
    assert email_msgs[0]["role"] == "visitor" and "wrote:" not in email_msgs[0]["text"]   # quoted history stripped

    # "please stop emailing me": unsubscribed, nothing more sent — not even by a later form fill
    r = post_raw_email(client, reply(answer["Reply-To"], answer["Message-ID"], answer["References"] + " " + answer["Message-ID"],
                                     "Please stop emailing me."))
    assert r.status_code == 200
    drain(worker)
    post_form(client, sdr, {**fields, "message": "One more question about pricing"})
    drain(worker)
    assert len(smtp_server.messages) == 2
    d = sdr.lead_detail(row.id)
    assert d["unsubscribed"] is True
    assert any(e["rule"] in ("engagement.opted_out", "engagement.unsubscribe") for e in d["score_events"])
    emails = [a["status"] for a in d["actions"] if a["type"] == "email"]
    assert emails == ["delivered", "delivered", "skipped", "skipped"]   # queued, then stopped at send time — and said so


def test_one_click_unsubscribe_and_unknown_tokens(mail_sdr, smtp_server):
    sdr = mail_sdr
    client = build_web_app(sdr, sdr.settings).test_client()
    worker, _ = build_outbox_worker(sdr, sdr.settings)
    post_form(client, sdr, {"email": "sam@globex.example", "name": "Sam Roe", "message": "pricing?"})
    drain(worker)
    (first,) = smtp_server.wait_for(1)
    url = first.message["List-Unsubscribe"].strip().strip("<>")
    path = url.replace("https://sdr.pipelark.example", "")
    assert client.get(path).status_code == 200
    assert client.get("/unsubscribe/" + "0" * 32).status_code == 404
    assert client.post("/unsubscribe/" + "0" * 32, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    r = client.post(path, data={"List-Unsubscribe": "One-Click"})                 # RFC 8058: a mail client's POST
    assert r.status_code == 200
    (row,) = [x["lead"] for x in sdr.store.list_leads()]
    d = sdr.lead_detail(row.id)
    assert d["unsubscribed"] is True and d["email_status"]["unsubscribe_source"] == "one_click"
    post_form(client, sdr, {"email": "sam@globex.example", "name": "Sam Roe", "message": "and SSO?"})
    drain(worker)
    assert len(smtp_server.messages) == 1


def test_a_refused_recipient_is_a_bounce_and_is_never_emailed_again(mail_sdr, smtp_server):
    sdr = mail_sdr
    client = build_web_app(sdr, sdr.settings).test_client()
    worker, _ = build_outbox_worker(sdr, sdr.settings)
    post_form(client, sdr, {"email": "nobody@initech.example", "name": "No Body", "message": "hello"})
    drain(worker)
    (row,) = [x["lead"] for x in sdr.store.list_leads()]
    d = sdr.lead_detail(row.id)
    assert d["bounced"] is True and any(e["rule"] == "engagement.email_bounced" for e in d["score_events"])
    assert smtp_server.messages == []


def test_inbound_email_needs_basic_auth(mail_sdr):
    client = build_web_app(mail_sdr, mail_sdr.settings).test_client()
    raw = reply("lark+0123456789abcdef0123456789abcdef@pipelark.example", "<x@y>", "<x@y>", "hi")
    assert post_raw_email(client, raw, auth="postmark:wrong").status_code == 401
    assert client.post("/webhooks/email/raw", data=raw, content_type="message/rfc822").status_code == 401
    assert mail_sdr.store.list_leads() == []


def test_an_auto_reply_is_stored_not_answered_and_a_bounce_notice_marks_the_address(mail_sdr, smtp_server):
    sdr = mail_sdr
    client = build_web_app(sdr, sdr.settings).test_client()
    worker, _ = build_outbox_worker(sdr, sdr.settings)
    post_form(client, sdr, {"email": "kai@umbrella.example", "name": "Kai Berg", "message": "Is it SOC 2 compliant?"})
    drain(worker)
    (first,) = smtp_server.wait_for(1)
    m = first.message
    ooo = (f"From: Kai Berg <kai@umbrella.example>\r\nTo: {m['Reply-To']}\r\nSubject: Automatic reply: Your demo request\r\n"
           f"Auto-Submitted: auto-replied\r\nMessage-ID: <ooo-1@umbrella.example>\r\nIn-Reply-To: {m['Message-ID']}\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nI'm out of the office until Monday.\r\n").encode()
    assert post_raw_email(client, ooo).status_code == 200
    drain(worker)
    assert len(smtp_server.messages) == 1                                   # not answered
    (row,) = [x["lead"] for x in sdr.store.list_leads()]
    stored = [x for x in sdr.lead_detail(row.id)["messages"] if x.get("auto_reply")]
    assert stored and "out of the office" in stored[0]["text"]
    dsn = ("From: Mail Delivery Subsystem <MAILER-DAEMON@mx.umbrella.example>\r\nTo: lark@pipelark.example\r\n"
           "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.umbrella.example>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
           "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.umbrella.example\r\n\r\n"
           "Final-Recipient: rfc822; kai@umbrella.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n").encode()
    assert post_raw_email(client, dsn).status_code == 200
    drain(worker)
    d = sdr.lead_detail(row.id)
    assert d["bounced"] is True and any(e["rule"] == "engagement.email_bounced" for e in d["score_events"])
    assert post_raw_email(client, dsn).get_json()["duplicate"] is True      # the same notice again: once


def test_a_form_fill_already_over_the_sql_threshold_gets_three_meeting_times(mail_sdr, smtp_server):
    from integrations.calendar import make_calendar

    sdr = mail_sdr
    sdr.calendar = make_calendar(sdr.playbook, sdr.store, settings=sdr.settings)
    client = build_web_app(sdr, sdr.settings).test_client()
    worker, _ = build_outbox_worker(sdr, sdr.settings)
    post_form(client, sdr, {"email": "vp@bigco.example", "name": "Morgan Lee", "job_title": "VP of Sales",
                            "company_size": "1,200", "industry": "healthcare", "timeline": "this quarter",
                            "message": "Our forecasts are always off and we need a fix before Q1 ends."})
    drain(worker)
    (first,) = smtp_server.wait_for(1)
    text = first.message.get_body(("plain",)).get_content()
    (row,) = [x["lead"] for x in sdr.store.list_leads()]
    assert sdr.lead_detail(row.id)["stage"] in ("sql", "meeting_booked")
    times = re.findall(r"\b\d{1,2}:\d{2}\b", text)
    assert len(times) >= 3, text                                             # three concrete times to pick from
    questions = [f.question for f in sdr.playbook.fields if f.question]
    assert not any(q in text for q in questions), text                      # times instead of a qualifying question


def raw_mail(sender: str, body: str, *, to: str = "lark@pipelark.example", mid: str | None = None,
             extra: str = "", subject: str = "question") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {mid or make_msgid(domain='x.example')}\r\n"
            f"{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def test_hostile_inbound_mail_never_chooses_who_the_sdr_writes_to(mail_sdr, smtp_server):
    sdr = mail_sdr
    client = build_web_app(sdr, sdr.settings).test_client()
    worker, _ = build_outbox_worker(sdr, sdr.settings)
    # an encoded display name that looks like an address is a name, never the recipient
    assert post_raw_email(client, raw_mail("=?utf-8?q?victim@c.example?= <eve@attacker.example>",
                                           "What does Growth cost?")).status_code == 200
    # a sender the receiving server says is forged gets nothing (no reflection of its text)
    assert post_raw_email(client, raw_mail("IT Security <ceo@victimcorp.example>", "Reset your password at evil.example",
                                           extra="Authentication-Results: mx.pipelark.example; spf=fail; dmarc=fail "
                                                 "header.from=victimcorp.example\r\n")).status_code == 200
    drain(worker)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["eve@attacker.example"]]
    assert b"\n>From" not in smtp_server.messages[0].raw            # body lines are not mbox-escaped
    # an address written in the body never replaces the sender's
    post_raw_email(client, raw_mail("Eve <eve@attacker.example>", "Please use my new address: my email is victim@c.example"))
    drain(worker)
    assert [m.rcpt_tos for m in smtp_server.messages][-1] == ["eve@attacker.example"]
    assert {x["lead"].email for x in sdr.store.list_leads()} == {"eve@attacker.example"}   # the forged one: stored only


def test_two_replies_with_the_same_words_are_both_answered(mail_sdr, smtp_server):
    sdr = mail_sdr
    client = build_web_app(sdr, sdr.settings).test_client()
    worker, _ = build_outbox_worker(sdr, sdr.settings)
    for mid in ("<yara-1@y.example>", "<yara-2@y.example>"):
        r = post_raw_email(client, raw_mail("Yara <yara@y.example>", "What does it cost?", mid=mid))
        assert r.get_json()["duplicate"] is False
        drain(worker)
    assert post_raw_email(client, raw_mail("Yara <yara@y.example>", "What does it cost?",
                                           mid="<yara-2@y.example>")).get_json()["duplicate"] is True
    drain(worker)
    assert len(smtp_server.messages) == 2
