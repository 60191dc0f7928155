"""The generic form source: your own site's form (or any tool that can sign a request) posting a flat
JSON object of field -> value to POST /webhooks/forms/generic.

Signed like Stripe, with the same code as signed events (integrations/web/signing.py): header
`X-SDR-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(SDR_FORM_SECRET, "<t>.<raw body>")>`,
5 minutes' tolerance (https://docs.stripe.com/webhooks#verify-manually).

Body, e.g.:
    {"email": "dana@maple.example", "first_name": "Dana", "company": "Maple Clinics",
     "message": "Can we see a demo next week?", "utm_source": "google", "event_id": "sub_123"}
Values are strings, numbers, booleans or lists of those. Four keys are metadata, not fields:
`event_id` (or `id`): your id for this submission, so a retried delivery is recognised;
`form_name`: which form; `submitted_at`: ISO 8601 or unix milliseconds.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.web import signing

from .form_fill import (FormError, FormFill, add_field, header, optional_text, parse_instant, require_fields,
                        require_object)

HEADER = signing.HEADER
META = ("event_id", "id", "form_name", "submitted_at")


def sign_generic(secret: str, body: bytes, t: int) -> str:
    """The `X-SDR-Signature` header value a sender puts on `body` at unix second `t`."""
    return signing.sign(secret, body, t)


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float, **_: Any) -> None:
    """Return when X-SDR-Signature signs `body` with `secret` within 5 minutes of `now` (unix s);
    FormError 401 `bad_signature` (missing, malformed, wrong) or `stale` otherwise."""
    try:
        signing.verify(header(headers, HEADER), secret, body, now, signing.TOLERANCE_S)
    except signing.BadSignature as e:
        raise FormError(401, e.code, str(e)) from None


def parse(data: Any) -> FormFill:
    """A flat JSON object -> FormFill(source="generic"). FormError 400 naming the field when the
    body is no object, a value is an object, or no field has a value."""
    body = require_object(data, "")
    fields: dict[str, str] = {}
    for name, value in body.items():
        if name not in META:
            add_field(fields, name, value, name)
    event_id = optional_text(body.get("event_id")) or optional_text(body.get("id"))
    return FormFill(source="generic", event_id=event_id, fields=require_fields(fields, "the body"),
                    form_name=optional_text(body.get("form_name")), submitted_at=parse_instant(body.get("submitted_at")))
