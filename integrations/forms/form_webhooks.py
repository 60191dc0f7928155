"""POST /webhooks/forms/<source>: verify, parse, hand the fill to the SDR, answer at once.

The route only translates: the source's secret from the settings, the raw body, the SDR's clock
and the request's URL go to form_sources.parse (signature first, then the documented body shape);
the FormFill goes to `sdr.receive_form`, which stores it and queues the work after commit, and its
answer is returned as 202. Every refusal is the web channel's JSON error and creates nothing:

    404 unknown_form_source            not one of generic, typeform, webflow, hubspot
    404 form_source_not_configured     its secret is not set (unsigned data is never accepted)
    415 unsupported_media_type         not Content-Type: application/json
    413 body_too_large                 over SDR_MAX_BODY_BYTES (chunked bodies too)
    401 bad_signature / stale          missing or wrong signature; timestamp more than 5 minutes off
    400 malformed_json / bad_form_body not JSON, or the documented shape is missing (names the field)
"""
from __future__ import annotations

from datetime import timezone
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from integrations.web.errors import ApiError

from .form_fill import FormError
from .form_sources import SOURCES, parse

bp = Blueprint("forms", __name__)


@bp.post("/webhooks/forms/<source>")
def receive(source: str) -> tuple[Response, int]:
    """One delivery of `source`: 202 with `sdr.receive_form(fill)`'s dict ({"accepted": true,
    "duplicate": ...}), or the JSON error listed in this module's docstring."""
    sdr = current_app.extensions["sdr"]
    src = SOURCES.get(source)
    if src is None:
        raise ApiError(404, "unknown_form_source", f"unknown form source {source[:40]!r}: POST to "
                       f"/webhooks/forms/<{'|'.join(SOURCES)}>")
    secret = sdr.settings.secret(src.setting)
    if not secret:
        raise ApiError(404, "form_source_not_configured", f"form source not configured: set {src.variable} to turn on "
                       f"/webhooks/forms/{source} (unsigned form data is never accepted)")
    if (request.mimetype or "").lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the provider's JSON with 'Content-Type: application/json' "
                       f"(got {(request.content_type or 'none')[:80]})")
    body = _read_body()
    now = sdr.clock().replace(tzinfo=timezone.utc).timestamp()
    try:
        fill = parse(source, request.headers, body, secret=secret, now=now, method=request.method,
                     urls=_signed_urls(sdr.settings.public_url))
    except FormError as e:
        raise ApiError(e.status, e.code, e.message) from None
    result: dict[str, Any] = sdr.receive_form(fill)
    return jsonify(result), 202


def _read_body() -> bytes:
    """The raw body; over MAX_CONTENT_LENGTH raises 413 (JSON via errors.py). A chunked body has no
    Content-Length to refuse up front, and Werkzeug's stream silently stops at the limit: a body that
    fills it and still has bytes to give is too large, not truncated and then misread as a bad signature."""
    body = request.get_data(cache=True)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and request.content_length is None and len(body) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return body


def _signed_urls(public_url: str | None) -> list[str]:
    """The full URL a provider may have signed (HubSpot signs the one it called): as this server
    sees it, as https (behind a TLS proxy), and under SDR_PUBLIC_URL when set."""
    seen = request.url
    parts = urlsplit(seen)
    tail = seen[len(f"{parts.scheme}://{parts.netloc}"):]
    urls = [seen, f"https://{parts.netloc}{tail}"]
    if public_url:
        urls.append(public_url.rstrip("/") + tail)
    return urls
