"""The one inbound message type every channel speaks, and its validation.

A channel (web chat, form fill, email reply, CLI, a due sequence step) turns what arrived into an
`Inbound`; the turn validates it once, here.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .store import new_id
from .text import clean_text

MIN_DERIVING_ID = 16   # a message id this long (the widget's: 32 hex digits) may name its first session
CHANNELS = ("web", "form", "email", "event", "cli", "slack")


class InputError(ValueError):
    """The inbound message is unusable; `code` and the message say what to fix; `status` is the
    HTTP status a web channel answers with (400, or 413 for a message over the limit)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


class NotFound(LookupError):
    """No such lead (or other record) — a 404 on the web."""


@dataclass
class Inbound:
    """One message from any channel: web chat, form fill, email reply, CLI."""
    text: str
    channel: str = "web"
    session_id: str | None = None
    visitor: dict[str, Any] = field(default_factory=dict)   # email, name, company, page_url, timezone
    message_id: str | None = None                            # the sender's id, for safe retries
    verified: bool = False   # the channel vouches for visitor["email"] (verified identity, signed form, API client)
    at: datetime | None = None                               # naive UTC; default: the SDR's clock
    facts: dict[str, Any] = field(default_factory=dict)      # what a form stated (bot.extract.Fact by field)
    intents: set[str] = field(default_factory=set)           # what the channel says the message asks (a demo form: book)
    events: tuple[str, ...] = ()                             # engagement events it carries (contact_sales, email_reply)
    note: bool = False                                       # `text` describes what arrived; the visitor wrote no words


def validate(inbound: Inbound, max_chars: int) -> tuple[str, str]:
    """The message text cleaned for storage, and the session id (a new one when none was given).
    Raises InputError: empty_message, message_too_long (413, over `max_chars` characters), bad_channel."""
    text = inbound.text
    if not isinstance(text, str) or not text.strip():
        raise InputError("empty_message", "message must be a non-empty string")
    if len(text) > max_chars:
        raise InputError("message_too_long", f"message is {len(text)} characters; the limit is {max_chars}", status=413)
    if inbound.channel not in CHANNELS:
        raise InputError("bad_channel", f"channel must be one of {', '.join(CHANNELS)}")
    text = clean_text(text).strip()
    if not text:
        raise InputError("empty_message", "message has no readable text")
    return text, inbound.session_id or first_session_id(inbound.message_id)


def new_session_id() -> str:
    """A fresh session id: 128 bits from the OS's CSPRNG (knowing it is what lets a browser
    continue its conversation)."""
    return new_id("s")


def first_session_id(message_id: str | None, scope: str = "") -> str:
    """The session id for a conversation's first message. With a `message_id` it is derived from
    it (SHA-256 of scope and id, 128 bits shown), so a retried first message whose answer was lost
    lands in the same conversation — answered once — instead of opening a second lead; it is as
    hard to guess as the message id (the widget's are 128 random bits). `scope` narrows it (the
    web passes the client's address and user agent for anonymous browsers). Without one, or with
    one shorter than MIN_DERIVING_ID (a counter like "1" would join strangers): random."""
    if not message_id or len(message_id) < MIN_DERIVING_ID:
        return new_session_id()
    return "s_" + hashlib.sha256(f"first message\0{scope}\0{message_id}".encode()).hexdigest()[:32]
