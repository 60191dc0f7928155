"""Tracked email engagement: the open pixel and the content-link redirect, public, no sign-in.

    GET|HEAD /t/o/<token>.gif       always 200, a 1×1 transparent GIF; records `email_open`
    GET|HEAD /t/c/<token>?u=<url>   302 to `url` when the content store knows it; records `email_click`

`<token>` is the lead's tracking token (`bot.emails.lead_token(s, lead_id, now, "track")`, put in
the email by the core: the pixel's URL and every content link, `/t/c/<token>?u=<quoted url>`). An
event is scored through `sdr.record_event` (the playbook's points and daily caps, per UTC day) and
only when the playbook defines it; an unknown or malformed token, a lead that unsubscribed, or any
failure while recording records nothing and changes nothing in the answer: the response never
says whether a token is known, and never is a 500.

No open redirect: the click route redirects only to a URL the content store holds, exactly as
stored (`meta["url"]` of a chunk in `sdr.kb.corpus()`); anything else — no `u`, a URL the store
does not hold, `javascript:`, another host, the same URL with another query or fragment — is 400
in the API's JSON error shape and records nothing, whatever the token.

No rate limit here: limits.py limits POST routes, these are GET, and a pixel must always load.
Guessing a token learns nothing (same answer either way); a valid token can add at most the
playbook's daily cap of points per event type.
"""
from __future__ import annotations

import base64
import re
import threading
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.urls import iri_to_uri

from .access import current_sdr
from .errors import ApiError, log

bp = Blueprint("email_tracking", __name__)

MAX_URL = 2000        # characters of `u`; longer is 400 url_too_long
_MAX_TOKEN = 64
_GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")   # 1×1 transparent, 43 bytes
_NO_STORE = {"Cache-Control": "no-store, private"}
_LINKABLE = re.compile(r"(?:https?://[^/\s]|/(?!/))[^\s\x00-\x1f\x7f]*\Z", re.IGNORECASE)
_URLS = "sdr.content_urls"


@bp.get("/t/o/<token>.gif")
def open_pixel(token: str) -> Response:
    """The open pixel: 200 `image/gif` (a 1×1 transparent GIF, `Cache-Control: no-store, private`)
    for any token. A lead's tracking token records `email_open` (properties {"via": "pixel"}) when
    the playbook has that event; anything else records nothing. HEAD answers the same headers."""
    _record(token, "email_open", {"via": "pixel"})
    return Response(_GIF, status=200, mimetype="image/gif", headers=_NO_STORE)


@bp.get("/t/c/<token>")
def click(token: str) -> Response:
    """A content link: 302 with `Location` = `u` exactly, when `u` is a URL of the content store
    (then a lead's tracking token records `email_click` with properties {"url": u}, when the
    playbook has that event; an unknown token still redirects and records nothing).

    Errors (JSON `{"error": {"code", "message"}}`, nothing recorded, the same for any token):
    400 `missing_url` (no `u`), `ambiguous_link` (`u` given twice), `url_too_long` (over 2000
    characters), `unsafe_link` (not an http(s) URL or a path: `javascript:`, `data:`, ...),
    `unknown_link` (a URL the content store does not hold: another host, an extra query or fragment)."""
    target = _known_target(request.args.getlist("u"))
    _record(token, "email_click", {"url": target})
    location = target if target.isascii() else iri_to_uri(target)
    return Response("", status=302, headers={"Location": location, "Referrer-Policy": "no-referrer", **_NO_STORE})


def _known_target(values: list[str]) -> str:
    """The one `u` value when the content store holds it; raises ApiError 400 otherwise."""
    if not values or not values[0]:
        raise ApiError(400, "missing_url", "the link has no 'u' parameter (the URL of the content it points to)")
    if len(values) > 1:
        raise ApiError(400, "ambiguous_link", "the link carries 'u' more than once; it must name one content URL")
    url = values[0]
    if len(url) > MAX_URL:
        raise ApiError(400, "url_too_long", f"'u' is {len(url)} characters; a content URL has at most {MAX_URL}")
    if not _LINKABLE.match(url):
        raise ApiError(400, "unsafe_link", "this link does not point to content this SDR sent "
                       "('u' is not an http(s) URL)")
    if url not in content_urls(current_app):
        raise ApiError(400, "unknown_link", "this link does not point to content this SDR sent")
    return url


def _record(token: str, event_type: str, properties: dict[str, Any]) -> None:
    """Score `event_type` for the lead whose tracking token this is; nothing for an unknown or
    malformed token, an event the playbook lacks or a lead that unsubscribed. Never raises: a
    failure is logged and the reader still gets the pixel or the content."""
    from bot.emails import lead_for_token
    from bot.store import EmailStatus

    sdr = current_sdr()
    if event_type not in sdr.playbook.engagement or len(token) > _MAX_TOKEN:
        return
    try:
        with sdr.store.session() as s:
            lead = lead_for_token(s, token, "track")
            status = s.get(EmailStatus, lead.id) if lead is not None else None
            if lead is None or lead.unsubscribed or (status is not None and status.unsubscribed_at is not None):
                return
            lead_id = lead.id
        sdr.record_event(event_type, lead_id=lead_id, properties=properties)
    except Exception:  # noqa: BLE001 - the reader gets the pixel or the content whatever went wrong here
        log.exception("could not record %s for a tracked email", event_type)


class _ContentUrls:
    """The set of content URLs, built once per content store and again only when it changes.

    `kb.corpus()` hands out a new list on every call, over the same (text, meta) pairs for as long
    as the store's in-memory corpus lives (an ingest or reload makes new ones): the set is rebuilt
    when the length or the first or last pair (by identity) differs — never per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] = ()
        self._urls: frozenset[str] = frozenset()

    def get(self, kb: Any) -> frozenset[str]:
        corpus = kb.corpus() if kb is not None else []
        with self._lock:
            if self._stale(kb, corpus):
                self._urls = frozenset(u for _, meta in corpus if isinstance(u := (meta or {}).get("url"), str)
                                       and _LINKABLE.match(u) and len(u) <= MAX_URL)
                self._key = (kb, len(corpus), corpus[0] if corpus else None, corpus[-1] if corpus else None)
            return self._urls

    def _stale(self, kb: Any, corpus: list[Any]) -> bool:
        if not self._key:
            return True
        old_kb, length, first, last = self._key
        return old_kb is not kb or length != len(corpus) or bool(corpus) and (first is not corpus[0] or
                                                                              last is not corpus[-1])

def content_urls(app: Flask) -> frozenset[str]:
    """Every URL the SDR's content store holds (http(s) or a path on this site) — what a tracked
    link may redirect to. Cached on the app; rebuilt only when the content changes."""
    cache = app.extensions.get(_URLS)
    if cache is None:
        cache = app.extensions.setdefault(_URLS, _ContentUrls())
    return cache.get(app.extensions["sdr"].kb)
