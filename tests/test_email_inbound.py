"""Email in (issue 12, section 3): each provider's documented webhook shape becomes one InboundEmail —
the new text only (Gmail, Outlook and Apple Mail quoting cut, in several languages), the thread, the
reply token, auto-replies and bounces — and POST /webhooks/email/<provider> lets only the provider in
(Basic auth, Mailgun's signature) and answers every bad request with a JSON 4xx, never a 500."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import timezone
from pathlib import Path

import pytest
from pydantic import SecretStr

from integrations.email.inbound_parse import (InboundEmail, MalformedEmail, form_data_parts, is_auto_reply,
                                              parse_mailgun, parse_postmark, parse_raw, parse_sendgrid)
from integrations.email.reply_strip import html_to_text, strip_reply

DATA = Path(__file__).parent / "data" / "email"
TEMPLATE = "reply+{token}@northwind.example"
AUTH = "sdr-in:Zq8!pass:word"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def postmark_body(**over) -> dict:
    body = json.loads(raw("postmark_inbound.json"))
    body.update(over)
    return body


# -- the new part of a reply --------------------------------------------------------------------------

@pytest.mark.parametrize("sample, new_text", [
    ("gmail_reply.eml", "Thanks Ava! We're about 250 people, and the sales team is 40 reps.\nDoes it integrate with Salesforce?"),
    ("outlook_reply.eml", "Hi Ava,\n\nWe'd like to see pricing for 120 seats. Our budget is around 30k a year."),
    ("apple_mail_reply.eml", "We’re a team of 60, mostly in Lyon. Is there a free trial?"),
    ("gmail_german.eml", "Hallo Ava,\n\nwir sind 200 Mitarbeiter. Gibt es einen Rabatt für Jahresverträge?")])
def test_quoted_history_and_signatures_are_cut_from_each_mail_client(sample, new_text):
    msg = parse_raw(raw(sample), reply_template=TEMPLATE)
    assert msg.text == new_text
    assert "wrote:" not in msg.text and "From:" not in msg.text and ">" not in msg.text
    assert len(msg.full_text) > len(msg.text) and msg.full_text.startswith(new_text.split("\n")[0])


@pytest.mark.parametrize("sample, new_text", [
    ("outlook_original_message.txt", "Sounds good. Thursday at 3pm works for me."),
    ("gmail_spanish.txt", "Somos 45 personas en ventas. ¿Tienen integración con HubSpot?"),
    ("outlook_french.txt", "Bonjour Ava,\n\nNous sommes 80 personnes. Quel est le tarif pour 20 commerciaux ?")])
def test_other_quoting_styles_and_languages(sample, new_text):
    assert strip_reply(raw(sample).decode()) == new_text


@pytest.mark.parametrize("body, kept", [
    ("Hi Ava,\nThanks, that helps. We are 40 reps.\nBest regards,\nAna", "Hi Ava,\nThanks, that helps. We are 40 reps."),
    ("Thanks,\nwe have 300 people", "Thanks,\nwe have 300 people"),           # a first line is never a sign-off
    ("Cheers", "Cheers"),                                                    # stripping never empties a reply
    ("Yes please.\n\nThanks, Ana\nCEO, Acme\n+1 555 0100", "Yes please."),
    ("Call me.\n\n-- \nAna Lima | VP Sales\nAcme", "Call me."),               # RFC 3676 separator
    ("Next week works.\n\nSent from my iPhone", "Next week works."),
    ("Does it work with HubSpot?\n\nBest,\nAna\nWhat about Pipedrive?", "Does it work with HubSpot?\n\nBest,\nAna\nWhat about Pipedrive?")])
def test_signatures_are_cut_conservatively(body, kept):
    assert strip_reply(body) == kept


def test_an_html_only_reply_is_read_without_its_quote():
    html = ('<div dir="ltr">We use <b>HubSpot</b> &amp; Salesforce.<br>Any discount?</div><div class="gmail_quote">'
            '<div>On Tue, Ava wrote:</div><blockquote class="gmail_quote">Hi <b>Ana</b><br>How many reps?</blockquote>'
            '</div><style>p{color:red}</style><script>x()</script>')
    assert html_to_text(html, drop_quotes=True) == "We use HubSpot & Salesforce.\nAny discount?"
    assert "How many reps?" in html_to_text(html) and "color" not in html_to_text(html)
    msg = parse_raw(b"From: a@b.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html.encode(),
                    reply_template=TEMPLATE)
    assert msg.text == "We use HubSpot & Salesforce.\nAny discount?" and "How many reps?" in msg.full_text


# -- the fields -------------------------------------------------------------------------------------

def test_a_raw_reply_gives_the_thread_the_sender_and_the_token():
    msg = parse_raw(raw("gmail_reply.eml"), reply_template=TEMPLATE)
    assert (msg.provider, msg.message_id) == ("raw", "<CAHk3x9Q+gmail-reply-001@mail.gmail.com>")
    assert (msg.from_addr, msg.from_name) == ("ana.lima@acme.example", "Ana Lima")      # addr-spec lower-cased
    assert msg.in_reply_to == "<first-touch.1736780400.abc@northwind.example>"
    assert msg.references == ["<first-touch.1736780400.abc@northwind.example>"]
    assert msg.to == ["reply+tk_3f9a2c7e1b@northwind.example"] and msg.reply_token == "tk_3f9a2c7e1b"
    assert not msg.auto_reply and not msg.bounce and msg.bounced_addresses == []
    assert parse_raw(raw("gmail_reply.eml"), reply_template="Ava <ava@northwind.example>").reply_token is None


def test_non_ascii_names_and_subjects_are_decoded():
    msg = parse_raw(raw("gmail_german.eml"), reply_template=TEMPLATE)
    assert msg.from_name == "Jürgen Müller" and msg.subject == "Re: Ihre Anfrage – Preise für 200 Nutzer"
    apple = parse_raw(raw("apple_mail_reply.eml"), reply_template=TEMPLATE)
    assert apple.from_name == "Chloé Martin" and apple.subject == "Re: Your demo request, Chloé"
    outlook = parse_raw(raw("outlook_reply.eml"), reply_template=TEMPLATE)
    assert outlook.from_name == "Baker, Tom" and outlook.from_addr == "tom.baker@contoso.example"


def test_out_of_office_replies_are_recognised():
    ooo = parse_raw(raw("out_of_office.eml"), reply_template=TEMPLATE)
    assert ooo.auto_reply and not ooo.bounce and ooo.reply_token == "tk_77aa10bb"
    assert ooo.headers["Auto-Submitted"] == "auto-generated"
    assert parse_raw(raw("ooo_subject_only_de.eml"), reply_template=TEMPLATE).auto_reply     # the subject alone
    assert not parse_raw(raw("gmail_reply.eml"), reply_template=TEMPLATE).auto_reply


@pytest.mark.parametrize("headers, subject, auto", [
    ({"auto-submitted": "auto-replied"}, "Re: hi", True), ({"auto-submitted": "no"}, "Re: hi", False),
    ({"auto-submitted": "auto-generated; owner-email=x@y"}, "hi", True), ({"x-autoreply": "yes"}, "hi", True),
    ({"x-autorespond": "1"}, "hi", True), ({"precedence": "bulk"}, "hi", True), ({"precedence": "list"}, "hi", False),
    ({}, "Out of Office: back Monday", True), ({}, "Automatic reply: Your demo request", True),
    ({}, "Réponse automatique : Votre demande", True), ({}, "Respuesta automática: Su solicitud", True),
    ({}, "AW: Abwesenheitsnotiz: Ihre Anfrage", True), ({}, "Re: Your demo request", False),
    ({}, "Question about automatic replies in your product", False)])
def test_auto_reply_rules(headers, subject, auto):
    assert is_auto_reply(headers, subject) is auto


def test_a_delivery_status_notification_is_a_bounce_with_its_failed_recipients():
    dsn = parse_raw(raw("dsn_bounce.eml"), reply_template=TEMPLATE)
    assert dsn.bounce and dsn.bounced_addresses == ["dana@gone.example"]          # the delayed one is not failed
    assert dsn.in_reply_to == "<first-touch.1736780400.mno@northwind.example>"      # the returned original
    assert dsn.from_addr == "mailer-daemon@mx.northwind.example"


def test_postmark_uses_the_message_id_header_and_the_mailbox_hash():
    msg = parse_postmark(postmark_body(), reply_template=TEMPLATE)
    assert msg.provider == "postmark" and msg.message_id == "<CAHk3x9Q+gmail-reply-001@mail.gmail.com>"  # not MessageID
    assert msg.headers["X-Provider-Message-ID"] == "22c74902-a0c1-4511-804f-341342852c90"
    assert (msg.from_addr, msg.from_name, msg.reply_token) == ("ana.lima@acme.example", "Ana Lima", "tk_3f9a2c7e1b")
    assert msg.text == "Thanks Ava! We're about 250 people, and the sales team is 40 reps.\nDoes it integrate with Salesforce?"
    assert msg.in_reply_to == "<first-touch.1736780400.abc@northwind.example>"
    forwarded = postmark_body(To="3f9ab@inbound.postmarkapp.com", OriginalRecipient="3f9ab+tk_3f9a2c7e1b@inbound.postmarkapp.com",
                              ToFull=[{"Email": "3f9ab+tk_3f9a2c7e1b@inbound.postmarkapp.com", "MailboxHash": "tk_3f9a2c7e1b"}])
    assert parse_postmark(forwarded, reply_template=TEMPLATE).reply_token == "tk_3f9a2c7e1b"


def test_a_postmark_bounce_reads_the_delivery_status_attachment():
    status = "Reporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; dana@gone.example\nAction: failed\nStatus: 5.1.1\n"
    body = postmark_body(FromFull={"Email": "MAILER-DAEMON@mx.example", "Name": "Mail Delivery System"},
                         Subject="Undeliverable: Your demo request", Attachments=[
                             {"Name": "details.txt", "ContentType": "message/delivery-status",
                              "Content": base64.b64encode(status.encode()).decode(), "ContentLength": len(status)}])
    msg = parse_postmark(body, reply_template=TEMPLATE)
    assert msg.bounce and msg.bounced_addresses == ["dana@gone.example"]


def form_data(fields: dict[str, bytes | str], files: list[tuple[str, str, bytes]] = ()) -> tuple[bytes, str]:
    """A multipart/form-data body, each field's bytes as given (SendGrid posts each in its own charset)."""
    boundary = "xYzZY" + secrets.token_hex(8)
    out = b""
    for name, value in fields.items():
        value = value.encode() if isinstance(value, str) else value
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
    for name, ctype, data in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.txt"\r\n'
                f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


