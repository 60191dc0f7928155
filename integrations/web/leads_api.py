"""The leads API for the team: GET /api/leads and /api/leads/<id> (SDR_ADMIN_TOKEN when set)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from bot.turn import NotFound

from .access import current_sdr, require_admin
from .errors import ApiError

bp = Blueprint("leads", __name__)


@bp.before_request
def _admin_only() -> None:
    require_admin()


@bp.get("/api/leads/<lead_id>")
def lead(lead_id: str) -> Response:
    try:
        return jsonify(current_sdr().lead_detail(lead_id))
    except NotFound as e:
        raise ApiError(404, "lead_not_found", str(e)) from None


@bp.get("/api/leads")
def leads() -> Response:
    raw = request.args.get("limit", "50")
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, "bad_limit", "limit must be a whole number, e.g. ?limit=50 (at most 500 are returned)")
    digits = raw.lstrip("0") or "0"
    rows = current_sdr().store.list_leads(limit=500 if len(digits) > 3 else min(int(digits), 500))
    return jsonify({"leads": [{"id": r["lead"].id, "stage": r["lead"].stage, "score": round(r["lead"].score, 1),
                               "fields": r["lead"].fields, "last_message": r["last_message"]} for r in rows]})
