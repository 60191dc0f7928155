"""Who may post inbound email: HTTP Basic auth (Postmark, SendGrid, raw) and Mailgun's signature.

- Basic auth (RFC 7617) against SDR_INBOUND_EMAIL_AUTH = `user:password`: Postmark and SendGrid put
  the credentials in the webhook URL (`https://user:password@sdr.example/webhooks/email/postmark`,
  https://postmarkapp.com/developer/user-guide/inbound/configure-an-inbound-server). Compared in
  constant time.
- Mailgun (https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks):
  `signature` = hex HMAC-SHA256(SDR_MAILGUN_SIGNING_KEY, timestamp + token); a timestamp more than
  5 minutes from our clock is stale; a token already used is a replay. Used tokens are remembered in
  this process only (a bounded in-memory cache, no table): with several processes a replay could land
  on another one within the 5 minutes — the core's Message-ID dedup still answers it once.
"""
from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict

MAX_SKEW_S = 300
TOKEN_TTL_S = 2 * MAX_SKEW_S + 60    # a token outside this window is stale anyway


class BadSignature(Exception):
    """Refused: `code` is missing_signature | bad_signature | stale | replayed."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def basic_auth_ok(username: str | None, password: str | None, expected: str | None) -> bool:
    """True when `username:password` equals the configured `user:password` (constant time)."""
    if not expected or username is None or password is None:
        return False
    given = f"{username}:{password}".encode("utf-8", "replace")
    return hmac.compare_digest(given, expected.encode("utf-8", "replace"))


class SeenTokens:
    """Mailgun tokens already accepted, each kept TOKEN_TTL_S seconds, at most `limit` of them."""

    def __init__(self, limit: int = 50_000, ttl_s: float = TOKEN_TTL_S):
        self.limit, self.ttl_s = limit, ttl_s
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, token: str) -> bool:
        """Remember `token`; False when it was already there (a replay)."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now or len(self._seen) >= self.limit):
                self._seen.popitem(last=False)
            if token in self._seen:
                return False
            self._seen[token] = now + self.ttl_s
            return True

    def discard(self, token: str) -> None:
        """Forget `token` (the delivery was not taken, so the provider's retry must get through)."""
        with self._lock:
            self._seen.pop(token, None)


def verify_mailgun(key: str, timestamp: str | None, token: str | None, signature: str | None, *,
                   now: float, seen: SeenTokens | None = None) -> None:
    """Raises BadSignature unless `signature` is Mailgun's for (timestamp, token), the timestamp is
    within 5 minutes of `now` (epoch seconds) and the token is new (then it is remembered in `seen`)."""
    if not (timestamp and token and signature):
        raise BadSignature("missing_signature", "Mailgun's 'timestamp', 'token' and 'signature' fields are required")
    expected = hmac.new(key.encode(), f"{timestamp}{token}".encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower().encode("ascii", "replace").decode()):
        raise BadSignature("bad_signature", "the Mailgun signature does not match SDR_MAILGUN_SIGNING_KEY")
    try:
        skew = abs(now - float(timestamp))
    except ValueError:
        raise BadSignature("bad_signature", "Mailgun's 'timestamp' is not a number") from None
    if not skew <= MAX_SKEW_S:
        raise BadSignature("stale", f"the Mailgun timestamp is more than {MAX_SKEW_S} s away from this server's clock")
    if seen is not None and not seen.add(token):
        raise BadSignature("replayed", "this Mailgun token was already used")
