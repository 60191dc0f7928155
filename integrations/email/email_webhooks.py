"""POST /webhooks/email/<provider>: authenticate, parse, hand the reply to the SDR.

Providers: `postmark` (JSON), `sendgrid` (multipart/form-data Inbound Parse, parsed or raw), `mailgun`
(form-encoded or multipart route forward) and `raw` (`message/rfc822`) — shapes in inbound_parse.
Postmark, SendGrid and raw need HTTP Basic auth matching SDR_INBOUND_EMAIL_AUTH; Mailgun needs its
signature with SDR_MAILGUN_SIGNING_KEY (inbound_auth). Answers, always JSON:

- 200 with what `sdr.receive_email(InboundEmail)` returned ({"accepted": true, "duplicate": false, ...});
- 401 bad or missing credentials (`WWW-Authenticate: Basic realm="sdr"` for Basic), bad, stale or
  replayed Mailgun signature; 404 unknown provider, or one whose secret is not set ("email provider
  not configured"); 400 a malformed body, naming the field; 413 over the size limit; 415 the wrong
  content type.

The size limit is the app's config `SDR_EMAIL_MAX_BYTES` (default 10 MB: a reply with a signature
image or a small attachment is far above the API's SDR_MAX_BODY_BYTES, and a 4xx would only make the
provider retry). Authentication comes before the body is read: a stranger learns nothing.
"""
from __future__ import annotations

import logging
from datetime import timezone
from typing import Any, Callable

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from integrations.web.errors import ApiError

from .inbound_auth import BadSignature, SeenTokens, basic_auth_ok, verify_mailgun
from .inbound_parse import (InboundEmail, MalformedEmail, form_data_parts, parse_mailgun, parse_postmark,
                            parse_raw, parse_sendgrid)

log = logging.getLogger("sdr.email")

bp = Blueprint("email_in", __name__)

PROVIDERS = ("postmark", "sendgrid", "mailgun", "raw")
MAX_EMAIL_BYTES = 10 * 1024 * 1024
CONTENT_TYPES = {"postmark": ("application/json",), "sendgrid": ("multipart/form-data",),
                 "mailgun": ("application/x-www-form-urlencoded", "multipart/form-data"), "raw": ("message/rfc822",)}
MAX_FILE_BYTES = 256 * 1024          # attachments are read only for delivery-status reports


def _sdr() -> Any:
    return current_app.extensions["sdr"]


def _limit() -> int:
    limit = int(current_app.config.get("SDR_EMAIL_MAX_BYTES", MAX_EMAIL_BYTES))
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"the email is over {limit // 1024} KB")
    request.max_content_length = limit            # Flask 3.1: per request, for bodies without a length
    request.max_form_memory_size = limit
    return limit


def _check_basic(settings: Any) -> None:
    expected = settings.secret("inbound_email_auth")
    if not expected:
        raise ApiError(404, "provider_not_configured", "email provider not configured: set SDR_INBOUND_EMAIL_AUTH "
                       "(user:password) and put it in the provider's webhook URL")
    auth = request.authorization
    ok = auth is not None and auth.type == "basic" and basic_auth_ok(auth.username, auth.password, expected)
    if not ok:
        raise ApiError(401, "unauthorized", "send HTTP Basic auth with the user:password of SDR_INBOUND_EMAIL_AUTH",
                       {"WWW-Authenticate": 'Basic realm="sdr"'})


def _check_content_type(provider: str) -> None:
    if request.mimetype not in CONTENT_TYPES[provider]:
        raise ApiError(415, "unsupported_media_type", f"{provider} posts {' or '.join(CONTENT_TYPES[provider])}, "
                       f"not {request.mimetype or 'no content type'}")


def _files() -> list[tuple[str, bytes]]:
    return [(f.mimetype, f.stream.read(MAX_FILE_BYTES)) for f in request.files.values()
            if f.mimetype in ("message/delivery-status", "message/global-delivery-status")]


def _mailgun(sdr: Any, template: str) -> InboundEmail:
    key = sdr.settings.secret("mailgun_signing_key")
    if not key:
        raise ApiError(404, "provider_not_configured", "email provider not configured: set SDR_MAILGUN_SIGNING_KEY")
    _check_content_type("mailgun")
    form = request.form
    seen = current_app.extensions.setdefault("sdr.mailgun_tokens", SeenTokens())
    now = sdr.clock().replace(tzinfo=timezone.utc).timestamp()
    try:
        verify_mailgun(key, form.get("timestamp"), form.get("token"), form.get("signature"), now=now, seen=seen)
    except BadSignature as e:
        raise ApiError(401, e.code, str(e)) from None
    request.environ["sdr.mailgun_token"] = form.get("token")
    return parse_mailgun(form.to_dict(), reply_template=template, files=_files())


def _postmark(template: str) -> InboundEmail:
    _check_content_type("postmark")
    body = request.get_json(silent=True)
    if body is None:
        raise MalformedEmail("body", "the body is not valid JSON")
    return parse_postmark(body, reply_template=template)


def _sendgrid(template: str) -> InboundEmail:
    _check_content_type("sendgrid")
    fields, files = form_data_parts(request.get_data(cache=True), request.content_type or "")
    return parse_sendgrid(fields, reply_template=template,
                          files=[(c, d[:MAX_FILE_BYTES]) for c, d in files])


def _raw(template: str) -> InboundEmail:
    _check_content_type("raw")
    return parse_raw(request.get_data(cache=True), reply_template=template)


PARSERS: dict[str, Callable[[str], InboundEmail]] = {"postmark": _postmark, "sendgrid": _sendgrid, "raw": _raw}


def _parse(provider: str, sdr: Any, template: str) -> InboundEmail:
    try:
        if provider == "mailgun":
            return _mailgun(sdr, template)
        _check_basic(sdr.settings)
        return PARSERS[provider](template)
    except MalformedEmail as e:
        raise ApiError(400, "bad_email", f"{provider}: field {e.field!r}: {e}") from None
    except RequestEntityTooLarge:
        raise ApiError(413, "body_too_large", f"the email is over {_limit() // 1024} KB") from None
    except RecursionError:   # JSON nested thousands deep: not a provider's body
        raise ApiError(400, "bad_email", f"{provider}: the body is nested too deeply") from None


@bp.post("/webhooks/email/<provider>")
def receive(provider: str) -> Response:
    if provider not in PROVIDERS:
        raise ApiError(404, "unknown_provider", f"no email provider {provider[:40]!r}; use {', '.join(PROVIDERS)}")
    _limit()
    sdr = _sdr()
    template = sdr.settings.email_reply_to or sdr.settings.email_from
    try:
        msg = _parse(provider, sdr, template)
        result = sdr.receive_email(msg)
    except Exception:
        token = request.environ.get("sdr.mailgun_token")
        if token:   # not taken: Mailgun's retry with this token must get through
            current_app.extensions["sdr.mailgun_tokens"].discard(token)
        raise
    log.info("inbound email via %s%s%s", provider, " (auto-reply)" if msg.auto_reply else "",
             " (bounce)" if msg.bounce else "")    # no address, subject or text: personal data stays out of logs
    return jsonify(result if isinstance(result, dict) else {"accepted": True})
