"""HubSpot workflow webhooks ("Send a webhook" action on a contact workflow, e.g. enrolled on a form
submission) -> FormFill, at POST /webhooks/forms/hubspot.

Signature, v3 (https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests
and https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation):
headers `X-HubSpot-Signature-v3` = base64 HMAC-SHA256(client secret, method + URI + body + timestamp)
and `X-HubSpot-Request-Timestamp` (unix milliseconds); "reject the request if the timestamp is older
than 5 minutes" (we also refuse one more than 5 minutes ahead). The URI is the full URL HubSpot
called (https://host/path?query) with these escapes decoded first, as the docs list them:
%3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A * %2C , %3B ;
The workflow action signs with the app whose id it is given ("Include request signature in
header"); SDR_HUBSPOT_CLIENT_SECRET is that app's client secret.

Body (https://knowledge.hubspot.com/workflows/how-do-i-use-webhooks-with-hubspot-workflows): either
  - the properties the action was told to send ("Customize request body"), flat:
      {"email": "dana@maple.example", "firstname": "Dana", "hs_object_id": "5101", ...}
  - or the whole record ("Include all contact properties"), HubSpot's contact JSON
    (https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/v1/get-contacts-v1-contactvidvid-profile):
      {"vid": 5101, "portal-id": 62515, "properties": {"email": {"value": "dana@...", "versions": [...]}, ...},
       "form-submissions": [{"conversion-id": "...", "timestamp": 1768316282000, "form-id": "...",
                             "title": "Demo request", "page-url": "https://..."}], ...}
    (`properties: {name: "value"}`, the v3 object shape, is read too).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .form_fill import (TOLERANCE_S, FormFill, add_field, ascii_bytes, bad_body, bad_signature, digits, header,
                        json_type, optional_text, parse_instant, require_fields, stale)

SIGNATURE = "X-HubSpot-Signature-v3"
TIMESTAMP = "X-HubSpot-Request-Timestamp"
DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
           "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_ESCAPE = re.compile("|".join(DECODED), re.I)


def decode_uri(uri: str) -> str:
    """The URI as HubSpot signs it: the escapes its docs list decoded (case-insensitive), no others."""
    return _ESCAPE.sub(lambda m: DECODED[m.group(0).upper()], uri)


def _mac(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> bytes:
    source = method.upper().encode() + decode_uri(uri).encode("utf-8") + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode("utf-8"), source, hashlib.sha256).digest())


def sign_hubspot(secret: str, method: str, url: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    """The headers HubSpot puts on a request to `url` (for tests and the demo)."""
    return {SIGNATURE: _mac(secret, method, url, body, str(timestamp_ms)).decode(), TIMESTAMP: str(timestamp_ms)}


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float, *, method: str = "POST",
           urls: Iterable[str] = ()) -> None:
    """Return when X-HubSpot-Signature-v3 signs `method` + one of `urls` (the URL as this server
    and SDR_PUBLIC_URL see it) + `body` + the timestamp with `secret`, and the timestamp (ms) is
    within 5 minutes of `now` (unix s). FormError 401 `bad_signature` or `stale` otherwise."""
    given, sent = header(headers, SIGNATURE), header(headers, TIMESTAMP)
    if not given or not sent:
        raise bad_signature(f"{SIGNATURE} and {TIMESTAMP} headers are required: in the workflow's webhook action choose "
                            "'Include request signature in header' with your app (SDR_HUBSPOT_CLIENT_SECRET is its "
                            "client secret)")
    ms = digits(sent.strip())
    if ms is None:
        raise bad_signature(f"{TIMESTAMP} must be unix milliseconds")
    # base64 never holds a space: a '+' turned into one on the way is put back
    got = ascii_bytes(given).replace(b" ", b"+")
    if not any(hmac.compare_digest(got, _mac(secret, method, url, body, sent.strip())) for url in dict.fromkeys(urls)):
        raise bad_signature(f"{SIGNATURE} does not match: it must be base64 HMAC-SHA256 of method + full URL + body + "
                            f"timestamp with the app's client secret (SDR_HUBSPOT_CLIENT_SECRET); behind a proxy, set "
                            "SDR_PUBLIC_URL to the address HubSpot calls")
    if abs(now - ms / 1000) > TOLERANCE_S:
        raise stale(TIMESTAMP, ms / 1000, now)


def parse(data: Any) -> FormFill:
    """A workflow webhook's contact -> FormFill(source="hubspot"): each property by its internal
    name. event_id = `eventId`, else the latest form submission's `conversion-id`, else
    "<object id>:<last modified>"; form_name = the latest form submission's title or
    `recent_conversion_event_name`; submitted_at = that submission's timestamp or
    `recent_conversion_date`; the submission's page-url as `page_url` when no property has one.
    FormError 400 naming the field when the body is no object or `properties` is malformed."""
    if isinstance(data, list):
        raise bad_body("", "the body must be a JSON object (a workflow's 'Send a webhook' action), got an array: "
                       "HubSpot's app webhook subscriptions send arrays of events that carry no form fields")
    if not isinstance(data, dict):
        raise bad_body("", f"the body must be a JSON object, got {json_type(data)}")
    fields = _properties(data)
    latest = _latest_submission(data.get("form-submissions"))
    if latest.get("page-url") and "page_url" not in fields:
        add_field(fields, "page_url", latest["page-url"], "form-submissions[].page-url")
    require_fields(fields, "properties" if "properties" in data else "the body")
    form_name = optional_text(latest.get("title")) or fields.get("recent_conversion_event_name") \
        or optional_text(latest.get("form-id"))
    submitted_at = parse_instant(latest.get("timestamp")) or parse_instant(fields.get("recent_conversion_date")) \
        or parse_instant(data.get("occurredAt"))
    return FormFill(source="hubspot", event_id=_event_id(data, fields, latest), fields=fields, form_name=form_name,
                    submitted_at=submitted_at)


def _properties(data: dict[str, Any]) -> dict[str, str]:
    fields: dict[str, str] = {}
    if "properties" not in data:    # the flat shape: every key is a property, but the delivery's own id
        for name, value in data.items():
            if name != "eventId":
                add_field(fields, name, value, name)
        return fields
    props = data["properties"]
    if not isinstance(props, dict):
        raise bad_body("properties", f"must be an object of property name -> value (or {{\"value\": ...}}), got "
                       f"{json_type(props)}")
    for name, entry in props.items():
        if isinstance(entry, dict):
            add_field(fields, name, entry.get("value"), f"properties.{name}.value")
        else:
            add_field(fields, name, entry, f"properties.{name}")
    return fields


def _latest_submission(subs: Any) -> dict[str, Any]:
    """The newest entry of the contact's `form-submissions` (by timestamp), or {}."""
    entries = [s for s in subs if isinstance(s, dict)] if isinstance(subs, list) else []
    return max(entries, key=lambda s: digits(optional_text(s.get("timestamp"))) or 0, default={})


def _event_id(data: dict[str, Any], fields: dict[str, str], latest: dict[str, Any]) -> str | None:
    given = optional_text(data.get("eventId")) or optional_text(latest.get("conversion-id"))
    if given:
        return given
    obj = next((v for v in (optional_text(data.get("objectId")), optional_text(data.get("vid")),
                            fields.get("hs_object_id")) if v), None)
    when = optional_text(data.get("occurredAt")) or fields.get("lastmodifieddate") or fields.get("hs_lastmodifieddate")
    return f"{obj}:{when}" if obj and when else None
