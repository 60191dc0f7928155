"""One email's text and HTML parts from the structured payload the core puts in the outbox.

Payload (a dict; only `unsubscribe_url` and one of greeting/paragraphs are required here —
`build_message` checks the addressing keys):

    {"to": "ana@acme.example", "to_name": "Ana", "subject": "...", "greeting": "Hi Ana,",
     "paragraphs": ["...", ...], "links": [{"title": "...", "url": "https://..."}],
     "question": "...?" | None, "slots": [{"label": "Tue 1 Dec, 15:00 CET", "url": "https://..."}],
     "signoff": "Lark, Pipelark's assistant", "unsubscribe_url": "https://sdr.example/unsubscribe/<token>",
     "message_id": "<...@domain>", "in_reply_to": "<...>" | None, "references": ["<...>"],
     "reply_to": "reply+<token>@domain" | None,
     "open_pixel_url": "https://sdr.example/t/o/<token>.gif" (optional: the email is tracked),
     "quote": {"from": "Ana Lima", "at": "Tue 13 Jan 2026, 16:20", "text": "..."} | None,
     "lang": "en" (optional)}

The HTML goes through Jinja2 with autoescape on (templates/email.html): every value is escaped,
so a visitor's name, question or quoted text can never become markup. A link or slot whose URL is
not http(s)/mailto is shown as plain text, never as a link (no `javascript:`). The HTML is
mail-client safe: inline styles only, no external images, fonts or CSS — except, when the email is
tracked, the 1×1 open pixel of our own server (`open_pixel_url`, integrations/web/email_tracking.py),
the last thing in the body; an `open_pixel_url` that is not http(s) is left out. The text part has
no pixel. Content `links` arrive already wrapped by the core as `/t/c/<token>?u=<quoted url>` when
the email is tracked; they are rendered like any link. Both parts end with the footer CAN-SPAM asks
for (15 U.S.C. 7704(a)(5)): the sender's postal address and a working unsubscribe link.
"""
from __future__ import annotations

import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bot.outbox import PermanentError

_env = Environment(loader=PackageLoader("integrations.email", "templates"), autoescape=select_autoescape(["html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_SAFE_URL = re.compile(r"(?:https?://|mailto:)[^\s\x00-\x1f\x7f]+\Z", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class PayloadError(PermanentError, ValueError):
    """The payload lacks what an email needs (no recipient, no unsubscribe link, ...): a
    PermanentError, so the outbox dead-letters it with this reason (retrying cannot fix it)."""


def display_text(value: Any) -> str:
    """A payload value as display text: str(), control characters (but tab/newline) dropped."""
    if value is None:
        return ""
    return _CONTROL.sub("", str(value)).replace("\r\n", "\n").replace("\r", "\n").strip()


def safe_url(value: Any) -> str | None:
    """The URL when it is http(s) or mailto and has no whitespace or control characters, else None."""
    url = display_text(value)
    return url if _SAFE_URL.match(url) else None


def _items(values: Any, label_key: str) -> list[dict[str, Any]]:
    out = []
    for item in values or []:
        if isinstance(item, dict) and display_text(item.get(label_key) or item.get("url")):
            out.append({label_key: display_text(item.get(label_key) or item.get("url")), "url": safe_url(item.get("url"))})
    return out


def _context(payload: dict[str, Any], footer_address: str, company: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise PayloadError("the email payload must be an object")
    unsubscribe = safe_url(payload.get("unsubscribe_url"))
    if not unsubscribe:
        raise PayloadError("the email payload has no http(s) 'unsubscribe_url' (every email carries one)")
    paragraphs = [display_text(p) for p in payload.get("paragraphs") or [] if display_text(p)]
    if not paragraphs and not display_text(payload.get("greeting")):
        raise PayloadError("the email payload has neither 'greeting' nor 'paragraphs'")
    quote = payload.get("quote") if isinstance(payload.get("quote"), dict) else None
    if quote is not None:
        who, at = display_text(quote.get("from")) or "you", display_text(quote.get("at"))
        quote = {"header": f"On {at}, {who} wrote:" if at else f"{who} wrote:",
                 "lines": display_text(quote.get("text")).split("\n")}
    return {"lang": re.sub(r"[^A-Za-z-]", "", display_text(payload.get("lang")))[:12] or "en",
            "subject": " ".join(display_text(payload.get("subject")).split()), "greeting": display_text(payload.get("greeting")),
            "paragraphs": paragraphs, "links": _items(payload.get("links"), "title"),
            "slots": _items(payload.get("slots"), "label"), "question": display_text(payload.get("question")),
            "signoff": display_text(payload.get("signoff")), "quote": quote, "company": display_text(company),
            "address_lines": [line.strip() for line in display_text(footer_address).split("\n") if line.strip()],
            "unsubscribe_url": unsubscribe, "open_pixel_url": _pixel_url(payload.get("open_pixel_url"))}


def _pixel_url(value: Any) -> str | None:
    """The open pixel's URL when `safe_url` accepts it and it is http(s) (an image, never mailto:), else None."""
    url = safe_url(value)
    return url if url is not None and url.lower().startswith(("https://", "http://")) else None


def _plain(c: dict[str, Any]) -> str:
    blocks: list[str] = [c["greeting"], *c["paragraphs"]]
    if c["links"]:
        blocks.append("\n".join(f"{li['title']}: {li['url']}" if li["url"] else li["title"] for li in c["links"]))
    if c["slots"]:
        blocks.append("\n".join(f"- {s['label']}: {s['url']}" if s["url"] else f"- {s['label']}" for s in c["slots"]))
    blocks += [c["question"], c["signoff"]]
    if c["quote"]:
        blocks.append("\n".join([c["quote"]["header"], *(f"> {x}" if x else ">" for x in c["quote"]["lines"])]))
    # "-- " is the signature separator (RFC 3676 4.3): clients grey it out and leave it out of quotes.
    footer = "\n".join(["-- ", *([c["company"]] if c["company"] else []), *c["address_lines"],
                        f"Unsubscribe: {c['unsubscribe_url']}"])
    return "\n\n".join(b for b in blocks if b) + "\n\n" + footer + "\n"


def render(payload: dict[str, Any], *, footer_address: str, company: str) -> tuple[str, str]:
    """(text part, HTML part) of one email. `footer_address` is the sender's postal address (lines
    separated by newlines), `company` the sender's name; both appear in each part's footer with the
    unsubscribe link. Raises PayloadError when the payload cannot make an email."""
    c = _context(payload, footer_address, company)
    return _plain(c), _env.get_template("email.html").render(**c)