SENDGRID_HEADERS = ("Received: from mail-sor-f41.google.com by mx.sendgrid.net\nMessage-ID: <sg-reply-7@mail.gmail.com>\n"
                    "In-Reply-To: <first-touch.1@northwind.example>\nReferences: <first-touch.1@northwind.example>\n"
                    "From: =?iso-8859-1?q?Ren=E9e_Dubois?= <Renee@Globex.example>\nTo: reply+tk_sg01@northwind.example\n"
                    "Subject: Re: Votre demande\nDate: Tue, 13 Jan 2026 17:00:00 +0100\n")


def sendgrid_fields() -> dict[str, bytes]:
    return {"headers": SENDGRID_HEADERS.encode(), "dkim": b"{@gmail.com : pass}", "to": b"reply+tk_sg01@northwind.example",
            "from": "Renée Dubois <Renee@Globex.example>".encode("iso-8859-1"), "subject": b"Re: Votre demande",
            "text": "Très bien, nous sommes 35.\n\nLe mar. 13 janv. 2026 à 16:00, Ava <reply+tk_sg01@northwind.example> a écrit :\n> Bonjour".encode("iso-8859-1"),
            "envelope": b'{"to":["reply+tk_sg01@northwind.example"],"from":"renee@globex.example"}',
            "charsets": b'{"to":"UTF-8","html":"UTF-8","subject":"UTF-8","from":"iso-8859-1","text":"iso-8859-1"}',
            "SPF": b"pass", "sender_ip": b"209.85.220.41", "spam_score": b"0.1"}


