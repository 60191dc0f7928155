"""One outgoing email as a stdlib `EmailMessage` (policy SMTP: CRLF, folded, RFC 2047-encoded
non-ASCII names and subjects), from the outbox payload (see mail_render for its shape).

Headers, and where each rule comes from:
- From = SDR_EMAIL_FROM; To = `to_name <to>`; Subject; Date (RFC 5322 3.6).
- Message-ID = payload["message_id"] (made with `make_message_id`, stored by the core), so a reply's
  In-Reply-To finds the thread.
- Reply-To = payload["reply_to"] (the per-lead address from reply_tokens.reply_address).
- In-Reply-To and References when replying (RFC 5322 3.6.4): References is the parent's
  References followed by the parent's Message-ID.
- List-Unsubscribe: <url> (RFC 2369) and List-Unsubscribe-Post: List-Unsubscribe=One-Click
  (RFC 8058: one POST to the URL unsubscribes, no page, no login).
- No Auto-Submitted: RFC 3834 5 reserves `auto-generated`/`auto-replied` for messages no person
  stands behind and tells responders to stay quiet; these are personal answers the prospect is
  meant to reply to (with `no` being the default, the header is left out). Our own intake still
  recognises the prospect's auto-replies (inbound_parse).
- multipart/alternative: text/plain first, then text/html (RFC 2046 5.1.4: the last part is preferred).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from typing import Any

from .mail_render import PayloadError, display_text, render, safe_url

_MSGID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>\Z")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")


def make_message_id(domain: str) -> str:
    """A new globally unique Message-ID, `<time.pid.random64@domain>` (email.utils.make_msgid,
    RFC 5322 3.6.4). `domain` is the sender's domain (never this host's name)."""
    domain = (domain or "").strip().strip("<>").rpartition("@")[2]
    if not _DOMAIN.match(domain):
        raise ValueError(f"{domain!r} is not a domain to put in a Message-ID")
    return make_msgid(domain=domain)


def message_id(value: Any, what: str = "message_id") -> str:
    """A Message-ID in angle brackets (`<left@right>`); brackets are added when missing. Raises
    PayloadError for anything else."""
    v = display_text(value)
    if v and not v.startswith("<"):
        v = f"<{v}>"
    if not _MSGID.match(v):
        raise PayloadError(f"the email payload's {what!r} is not a Message-ID like <id@domain>")
    return v


def address(value: Any, name: Any = None, what: str = "to") -> Address:
    """One mailbox as a headerregistry Address (a display name in `value` or given as `name`).
    Raises PayloadError when there is no single valid addr-spec."""
    raw = display_text(value)
    if len(getaddresses([raw])) != 1:
        raise PayloadError(f"{what!r} is not one email address: {raw[:80]!r}")
    display, addr = parseaddr(raw)
    if not addr or "@" not in addr or any(c in addr for c in " ,;<>\"\\"):
        raise PayloadError(f"{what!r} is not one email address: {raw[:80]!r}")
    local, _, domain = addr.rpartition("@")
    display = " ".join(display_text(name if name is not None else display).split())[:200]
    try:
        return Address(display_name=display, username=local, domain=domain)
    except (ValueError, TypeError) as e:
        raise PayloadError(f"{what!r} is not a valid email address: {e}") from None


def _thread_headers(msg: EmailMessage, payload: dict[str, Any]) -> None:
    parent = payload.get("in_reply_to")
    refs = [message_id(r, "references") for r in payload.get("references") or []]
    if parent:
        parent = message_id(parent, "in_reply_to")
        msg["In-Reply-To"] = parent
        if parent not in refs:
            refs.append(parent)
    if refs:
        msg["References"] = " ".join(dict.fromkeys(refs))


def build_message(payload: dict[str, Any], *, sender: str, footer_address: str, company: str,
                  date: datetime | None = None) -> EmailMessage:
    """The email for `payload` from `sender` (SDR_EMAIL_FROM, `Ava at Northwind <ava@northwind.example>`),
    dated `date` (naive means UTC; default now). Raises PayloadError when the payload or the sender
    cannot make an email (dead-letter it; see mail_render.PayloadError)."""
    text, html = render(payload, footer_address=footer_address, company=company)
    unsubscribe = safe_url(payload.get("unsubscribe_url"))
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = address(sender, what="SDR_EMAIL_FROM")
    msg["To"] = address(payload.get("to"), payload.get("to_name") or "", "to")
    msg["Subject"] = " ".join(display_text(payload.get("subject")).split())[:250] or company or "Hello"
    when = date or datetime.now(timezone.utc)
    msg["Date"] = format_datetime(when if when.tzinfo else when.replace(tzinfo=timezone.utc))
    msg["Message-ID"] = message_id(payload.get("message_id"))
    if payload.get("reply_to"):
        msg["Reply-To"] = address(payload["reply_to"], msg["From"].addresses[0].display_name, "reply_to")
    _thread_headers(msg, payload)
    msg["List-Unsubscribe"] = f"<{unsubscribe}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg
