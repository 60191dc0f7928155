"""Request bodies as pydantic models, and the one translation of a validation failure into the
web channel's error: a stable `code` per field and a message that says what was wrong and how
to fix it (`{"error": {"code": "bad_session_id", "message": "..."}}`).

Reading the body is strict before pydantic sees it: JSON only (415 otherwise), not empty, valid
UTF-8 JSON without NaN/Infinity or numbers a database cannot hold, an object, at most
MAX_DEPTH levels deep, lone surrogates replaced — so hostile bodies get a 4xx, never a 500.
"""
from __future__ import annotations

import json
import math
from typing import Annotated, Any, ClassVar

from email_validator import EmailNotValidError, validate_email
from flask import g, request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.text import clean_json, too_deep

from .errors import ApiError

MAX_DEPTH = 32
SESSION_PATTERN = r"^[A-Za-z0-9_-]{8,80}$"
JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
              type(None): "null"}


def json_type(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def _custom(code: str, message: str) -> PydanticCustomError:
    # the message goes in the context so braces in it are never read as a template
    return PydanticCustomError(code, "{message}", {"message": message})


def _email_check(code: str, what: str, blank_ok: bool) -> Any:
    """A validator: an address email-validator accepts (syntax only: no DNS lookup), or blank when
    `blank_ok` (the visitor left it out). The value itself is kept as sent."""
    def check(value: str | None) -> str | None:
        if value is None:
            return None   # left out (null): the field is optional
        if value.strip() or not blank_ok:
            try:
                validate_email(value.strip(), check_deliverability=False)
            except (EmailNotValidError, ValueError) as e:   # UnicodeError from an odd domain is a ValueError
                raise _custom(code, f"{what} is not an email address: {e}") from None
        return value
    return AfterValidator(check)


# -- reading the body -----------------------------------------------------------------------------

def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is too large")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_object() -> dict[str, Any]:
    """The request's JSON object, or an ApiError that says what is wrong with the body (parsed
    once per request: the session rate limit peeks at it before the view)."""
    if "sdr_json" not in g:
        g.sdr_json = _read_json_object()
    return dict(g.sdr_json)


def _read_json_object() -> dict[str, Any]:
    if (request.mimetype or "").lower() != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"send JSON with 'Content-Type: application/json' (got {request.content_type or 'none'})")
    raw = request.get_data(cache=True)   # over MAX_CONTENT_LENGTH: 413 body_too_large
    if not raw.strip():
        raise ApiError(400, "empty_body", "the request body is empty; send a JSON object")
    try:
        data = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "malformed_json", f"the JSON is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as e:   # JSONDecodeError, bad UTF-8, NaN, a number with thousands of digits
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", f"the body must be a JSON object, got {json_type(data)}")
    if too_deep(data, MAX_DEPTH):
        raise ApiError(400, "bad_request", f"the JSON is nested too deeply (at most {MAX_DEPTH} levels)")
    return clean_json(data)




# -- validation errors, translated -----------------------------------------------------------------

