"""Who is asking, for every blueprint: an API client (`Authorization: Bearer <API token>`), an
operator signed in to the team pages (a signed session cookie), or a stranger on the website.

There is always an API token: SDR_ADMIN_TOKEN, or one generated when the app is built (`sdr serve`
then prints a one-time sign-in link, as Jupyter does). The session cookie is Flask's, signed with
a key derived from the token (a new token signs everyone out), HttpOnly, SameSite=Lax, Secure
when SDR_PUBLIC_URL is https. Tokens and codes are compared in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from flask import Flask, current_app, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.exc import IntegrityError

from bot.store import UsedCode

from .errors import ApiError

if TYPE_CHECKING:
    from bot.turn import SDR

SIGNIN_CODE_MAX_AGE_S = 24 * 3600    # a printed sign-in link works once, within a day
SESSION_HOURS = 12                   # an operator signs in again after this


def current_sdr() -> SDR:
    return current_app.extensions["sdr"]


def install(app: Flask, sdr: SDR) -> None:
    """Make sure there is an API token (generating one when SDR_ADMIN_TOKEN is unset: never open
    data) and set up the signed session cookie."""
    token = sdr.settings.admin_token
    if not token:
        token = sdr.settings.admin_token = secrets.token_urlsafe(32)
        app.extensions["sdr.generated_token"] = True
    app.secret_key = session_key(token)
    app.config.update(SESSION_COOKIE_NAME="sdr_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=(sdr.settings.public_url or "").startswith("https://"),
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
                      WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600)


def is_api_client() -> bool:
    """The request carries `Authorization: Bearer <the API token>`."""
    auth = request.headers.get("Authorization", "")
    return auth[:7].lower() == "bearer " and same(auth[7:].strip(), current_sdr().settings.admin_token or "")


def is_operator() -> bool:
    """An API client, or a browser signed in to the team pages."""
    return is_api_client() or session.get("operator") is True


def require_admin() -> None:
    """Lead data: API clients and signed-in operators only. Raises ApiError 401."""
    if not is_operator():
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <SDR_ADMIN_TOKEN>' (or sign in at /signin) "
                       "to read leads")


def require_api_client(what: str) -> None:
    """Raises ApiError 401 unless the request carries the API token as a Bearer header."""
    if not is_api_client():
        raise ApiError(401, "unauthorized", f"send 'Authorization: Bearer <SDR_ADMIN_TOKEN>' to {what}")


def same(given: str, expected: str) -> bool:
    """Constant-time string comparison (hmac.compare_digest) that never raises."""
    return bool(expected) and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def session_key(token: str) -> bytes:
    """The key that signs session cookies and sign-in codes, derived from the API token."""
    return hmac.new(token.encode(), b"open-sdr: team page sessions", hashlib.sha256).digest()


def _codes(key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt="open-sdr sign-in code")


def signin_code(key: bytes) -> str:
    """A one-time sign-in code for the team pages, signed with `key` (`session_key(token)`, the
    app's secret_key), valid once within SIGNIN_CODE_MAX_AGE_S. Use it as /signin?code=<code>."""
    return _codes(key).dumps(secrets.token_urlsafe(16))


def redeem_signin_code(code: str) -> bool:
    """True the first time a valid, unexpired code is shown to any process of this install (the
    redeemed nonce is a row in the store: a restart or a second process refuses it); False after."""
    app = current_app._get_current_object()   # type: ignore[attr-defined]
    try:
        nonce = _codes(app.secret_key).loads(code, max_age=SIGNIN_CODE_MAX_AGE_S)
    except BadSignature:   # also SignatureExpired
        return False
    if not isinstance(nonce, str) or len(nonce) > 64:
        return False
    try:
        with current_sdr().store.session() as s:
            s.add(UsedCode(nonce=nonce))
    except IntegrityError:   # the primary key is taken: redeemed before
        return False
    return True


def sign_in() -> None:
    session.clear()
    session.permanent = True
    session["operator"] = True