def test_sendgrid_parsed_fields_are_read_in_their_own_charsets():
    body, ctype = form_data(sendgrid_fields())
    fields, files = form_data_parts(body, ctype)
    msg = parse_sendgrid(fields, reply_template=TEMPLATE, files=files)
    assert (msg.provider, msg.from_name, msg.from_addr) == ("sendgrid", "Renée Dubois", "renee@globex.example")
    assert msg.text == "Très bien, nous sommes 35." and msg.reply_token == "tk_sg01"
    assert (msg.message_id, msg.in_reply_to) == ("<sg-reply-7@mail.gmail.com>", "<first-touch.1@northwind.example>")


def test_sendgrid_raw_mode_carries_the_whole_message():
    body, ctype = form_data({"email": raw("gmail_german.eml"), "to": b"reply+tk_de0001@northwind.example",
                             "envelope": b'{"to":["reply+tk_de0001@northwind.example"],"from":"j.mueller@beispiel.example"}',
                             "charsets": b'{"to":"UTF-8","from":"UTF-8","subject":"UTF-8"}'})
    msg = parse_sendgrid(form_data_parts(body, ctype)[0], reply_template=TEMPLATE)
    assert msg.provider == "sendgrid" and msg.from_name == "Jürgen Müller" and msg.reply_token == "tk_de0001"
    assert msg.text.endswith("Gibt es einen Rabatt für Jahresverträge?")


