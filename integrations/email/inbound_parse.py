"""Inbound email, from each provider's documented webhook shape into one `InboundEmail`.

- Postmark inbound webhook (JSON): https://postmarkapp.com/developer/webhooks/inbound-webhook and
  https://postmarkapp.com/developer/user-guide/inbound/parse-an-email — `FromFull {Email, Name}`,
  `ToFull`/`CcFull [{Email, Name, MailboxHash}]`, `OriginalRecipient`, `MailboxHash`, `Subject`,
  `TextBody`, `HtmlBody`, `StrippedTextReply`, `MessageID` (Postmark's own id, NOT the Message-ID
  header: threading uses `Headers [{Name, Value}]`), `Attachments [{ContentType, Content (base64)}]`,
  optional `RawEmail`.
- SendGrid Inbound Parse (multipart/form-data):
  https://www.twilio.com/docs/sendgrid/for-developers/parsing-email/setting-up-the-inbound-parse-webhook
  — `headers` (the raw header block), `text`, `html`, `from`, `to`, `cc`, `subject`, `envelope` (JSON
  `{"to": [...], "from": "..."}`), `charsets` (JSON: each field's character set); or, with "POST the
  raw, full MIME message", `email` holding the whole message.
- Mailgun routes, forward() (form-encoded, or multipart with attachments):
  https://documentation.mailgun.com/docs/mailgun/user-manual/receive-forward-store/receive-http —
  `sender` (MAIL FROM), `from`, `recipient`, `subject`, `body-plain`, `body-html`, `stripped-text`,
  `message-headers` (JSON list of [name, value], in order), `Message-Id`/`In-Reply-To`/`References`;
  the signature fields are checked in inbound_auth.
- raw: an RFC 5322 message (`message/rfc822`), parsed with the stdlib `email` package.

Rules applied to all of them:
- `text` is the new part only (reply_strip: quoted history and signature cut); `full_text` the whole
  body (text/plain preferred, else the HTML as text).
- `reply_token` from the recipients matching the reply-to template (reply_tokens), else Postmark's
  MailboxHash.
- `auto_reply` (RFC 3834 5: `Auto-Submitted` other than `no`; `X-Autoreply`, `X-Autorespond`;
  `Precedence: auto_reply|bulk|junk`; out-of-office subjects in English, German, French, Spanish,
  Italian, Dutch, Portuguese).
- `bounce` for a delivery status notification (RFC 3464 / RFC 6522: `multipart/report;
  report-type=delivery-status`), mail from MAILER-DAEMON or postmaster, or an `X-Failed-Recipients`
  header; `bounced_addresses` are the recipients with `Action: failed` and a 5.x.x `Status` (RFC 3463),
  plus X-Failed-Recipients. A bounce's `in_reply_to` is the Message-ID of the returned original
  when it has none of its own, so the core finds the thread.
Anything hostile becomes `MalformedEmail` (a ValueError naming the field), never another exception.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any, Iterable, Mapping

from .reply_strip import html_to_text, strip_reply
from bot.reply_tokens import token_from_addresses, token_from_mailbox_hash

KEPT_HEADERS = ("Date", "Auto-Submitted", "Precedence", "X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress",
                "List-Id", "Return-Path", "X-Failed-Recipients", "Content-Language", "Authentication-Results",
                "Received-SPF", "Delivered-To", "X-Original-To", "X-Provider-Message-ID")
MAX_HEADER_CHARS = 998        # RFC 5322 2.1.1's line limit: longer kept values are cut
MAX_TEXT_CHARS = 100_000
_MSGID = re.compile(r"<[^<>\s]{1,500}>")
_OUT_OF_OFFICE = re.compile(
    r"^\s*(?:(?:re|aw|fw|fwd|wg|tr|rv|sv)\s*:\s*)*\[?\s*(?:out of (?:the )?office|ooo\b|automatic reply|auto[- ]?reply|"
    r"auto[- ]?response|autoreply|abwesenheitsnotiz|automatische antwort|abwesend|réponse automatique|"
    r"absence du bureau|respuesta automática|fuera de la oficina|risposta automatica|fuori sede|"
    r"automatisch antwoord|afwezig|resposta automática|ausente|autosvar)", re.IGNORECASE)
_DAEMON = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon)$", re.IGNORECASE)


class MalformedEmail(ValueError):
    """A provider's body lacks a field or has one that cannot be read; `field` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass
