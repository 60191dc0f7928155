"""The one value every form source becomes (`FormFill`), the one error they raise (`FormError`), and
the shared rules for reading a provider's body: strict JSON, values as text, instants as naive UTC.

Pure: no Flask, no store. The route (form_webhooks.py) turns a FormError into the web channel's
JSON error; the parsers (generic_form.py, typeform.py, webflow.py, hubspot_workflow.py) raise it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.text import clean_json, too_deep

MAX_DEPTH = 32          # deeper JSON than this is refused (as integrations/web/schemas.py does)
MAX_NAME = 200          # a field name longer than this is refused
TOLERANCE_S = 300       # signed timestamps more than 5 minutes from now are stale


@dataclass(frozen=True)
class FormFill:
    """One form submission, whatever the source.

    - `source`: generic | typeform | webflow | hubspot
    - `event_id`: the provider's id for this submission/delivery (Typeform `event_id`, Webflow
      `payload.id`, HubSpot `eventId` or the latest form submission's `conversion-id`...), None when
      the body carries none
    - `fields`: form field name (Typeform `field.ref`, Webflow field name, HubSpot property) -> value
      as text: lists joined with ", ", booleans "yes"/"no", numbers exactly as written in the JSON;
      empty values and nulls are left out
    - `form_name`: the form's name or id when the provider sends it
    - `submitted_at`: naive UTC when the provider sends it
    """
    source: str
    event_id: str | None
    fields: dict[str, str] = field(default_factory=dict)
    form_name: str | None = None
    submitted_at: datetime | None = None


class FormError(ValueError):
    """A request a form source refuses: `status` (400, 401, 404, 415), a stable `code` and a message
    that says what was wrong and how to fix it (naming the body field for a 400)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad_body(path: str, problem: str) -> FormError:
    """400 naming the body field at `path` (e.g. `form_response.answers[2].field`)."""
    return FormError(400, "bad_form_body", f"{path}: {problem}" if path else problem)


def bad_signature(message: str) -> FormError:
    """401 `bad_signature`: the signature is missing, malformed or does not match."""
    return FormError(401, "bad_signature", message)


def stale(header: str, sent_at: float, now: float) -> FormError:
    """401 `stale`: a right signature whose timestamp (unix s) is over TOLERANCE_S from `now`."""
    return FormError(401, "stale", f"{header} is {abs(now - sent_at):.0f} s from this server's clock (more than "
                     f"{TOLERANCE_S} s): a captured request is not accepted again later")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name, from Werkzeug's headers or a plain dict."""
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def ascii_bytes(text: str) -> bytes:
    """A header value as bytes for a constant-time comparison that never raises on non-ASCII."""
    return text.strip().encode("utf-8", "replace")


def digits(value: str | None, max_len: int = 16) -> int | None:
    """`value` as an integer when it is 1..max_len ASCII digits, else None."""
    if value and value.isascii() and value.isdigit() and len(value) <= max_len:
        return int(value)
    return None


# -- reading JSON -----------------------------------------------------------------------------------

class Num(str):
    """A JSON number kept exactly as written ("15550000000", "4.50", "1e3"): never converted, so a
    huge number is text, not an error, and a form's number reaches the lead as the visitor typed it."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(body: bytes) -> Any:
    """The parsed body: UTF-8 JSON (a BOM is allowed), numbers as `Num`, strings cleaned
    (bot.text.clean_text), at most MAX_DEPTH levels. Raises FormError 400 `malformed_json`."""
    if not body.strip():
        raise FormError(400, "malformed_json", "the request body is empty; send the JSON the form provider sends")
    try:
        text = body.decode("utf-8-sig")
        data = json.loads(text, parse_int=Num, parse_float=Num, parse_constant=_no_constant)
    except RecursionError:
        raise FormError(400, "malformed_json", f"the JSON is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as e:   # bad UTF-8, JSONDecodeError, NaN/Infinity
        raise FormError(400, "malformed_json", f"the body is not valid UTF-8 JSON: {str(e)[:200]}") from None
    if too_deep(data, MAX_DEPTH):
        raise FormError(400, "malformed_json", f"the JSON is nested too deeply (at most {MAX_DEPTH} levels)")
    return clean_json(data, keep=(Num,))


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type ("object", "array", "number"...), for messages."""
    if isinstance(value, Num):
        return "number"
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "value")


def require_object(value: Any, path: str) -> dict[str, Any]:
    """`value` when it is a JSON object; FormError 400 naming `path` otherwise."""
    if not isinstance(value, dict):
        raise bad_body(path, f"must be an object, got {json_type(value)}" if path else
                       f"the body must be a JSON object, got {json_type(value)}")
    return value


def check_shape(model: type[BaseModel], data: Any) -> None:
    """Validate `data` against a pydantic model of the documented shape; FormError 400 naming the
    first field that is missing or of the wrong type (`form_response.answers[2].field`)."""
    try:
        model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        path = dotted(err["loc"])
        if err["type"] == "missing":
            raise bad_body(path, "is required but missing") from None
        if err["type"] in ("model_type", "dict_type", "model_attributes_type"):
            raise bad_body(path, f"must be an object, got {json_type(err['input'])}") from None
        if err["type"] == "list_type":
            raise bad_body(path, f"must be an array, got {json_type(err['input'])}") from None
        raise bad_body(path, str(err["msg"])[:200]) from None


def dotted(loc: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic location as a path: ('form_response', 'answers', 2, 'field') -> form_response.answers[2].field."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- values as text ---------------------------------------------------------------------------------

def as_text(value: Any, path: str) -> str | None:
    """A submitted value as text: strings trimmed, numbers as written, booleans "yes"/"no", lists
    of those joined with ", "; None for null or empty. An object (or a list holding one) is no form
    value: FormError 400 naming `path`."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):   # Num included: as written
        return value.strip() or None
    if isinstance(value, list):
        parts = [as_text(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return ", ".join(p for p in parts if p) or None
    raise bad_body(path, f"must be a string, number, boolean or a list of those, got {json_type(value)}")


def add_field(fields: dict[str, str], name: Any, value: Any, path: str) -> None:
    """Put `name` -> as_text(value) into `fields` (skipping empty values); a name that is no
    string, or is empty or over MAX_NAME characters, is a 400 naming `path`."""
    if not isinstance(name, str) or not name.strip():
        raise bad_body(path, "a field name must be a non-empty string")
    if len(name) > MAX_NAME:
        raise bad_body(path, f"a field name is longer than {MAX_NAME} characters")
    text = as_text(value, path)
    if text is not None:
        fields[name.strip()] = text


def optional_text(value: Any) -> str | None:
    """A scalar metadata value (an id, a form name) as text, or None when absent or not a scalar."""
    if isinstance(value, bool) or not isinstance(value, str):
        return None
    return value.strip()[:500] or None


# -- instants -----------------------------------------------------------------------------------------

def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 instant ("2026-01-13T14:58:02Z", "...+01:00"; no zone means UTC) or unix
    milliseconds (a number or digit string) as naive UTC; None for anything else."""
    try:
        if isinstance(value, str) and value.isascii() and value.isdigit() and 11 <= len(value) <= 16:
            return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc).replace(tzinfo=None)
        if isinstance(value, str) and 10 <= len(value) <= 40:
            at = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
            return (at.astimezone(timezone.utc) if at.tzinfo else at).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def require_fields(fields: dict[str, str], path: str) -> dict[str, str]:
    """A form fill without a single non-empty value carries nothing: 400 naming where they belong."""
    if not fields:
        raise bad_body(path, "has no non-empty field values; a form fill needs at least one (e.g. the email)")
    return fields