def mailgun_form(key: str = MAILGUN_KEY, timestamp: int | None = None, token: str | None = None, **over) -> dict:
    token = token or secrets.token_hex(25)
    timestamp = timestamp if timestamp is not None else 0
    form = {"recipient": "reply+tk_mg01@northwind.example", "sender": "bounce+abc@mail.gmail.com",
            "from": "Priya Shah <Priya@Initech.example>", "subject": "Re: Your demo request, Priya",
            "body-plain": raw("outlook_original_message.txt").decode(), "stripped-text": "Sounds good. Thursday at 3pm works for me.",
            "Message-Id": "<mg-reply-1@initech.example>", "In-Reply-To": "<first-touch.2@northwind.example>",
            "References": "<first-touch.2@northwind.example>",
            "message-headers": json.dumps([["Received", "by mxa.mailgun.org"], ["From", "Priya Shah <Priya@Initech.example>"],
                                           ["To", "reply+tk_mg01@northwind.example"], ["Message-Id", "<mg-reply-1@initech.example>"],
                                           ["Subject", "Re: Your demo request, Priya"]]),
            "timestamp": str(timestamp), "token": token,
            "signature": hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()}
    form.update(over)
    return form


def test_mailgun_fields():
    msg = parse_mailgun(mailgun_form(), reply_template=TEMPLATE)
    assert (msg.provider, msg.from_addr, msg.reply_token) == ("mailgun", "priya@initech.example", "tk_mg01")
    assert msg.text == "Sounds good. Thursday at 3pm works for me." and msg.message_id == "<mg-reply-1@initech.example>"
    assert msg.in_reply_to == "<first-touch.2@northwind.example>"


