"""Rate limits through flask-limiter: per client IP on chat and events (`rate_per_ip` a minute)
and per chat session on chat (`rate_per_session` a minute), as moving one-minute windows.

Both are blueprint limits on POST, checked before the view runs (the IP first): a request over a
limit gets 429 `rate_limited` with a `Retry-After` header, in the API's JSON error shape. Limits
live in memory by default (one process); `SDR_RATE_LIMIT_STORAGE=redis://host:6379` (or
`settings.rate_limit_storage`) keeps them in Redis, shared by every process using it.
"""
from __future__ import annotations

import math
import re
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import HTTPException

from .errors import ApiError, error_response, log
from .schemas import SESSION_PATTERN, json_object

LIMITER = "sdr.limiter"
SESSION_RE = re.compile(SESSION_PATTERN)


def storage_uri(sdr: Any) -> str:
    return sdr.settings.rate_limit_storage or "memory://"


def client_ip() -> str:
    return request.remote_addr or "unknown"


def session_key() -> str:
    """The chat session a request is for, from its body ("" when it has none or the body is bad:
    the view then answers with the 4xx that says why)."""
    if "sdr_session_key" not in g:
        try:
            sid = json_object().get("session_id")
        except (ApiError, HTTPException):
            sid = None
        g.sdr_session_key = sid if isinstance(sid, str) and SESSION_RE.match(sid) else ""
    return str(g.sdr_session_key)


def install(app: Flask, sdr: Any, *, by_ip: list[Blueprint], by_session: list[Blueprint],
            by_credentials: list[Blueprint] = ()) -> Limiter:
    """One limiter per app, with its own storage (tests and processes build several apps).
    `by_credentials`: routes that check a token or code — every request without valid
    credentials counts against the client's address (SDR_RATE_PER_IP a minute), so a token
    cannot be guessed at speed."""
    uri = storage_uri(sdr)
    options: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2} if uri.startswith("redis") else {}
    limiter = Limiter(client_ip, storage_uri=uri, storage_options=options, strategy="moving-window",
                      key_prefix=app.config.get("RATELIMIT_KEY_PREFIX", "sdr"),
                      swallow_errors=True)   # a storage outage is logged and lets requests through
    limiter.init_app(app)
    _check_storage(app, limiter, uri)
    per_ip = limiter.shared_limit(lambda: f"{sdr.settings.rate_per_ip}/minute", scope="ip", methods=["POST"],
                                  error_message="requests from your address")
    per_session = limiter.shared_limit(lambda: f"{sdr.settings.rate_per_session}/minute", scope="session",
                                       key_func=session_key, exempt_when=lambda: not session_key(),
                                       methods=["POST"], error_message="messages in this chat")
    from .access import is_operator
    credentials = limiter.shared_limit(lambda: f"{sdr.settings.rate_per_ip}/minute", scope="credentials",
                                       exempt_when=is_operator, error_message="sign-in attempts from your address")
    for bp in by_credentials:
        credentials(bp)
    for bp in by_ip:
        per_ip(bp)
    for bp in by_session:
        per_session(bp)
    app.extensions[LIMITER] = limiter
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    return limiter


def _check_storage(app: Flask, limiter: Limiter, uri: str) -> None:
    """Say at start when the shared storage cannot be reached: requests then go through unlimited
    (logged per request) rather than failing, and the operator should know."""
    try:
        ok = bool(limiter.storage.check())
    except Exception:  # noqa: BLE001 - any failure to reach it is the same news
        ok = False
    if not ok:
        where = uri.split("@")[-1]   # never the password
        warning = (f"rate limits are OFF: the storage {where} (SDR_RATE_LIMIT_STORAGE) cannot be reached; "
                   "requests go through unlimited until it can")
        log.warning(warning)
        app.extensions["sdr.warnings"] = [*app.extensions.get("sdr.warnings", []), warning]


def _rate_limited(e: RateLimitExceeded) -> Response:
    from .observability import count_rate_limited
    count_rate_limited(e)   # sdr_rate_limited_total{scope}
    wait = 60
    try:
        current = current_app.extensions[LIMITER].current_limit
        if current is not None:
            reset_time = current.window[0]   # when the oldest hit in the window expires
            wait = min(60, max(1, math.ceil(reset_time - time.time())))
    except Exception:  # noqa: BLE001 - the storage went away between the hit and this answer
        log.warning("could not read the rate-limit window; Retry-After defaults to %s s", wait)
    return error_response(429, "rate_limited", f"too many {e.description}; try again in {wait} s",
                          headers={"Retry-After": str(wait)})
