"""POST /api/events: tracked events — something a lead did outside the chat (a pricing page view, a webinar), scored."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from bot.turn import NotFound

from .access import current_sdr
from .errors import ApiError
from .schemas import EventRequest, json_object

bp = Blueprint("events", __name__)


@bp.route("/api/events", methods=["OPTIONS"])
def preflight() -> Response:
    return Response(status=204)


@bp.post("/api/events")
def record_event() -> Response:
    body = EventRequest.parse(json_object())
    try:
        result = current_sdr().record_event(body.type, lead_id=body.lead_id, email=body.email,
                                            properties=body.properties or {})
    except NotFound as e:
        raise ApiError(404, "lead_not_found", str(e)) from None
    return jsonify(result)
