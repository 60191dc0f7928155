"""The email channel's rules: who may be emailed, each lead's reply token, the emails queued in the
outbox (first touch, replies in the thread), bounces and unsubscribes.

An email is an outbox entry of kind "email" whose payload is everything the adapter needs to write
and send it (integrations/email renders text and HTML and speaks SMTP). Whether the lead may still
be emailed is decided once, at send time (`may_email`), never by the callers: an unsubscribed,
bounced or forgotten address gets nothing from anything.

Headers follow RFC 5322 (Message-ID, In-Reply-To, References) and RFC 8058 (one-click
List-Unsubscribe); the reply address carries the lead's token (`reply+TOKEN@…`, plus addressing as
in RFC 5233), which maps to the lead and is unguessable (128 bits).
"""
from __future__ import annotations

import re
import secrets
from datetime import datetime
from email.utils import make_msgid, parseaddr
from typing import Any

from nameparser import HumanName
from sqlalchemy import select
from sqlalchemy.orm import Session

from .outbox import enqueue
from .reply_tokens import reply_address
from .store import Conversation, EmailMessage, EmailStatus, Lead, LeadToken, OutboxEntry, new_id

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Emails that never count against the playbook's weekly cap (limits.emails_per_lead_per_week): the
# first touch answering the lead's own form fill and replies to the lead's own emails.
EMAIL_EXEMPT_FROM_CAPS = ("first_touch", "reply")


def lead_token(s: Session, lead_id: str, now: datetime, purpose: str = "reply") -> str:
    """The lead's token for `purpose` (created on first use): 128 random bits, URL- and
    local-part-safe. Purposes: "reply" (the Reply-To address), "unsubscribe" (the footer link),
    "track" (open pixel and tracked links: holding it only adds capped engagement events)."""
    row = s.scalars(select(LeadToken).where(LeadToken.lead_id == lead_id, LeadToken.purpose == purpose)).first()
    if row is None:
        row = LeadToken(token=secrets.token_hex(16), lead_id=lead_id, purpose=purpose, at=now)   # lower-case: some mail systems lower-case addresses
        s.add(row)
        s.flush()
    return row.token


def lead_for_token(s: Session, token: str | None, purpose: str = "reply") -> Lead | None:
    """The lead a reply or unsubscribe token belongs to, or None (unknown or malformed token)."""
    if not token or not TOKEN_RE.match(token):
        return None
    row = s.get(LeadToken, token)
    return s.get(Lead, row.lead_id) if row is not None and row.purpose == purpose else None


def email_status(s: Session, lead_id: str) -> EmailStatus:
    row = s.get(EmailStatus, lead_id)
    if row is None:
        row = EmailStatus(lead_id=lead_id)
        s.add(row)
        s.flush()
    return row


def may_email(s: Session, lead: Lead | None, address: str | None) -> str | None:
    """None when `lead` may be emailed at `address`; else why not (unsubscribed, bounced, no address)."""
    if lead is None:
        return "the lead is gone (forgotten or merged)"
    if not address:
        return "no email address"
    if lead.unsubscribed:
        return "the lead opted out"
    st = s.get(EmailStatus, lead.id)
    if st is not None and st.unsubscribed_at is not None:
        return f"unsubscribed ({st.unsubscribe_source or 'link'})"
    if st is not None and st.bounced_at is not None:
        return f"the address bounced: {st.bounce_reason or 'bounced'}"
    return None


def thread_of(s: Session, lead_id: str) -> tuple[str | None, list[str], str]:
    """The lead's email thread: the last Message-ID (to reply to), all Message-IDs so far
    (References, oldest first, at most 20) and the thread's subject ("" when none yet)."""
    rows = s.scalars(select(EmailMessage).where(EmailMessage.lead_id == lead_id).order_by(EmailMessage.at)).all()
    ids = [r.message_id for r in rows]
    subject = next((r.subject for r in rows if r.subject), "")
    return (ids[-1] if ids else None), ids[-20:], subject


def queue_email(s: Session, lead: Lead, *, key: str, subject: str, content: dict[str, Any], now: datetime,
                sender: str, reply_to_template: str | None, public_url: str, conversation_id: str | None = None,
                kind: str = "first_touch") -> OutboxEntry | None:
    """Queue one email to the lead in the caller's transaction (exactly once per `key`): the outbox
    payload for integrations/email — to, subject, greeting, paragraphs, links, question, slots,
    signoff, message_id, reply_to, unsubscribe_url, in_reply_to, references — and its Message-ID
    recorded for threading. `content` gives greeting/paragraphs/links/question/slots/signoff.
    Returns None when the key was queued before."""
    address = lead.email or (lead.fields or {}).get("email")
    if s.scalars(select(OutboxEntry.id).where(OutboxEntry.idempotency_key == key)).first() is not None:
        return None
    token, unsubscribe = lead_token(s, lead.id, now), lead_token(s, lead.id, now, "unsubscribe")
    domain = (parseaddr(sender)[1] or "sdr.invalid").rpartition("@")[2] or "sdr.invalid"
    message_id = make_msgid(idstring=new_id("m")[2:14], domain=domain)
    last, refs, thread_subject = thread_of(s, lead.id)
    if last and thread_subject:
        subject = thread_subject if thread_subject.lower().startswith("re:") else f"Re: {thread_subject}"
    payload = {"kind": kind, "to": address, "to_name": (lead.fields or {}).get("name"), "subject": subject,
               **content, "message_id": message_id,
               "reply_to": reply_address(reply_to_template or sender, token),
               "unsubscribe_url": f"{public_url.rstrip('/')}/unsubscribe/{unsubscribe}",
               "in_reply_to": last, "references": refs}
    entry = enqueue(s, kind="email", key=key, lead_id=lead.id, payload=payload, now=now)
    s.add(EmailMessage(message_id=message_id, lead_id=lead.id, conversation_id=conversation_id, direction="out",
                       subject=subject, at=now))
    return entry


def record_inbound(s: Session, lead_id: str, message_id: str | None, subject: str, conversation_id: str | None,
                   now: datetime) -> None:
    """Keep a received email's Message-ID in the lead's thread (once)."""
    if message_id and s.get(EmailMessage, message_id) is None:
        s.add(EmailMessage(message_id=message_id, lead_id=lead_id, conversation_id=conversation_id, direction="in",
                           subject=subject[:500], at=now))


def lead_for_thread(s: Session, ids: list[str]) -> Lead | None:
    """The lead whose thread holds one of these Message-IDs (In-Reply-To first, then References)."""
    for mid in ids:
        row = s.get(EmailMessage, mid) if mid else None
        if row is not None:
            return s.get(Lead, row.lead_id)
    return None


def email_conversation(s: Session, lead_id: str) -> str | None:
    """The id of the lead's email conversation, if one exists."""
    return s.scalars(select(Conversation.id).where(Conversation.lead_id == lead_id, Conversation.channel == "email")
                     .order_by(Conversation.created_at)).first()


def email_words(playbook: Any, row: Lead, paragraphs: list[str], **extra: Any) -> dict[str, Any]:
    """An email's words around what it says (bot/emails.queue_email's `content`): "Hi <first
    name>," and the automated assistant's signature — every email the SDR writes says it is
    automated. `extra` sets links, question, slots, quote."""
    name = str((row.fields or {}).get("name") or "").strip()
    first = (HumanName(name).first or name.split(" ")[0]) if name else ""
    return {"greeting": f"Hi {first}," if first else "Hi,", "paragraphs": paragraphs, "links": [],
            "question": None, "slots": [],
            "signoff": f"{playbook.company.assistant_name}, {playbook.company.name}'s automated assistant", **extra}