@pytest.mark.parametrize("call, field", [
    (lambda: parse_raw(b"", reply_template=TEMPLATE), "body"),
    (lambda: parse_raw(b"\x00\xff garbage without headers", reply_template=TEMPLATE), "from"),
    (lambda: parse_postmark([1, 2], reply_template=TEMPLATE), "body"),
    (lambda: parse_postmark(postmark_body(FromFull="ana@acme.example"), reply_template=TEMPLATE), "FromFull"),
    (lambda: parse_postmark(postmark_body(Headers={"a": 1}), reply_template=TEMPLATE), "Headers"),
    (lambda: parse_postmark(postmark_body(TextBody=["x"]), reply_template=TEMPLATE), "TextBody"),
    (lambda: parse_postmark(postmark_body(FromFull={}, From=""), reply_template=TEMPLATE), "from"),
    (lambda: parse_sendgrid({**sendgrid_fields(), "envelope": b"{not json"}, reply_template=TEMPLATE), "envelope"),
    (lambda: parse_sendgrid({**sendgrid_fields(), "charsets": b"[1]"}, reply_template=TEMPLATE), "charsets"),
    (lambda: parse_mailgun(mailgun_form(**{"message-headers": '{"a": 1}'}), reply_template=TEMPLATE), "message-headers")])
def test_malformed_bodies_name_the_field(call, field):
    with pytest.raises(MalformedEmail) as e:
        call()
    assert e.value.field == field


def test_unknown_charsets_and_broken_mime_still_parse():
    msg = parse_raw(b"From: x@y.example\r\nSubject: =?x-unknown?q?hi?=\r\nContent-Type: text/plain; charset=x-klingon\r\n"
                    b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64", reply_template=TEMPLATE)
    assert msg.from_addr == "x@y.example"
    fields = {**sendgrid_fields(), "charsets": b'{"text": "no-such-charset"}'}
    assert parse_sendgrid(fields, reply_template=TEMPLATE).text


# -- the webhook ------------------------------------------------------------------------------------

def basic(user_pass: str = AUTH) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user_pass.encode()).decode()}


@pytest.fixture
def web(make_sdr, clock):
    """(sdr, client, received InboundEmails) with every provider configured and receive_email stubbed."""
    from integrations.web.app import create_app
    sdr = make_sdr(settings={"inbound_email_auth": SecretStr(AUTH), "mailgun_signing_key": SecretStr(MAILGUN_KEY),
                             "email_reply_to": TEMPLATE})
    got: list[InboundEmail] = []
    sdr.receive_email = lambda m: got.append(m) or {"accepted": True, "duplicate": False}
    app = create_app(sdr)
    app.testing = True
    return sdr, app.test_client(), got


def now_ts(clock) -> int:
    return int(clock().replace(tzinfo=timezone.utc).timestamp())


def post(client, provider, **kw):
    return client.post(f"/webhooks/email/{provider}", **kw)


def test_each_provider_hands_the_reply_to_the_sdr(web, clock):
    sdr, client, got = web
    r = post(client, "postmark", json=postmark_body(), headers=basic())
    assert r.status_code == 200 and r.get_json() == {"accepted": True, "duplicate": False}
    body, ctype = form_data(sendgrid_fields())
    assert post(client, "sendgrid", data=body, content_type=ctype, headers=basic()).status_code == 200
    assert post(client, "raw", data=raw("outlook_reply.eml"), content_type="message/rfc822", headers=basic()).status_code == 200
    assert post(client, "mailgun", data=mailgun_form(timestamp=now_ts(clock))).status_code == 200
    body, ctype = form_data({k: v.encode() for k, v in mailgun_form(timestamp=now_ts(clock)).items()})
    assert post(client, "mailgun", data=body, content_type=ctype).status_code == 200         # multipart, too
    assert [m.provider for m in got] == ["postmark", "sendgrid", "raw", "mailgun", "mailgun"]
    assert [m.reply_token for m in got] == ["tk_3f9a2c7e1b", "tk_sg01", "tk_77aa10bb", "tk_mg01", "tk_mg01"]
    assert got[2].text.startswith("Hi Ava,") and got[2].message_id.startswith("<AM6PR05MB1234")


