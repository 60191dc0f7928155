"""Email out (issue 12, section 2): the message the core's payload becomes, sent to a real SMTP server
on a loopback port (tests/smtp_server.py) or written as an .eml file; failures classified for the
outbox (4xx later, 5xx a bounce, bad credentials a setting to fix)."""
from __future__ import annotations

import re
import socket
from email import message_from_bytes, policy

import pytest
from smtp_server import make_smtp_server, smtp_certificate, smtp_server

from bot.outbox import PermanentError, RetryLater
from bot.settings import SettingsError
from integrations.email.mail_render import PayloadError, render
from integrations.email.mime_build import build_message, make_message_id
from bot.reply_tokens import reply_address, token_from_addresses, token_from_mailbox_hash
from integrations.email.smtp_out import (Bounced, EmlDirTransport, SmtpTransport, parse_smtp_url,
                                         transport_from_settings)

SENDER = "Ava at Northwind <ava@northwind.example>"
REPLY_TO = "reply+{token}@northwind.example"
FOOTER = "Northwind Analytics Inc.\n500 Market Street, Suite 12\nSan Francisco, CA 94105"
FIXTURES = (make_smtp_server, smtp_certificate, smtp_server)   # the real SMTP server (tests/smtp_server.py)
HOSTILE = 'Ana <script>alert("x")</script> & Co\'s "team"'


def payload(**over):
    p = {"to": "ana@acme.example", "to_name": "Ana Lima", "subject": "Your demo request, Ana",
         "greeting": "Hi Ana,", "paragraphs": ["Thanks for asking about a demo of Northwind Forecasting.",
                                              "Most teams your size start with the Salesforce sync."],
         "links": [{"title": "How forecasting works", "url": "https://northwind.example/guide?a=1&b=2"}],
         "question": "How many people are on your sales team?", "slots": [], "signoff": "Ava, Northwind's assistant",
         "unsubscribe_url": "https://sdr.example/unsubscribe/u_9f8e7d", "message_id": make_message_id("northwind.example"),
         "in_reply_to": None, "references": [], "reply_to": reply_address(REPLY_TO, "tk3f9a2c7e1b"), "quote": None}
    p.update(over)
    return p


def build(p=None, **kw):
    return build_message(p or payload(), sender=kw.get("sender", SENDER), footer_address=FOOTER, company="Northwind")


