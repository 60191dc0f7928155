"""Webflow form-submission webhooks -> FormFill, at POST /webhooks/forms/webflow.

Signature (https://developers.webflow.com/data/docs/working-with-webhooks#validating-request-signatures
and https://developers.webflow.com/data/v1.0.0/docs/verifying-webhook-signatures): headers
`x-webflow-timestamp` (unix milliseconds) and `x-webflow-signature` = hex HMAC-SHA256(secret,
"<timestamp>:<raw body>"), the secret being the webhook's signing secret (the OAuth app's client
secret; SDR_WEBFLOW_SECRET). A timestamp more than 5 minutes from now is stale ("this may indicate
a replay attack").

Body (https://developers.webflow.com/data/reference/webhooks/events/form-submission):
    {"triggerType": "form_submission",
     "payload": {"name": "Contact Us", "siteId": "...", "data": {"First Name": "Zaphod", "email": "...",
                 "Phone Number": 15550000000}, "schema": [...], "submittedAt": "2022-09-14T12:35:16.117Z",
                 "id": "6321ca84df3949bfc6752327", "formId": "...", "formElementId": "..."}}
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from .form_fill import (TOLERANCE_S, FormFill, add_field, ascii_bytes, bad_body, bad_signature, check_shape, digits,
                        header, optional_text, parse_instant, require_fields, require_object, stale)

TIMESTAMP = "x-webflow-timestamp"
SIGNATURE = "x-webflow-signature"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: dict[str, Any]
    id: str | None = None
    name: str | None = None


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")
    triggerType: str
    payload: _Payload


def sign_webflow(secret: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    """The headers Webflow puts on `body` sent at `timestamp_ms` (for tests and the demo)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}:".encode() + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP: str(timestamp_ms), SIGNATURE: mac}


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float, **_: Any) -> None:
    """Return when x-webflow-signature signs "<x-webflow-timestamp>:<body>" with `secret` and the
    timestamp (ms) is within 5 minutes of `now` (unix s). FormError 401 `bad_signature` (missing,
    malformed, wrong) or `stale` (a right signature, too old or too far ahead)."""
    given, sent = header(headers, SIGNATURE), header(headers, TIMESTAMP)
    if not given or not sent:
        raise bad_signature(f"{TIMESTAMP} and {SIGNATURE} headers are required: create the webhook so that Webflow "
                            "signs it (SDR_WEBFLOW_SECRET is its signing secret)")
    ms = digits(sent.strip())
    if ms is None:
        raise bad_signature(f"{TIMESTAMP} must be unix milliseconds")
    expected = sign_webflow(secret, body, ms)[SIGNATURE].encode()
    if not hmac.compare_digest(ascii_bytes(given).lower(), expected):
        raise bad_signature(f"{SIGNATURE} does not match: it must be hex HMAC-SHA256 of '<{TIMESTAMP}>:<raw body>' "
                            "with the webhook's secret (SDR_WEBFLOW_SECRET)")
    if abs(now - ms / 1000) > TOLERANCE_S:
        raise stale(TIMESTAMP, ms / 1000, now)


def parse(data: Any) -> FormFill:
    """A Webflow `form_submission` -> FormFill(source="webflow"): payload.data's fields by their
    names, event_id = payload.id, form_name = payload.name, submitted_at = payload.submittedAt.
    FormError 400 naming the field (`triggerType`, `payload.data`...) when the shape is not there."""
    body = require_object(data, "")
    check_shape(_Body, body)
    if body["triggerType"] != "form_submission":
        raise bad_body("triggerType", f'must be "form_submission" (got {body["triggerType"][:40]!r}); this endpoint '
                       "takes form submissions")
    payload = body["payload"]
    fields: dict[str, str] = {}
    for name, value in payload["data"].items():
        add_field(fields, name, value, f"payload.data.{name}")
    return FormFill(source="webflow", event_id=optional_text(payload.get("id")),
                    fields=require_fields(fields, "payload.data"), form_name=optional_text(payload.get("name")),
                    submitted_at=parse_instant(payload.get("submittedAt")))
