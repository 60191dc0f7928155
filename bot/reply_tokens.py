"""Per-lead reply addresses, both ways: the address a reply goes to, and the token a reply came back with.

The template is SDR_EMAIL_REPLY_TO with `{token}` where the lead's token goes
(`reply+{token}@northwind.example`); when it is unset, the SDR_EMAIL_FROM address with `+{token}`
added to its local part (sub-addressing, RFC 5233), so `Ava <ava@northwind.example>` gives
`ava+{token}@northwind.example`. The core builds Reply-To with `reply_address`; the inbound adapters
read the token back with `token_from_addresses` — one module, so both sides agree.

Tokens are matched case-insensitively around them and returned as received: some mail systems
lower-case a whole address, so tokens are best made of lower-case letters and digits
(`secrets.token_hex`).
"""
from __future__ import annotations

import re
from email.utils import getaddresses, parseaddr
from typing import Iterable

TOKEN_CHARS = r"[A-Za-z0-9_=-][A-Za-z0-9._=-]{0,127}"
_TOKEN = re.compile(rf"{TOKEN_CHARS}\Z")


def reply_template(template_or_from: str) -> str:
    """The addr-spec template with `{token}`: the template itself (a display name around it is
    dropped), or the From address with `+{token}` in its local part. Raises ValueError when neither
    holds an address."""
    value = (template_or_from or "").strip()
    if "{token}" in value:
        addr = parseaddr(value.replace("{token}", "TOKEN0"))[1] or value
        addr = addr.replace("TOKEN0", "{token}")
        if addr.count("{token}") != 1 or "@" not in addr:
            raise ValueError(f"the reply-to template {value!r} must be one address with {{token}} once in it, "
                             "e.g. reply+{token}@example.com")
        return addr
    addr = parseaddr(value)[1]
    if "@" not in addr:
        raise ValueError(f"{value!r} holds no email address to add +{{token}} to")
    local, _, domain = addr.rpartition("@")
    return f"{local}+{{token}}@{domain}"


def reply_address(template_or_from: str, token: str) -> str:
    """The addr-spec replies to this lead go to. `token` must be 1-128 characters of letters, digits
    and `_=-.` (not starting with `.`; nothing that could end an address); raises ValueError otherwise."""
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise ValueError("a reply token is 1-128 characters of letters, digits and ._=-")
    return reply_template(template_or_from).replace("{token}", token)


def _pattern(template_or_from: str) -> re.Pattern[str]:
    before, _, after = reply_template(template_or_from).partition("{token}")
    return re.compile(rf"\A{re.escape(before)}({TOKEN_CHARS}){re.escape(after)}\Z", re.IGNORECASE)


def token_from_addresses(addresses: Iterable[str] | str | None, template_or_from: str) -> str | None:
    """The first token found in `addresses` (addr-specs, `Name <addr>` forms or whole To/Cc header
    values, comma-separated) that fits the template; None when none does (or no template applies)."""
    if not addresses:
        return None
    if isinstance(addresses, str):
        addresses = [addresses]
    try:
        pattern = _pattern(template_or_from)
    except ValueError:
        return None
    for _, addr in getaddresses([a for a in addresses if isinstance(a, str)]):
        m = pattern.match(addr.strip())
        if m:
            return m.group(1)
    return None


def token_from_mailbox_hash(mailbox_hash: str | None, template_or_from: str) -> str | None:
    """Postmark's MailboxHash (the part after `+` in the local part) as a token, when the template's
    token is exactly that part (`reply+{token}@...`); else None."""
    if not mailbox_hash:
        return None
    try:
        local = reply_template(template_or_from).rpartition("@")[0]
    except ValueError:
        return None
    if not local.endswith("+{token}") or "+" in local[: -len("+{token}")]:
        return None
    return mailbox_hash if _TOKEN.match(mailbox_hash) else None