class InboundEmail:
    provider: str                      # postmark | sendgrid | mailgun | raw
    message_id: str | None             # the Message-ID header, with its angle brackets
    from_addr: str                     # lower-cased addr-spec
    from_name: str
    to: list[str]                      # every recipient addr-spec seen (To, Cc, envelope, original recipient)
    subject: str
    text: str                          # the new part only: quoted history and signature stripped
    full_text: str
    in_reply_to: str | None
    references: list[str]
    reply_token: str | None
    auto_reply: bool
    bounce: bool
    bounced_addresses: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


# -- small readers ------------------------------------------------------------------------------------

def decode_words(value: Any) -> str:
    """A header value as text: RFC 2047 encoded-words decoded, folding undone; never raises."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except Exception:
            pass
    return " ".join(text.split())


def message_ids(value: Any) -> list[str]:
    """Every `<id>` in a Message-ID / In-Reply-To / References value, in order, without repeats."""
    return list(dict.fromkeys(_MSGID.findall(value if isinstance(value, str) else "")))


def mailboxes(values: Iterable[Any]) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs from header values or addresses, parsed by the RFC 5322
    address grammar before any RFC 2047 decoding (email.headerregistry): an encoded display name can
    never become the address ("=?utf-8?q?victim@c.example?= <eve@attacker.example>" is eve's). A value
    that does not parse, or a name with CR/LF, gives nothing."""
    out: list[tuple[str, str]] = []
    for v in values:
        if not (isinstance(v, str) and v.strip()):
            continue
        try:
            addresses = policy.default.header_factory("to", v).addresses
        except Exception:   # noqa: BLE001 — CR/LF in an encoded name, or garbage: not an address
            continue
        out += [(" ".join(a.display_name.split()), a.addr_spec.strip()) for a in addresses
                if "@" in a.addr_spec and len(a.addr_spec) <= 320 and not re.search(r"[\s<>,;]", a.addr_spec)]
    return out


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name.lower()][:MAX_HEADER_CHARS] for name in KEPT_HEADERS if headers.get(name.lower())}


def header_pairs(pairs: Iterable[Any]) -> dict[str, str]:
    """{lower-case name: first value} from [name, value] pairs or {Name, Value} objects."""
    out: dict[str, str] = {}
    for p in pairs:
        name, value = (p.get("Name"), p.get("Value")) if isinstance(p, dict) else (p if isinstance(p, (list, tuple))
                                                                                    and len(p) == 2 else (None, None))
        if isinstance(name, str) and isinstance(value, (str, int)):
            out.setdefault(name.strip().lower(), _unfold(str(value)))
    return out


def _unfold(value: str) -> str:
    """A header value on one line (RFC 5322 2.2.3), raw 8-bit bytes (surrogate-escaped by the parser)
    read as UTF-8."""
    value = re.sub(r"\r?\n[ \t]+", " ", value).replace("\r", "").replace("\n", " ")
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def raw_header_block(block: str) -> dict[str, str]:
    """{lower-case name: first value} from a raw header block (SendGrid's `headers`)."""
    msg = BytesParser(policy=policy.compat32).parsebytes(block.encode("utf-8", "surrogateescape") + b"\r\n\r\n",
                                                         headersonly=True)
    return header_pairs((k, v if isinstance(v, str) else str(v)) for k, v in msg.items())


# -- the rules shared by every provider ----------------------------------------------------------------

