"""Signed requests from servers, Stripe's scheme: header `X-SDR-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` (several v1= are allowed, for secret rotation;
https://docs.stripe.com/webhooks#verify-manually). A signature older or newer than
`tolerance_s` is stale: a captured request can be replayed only within that window (an event
sent twice in it counts twice, within the playbook's daily caps)."""
from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-SDR-Signature"
TOLERANCE_S = 300


class BadSignature(ValueError):
    """The signature is missing, malformed, wrong (`code` bad_signature) or stale (`code` stale)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def sign(secret: str, body: bytes, t: int | None = None) -> str:
    """The header value a sender puts on `body` (for clients and tests)."""
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(header: str | None, secret: str, body: bytes, now: float, tolerance_s: int = TOLERANCE_S) -> None:
    """Return when `header` signs `body` with `secret` within `tolerance_s` of `now` (unix
    seconds); raise BadSignature otherwise. Compared in constant time."""
    if not header:
        raise BadSignature("bad_signature", f"no {HEADER} header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    t_raw = (parts.get("t") or [""])[0]
    if not (t_raw.isascii() and t_raw.isdigit() and len(t_raw) <= 12) or not parts.get("v1"):
        raise BadSignature("bad_signature", f"{HEADER} must look like t=<unix seconds>,v1=<hex HMAC-SHA256>")
    expected = hmac.new(secret.encode(), t_raw.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(v.lower().encode("ascii", "replace"), expected.encode()) for v in parts["v1"]):
        raise BadSignature("bad_signature", f"{HEADER} does not match the body: sign '<t>.<raw body>' with the shared "
                           "secret (HMAC-SHA256, hex)")
    if abs(now - int(t_raw)) > tolerance_s:
        raise BadSignature("stale", f"{HEADER} was made more than {tolerance_s} s from now; sign each request as it is sent")