def test_a_big_reply_is_taken_though_it_is_over_the_api_limit(web):
    sdr, client, got = web
    big = raw("gmail_reply.eml") + b"\n" + b"x" * (sdr.settings.max_body_bytes * 3)
    assert post(client, "raw", data=big, content_type="message/rfc822", headers=basic()).status_code == 200


def test_basic_auth_is_required_and_compared_whole(web):
    _, client, got = web
    wrong = [{}, basic("sdr-in:wrong"), basic("other:Zq8!pass:word"), basic("sdr-in"), basic(AUTH + "x"),
             {"Authorization": "Bearer " + AUTH}, {"Authorization": "Basic !!!notbase64"}]
    for provider, kw in (("postmark", {"json": postmark_body()}), ("raw", {"data": raw("gmail_reply.eml"),
                                                                          "content_type": "message/rfc822"}),
                         ("sendgrid", dict(zip(("data", "content_type"), form_data(sendgrid_fields()))))):
        for headers in wrong:
            r = post(client, provider, headers=headers, **kw)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="sdr"', (provider, headers)
            assert r.get_json()["error"]["code"] == "unauthorized" and AUTH not in r.get_data(as_text=True)
    assert got == []


def test_unconfigured_or_unknown_providers_answer_404(make_sdr):
    from integrations.web.app import create_app
    sdr = make_sdr()
    sdr.receive_email = lambda m: pytest.fail("nothing may be received")
    client = create_app(sdr).test_client()
    for provider in ("postmark", "sendgrid", "raw", "mailgun"):
        r = post(client, provider, data=b"{}", content_type="application/json", headers=basic())
        assert r.status_code == 404 and "email provider not configured" in r.get_json()["error"]["message"]
    r = post(client, "ses", json={}, headers=basic())
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "unknown_provider"
    assert client.get("/webhooks/email/postmark").status_code == 405


def test_mailgun_signatures_must_be_right_fresh_and_new(web, clock):
    _, client, got = web
    ts = now_ts(clock)
    cases = [(mailgun_form(timestamp=ts, key="key-wrong"), "bad_signature"),
             (mailgun_form(timestamp=ts - 301), "stale"), (mailgun_form(timestamp=ts + 400), "stale"),
             ({k: v for k, v in mailgun_form(timestamp=ts).items() if k != "signature"}, "missing_signature"),
             (mailgun_form(timestamp=ts, signature="zz" * 32), "bad_signature"),
             (mailgun_form(timestamp="nan"), "stale")]
    for form, code in cases:
        r = post(client, "mailgun", data=form)
        assert r.status_code == 401 and r.get_json()["error"]["code"] == code, (code, r.get_json())
    form = mailgun_form(timestamp=ts - 250)
    assert post(client, "mailgun", data=form).status_code == 200
    r = post(client, "mailgun", data=form)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "replayed" and len(got) == 1
    clock.advance(minutes=10)                                    # too old by now, whatever the token
    assert post(client, "mailgun", data=mailgun_form(timestamp=ts)).get_json()["error"]["code"] == "stale"


def test_a_delivery_that_was_not_taken_can_come_again(web, clock, monkeypatch):
    sdr, client, got = web
    form = mailgun_form(timestamp=now_ts(clock))
    monkeypatch.setattr(sdr, "receive_email", lambda m: (_ for _ in ()).throw(RuntimeError("database down")))
    assert post(client, "mailgun", data=form).status_code == 500            # the provider retries...
    monkeypatch.setattr(sdr, "receive_email", lambda m: got.append(m) or {"accepted": True, "duplicate": False})
    assert post(client, "mailgun", data=form).status_code == 200            # ...and the retry is no replay


