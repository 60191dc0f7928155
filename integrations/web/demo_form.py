"""The demo page's sample form (only with SDR_DEMO / `sdr demo`): signs the fields as a site's
backend would and posts them to the generic form webhook, then shows the first touch that arrives.

    GET  /demo/form               {"demo": true, "fields": [...]}: the page shows its form only when this answers
    POST /demo/form               JSON or form-encoded name, email, company, job_title, company_size, message and
                                  want (demo — the default — or guide, the forecasting guide):
                                  signed with SDR_FORM_SECRET (one made for the process when unset) and
                                  posted to POST /webhooks/forms/generic through the app itself, so the demo
                                  goes through the real signed webhook; answers its JSON (202) plus "email"
    GET  /demo/mail?email=ADDR    the latest first touch queued for ADDR: subject, text part, outbox
                                  status and where it went (the .eml path, or "sent by SMTP"); 404 until one exists;
                                  once it is delivered, "nurture": what the lead's sequences would send over 30 days
                                  if they stay quiet (bot.sequences.simulate), or why they are not nurtured

Outside demo mode every route here answers 404 and does nothing: they show email content and let
a browser make the server send email, which a production server never does. A POST whose Origin is
another site is refused (a page elsewhere cannot make a demo server email someone).
"""
from __future__ import annotations

import json
import secrets
import threading
from datetime import timezone
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import SecretStr
from sqlalchemy import select

from bot.store import OutboxEntry
from integrations.forms.generic_form import HEADER, sign_generic

from .errors import ApiError

bp = Blueprint("demo_form", __name__)

FIELDS = ("name", "email", "company", "job_title", "company_size", "message")
# What the visitor asks for: the playbook's forms.generic.by_form maps the form's name to its event
WANTS = {"demo": None, "guide": "Get the forecasting guide"}
MAX_CHARS = {"message": 4000}          # every other field: 300
WEBHOOK = "/webhooks/forms/generic"
_secret_lock = threading.Lock()


@bp.before_request
def _demo_only() -> None:
    if not current_app.extensions["sdr"].settings.demo_mode:
        raise ApiError(404, "not_found", f"no route {request.path}")


@bp.get("/demo/form")
def form_info() -> Response:
    """Answers (200) only in demo mode: the demo page shows its form when it does."""
    return jsonify({"demo": True, "fields": list(FIELDS), "post_to": "/demo/form", "webhook": WEBHOOK})


@bp.post("/demo/form")
def submit() -> tuple[Response, int]:
    _same_origin()
    fields = _read_fields()
    want = (request.get_json(silent=True) or {}).get("want") if request.is_json else request.form.get("want")
    if want not in (None, "", *WANTS):
        raise ApiError(400, "bad_field", f"want: one of {', '.join(WANTS)}")
    # A demo request has no form_name (the first touch would quote it); the guide form is named, which
    # makes it a content download (playbook forms.generic.by_form). The page is the fill's attribution.
    named = {"form_name": WANTS[want]} if want and WANTS[want] else {}
    body = json.dumps({**fields, **named, "page_url": request.url_root,
                       "event_id": f"demo_{secrets.token_hex(8)}"}).encode()
    sdr = current_app.extensions["sdr"]
    t = int(sdr.clock().replace(tzinfo=timezone.utc).timestamp())   # the webhook checks against the SDR's clock
    resp = current_app.test_client().post(WEBHOOK, data=body, content_type="application/json",
                                          headers={HEADER: sign_generic(_form_secret(sdr.settings), body, t)})
    answer = resp.get_json(silent=True)
    if not isinstance(answer, dict):
        answer = {"error": {"code": "webhook_failed", "message": f"the form webhook answered {resp.status_code}"}}
    return jsonify({**answer, "email": fields["email"]}), resp.status_code


@bp.get("/demo/mail")
def mail() -> Response:
    """The latest first touch queued for ?email=, rendered as the text part the prospect gets."""
    address = (request.args.get("email") or "").strip()
    if not address:
        raise ApiError(400, "bad_request", "email: give the address the form was submitted with, /demo/mail?email=...")
    sdr = current_app.extensions["sdr"]
    with sdr.store.session() as s:
        rows = s.scalars(select(OutboxEntry).where(OutboxEntry.kind == "email")
                         .order_by(OutboxEntry.id.desc()).limit(500)).all()
        entry = next((r for r in rows if _first_touch_to(r.payload, address)), None)
        if entry is None:
            raise ApiError(404, "no_email_yet", f"no first touch queued for {address[:200]} yet: the outbox worker "
                           "runs the form fill and queues it within seconds")
        payload, status, result = dict(entry.payload or {}), entry.status, dict(entry.result or {})
        found = {"outbox_id": entry.id, "lead_id": entry.lead_id, "attempts": entry.attempts,
                 "last_error": entry.last_error,
                 "queued_at": entry.created_at.isoformat() if entry.created_at else None,
                 "delivered_at": entry.delivered_at.isoformat() if entry.delivered_at else None}
    from integrations.email.mail_render import PayloadError, render

    company = sdr.playbook.company
    try:
        text, _html = render(payload, footer_address=company.postal_address, company=company.name)
    except PayloadError as e:
        text = f"(this payload cannot make an email: {e})"
    nurture = _nurture(sdr, found["lead_id"]) if status != "pending" and found["lead_id"] else None
    return jsonify({"email": payload.get("to"), "to_name": payload.get("to_name"), "subject": payload.get("subject"),
                    "greeting": payload.get("greeting"), "text": text, "message_id": payload.get("message_id"),
                    "status": status, "path": result.get("path"), "delivery": _delivery(status, result),
                    "nurture": nurture, **found})