def parts(msg):
    return tuple(msg.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html"))


# -- the message --------------------------------------------------------------------------------------

def test_a_first_touch_reaches_the_smtp_server_with_every_header(smtp_server):
    p = payload()
    result = SmtpTransport(smtp_server.url).send(build(p))
    assert result["accepted"] == ["ana@acme.example"] and result["refused"] == {}
    assert result["transport"] == "smtp" and result["response"].startswith("250 ")
    got = smtp_server.wait_for(1)[0]
    m = got.message
    assert got.rcpt_tos == ["ana@acme.example"] and got.mail_from == "ava@northwind.example"
    assert m["Message-ID"] == p["message_id"] and re.fullmatch(r"<[^@\s]+@northwind\.example>", m["Message-ID"])
    assert m["From"].addresses[0].display_name == "Ava at Northwind" and m["To"] == "Ana Lima <ana@acme.example>"
    assert m["Reply-To"].addresses[0].addr_spec == "reply+tk3f9a2c7e1b@northwind.example"
    assert token_from_addresses(str(m["Reply-To"]), REPLY_TO) == "tk3f9a2c7e1b"
    assert m["List-Unsubscribe"] == "<https://sdr.example/unsubscribe/u_9f8e7d>"
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["Date"] and m["In-Reply-To"] is None and m["References"] is None
    assert m["Auto-Submitted"] is None and m["Precedence"] is None      # a personal answer (RFC 3834 5)
    assert m.get_content_type() == "multipart/alternative"
    assert [x.get_content_type() for x in m.iter_parts()] == ["text/plain", "text/html"]
    text, html = parts(m)
    for part in (text, html):
        assert "500 Market Street, Suite 12" in part and "San Francisco, CA 94105" in part   # CAN-SPAM footer
        assert "https://sdr.example/unsubscribe/u_9f8e7d" in part
        assert "How many people are on your sales team?" in part
    assert "How forecasting works: https://northwind.example/guide?a=1&b=2" in text and "<" not in text
    assert 'href="https://northwind.example/guide?a=1&amp;b=2"' in html
    assert "\n-- \n" in text                                            # the RFC 3676 signature separator
    assert not re.search(r"<(link|img|script)\b|src=|url\(", html)          # nothing fetched from elsewhere


def test_a_reply_carries_the_thread_and_quotes_the_prospect(smtp_server):
    p = payload(subject="Re: Your demo request, Ana", in_reply_to="<CAHk3x9Q+gmail-reply-001@mail.gmail.com>",
                references=["<first-touch.1@northwind.example>"],
                quote={"from": "Ana Lima", "at": "Tue 13 Jan 2026, 17:20", "text": "We're 250 people.\nSalesforce?"})
    SmtpTransport(smtp_server.url).send(build(p))
    m = smtp_server.wait_for(1)[0].message
    assert m["In-Reply-To"] == "<CAHk3x9Q+gmail-reply-001@mail.gmail.com>"
    assert m["References"].split() == ["<first-touch.1@northwind.example>", "<CAHk3x9Q+gmail-reply-001@mail.gmail.com>"]
    text, html = parts(m)
    assert "On Tue 13 Jan 2026, 17:20, Ana Lima wrote:\n> We're 250 people.\n> Salesforce?" in text
    assert "<blockquote" in html and "We&#39;re 250 people.<br>Salesforce?" in html


def test_everything_a_visitor_wrote_is_escaped_in_the_html():
    p = payload(to_name=HOSTILE, greeting=f"Hi {HOSTILE},", question='Still "<b>bold</b>" & <img src=x onerror=alert(1)>?',
                quote={"from": HOSTILE, "at": "today", "text": "</blockquote><script>steal()</script>"},
                links=[{"title": "<i>guide</i>", "url": "javascript:alert(1)"}],
                slots=[{"label": "Tue 15:00 <b>", "url": "https://sdr.example/book?slot=1&lead=2"}])
    text, html = render(p, footer_address=FOOTER + "\n<script>", company="North<wind> & Co")
    assert "<script" not in html and "<img" not in html and "<i>" not in html and "javascript:" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co&#39;s &#34;team&#34;" in html
    assert "&lt;/blockquote&gt;&lt;script&gt;steal()&lt;/script&gt;" in html
    assert "North&lt;wind&gt; &amp; Co" in html and 'href="https://sdr.example/book?slot=1&amp;lead=2"' in html
    assert f"Hi {HOSTILE}," in text and "<i>guide</i>" in text and "javascript:" not in text   # text stays as written
    msg = build(p)
    assert msg["To"].addresses[0].display_name == HOSTILE and msg["To"].addresses[0].addr_spec == "ana@acme.example"


def test_non_ascii_names_and_subjects_are_encoded_and_come_back_whole(smtp_server):
    p = payload(to="jurgen@beispiel.example", to_name="Jürgen Müller", subject="Ihre Anfrage – Preise für 200 Nutzer",
                greeting="Hallo Jürgen,")
    SmtpTransport(smtp_server.url).send(build(p, sender="Åsa på Northwind <asa@northwind.example>"))
    got = smtp_server.wait_for(1)[0]
    raw_headers = got.raw.split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii() and b"=?utf-8?" in raw_headers                       # RFC 2047 on the wire
    m = got.message
    assert m["Subject"] == "Ihre Anfrage – Preise für 200 Nutzer"
    assert str(m["To"]) == "Jürgen Müller <jurgen@beispiel.example>"
    assert m["From"].addresses[0].display_name == "Åsa på Northwind"
    assert "Hallo Jürgen," in parts(m)[0]


def test_header_injection_through_a_name_or_subject_goes_nowhere():
    msg = build(payload(to_name="Ana\r\nBcc: victim@evil.example", subject="Hi\nBcc: victim@evil.example"))
    head = msg.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head and msg["Bcc"] is None and msg.get_all("To") and len(msg.get_all("To")) == 1


@pytest.mark.parametrize("change, complaint", [
    ({"unsubscribe_url": None}, "unsubscribe_url"), ({"unsubscribe_url": "javascript:x"}, "unsubscribe_url"),
    ({"to": "not an address"}, "'to'"), ({"to": "a@x.example, b@y.example"}, "'to'"),
    ({"message_id": "no brackets or at"}, "message_id"), ({"greeting": "", "paragraphs": []}, "greeting"),
    ({"in_reply_to": "<bad id>"}, "in_reply_to")])
def test_a_payload_that_cannot_make_an_email_says_what_is_missing(change, complaint):
    with pytest.raises(PayloadError, match=re.escape(complaint)) as e:
        build(payload(**change))
    assert isinstance(e.value, ValueError) and isinstance(e.value, PermanentError)   # dead-lettered, not retried


def test_message_ids_are_unique_and_carry_the_senders_domain():
    ids = {make_message_id("northwind.example") for _ in range(200)}
    assert len(ids) == 200 and all(i.startswith("<") and i.endswith("@northwind.example>") for i in ids)
    assert make_message_id("ava@northwind.example").endswith("@northwind.example>")
    with pytest.raises(ValueError):
        make_message_id("not a domain")


# -- failures, as the outbox needs them ---------------------------------------------------------------

def test_a_busy_mailbox_is_tried_again_later(smtp_server):
    with pytest.raises(RetryLater) as e:
        SmtpTransport(smtp_server.url).send(build(payload(to="busy@acme.example")))
    assert e.value.not_done and "450" in str(e.value) and smtp_server.messages == []


def test_an_unknown_mailbox_is_a_bounce(smtp_server):
    with pytest.raises(Bounced) as e:
        SmtpTransport(smtp_server.url).send(build(payload(to="nobody@acme.example")))
    assert isinstance(e.value, PermanentError)
    assert (e.value.address, e.value.code) == ("nobody@acme.example", 550) and "5.1.1" in e.value.smtp_message


def test_a_5xx_to_data_bounces_the_single_recipient_and_a_4xx_waits(smtp_server):
    smtp_server.answer_data(554, "5.7.1 Message rejected as spam")
    with pytest.raises(Bounced) as e:
        SmtpTransport(smtp_server.url).send(build())
    assert (e.value.address, e.value.code) == ("ana@acme.example", 554)
    smtp_server.answer_data(451, "4.3.0 Temporary local problem")
    with pytest.raises(RetryLater) as r:
        SmtpTransport(smtp_server.url).send(build())
    assert r.value.not_done
    smtp_server.answer_data(None)
    SmtpTransport(smtp_server.url).send(build())
    assert len(smtp_server.wait_for(1)) == 1


def test_a_server_that_is_down_or_silent_is_tried_again_later(smtp_server):
    url = smtp_server.url
    smtp_server.stop()
    with pytest.raises(RetryLater) as e:
        SmtpTransport(url).send(build())
    assert e.value.not_done
    with socket.socket() as silent:             # accepts the connection, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(RetryLater) as t:
            SmtpTransport(f"smtp://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3).send(build())
    assert t.value.not_done


def test_starttls_then_auth_with_a_password_that_needs_percent_encoding(make_smtp_server):
    server = make_smtp_server("starttls", users={"ava@northwind.example": "p@ss:w/rd%"})
    url = server.url_with("ava@northwind.example", "p@ss:w/rd%")
    transport = SmtpTransport(url, ssl_context=server.client_context())
    assert "p@ss" not in repr(transport) and "****" in transport.config.shown
    result = transport.send(build())
    got = server.wait_for(1)[0]
    assert got.user == "ava@northwind.example" and got.tls and "p@ss" not in str(result)


def test_a_wrong_password_is_a_setting_to_fix_and_never_shown(make_smtp_server, caplog):
    server = make_smtp_server("starttls", users={"ava": "right-password"})
    with pytest.raises(PermanentError) as e:
        SmtpTransport(server.url_with("ava", "wrong-password"), ssl_context=server.client_context()).send(build())
    assert not isinstance(e.value, Bounced)
    assert "SDR_SMTP_URL" in str(e.value) and "535" in str(e.value) and "wrong-password" not in str(e.value)
    assert "wrong-password" not in caplog.text and server.messages == []


def test_smtps_is_tls_from_the_first_byte(make_smtp_server):
    server = make_smtp_server("tls", users={"ava": "pw-123456"})
    SmtpTransport(server.url_with("ava", "pw-123456"), ssl_context=server.client_context()).send(build())
    got = server.wait_for(1)[0]
    assert got.tls and got.user == "ava"


def test_an_untrusted_certificate_or_a_server_without_starttls_is_a_setting_to_fix(make_smtp_server, smtp_server):
    server = make_smtp_server("starttls")
    with pytest.raises(PermanentError, match="certificate"):
        SmtpTransport(server.url).send(build())       # the system's CAs do not trust a self-signed certificate
    with pytest.raises(PermanentError, match="SDR_SMTP_URL"):
        SmtpTransport(smtp_server.url.replace("smtp://", "smtp+starttls://")).send(build())
    assert server.messages == [] and smtp_server.messages == []


# -- settings and the embedded default ----------------------------------------------------------------

@pytest.mark.parametrize("url, expect", [
    ("smtp://mail.local:2525", ("plain", "mail.local", 2525, None, None)),
    ("smtp://mail.local", ("plain", "mail.local", 25, None, None)),
    ("smtp+starttls://ava%40nw.example:s%3Acret@smtp.example.com:587", ("starttls", "smtp.example.com", 587,
                                                                         "ava@nw.example", "s:cret")),
    ("smtps://ava:pw@smtp.example.com", ("tls", "smtp.example.com", 465, "ava", "pw")),
    ("SMTPS://ava:pw@[::1]:4650", ("tls", "::1", 4650, "ava", "pw"))])
def test_smtp_urls_are_read_as_documented(url, expect):
    c = parse_smtp_url(url)
    assert (c.security, c.host, c.port, c.username, c.password) == expect
    assert c.password is None or c.password not in c.shown


@pytest.mark.parametrize("url", ["http://mail.local", "smtp+ssl://a:b@mail.local", "mail.local:25",
                                 "smtp://", "smtp://mail.local:notaport", "smtps://:secret-pw@mail.local"])
def test_a_bad_smtp_url_fails_clearly_naming_the_variable(url):
    with pytest.raises(SettingsError) as e:
        SmtpTransport(url)
    assert "SDR_SMTP_URL" in str(e.value) and "smtp+starttls://user:pass@host:587" in str(e.value)
    assert "secret-pw" not in str(e.value)


def test_without_smtp_the_emails_are_eml_files_written_once_per_message_id(tmp_path):
    transport = EmlDirTransport(tmp_path / "outbox-mail")
    msg = build()
    first = transport.send(msg)
    again = transport.send(build(payload(message_id=msg["Message-ID"])))     # the outbox retried
    assert first["path"] == again["path"] and not first["duplicate"] and again["duplicate"]
    files = list((tmp_path / "outbox-mail").iterdir())
    assert [f.name for f in files] == [first["path"].rsplit("/", 1)[1]]       # no temporary file left behind
    mid = msg["Message-ID"].strip("<>")
    assert re.fullmatch(rf"\d{{8}}-\d{{6}}-{re.escape(mid)}\.eml", files[0].name)
    back = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert back["Message-ID"] == msg["Message-ID"] and back["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["accepted"] == ["ana@acme.example"] and first["transport"] == "eml"
    odd = build(payload(message_id="<../../etc/passwd/..@evil.example>"))
    assert (tmp_path / "outbox-mail") == __import__("pathlib").Path(transport.send(odd)["path"]).parent


def test_the_transport_follows_the_settings(settings):
    t = transport_from_settings(settings)
    assert isinstance(t, EmlDirTransport) and t.directory == settings.data_dir / "outbox-mail"
    settings.smtp_url = "smtp+starttls://ava:pw-secret@smtp.example.com:587"
    assert isinstance(transport_from_settings(settings), SmtpTransport)
    settings.smtp_url = "pop3://mail.example.com"
    with pytest.raises(SettingsError, match="SDR_SMTP_URL"):
        transport_from_settings(settings)


# -- reply addresses, both ways ---------------------------------------------------------------------

def test_reply_addresses_and_tokens_agree_both_ways():
    assert reply_address(REPLY_TO, "ab12") == "reply+ab12@northwind.example"
    assert reply_address(SENDER, "ab12") == "ava+ab12@northwind.example"        # SDR_EMAIL_REPLY_TO unset
    assert reply_address("Ava <r-{token}@in.northwind.example>", "x9") == "r-x9@in.northwind.example"
    for template in (REPLY_TO, SENDER, "{token}@reply.northwind.example"):
        addr = reply_address(template, "tk_0a1b")
        assert token_from_addresses([f"Ava <{addr}>"], template) == "tk_0a1b"
        assert token_from_addresses([addr.upper()], template) == "TK_0A1B"     # matched whatever the case
    assert token_from_addresses("someone@else.example, Ava <reply+zz9@northwind.example>", REPLY_TO) == "zz9"
    assert token_from_addresses(["reply+@northwind.example", "reply+a@other.example", "ava@northwind.example"],
                                REPLY_TO) is None
    assert token_from_addresses(None, REPLY_TO) is None and token_from_addresses(["x@y"], "no address") is None
    assert token_from_mailbox_hash("zz9", REPLY_TO) == "zz9" and token_from_mailbox_hash("zz9", SENDER) == "zz9"
    assert token_from_mailbox_hash("zz9", "{token}@reply.northwind.example") is None
    for bad in ("", "a@b", "a b", "x+y", "<t>", ".dot"):
        with pytest.raises(ValueError):
            reply_address(REPLY_TO, bad)