def test_wrong_content_types_are_415(web, clock):
    _, client, _ = web
    for provider, ctype in (("postmark", "text/plain"), ("postmark", "application/x-www-form-urlencoded"),
                            ("sendgrid", "application/json"), ("raw", "text/plain"), ("raw", "application/json")):
        r = post(client, provider, data=b"x", content_type=ctype, headers=basic())
        assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_media_type", (provider, ctype)
    r = post(client, "mailgun", data=json.dumps(mailgun_form(timestamp=now_ts(clock))), content_type="application/json")
    assert r.status_code == 415


def test_malformed_bodies_are_400_naming_the_field(web):
    _, client, got = web
    cases = [("postmark", {"data": b"{not json", "content_type": "application/json"}, "'body'"),
             ("postmark", {"json": [1]}, "'body'"),
             ("postmark", {"json": postmark_body(FromFull="x")}, "'FromFull'"),
             ("postmark", {"json": postmark_body(FromFull={}, From=None)}, "'from'"),
             ("raw", {"data": b"", "content_type": "message/rfc822"}, "'body'"),
             ("raw", {"data": b"just some words", "content_type": "message/rfc822"}, "'from'"),
             ("sendgrid", {"data": b"no parts", "content_type": "multipart/form-data"}, "'body'"),
             ("sendgrid", dict(zip(("data", "content_type"), form_data({**sendgrid_fields(), "envelope": b"]"}))),
              "'envelope'")]
    for provider, kw, field in cases:
        r = post(client, provider, headers=basic(), **kw)
        assert r.status_code == 400 and field in r.get_json()["error"]["message"], (provider, field, r.get_json())
        assert r.get_json()["error"]["code"] == "bad_email"
    assert got == []


def test_oversized_bodies_are_413(web):
    sdr, client, got = web
    client.application.config["SDR_EMAIL_MAX_BYTES"] = 4096
    r = post(client, "raw", data=raw("gmail_reply.eml") + b"x" * 5000, content_type="message/rfc822", headers=basic())
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "body_too_large"
    r = post(client, "mailgun", data={"body-plain": "x" * 5000})                     # checked before the signature
    assert r.status_code == 413 and got == []


HOSTILE = [b"\x00" * 100, b"From: <>\r\n\r\n", b"From: " + b"a" * 5000 + b"@b\r\n\r\nx",
           b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--",
           b"From: =?utf-8?b?////?= <a@b.example>\r\nReferences: " + b"<x@y> " * 2000 + b"\r\n\r\nhi",
           "From: Ä <ä@ö.example>\r\nSubject: \udcff\r\n\r\n".encode("utf-8", "surrogateescape"),
           b"From: a@b.example\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: ;;;\r\nAction: failed",
           b"\r\n\r\n\r\n" * 3000 + b"From: a@b.example"]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_is_never_a_500(web, body):
    _, client, _ = web
    for provider, kw in (("raw", {"data": body, "content_type": "message/rfc822"}),
                         ("postmark", {"data": body, "content_type": "application/json"}),
                         ("sendgrid", dict(zip(("data", "content_type"), form_data({"email": body})))),
                         ("sendgrid", dict(zip(("data", "content_type"), form_data({"headers": body, "text": body}))))):
        r = post(client, provider, headers=basic(), **kw)
        assert r.status_code in (200, 400) and r.is_json, (provider, r.status_code, r.get_data()[:200])


def test_the_real_intake_takes_a_reply(make_sdr, clock):
    from integrations.web.app import create_app
    sdr = make_sdr(settings={"inbound_email_auth": SecretStr(AUTH), "email_reply_to": TEMPLATE})
    client = create_app(sdr).test_client()
    r = post(client, "postmark", json=postmark_body(), headers=basic())
    assert r.status_code == 200 and r.get_json().get("accepted") is not None, r.get_json()
    again = post(client, "postmark", json=postmark_body(), headers=basic())
    assert again.status_code == 200 and again.get_json().get("duplicate") in (True, None)
