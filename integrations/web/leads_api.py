"""The leads API for the team: GET /api/leads and /api/leads/<id> (with its nurture sequences),
POST /api/leads/<id>/pause and /resume (its sequences), and a person's data: GET
/api/privacy/export?email= and POST /api/privacy/forget {"email"}. Reads need the API token
(`Authorization: Bearer`) or a signed-in operator's cookie; forget needs the API token itself (a
cookie alone never deletes: no cross-site request can)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from bot.turn import NotFound

from .access import current_sdr, require_admin, require_api_client
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


@bp.post("/api/leads/<lead_id>/pause")
@bp.post("/api/leads/<lead_id>/resume")
def nurture_pause(lead_id: str) -> Response:
    """Pause (or resume) the lead's nurture sequences: nothing is sent while paused. Needs the API
    token itself (a cookie alone changes nothing: no cross-site request can). 404 for an unknown
    lead. Answers {"lead_id", "nurture": {"paused", "paused_at", "enrolments": [...]}}."""
    require_api_client("pause or resume a lead's sequences")
    sdr = current_sdr()
    pausing = request.path.endswith("/pause")
    if not (sdr.pause_nurture(lead_id, by="api") if pausing else sdr.resume_nurture(lead_id)):
        raise ApiError(404, "lead_not_found", f"no lead with id {lead_id!r}")
    return jsonify({"lead_id": lead_id, "nurture": sdr.lead_detail(lead_id)["nurture"]})


@bp.get("/api/leads")
def leads() -> Response:
    raw = request.args.get("limit", "50")
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, "bad_limit", "limit must be a whole number, e.g. ?limit=50 (at most 500 are returned)")
    digits = raw.lstrip("0") or "0"
    rows = current_sdr().store.list_leads(limit=500 if len(digits) > 3 else min(int(digits), 500))
    return jsonify({"leads": [{"id": r["lead"].id, "stage": r["lead"].stage, "score": round(r["lead"].score, 1),
                               "fields": r["lead"].fields, "last_message": r["last_message"]} for r in rows]})


def _email(raw: object) -> str:
    if not isinstance(raw, str) or "@" not in raw or len(raw) > 320:
        raise ApiError(400, "bad_email", "give the person's email, e.g. ?email=dana@example.com")
    return raw.strip().lower()


@bp.get("/api/privacy/export")
def privacy_export() -> Response:
    """Everything held about one person (GDPR art. 15 / CCPA right to know), as JSON."""
    from bot.privacy import export_person
    data = export_person(current_sdr().store, _email(request.args.get("email")))
    if data is None:
        raise ApiError(404, "lead_not_found", "nothing is held about that email")
    return jsonify(data)


@bp.post("/api/privacy/forget")
def privacy_forget() -> Response:
    """Delete a person everywhere and suppress their address (GDPR art. 17 / CCPA right to delete)."""
    require_api_client("forget a person (or use `sdr lead forget EMAIL` on the server)")
    from integrations.wiring import forget_person_everywhere
    body = request.get_json(silent=True)
    email = _email(body.get("email") if isinstance(body, dict) else None)
    return jsonify(forget_person_everywhere(current_sdr(), email))