class Body(BaseModel):
    """A request body. `codes` names the error code for a problem with each top-level field;
    `hints` the message when pydantic's own would not say how to fix it."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    codes: ClassVar[dict[str, str]] = {}
    hints: ClassVar[dict[str, str]] = {}

    @classmethod
    def parse(cls, data: dict[str, Any], **context: Any) -> Any:
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as e:
            raise cls._api_error(e) from None

    @classmethod
    def _api_error(cls, exc: ValidationError) -> ApiError:
        order = list(cls.model_fields)
        errors = sorted(exc.errors(), key=lambda err: order.index(err["loc"][0])
                        if err["loc"] and err["loc"][0] in order else len(order))
        err = errors[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        custom = err["type"] not in _PYDANTIC_TYPES
        code = err["type"] if custom else cls.codes.get(f"{field}:{err['type']}") or cls.codes.get(field, "bad_request")
        status = 413 if code == "message_too_long" else 400
        message = err["msg"] if custom else (cls.hints.get(f"{field}:{err['type']}") or cls.hints.get(field)
                                             or _describe(err))
        return ApiError(status, code, message)


_PYDANTIC_TYPES = {"missing", "string_type", "string_too_long", "string_too_short", "string_pattern_mismatch",
                   "dict_type", "model_type", "model_attributes_type", "string_unicode"}


def _describe(err: Any) -> str:
    path = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "missing":
        return f"the body needs '{path}'"
    if kind == "string_too_long":
        return f"{path} is longer than {err['ctx']['max_length']} characters"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{path} must be an object, got {json_type(err['input'])}"
    return f"{path} must be a string, got {json_type(err['input'])}"




# -- the bodies ------------------------------------------------------------------------------------

class Visitor(Body):
    """What the widget knows about the visitor. Unknown keys are ignored, not stored."""
    email: Annotated[StrictStr | None, Field(max_length=320), _email_check("bad_visitor", "visitor.email", blank_ok=True)] = None
    name: Annotated[StrictStr | None, Field(max_length=200)] = None
    company: Annotated[StrictStr | None, Field(max_length=200)] = None
    page_url: Annotated[StrictStr | None, Field(max_length=2000)] = None
    timezone: Annotated[StrictStr | None, Field(max_length=64)] = None
    user_hash: Annotated[StrictStr | None, Field(pattern=r"^[0-9a-fA-F]{64}$")] = None   # verified identity

    def as_dict(self) -> dict[str, str]:
        """The fields that were sent, trimmed (the body was cleaned as it was read); not the user_hash."""
        return {k: v.strip() for k, v in self.model_dump(exclude_none=True, exclude={"user_hash"}).items()}


class ChatRequest(Body):
    """POST /api/chat and /api/chat/stream. The message itself (empty, too long) is checked by the
    turn (bot.inbound.validate), for every channel alike; its InputError answers 400/413 here."""
    message: StrictStr
    session_id: Annotated[StrictStr | None, Field(pattern=SESSION_PATTERN)] = None
    message_id: Annotated[StrictStr | None, Field(max_length=100)] = None
    visitor: Visitor | None = None

    codes: ClassVar[dict[str, str]] = {"message": "bad_message", "message:missing": "missing_message",
                                       "session_id": "bad_session_id", "message_id": "bad_message_id",
                                       "visitor": "bad_visitor"}
    hints: ClassVar[dict[str, str]] = {
        "message:missing": 'the body needs a \'message\' string, e.g. {"message": "Hi, what does it cost?"}',
        "session_id": "session_id must be 8-80 letters, digits, '-' or '_' (or left out)",
        "message_id": "message_id must be a string of at most 100 characters (or left out)",
        "visitor:model_type": 'visitor must be an object like {"email": "...", "name": "..."}',
    }

    def visitor_fields(self) -> dict[str, str]:
        return self.visitor.as_dict() if self.visitor else {}


class EventRequest(Body):
    """POST /api/events: something a lead did elsewhere (a pricing page view, a webinar...)."""
    type: Annotated[StrictStr, Field(min_length=1)]
    session_id: Annotated[StrictStr | None, Field(pattern=SESSION_PATTERN)] = None   # the browser's own session
    lead_id: StrictStr | None = None                                                  # servers (API token) only
    email: Annotated[StrictStr | None, _email_check("bad_email", "email", blank_ok=False)] = None   # servers only
    properties: Any = None   # an object: checked after whose event it is

    codes: ClassVar[dict[str, str]] = {"type": "missing_type", "lead_id": "bad_lead_id", "email": "bad_email",
                                       "session_id": "bad_session_id"}
    hints: ClassVar[dict[str, str]] = {"type": 'the body needs a \'type\' string, e.g. "pricing_page_view"',
                                       "lead_id": "lead_id must be a string", "email": "email must be an email address",
                                       "session_id": "session_id must be the session id the chat returned"}

    @model_validator(mode="after")
    def _whose_and_what(self) -> EventRequest:
        if not self.lead_id and not self.email and not self.session_id:
            raise _custom("missing_lead", "give 'session_id' (from a browser), or 'lead_id' or 'email' (from a server "
                          "with the API token) to say whose event this is")
        if self.properties is not None and not isinstance(self.properties, dict):
            raise _custom("bad_properties", f"properties must be an object, got {json_type(self.properties)}")
        return self
