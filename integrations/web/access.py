"""What every blueprint needs from the app: the SDR it serves and the admin check."""
from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from flask import current_app, request

from .errors import ApiError

if TYPE_CHECKING:
    from bot.turn import SDR


def current_sdr() -> SDR:
    return current_app.extensions["sdr"]


def require_admin(allow_query: bool = False) -> None:
    """SDR_ADMIN_TOKEN, when set, guards lead data: a Bearer header, or ?token= on the team pages
    (links a rep opens from Slack)."""
    token = current_sdr().settings.admin_token
    if not token or _same(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return
    if allow_query and _same(request.args.get("token", ""), token):
        return
    raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <SDR_ADMIN_TOKEN>'"
                   + (" or add ?token=<SDR_ADMIN_TOKEN>" if allow_query else "") + " to read leads")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))
