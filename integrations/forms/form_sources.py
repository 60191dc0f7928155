"""The form sources by name, and `parse`: verify a delivery's signature, then read its body into a
FormFill. Pure (no Flask): the route passes the request's headers, raw body, method and URLs.

| source   | secret setting (variable)                              | signature                                  |
|----------|--------------------------------------------------------|--------------------------------------------|
| generic  | form_secret (SDR_FORM_SECRET)                          | X-SDR-Signature, Stripe's scheme, 5 min    |
| typeform | typeform_secret (SDR_TYPEFORM_SECRET)                  | Typeform-Signature, no timestamp           |
| webflow  | webflow_secret (SDR_WEBFLOW_SECRET)                    | x-webflow-signature + timestamp, 5 min     |
| hubspot  | hubspot_client_secret (SDR_HUBSPOT_CLIENT_SECRET)      | X-HubSpot-Signature-v3 + timestamp, 5 min  |
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import generic_form, hubspot_workflow, typeform, webflow
from .form_fill import FormError, FormFill, read_json


@dataclass(frozen=True)
class Source:
    name: str
    setting: str         # the Settings field holding its secret
    variable: str        # ... and the environment variable that sets it
    verify: Callable[..., None]
    parse: Callable[[Any], FormFill]


SOURCES: dict[str, Source] = {
    "generic": Source("generic", "form_secret", "SDR_FORM_SECRET", generic_form.verify, generic_form.parse),
    "typeform": Source("typeform", "typeform_secret", "SDR_TYPEFORM_SECRET", typeform.verify, typeform.parse),
    "webflow": Source("webflow", "webflow_secret", "SDR_WEBFLOW_SECRET", webflow.verify, webflow.parse),
    "hubspot": Source("hubspot", "hubspot_client_secret", "SDR_HUBSPOT_CLIENT_SECRET", hubspot_workflow.verify,
                      hubspot_workflow.parse),
}


def parse(source: str, headers: Mapping[str, str], body: bytes, *, secret: str, now: float, method: str = "POST",
          urls: Iterable[str] = ()) -> FormFill:
    """Verify and read one delivery of `source` ("generic", "typeform", "webflow", "hubspot").

    `headers`: the request's headers (any case); `body`: the raw bytes as received (signatures are
    over them); `secret`: the source's secret; `now`: unix seconds by the SDR's clock; `method` and
    `urls` (the full URL as this server and SDR_PUBLIC_URL see it): what HubSpot signs.
    Raises FormError: 404 for an unknown source, 401 `bad_signature`/`stale`, 400 for a body that is
    not JSON or not in the source's documented shape (the message names the field). The signature
    is checked before the body is read."""
    src = SOURCES.get(source)
    if src is None:
        raise FormError(404, "unknown_form_source", f"unknown form source {source[:40]!r}: use one of "
                        f"{', '.join(SOURCES)}")
    src.verify(headers, body, secret, now, method=method, urls=urls)
    return src.parse(read_json(body))
