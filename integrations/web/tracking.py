"""POST /api/events: tracked events — something a lead did outside the chat (a pricing page view, a
webinar), scored.

Two kinds of sender. A server (your site's backend, a webinar tool) sends the API token as
`Authorization: Bearer`, or signs the body with SDR_EVENTS_SECRET (`X-SDR-Signature`, see
signing.py), and may name any lead by `lead_id` or `email`. A browser sends neither: it may report
only the event types the playbook marks `public: true`, only for its own chat session (the
`session_id` the chat returned), within the playbook's daily caps, and gets no lead data back.
Anything else changes nothing and answers 401 (a bad token or signature) or 403.
"""
from __future__ import annotations

from datetime import timezone
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bot.turn import NotFound

from . import signing
from .access import current_sdr, is_api_client
from .errors import ApiError
from .schemas import EventRequest, json_object

bp = Blueprint("events", __name__)


@bp.route("/api/events", methods=["OPTIONS"])
def preflight() -> Response:
    return Response(status=204)


def from_server() -> bool:
    """True for the API token or a valid signature; False for a browser (neither sent). Raises
    ApiError 401 for a wrong token or signature — a forged request is refused, not downgraded."""
    sdr = current_sdr()
    if request.headers.get("Authorization"):
        if not is_api_client():
            raise ApiError(401, "bad_api_token", "the Authorization header does not carry the API token (SDR_ADMIN_TOKEN)")
        return True
    header = request.headers.get(signing.HEADER)
    if header is None:
        return False
    secret = sdr.settings.secret("events_secret")
    if not secret:
        raise ApiError(401, "signing_not_configured", f"{signing.HEADER} was sent but SDR_EVENTS_SECRET is not set on "
                       "this server")
    now = sdr.clock().replace(tzinfo=timezone.utc).timestamp()
    try:
        signing.verify(header, secret, request.get_data(cache=True), now)
    except signing.BadSignature as e:
        raise ApiError(401, e.code, str(e)) from None
    return True


def _browser_may_send(body: EventRequest) -> None:
    sdr = current_sdr()
    if body.lead_id or body.email:
        raise ApiError(403, "needs_api_token", "a browser reports events only for its own session: send 'session_id' "
                       "alone; 'lead_id' and 'email' need the API token or a signed request")
    rule = sdr.playbook.engagement.get(body.type)
    if rule is not None and not rule.public:
        public = ", ".join(sorted(k for k, r in sdr.playbook.engagement.items() if r.public)) or "none"
        raise ApiError(403, "event_not_public", f"event type {body.type!r} is accepted from servers only (API token or "
                       f"signature); a browser may send: {public} (playbook `public: true`)")


@bp.post("/api/events")
def record_event() -> Response:
    server = from_server()
    body = EventRequest.parse(json_object())
    if not server:
        _browser_may_send(body)
    sdr = current_sdr()
    try:
        result: dict[str, Any] = sdr.record_event(body.type, lead_id=body.lead_id, email=body.email,
                                                  session_id=body.session_id, properties=body.properties or {})
    except NotFound as e:
        code = "unknown_session" if body.session_id and not (body.lead_id or body.email) else "lead_not_found"
        raise ApiError(404, code, str(e) + ("; send the session_id the chat returned" if code == "unknown_session"
                                            else "")) from None
    if server or sdr.settings.demo_mode:
        return jsonify(result)
    return jsonify({"recorded": True, "type": body.type})