def is_auto_reply(headers: Mapping[str, str], subject: str) -> bool:
    """RFC 3834 5.1 Auto-Submitted other than `no`, X-Autoreply/X-Autorespond, Precedence
    auto_reply/bulk/junk, or an out-of-office subject."""
    auto = headers.get("auto-submitted", "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return True
    if headers.get("x-autoreply") or headers.get("x-autorespond"):
        return True
    if headers.get("precedence", "").strip().lower() in ("auto_reply", "bulk", "junk"):
        return True
    return bool(_OUT_OF_OFFICE.match(subject or ""))


def dsn_failures(text: str) -> list[str]:
    """The failed recipients in a message/delivery-status body (RFC 3464 2.3): per-recipient blocks
    with `Action: failed` and a 5.x.x `Status`, by Final-Recipient (else Original-Recipient)."""
    failed = []
    for block in re.split(r"\r?\n[ \t]*\r?\n", text or ""):
        fields = {}
        for m in re.finditer(r"^([A-Za-z-]+)[ \t]*:[ \t]*(.*)$", block, re.MULTILINE):
            fields.setdefault(m.group(1).lower(), m.group(2).strip())
        recipient = fields.get("final-recipient") or fields.get("original-recipient") or ""
        if fields.get("action", "").lower() == "failed" and fields.get("status", "").startswith("5"):
            addr = recipient.split(";", 1)[-1].strip().strip("<>").lower()
            if "@" in addr and len(addr) <= 320:
                failed.append(addr)
    return list(dict.fromkeys(failed))


def _part_text(part: Message) -> str:
    try:
        payload = part.get_payload() if part.is_multipart() else part.get_payload(decode=True)
    except Exception:
        return ""
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    if isinstance(payload, list):    # message/delivery-status and message/rfc822 parse into sub-messages
        return "\n\n".join(p.as_string() for p in payload if isinstance(p, Message))
    return payload if isinstance(payload, str) else ""


def _returned_message_id(msg: Message) -> str | None:
    """The Message-ID of the original a DSN returns (its message/rfc822 or text/rfc822-headers part)."""
    for part in msg.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers", "message/global-headers"):
            m = re.search(r"^Message-ID:[ \t]*(<[^<>\s]{1,500}>)", _part_text(part), re.IGNORECASE | re.MULTILINE)
            if m:
                return m.group(1)
    return None


def bounce_info(headers: Mapping[str, str], from_addr: str, dsn_texts: list[str]) -> tuple[bool, list[str]]:
    """(is a bounce, failed recipients) from the headers, the sender and the delivery-status texts."""
    ctype = headers.get("content-type", "").lower()
    failed = [a for t in dsn_texts for a in dsn_failures(t)]
    x_failed = [a.lower() for _, a in mailboxes([headers.get("x-failed-recipients", "")])]
    is_bounce = bool(dsn_texts or x_failed or ("multipart/report" in ctype and "delivery-status" in ctype)
                     or _DAEMON.match(from_addr.partition("@")[0]))
    return is_bounce, list(dict.fromkeys(failed + x_failed)) if is_bounce else []


def _assemble(provider: str, *, headers: Mapping[str, str], sender: tuple[str, str] | None, recipients: list[Any],
              subject: Any, body_text: Any, html: Any, vendor_stripped: Any = "", dsn_texts: Iterable[str] = (),
              reply_template: str, mailbox_hash: Any = None, returned_id: str | None = None) -> InboundEmail:
    if sender is None or "@" not in sender[1]:
        raise MalformedEmail("from", "the email has no sender address (From)")
    from_addr = sender[1].strip().lower()
    body_text = body_text if isinstance(body_text, str) else ""
    html = html if isinstance(html, str) else ""
    full = (body_text.strip() or html_to_text(html))[:MAX_TEXT_CHARS]
    text = strip_reply(body_text) if body_text.strip() else strip_reply(html_to_text(html, drop_quotes=True))
    if not text and isinstance(vendor_stripped, str):
        text = strip_reply(vendor_stripped)
    to = list(dict.fromkeys(a for _, a in mailboxes(recipients)))
    subject = decode_words(subject)[:MAX_HEADER_CHARS]
    in_reply_to = next(iter(message_ids(headers.get("in-reply-to"))), None)
    bounce, failed = bounce_info(headers, from_addr, [t for t in dsn_texts if t])
    return InboundEmail(
        provider=provider, message_id=next(iter(message_ids(headers.get("message-id"))), None),
        from_addr=from_addr, from_name=sender[0][:200], to=to, subject=subject, text=text, full_text=full,
        in_reply_to=in_reply_to or (returned_id if bounce else None),
        references=message_ids(headers.get("references"))[:100],
        reply_token=token_from_addresses(to, reply_template) or (
            token_from_mailbox_hash(mailbox_hash, reply_template) if isinstance(mailbox_hash, str) else None),
        auto_reply=is_auto_reply(headers, subject), bounce=bounce, bounced_addresses=failed, headers=_kept(headers))


def _first_sender(values: Iterable[Any]) -> tuple[str, str] | None:
    found = mailboxes(values)
    return found[0] if found else None


# -- raw RFC 5322 ------------------------------------------------------------------------------------

def from_message(msg: Message, *, provider: str, reply_template: str, extra_recipients: Iterable[Any] = (),
                 extra_headers: Mapping[str, str] | None = None) -> InboundEmail:
    """An InboundEmail from a parsed message (stdlib, policy default): text/plain preferred, else the
    HTML as text; delivery-status parts read for bounces."""
    headers = header_pairs(msg.raw_items()) if hasattr(msg, "raw_items") else header_pairs(msg.items())
    for k, v in (extra_headers or {}).items():
        headers.setdefault(k, v)
    plain = html = None
    if isinstance(msg, EmailMessage):
        plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    dsn = [_part_text(p) for p in msg.walk() if p.get_content_type() in
           ("message/delivery-status", "message/global-delivery-status")]
    recipients = [headers.get(h) for h in ("to", "cc", "delivered-to", "x-original-to")] + list(extra_recipients)
    return _assemble(provider, headers=headers, sender=_first_sender([headers.get("from"), headers.get("sender")]),
                     recipients=recipients, subject=headers.get("subject"),
                     body_text=_part_text(plain) if plain is not None else "",
                     html=_part_text(html) if html is not None else "", dsn_texts=dsn,
                     reply_template=reply_template, returned_id=_returned_message_id(msg) if dsn else None)


def parse_raw(data: bytes | str, *, reply_template: str, provider: str = "raw",
              extra_recipients: Iterable[Any] = ()) -> InboundEmail:
    """An RFC 5322 message (bytes as received). Raises MalformedEmail("body") when it is empty or
    has no sender."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if not data or not data.strip():
        raise MalformedEmail("body", "the body holds no email message")
    try:
        msg = message_from_bytes(data, policy=policy.default)
        return from_message(msg, provider=provider, reply_template=reply_template, extra_recipients=extra_recipients)
    except MalformedEmail:
        raise
    except Exception as e:   # the stdlib parser is lenient; what it still trips on is the sender's fault
        raise MalformedEmail("body", f"the email message could not be read ({type(e).__name__})") from None


# -- Postmark ------------------------------------------------------------------------------------------

def _postmark_field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise MalformedEmail(name, f"Postmark field {name!r} has the wrong type")
    return value


def _postmark_dsn(attachments: list[Any]) -> list[str]:
    out = []
    for a in attachments:
        if isinstance(a, dict) and str(a.get("ContentType", "")).lower().startswith(
                ("message/delivery-status", "message/global-delivery-status")) and isinstance(a.get("Content"), str):
            try:
                out.append(base64.b64decode(a["Content"][:1_000_000], validate=False).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                continue
    return out


def parse_postmark(body: Any, *, reply_template: str) -> InboundEmail:
    """Postmark's inbound webhook JSON (see the module docstring). Raises MalformedEmail naming the field."""
    if not isinstance(body, dict):
        raise MalformedEmail("body", "the Postmark body must be a JSON object")
    headers = header_pairs(_postmark_field(body, "Headers", list) or [])
    for name in ("Subject", "TextBody", "HtmlBody", "StrippedTextReply", "MailboxHash", "From", "To", "Cc",
                 "OriginalRecipient", "MessageID", "RawEmail"):
        _postmark_field(body, name)
    full = _postmark_field(body, "FromFull", dict) or {}
    sender = ((decode_words(full.get("Name")), str(full["Email"])) if isinstance(full.get("Email"), str)
              else _first_sender([body.get("From")]))
    people = [p.get("Email") for key in ("ToFull", "CcFull", "BccFull")
              for p in (_postmark_field(body, key, list) or []) if isinstance(p, dict)]
    dsn = _postmark_dsn(_postmark_field(body, "Attachments", list) or [])
    returned = None
    if body.get("RawEmail"):
        try:
            raw = message_from_bytes(body["RawEmail"].encode("utf-8", "surrogateescape"), policy=policy.default)
            dsn += [_part_text(p) for p in raw.walk() if p.get_content_type() == "message/delivery-status"]
            returned = _returned_message_id(raw)
        except Exception:
            raise MalformedEmail("RawEmail", "Postmark field 'RawEmail' is not a readable email message") from None
    if body.get("MessageID"):
        headers.setdefault("x-provider-message-id", body["MessageID"])
    return _assemble("postmark", headers=headers, sender=sender,
                     recipients=people + [body.get("To"), body.get("Cc"), body.get("OriginalRecipient")],
                     subject=body.get("Subject") or headers.get("subject"), body_text=body.get("TextBody"),
                     html=body.get("HtmlBody"), vendor_stripped=body.get("StrippedTextReply"), dsn_texts=dsn,
                     reply_template=reply_template, mailbox_hash=body.get("MailboxHash"), returned_id=returned)


# -- SendGrid ------------------------------------------------------------------------------------------

def form_data_parts(body: bytes, content_type: str) -> tuple[dict[str, bytes], list[tuple[str, bytes]]]:
    """A multipart/form-data body as ({field: raw bytes}, [(content type, bytes) of each file]), read
    with the stdlib MIME parser so each field keeps its own bytes (SendGrid says each field's charset
    in `charsets`). Raises MalformedEmail("body") when it is not multipart/form-data."""
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    except Exception:
        raise MalformedEmail("body", "the multipart/form-data body could not be read") from None
    if not msg.is_multipart():
        raise MalformedEmail("body", "the body is not multipart/form-data with a boundary")
    fields: dict[str, bytes] = {}
    files: list[tuple[str, bytes]] = []
    for part in msg.get_payload():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_filename():
            files.append((part.get_content_type(), data))
        elif isinstance(name, str):
            fields.setdefault(name, data)
    return fields, files


def _charset_decode(data: bytes, charset: Any) -> str:
    try:
        return data.decode(charset if isinstance(charset, str) and charset else "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _json_field(value: Any, name: str, kind: type) -> Any:
    if value in (None, "", b""):
        return kind()
    try:
        parsed = json.loads(value)
    except ValueError:
        raise MalformedEmail(name, f"{name!r} is not valid JSON") from None
    if not isinstance(parsed, kind):
        raise MalformedEmail(name, f"{name!r} is not a JSON {'object' if kind is dict else 'list'}")
    return parsed


def parse_sendgrid(fields: Mapping[str, bytes | str], *, reply_template: str,
                   files: Iterable[tuple[str, bytes]] = ()) -> InboundEmail:
    """SendGrid Inbound Parse fields (bytes as posted, or text): the parsed form (`headers`, `text`,
    `html`, `from`, `to`, `cc`, `subject`, `envelope`, `charsets`) or the raw form (`email`).
    Raises MalformedEmail naming the field."""
    charsets = _json_field(fields.get("charsets"), "charsets", dict)
    text = {k: v if isinstance(v, str) else _charset_decode(v, charsets.get(k)) for k, v in fields.items() if k != "email"}
    envelope = _json_field(text.get("envelope"), "envelope", dict)
    env_to = envelope.get("to") if isinstance(envelope.get("to"), list) else [envelope.get("to")]
    if fields.get("email"):
        return parse_raw(fields["email"], reply_template=reply_template, provider="sendgrid", extra_recipients=env_to)
    headers = raw_header_block(text.get("headers", ""))
    dsn = [_charset_decode(data, "utf-8") for ctype, data in files
           if ctype in ("message/delivery-status", "message/global-delivery-status")]
    return _assemble("sendgrid", headers=headers, sender=_first_sender([text.get("from"), headers.get("from")]),
                     recipients=[text.get("to"), text.get("cc"), headers.get("delivered-to"), *env_to],
                     subject=text.get("subject") or headers.get("subject"), body_text=text.get("text"),
                     html=text.get("html"), dsn_texts=dsn, reply_template=reply_template)


# -- Mailgun -------------------------------------------------------------------------------------------

def parse_mailgun(form: Mapping[str, str], *, reply_template: str, files: Iterable[tuple[str, bytes]] = ()) -> InboundEmail:
    """A Mailgun route's forward() POST (see the module docstring); the signature is checked before
    (inbound_auth). Raises MalformedEmail naming the field."""
    headers = header_pairs(_json_field(form.get("message-headers"), "message-headers", list))
    for name in ("Message-Id", "In-Reply-To", "References", "Auto-Submitted", "X-Autoreply", "Precedence",
                 "Content-Type", "X-Failed-Recipients"):
        if isinstance(form.get(name), str):
            headers.setdefault(name.lower(), form[name])
    dsn = [_charset_decode(data, "utf-8") for ctype, data in files
           if ctype in ("message/delivery-status", "message/global-delivery-status")]
    return _assemble("mailgun", headers=headers,
                     sender=_first_sender([form.get("from"), headers.get("from"), form.get("sender")]),
                     recipients=[form.get("recipient"), headers.get("to"), headers.get("cc")],
                     subject=form.get("subject") or headers.get("subject"), body_text=form.get("body-plain"),
                     html=form.get("body-html"), vendor_stripped=form.get("stripped-text"), dsn_texts=dsn,
                     reply_template=reply_template)
