"""POST /api/chat (the reply as JSON) and /api/chat/stream (the same turn as server-sent events).

Who may see what: a browser gets its reply, sources and actions, and continues only a session this
server issued (an unknown session_id starts a new one, 128 random bits); the lead's score, stage
and fields come back only with the API token (server-side integrations, evals) or in demo mode.
An email from a browser is unverified unless `visitor.user_hash` is hex HMAC-SHA256(
SDR_IDENTITY_SECRET, visitor.email) — Intercom's identity verification
(https://www.intercom.com/help/en/articles/183-set-up-identity-verification-for-web-and-desktop)."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bot.leads import session_exists
from bot.inbound import first_session_id
from bot.turn import Inbound

from .access import current_sdr, is_api_client, same
from .errors import ApiError, log
from .schemas import ChatRequest, Visitor, json_object

PRIVATE = ("lead", "score_changes")   # what an anonymous browser never gets back

bp = Blueprint("chat", __name__)


@bp.route("/api/chat", methods=["OPTIONS"])
@bp.route("/api/chat/stream", methods=["OPTIONS"])
def preflight() -> Response:
    return Response(status=204)


def chat_inbound() -> tuple[Inbound, bool]:
    """The request as the turn's Inbound, and whether the answer may include the lead."""
    if request.headers.get("Authorization") and not is_api_client():
        raise ApiError(401, "bad_api_token", "the Authorization header does not carry the API token (SDR_ADMIN_TOKEN); "
                       "browsers send none")
    body = ChatRequest.parse(json_object())
    sdr, api = current_sdr(), is_api_client()
    session_id = body.session_id
    if session_id and not api:
        with sdr.store.session() as s:
            session_id = session_id if session_exists(s, session_id) else None   # only sessions we issued
    if session_id is None and not api:   # a retried first message finds its conversation; nobody else does
        scope = f"{request.remote_addr}\0{request.headers.get('User-Agent', '')}"
        session_id = first_session_id(body.message_id, scope) if body.message_id else None
    inbound = Inbound(text=body.message, channel="web", session_id=session_id, visitor=body.visitor_fields(),
                      message_id=body.message_id, verified=api or _verified_identity(body.visitor))
    return inbound, api or sdr.settings.demo_mode


def _verified_identity(visitor: Visitor | None) -> bool:
    """True when visitor.user_hash proves the site vouches for visitor.email. Raises ApiError 400
    (no SDR_IDENTITY_SECRET, or no email) or 403 (the hash does not match)."""
    if visitor is None or visitor.user_hash is None:
        return False
    secret = current_sdr().settings.secret("identity_secret")
    if not secret:
        raise ApiError(400, "identity_not_configured", "visitor.user_hash was sent but SDR_IDENTITY_SECRET is not set "
                       "on this server; set it, or leave user_hash out")
    email = (visitor.email or "").strip()
    if not email:
        raise ApiError(400, "bad_visitor", "visitor.user_hash needs the visitor.email it was computed from")
    expected = hmac.new(secret.encode(), email.encode(), hashlib.sha256).hexdigest()
    if not same(visitor.user_hash.lower(), expected):
        raise ApiError(403, "bad_user_hash", "visitor.user_hash is not HMAC-SHA256(SDR_IDENTITY_SECRET, visitor.email) "
                       "in hex; compute it on your server with the same secret")
    return True


def _shown(result: dict[str, Any], full: bool) -> dict[str, Any]:
    return result if full else {k: v for k, v in result.items() if k not in PRIVATE}


@bp.post("/api/chat")
def chat() -> Response:
    inbound, full = chat_inbound()
    return jsonify(_shown(current_sdr().handle(inbound).as_dict(), full))


@bp.post("/api/chat/stream")
def chat_stream() -> Response:
    """The same turn as /api/chat, the reply as server-sent events: `delta` (text to append),
    `reset` (clear what was shown; the safe reply follows), `done` (the full /api/chat JSON),
    `error` (the turn failed after the 200 was sent)."""
    inbound, full = chat_inbound()
    events = current_sdr().handle_stream(inbound)
    first = next(events)   # validation errors surface here, before the 200 is sent
    resp = Response(_sse(itertools.chain([first], events), full), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


def _sse(events: Iterator[dict[str, Any]], full: bool) -> Iterator[str]:
    try:
        for ev in events:
            if ev["type"] == "delta":
                yield f"event: delta\ndata: {json.dumps({'text': ev['text']}, ensure_ascii=False)}\n\n"
            elif ev["type"] == "reset":
                yield "event: reset\ndata: {}\n\n"
            elif ev["type"] == "done":
                yield f"event: done\ndata: {json.dumps(_shown(ev['result'], full), ensure_ascii=False)}\n\n"
    except Exception:  # noqa: BLE001 - the stream is already 200; say so in-band
        log.exception("stream failed")
        yield 'event: error\ndata: {"error": {"code": "internal_error", "message": "the reply failed; please resend"}}\n\n'
