"""Typeform webhooks -> FormFill, at POST /webhooks/forms/typeform.

Signature (https://www.typeform.com/developers/webhooks/secure-your-webhooks/): header
`Typeform-Signature: sha256=<base64 HMAC-SHA256(secret, raw body)>`, the secret being the one set
on the webhook (SDR_TYPEFORM_SECRET). Typeform signs no timestamp, so there is no staleness check;
a replayed delivery carries the same `event_id` and the intake treats it as a duplicate.

Body (https://www.typeform.com/developers/webhooks/example-payload/ and
https://www.typeform.com/developers/responses/JSON-response-explanation/):
    {"event_id": "01HXYZ...", "event_type": "form_response",
     "form_response": {"form_id": "lT4Z3j", "token": "...", "submitted_at": "2026-01-13T14:58:02Z",
                       "hidden": {"utm_source": "linkedin"}, "definition": {"id": "lT4Z3j", "title": "..."},
                       "answers": [{"type": "email", "email": "dana@maple.example",
                                    "field": {"id": "Xa1", "type": "email", "ref": "email"}}, ...]}}
Each answer's value sits under the key its `type` names: text, email, url, file_url, date,
phone_number, number, boolean, choice {label | other}, choices {labels[], other}, payment {amount}.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from .form_fill import (FormFill, add_field, ascii_bytes, bad_body, bad_signature, check_shape, header, json_type,
                        optional_text, parse_instant, require_fields, require_object)

HEADER = "Typeform-Signature"
SCALAR_TYPES = ("text", "email", "url", "file_url", "date", "phone_number", "number", "boolean")


class _Field(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    ref: str | None = None


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    field: _Field


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")
    answers: list[_Answer]
    hidden: dict[str, Any] | None = None
    definition: dict[str, Any] | None = None


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")
    event_id: str
    event_type: str
    form_response: _Response


def sign_typeform(secret: str, body: bytes) -> dict[str, str]:
    """The headers Typeform puts on `body` (for tests and the demo)."""
    mac = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {HEADER: f"sha256={mac}"}


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float, **_: Any) -> None:
    """Return when Typeform-Signature is `sha256=` + base64 HMAC-SHA256(secret, body); FormError
    401 `bad_signature` otherwise (compared in constant time). `now` is unused: nothing is timed."""
    given = header(headers, HEADER)
    if not given:
        raise bad_signature(f"no {HEADER} header: set a secret on the Typeform webhook (the same as SDR_TYPEFORM_SECRET)")
    expected = sign_typeform(secret, body)[HEADER].encode()
    if not hmac.compare_digest(ascii_bytes(given), expected):
        raise bad_signature(f"{HEADER} does not match the body: it must be sha256=<base64 HMAC-SHA256 of the raw body> "
                            "with the webhook's secret (SDR_TYPEFORM_SECRET)")


def parse(data: Any) -> FormFill:
    """A Typeform `form_response` delivery -> FormFill(source="typeform"): each answer under its
    `field.ref` (its `field.id` when the form sets no ref), hidden fields under their names (answers
    win a clash), form_name = definition.title or form_id, submitted_at from form_response.
    FormError 400 naming the field (`form_response.answers`, `event_type`...) when the documented
    shape is not there."""
    body = require_object(data, "")
    check_shape(_Body, body)
    if body["event_type"] != "form_response":
        raise bad_body("event_type", f'must be "form_response" (got {body["event_type"][:40]!r}); this endpoint takes '
                       "completed form responses")
    response = body["form_response"]
    fields: dict[str, str] = {}
    for name, value in (response.get("hidden") or {}).items():
        add_field(fields, name, value, f"form_response.hidden.{name}")
    for i, answer in enumerate(response["answers"]):
        where = f"form_response.answers[{i}]"
        ref = optional_text(answer["field"].get("ref")) or optional_text(answer["field"].get("id"))
        if not ref:
            raise bad_body(f"{where}.field.ref", "each answer's field needs a ref (or an id)")
        add_field(fields, ref, _value(answer, where), where)
    definition = response.get("definition") or {}
    return FormFill(source="typeform", event_id=optional_text(body["event_id"]),
                    fields=require_fields(fields, "form_response.answers"),
                    form_name=optional_text(definition.get("title")) or optional_text(response.get("form_id")),
                    submitted_at=parse_instant(response.get("submitted_at")))


def _value(answer: dict[str, Any], where: str) -> Any:
    """The answer's value by its `type`; an unknown type's value when it is plain, else nothing."""
    kind = answer["type"]
    if kind in ("choice", "choices", "payment"):
        inner = answer.get(kind)
        if inner is None:
            return None
        if not isinstance(inner, dict):
            raise bad_body(f"{where}.{kind}", f"must be an object, got {json_type(inner)}")
        if kind == "choice":
            return inner.get("label") or inner.get("other")
        if kind == "payment":
            return inner.get("amount")
        labels = inner.get("labels") or []
        labels = labels if isinstance(labels, list) else [labels]
        return [*labels, inner["other"]] if inner.get("other") else labels
    value = answer.get(kind)
    if kind in SCALAR_TYPES:
        return value
    plain = isinstance(value, (str, bool)) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    return value if plain else None   # a newer answer type with a structured value: skipped, not refused