def _nurture(sdr: Any, lead_id: str) -> dict[str, Any]:
    """The lead's nurture for the demo: {"sequences": [{"sequence", "plan": [{"at", "step", "url",
    "title", "skipped"}]}], "why_not": str | None} — the dry run of each active sequence over 30 days."""
    from bot.sequences import enrolments_view, simulate
    from bot.store import Lead

    with sdr.store.session() as s:
        lead = s.get(Lead, lead_id)
        stage = lead.stage if lead is not None else None
        handed = lead is not None and lead.handed_off_at is not None
        view = enrolments_view(s, sdr.playbook, lead_id)
    active = [e["sequence"] for e in view["enrolments"] if e["status"] == "active"]
    if not active:
        why = {"sql": "sales-qualified at once: handed to a rep, not nurtured",
               "meeting_booked": "a meeting is booked: not nurtured", "human": "asked for a person: a rep follows up",
               "disqualified": "not a fit: not nurtured"}.get(stage or "") or \
            ("handed to a rep, who follows up: not nurtured" if handed else "no sequence enrols this lead")
        return {"sequences": [], "why_not": why}
    titles = {meta.get("url"): meta.get("title") for _text, meta in (sdr.kb.corpus() if sdr.kb is not None else [])}
    out = []
    for seq_id in active:
        plan = simulate(sdr, seq_id, lead_id, 30, sdr.clock())
        out.append({"sequence": seq_id, "plan": [{**e, "title": titles.get(e["url"])} for e in plan["events"]],
                    "waits_for": plan["not_simulated"]})
    return {"sequences": out, "why_not": None}


def _same_origin() -> None:
    """A browser POST from another site (or an opaque origin) is refused; tools that send no
    Origin (curl) are let in."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    own, theirs = urlsplit(request.host_url), urlsplit(origin)
    if origin == "null" or (theirs.scheme, theirs.netloc) != (own.scheme, own.netloc):
        raise ApiError(403, "cross_origin", "the demo form takes submissions from this server's own page only")


def _read_fields() -> dict[str, str]:
    """The known fields as stripped text; 400 naming the field when one is not text or too long, or
    when the email is missing or not an address."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "malformed_json", "send a JSON object of field -> text, e.g. "
                           '{"name": "Dana", "email": "dana@example.com", "message": "..."}')
    else:
        data = request.form.to_dict()
    fields: dict[str, str] = {}
    for name in FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ApiError(400, "bad_field", f"{name}: must be text")
        text = str(value).strip()
        limit = MAX_CHARS.get(name, 300)
        if len(text) > limit:
            raise ApiError(400, "bad_field", f"{name}: at most {limit} characters")
        if text:
            fields[name] = text
    if not fields.get("email"):
        raise ApiError(400, "bad_field", "email: required (the first touch goes to this address)")
    try:
        fields["email"] = validate_email(fields["email"], check_deliverability=False).normalized
    except EmailNotValidError as e:
        raise ApiError(400, "bad_field", f"email: not a valid address ({e})") from None
    return fields


def _form_secret(settings: Any) -> str:
    """SDR_FORM_SECRET, or — in demo mode, when it is unset — one made for this process and set on
    the settings, so the real webhook accepts what the demo signs."""
    with _secret_lock:
        secret = settings.secret("form_secret")
        if not secret:
            secret = secrets.token_hex(32)
            settings.form_secret = SecretStr(secret)
        return secret


def _first_touch_to(payload: Any, address: str) -> bool:
    return (isinstance(payload, dict) and payload.get("kind") == "first_touch"
            and str(payload.get("to") or "").strip().lower() == address.lower())


def _delivery(status: str, result: dict[str, Any]) -> str | None:
    """Where the email went, in words: the .eml file, SMTP, or why it was not sent."""
    if result.get("path"):
        return f"written to {result['path']}"
    if result.get("skipped"):
        return f"not sent: {result['skipped']}"
    if result.get("bounced"):
        return f"bounced: {result['bounced']} ({result.get('code')})"
    if status == "delivered":
        return "sent by SMTP" + (f" ({result['server']})" if result.get("server") else "")
    if status == "dead":
        return "not sent (dead-lettered; see last_error and `sdr outbox`)"
    return None
