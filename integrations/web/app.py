"""The web channel: the chat API, tracked events, lead lookups, the chat page and the widget.

Routes translate HTTP into an `Inbound` (or an event) and the result back into JSON; the turn
decides everything. Bad input gets a JSON error with a 4xx status that says what was wrong —
never a 500 or an HTML page.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from bot.turn import SDR, Inbound, InputError, NotFound

log = logging.getLogger("sdr.web")
STATIC = Path(__file__).with_name("static")
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{8,80}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[A-Za-z]{2,}$")
VISITOR_KEYS = {"email": 320, "name": 200, "company": 200, "page_url": 2000, "timezone": 64}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class RateLimiter:
    """Sliding one-minute windows per key, in memory (one per process)."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, key: str, limit: int, window: float = 60.0) -> float | None:
        """None when allowed; else the seconds until the next request would be."""
        now = time.monotonic()
        with self._lock:
            q = self._hits[key]
            while q and q[0] <= now - window:
                q.popleft()
            if len(q) >= limit:
                return max(0.0, q[0] + window - now)
            q.append(now)
            if len(self._hits) > 100_000:  # bound memory under a flood of distinct keys
                for k in [k for k, v in self._hits.items() if not v][:50_000]:
                    del self._hits[k]
            return None


def _json_body() -> dict[str, Any]:
    ctype = (request.mimetype or "").lower()
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"send JSON with 'Content-Type: application/json' (got {request.content_type or 'none'})")
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(400, "empty_body", "the request body is empty; send a JSON object")
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, "malformed_json", "the body is not valid JSON")
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", f"the body must be a JSON object, got {type(data).__name__}")
    return data


def _visitor(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, "bad_visitor", "visitor must be an object like {\"email\": \"...\", \"name\": \"...\"}")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key not in VISITOR_KEYS:
            continue  # unknown keys are ignored, not stored
        if value is None:
            continue
        if not isinstance(value, str):
            raise ApiError(400, "bad_visitor", f"visitor.{key} must be a string")
        if len(value) > VISITOR_KEYS[key]:
            raise ApiError(400, "bad_visitor", f"visitor.{key} is longer than {VISITOR_KEYS[key]} characters")
        if key == "email" and value.strip() and not EMAIL_RE.match(value.strip()):
            raise ApiError(400, "bad_visitor", "visitor.email is not an email address")
        out[key] = value.replace("\x00", "").strip()
    return out


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def create_app(sdr: SDR | None = None) -> Flask:
    sdr = sdr or SDR()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = sdr.settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["sdr"] = sdr
    limiter = RateLimiter()

    def rate_limit(key: str, limit: int, what: str) -> None:
        wait = limiter.check(key, limit)
        if wait is not None:
            raise ApiError(429, "rate_limited", f"too many {what}; try again in {int(wait) + 1} s",
                           headers={"Retry-After": str(int(wait) + 1)})

    @app.errorhandler(ApiError)
    def _api_error(e: ApiError) -> Response:
        resp = jsonify({"error": {"code": e.code, "message": e.message}})
        resp.status_code = e.status
        for k, v in e.headers.items():
            resp.headers[k] = v
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 400: "bad_request"}
        message = {413: f"the request body is over {sdr.settings.max_body_bytes // 1024} KB",
                   404: f"no route {request.path}", 405: f"{request.method} is not allowed on {request.path}"}
        resp = jsonify({"error": {"code": codes.get(e.code or 500, "http_error"),
                                  "message": message.get(e.code or 0, e.description or "bad request")}})
        resp.status_code = e.code or 500
        return resp

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        resp = jsonify({"error": {"code": "internal_error", "message": "something went wrong on our side; it is logged"}})
        resp.status_code = 500
        return resp

    @app.after_request
    def _headers(resp: Response) -> Response:
        if request.path.startswith("/api/chat") or request.path.startswith("/api/events") or request.path == "/widget.js":
            resp.headers["Access-Control-Allow-Origin"] = "*"
            resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
            resp.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
            resp.headers["Access-Control-Max-Age"] = "600"
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        return resp

    # -- pages ------------------------------------------------------------------------------

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html")

    @app.get("/widget.js")
    def widget() -> Response:
        resp = send_from_directory(STATIC, "widget.js", mimetype="application/javascript")
        resp.headers["Cache-Control"] = "public, max-age=300"
        return resp

    @app.get("/healthz")
    def healthz() -> Response:
        chunks = sdr.kb.count() if sdr.kb is not None else 0
        return jsonify({"status": "ok", "brain": sdr.brain.name, "content_chunks": chunks,
                        "database": sdr.store.engine.dialect.name, "counters": dict(sdr.counters)})

    # -- API --------------------------------------------------------------------------------

    @app.route("/api/chat", methods=["OPTIONS"])
    @app.route("/api/chat/stream", methods=["OPTIONS"])
    @app.route("/api/events", methods=["OPTIONS"])
    def preflight() -> Response:
        return Response(status=204)

    def chat_inbound() -> Inbound:
        rate_limit(f"ip:{_client_ip()}", sdr.settings.rate_per_ip, "requests from your address")
        data = _json_body()
        message = data.get("message")
        if "message" not in data:
            raise ApiError(400, "missing_message", "the body needs a 'message' string")
        if not isinstance(message, str):
            raise ApiError(400, "bad_message", f"message must be a string, got {type(message).__name__}")
        if not message.strip():
            raise ApiError(400, "empty_message", "message is empty")
        if len(message) > sdr.settings.max_message_chars:
            raise ApiError(413, "message_too_long",
                           f"message is {len(message)} characters; the limit is {sdr.settings.max_message_chars}")
        session_id = data.get("session_id")
        if session_id is not None and (not isinstance(session_id, str) or not SESSION_RE.match(session_id)):
            raise ApiError(400, "bad_session_id", "session_id must be 8-80 letters, digits, '-' or '_' (or left out)")
        message_id = data.get("message_id")
        if message_id is not None and (not isinstance(message_id, str) or len(message_id) > 100):
            raise ApiError(400, "bad_message_id", "message_id must be a string of at most 100 characters")
        visitor = _visitor(data.get("visitor"))
        if session_id:
            rate_limit(f"session:{session_id}", sdr.settings.rate_per_session, "messages in this chat")
        return Inbound(text=message, channel="web", session_id=session_id, visitor=visitor, message_id=message_id)

    @app.post("/api/chat")
    def chat() -> Response:
        inbound = chat_inbound()
        try:
            result = sdr.handle(inbound)
        except InputError as e:
            raise ApiError(e.status, e.code, str(e)) from None
        return jsonify(result.as_dict())

    @app.post("/api/chat/stream")
    def chat_stream() -> Response:
        """The same turn as /api/chat, the reply as server-sent events: `delta` (text to append),
        `reset` (clear what was shown; the safe reply follows), `done` (the full /api/chat JSON)."""
        inbound = chat_inbound()
        try:
            events = sdr.handle_stream(inbound)
            first = next(events)   # validation errors surface here, before the 200 is sent
        except InputError as e:
            raise ApiError(e.status, e.code, str(e)) from None

        def sse() -> Any:
            import itertools
            try:
                for ev in itertools.chain([first], events):
                    if ev["type"] == "delta":
                        yield f"event: delta\ndata: {json.dumps({'text': ev['text']}, ensure_ascii=False)}\n\n"
                    elif ev["type"] == "reset":
                        yield "event: reset\ndata: {}\n\n"
                    elif ev["type"] == "done":
                        yield f"event: done\ndata: {json.dumps(ev['result'], ensure_ascii=False)}\n\n"
            except Exception:  # noqa: BLE001 - the stream is already 200; say so in-band
                log.exception("stream failed")
                yield 'event: error\ndata: {"error": {"code": "internal_error", "message": "the reply failed; please resend"}}\n\n'

        resp = Response(sse(), mimetype="text/event-stream")
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers["X-Accel-Buffering"] = "no"
        return resp

    @app.post("/api/events")
    def events() -> Response:
        rate_limit(f"ip:{_client_ip()}", sdr.settings.rate_per_ip, "requests from your address")
        data = _json_body()
        etype = data.get("type")
        if not isinstance(etype, str) or not etype:
            raise ApiError(400, "missing_type", "the body needs a 'type' string, e.g. \"pricing_page_view\"")
        lead_id, email = data.get("lead_id"), data.get("email")
        if lead_id is not None and not isinstance(lead_id, str):
            raise ApiError(400, "bad_lead_id", "lead_id must be a string")
        if email is not None and (not isinstance(email, str) or not EMAIL_RE.match(email.strip())):
            raise ApiError(400, "bad_email", "email must be an email address")
        if not lead_id and not email:
            raise ApiError(400, "missing_lead", "give 'lead_id' or 'email' to say whose event this is")
        props = data.get("properties")
        if props is not None and not isinstance(props, dict):
            raise ApiError(400, "bad_properties", "properties must be an object")
        try:
            result = sdr.record_event(etype, lead_id=lead_id, email=email, properties=props or {})
        except InputError as e:
            raise ApiError(e.status, e.code, str(e)) from None
        except NotFound as e:
            raise ApiError(404, "lead_not_found", str(e)) from None
        return jsonify(result)

    def _admin(allow_query: bool = False) -> None:
        """SDR_ADMIN_TOKEN, when set, guards lead data: a Bearer header, or ?token= on the team pages
        (links a rep opens from Slack)."""
        token = sdr.settings.admin_token
        if not token or request.headers.get("Authorization", "") == f"Bearer {token}":
            return
        if allow_query and request.args.get("token") == token:
            return
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <SDR_ADMIN_TOKEN>'"
                       + (" or add ?token=<SDR_ADMIN_TOKEN>" if allow_query else "") + " to read leads")

    @app.get("/api/leads/<lead_id>")
    def lead(lead_id: str) -> Response:
        _admin()
        try:
            return jsonify(sdr.lead_detail(lead_id))
        except NotFound as e:
            raise ApiError(404, "lead_not_found", str(e)) from None

    @app.get("/api/leads")
    def leads() -> Response:
        _admin()
        raw = request.args.get("limit", "50")
        if not raw.isdigit():
            raise ApiError(400, "bad_limit", "limit must be a whole number")
        rows = sdr.store.list_leads(limit=min(int(raw), 500))
        return jsonify({"leads": [{"id": r["lead"].id, "stage": r["lead"].stage, "score": round(r["lead"].score, 1),
                                   "fields": r["lead"].fields, "last_message": r["last_message"]} for r in rows]})

    from integrations.slack import SlackConfig, mount
    slack_cfg = SlackConfig.from_env(sdr.playbook)
    if slack_cfg is not None:
        mount(app, sdr, slack_cfg)

    @app.get("/meetings/<int:meeting_id>.ics")
    def meeting_invite(meeting_id: int) -> Response:
        """The calendar invitation for a booked meeting (the lead id in the link is the key)."""
        from bot.store import Meeting
        with sdr.store.session() as s:
            m = s.get(Meeting, meeting_id)
            if m is None or m.lead_id != request.args.get("lead") or not m.ics:
                raise ApiError(404, "meeting_not_found", "no such meeting invitation")
            resp = Response(m.ics, mimetype="text/calendar")
            resp.headers["Content-Disposition"] = f'attachment; filename="meeting-{meeting_id}.ics"'
            return resp

    @app.get("/leads")
    def leads_page() -> Response:
        """The funnel and the latest leads, for the team."""
        _admin(allow_query=True)
        from flask import render_template_string
        rows = sdr.store.list_leads(limit=200)
        stages = ["new", "engaged", "mql", "sql", "meeting_booked", "human", "disqualified"]
        counts = {st: sum(1 for r in rows if r["lead"].stage == st) for st in stages}
        # a funnel counts everyone who reached a stage, not only those still in it
        order = ["new", "engaged", "mql", "sql", "meeting_booked"]
        reached = {st: sum(counts[o] for o in order[i:]) + (counts["human"] if st in ("new", "engaged") else 0)
                   + (counts["disqualified"] if st in ("new", "engaged") else 0) for i, st in enumerate(order)}
        top = max(reached.values()) or 1
        return Response(render_template_string(LEADS_PAGE, rows=rows[:50], reached=reached, top=top, counts=counts,
                                               token=request.args.get("token", "")), mimetype="text/html")

    @app.get("/leads/<lead_id>")
    def lead_page(lead_id: str) -> Response:
        """The transcript a rep opens from Slack (protected by SDR_ADMIN_TOKEN as ?token= when set)."""
        _admin(allow_query=True)
        try:
            d = sdr.lead_detail(lead_id)
        except NotFound as e:
            raise ApiError(404, "lead_not_found", str(e)) from None
        from flask import render_template_string
        running, points = 0.0, []
        for e in d["score_events"]:
            running += e["points"]
            points.append(running)
        hi = max([d["thresholds"]["sql"] * 1.2] + points)
        lo = min([0.0] + points)
        n = max(len(points) - 1, 1)
        xy = " ".join(f"{10 + 580 * i / n:.1f},{150 - 140 * (v - lo) / (hi - lo):.1f}" for i, v in enumerate(points))
        lines = {k: 150 - 140 * (d["thresholds"][k] - lo) / (hi - lo) for k in ("mql", "sql")}
        return Response(render_template_string(LEAD_PAGE, d=d, xy=xy, lines=lines), mimetype="text/html")

    return app


LEADS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Leads</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#1f2937}
.bar{height:22px;background:#4f46e5;border-radius:4px;color:#fff;font-size:12px;padding-left:6px;white-space:nowrap}
td{padding:3px 10px 3px 0} a{color:#4338ca} .v{color:#6b7280}</style></head><body>
<h1>Funnel</h1><table>{% for st, n in reached.items() %}<tr><td class="v">{{ st }}</td>
<td style="width:600px"><div class="bar" style="width:{{ (100 * n / top) | round(1) }}%">{{ n }}</div></td></tr>{% endfor %}
<tr><td class="v">asked for a person</td><td>{{ counts.human }}</td></tr><tr><td class="v">disqualified</td><td>{{ counts.disqualified }}</td></tr></table>
<h1>Latest leads</h1><table>{% for r in rows %}<tr><td><a href="/leads/{{ r.lead.id }}{% if token %}?token={{ token }}{% endif %}">
{{ r.lead.fields.get('name') or r.lead.email or r.lead.id }}</a></td><td>{{ r.lead.stage }}</td><td>{{ '%.1f'|format(r.lead.score) }}</td>
<td class="v">{{ (r.last_message or '')[:80] }}</td></tr>{% endfor %}</table></body></html>"""

LEAD_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Lead {{ d.id }}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:860px;margin:2rem auto;padding:0 1rem;color:#1f2937}
h1{font-size:1.3rem} table{border-collapse:collapse} td{padding:2px 10px 2px 0;vertical-align:top}
.v{color:#6b7280}.m{margin:.4rem 0;padding:.5rem .7rem;border-radius:8px;background:#f3f4f6}
.agent{background:#eef2ff}.pos{color:#047857}.neg{color:#b91c1c}</style></head><body>
<h1>{{ d.fields.get('name') or d.fields.get('email') or 'Lead' }} · {{ d.stage }} · score {{ d.score }}</h1>
<table>{% for k, v in d.fields.items() %}<tr><td class="v">{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
<svg width="600" height="160" role="img" aria-label="score over time" style="background:#fafafa;border-radius:8px">
<line x1="10" x2="590" y1="{{ lines.mql }}" y2="{{ lines.mql }}" stroke="#d97706" stroke-dasharray="4"/>
<text x="14" y="{{ lines.mql - 3 }}" font-size="11" fill="#d97706">MQL {{ d.thresholds.mql }}</text>
<line x1="10" x2="590" y1="{{ lines.sql }}" y2="{{ lines.sql }}" stroke="#059669" stroke-dasharray="4"/>
<text x="14" y="{{ lines.sql - 3 }}" font-size="11" fill="#059669">SQL {{ d.thresholds.sql }}</text>
<polyline points="{{ xy }}" fill="none" stroke="#4f46e5" stroke-width="2.5"/></svg>
<h2>Why the score is {{ d.score }}</h2><table>{% for e in d.score_events %}<tr>
<td class="{{ 'pos' if e.points >= 0 else 'neg' }}">{{ '%+.1f'|format(e.points) }}</td><td>{{ e.reason }}</td>
<td class="v">{{ e.at[:16] }}</td></tr>{% endfor %}</table>
<h2>Transcript</h2>{% for m in d.messages %}<div class="m {{ m.role }}"><b>{{ 'Visitor' if m.role == 'visitor' else 'SDR' }}</b>
<span class="v">{{ m.at[11:16] }}</span><br>{{ m.text }}</div>{% endfor %}
{% if d.actions %}<h2>Actions</h2><ul>{% for a in d.actions %}<li>{{ a.type }} · {{ a.status }}{% if a.last_error %} · {{ a.last_error }}{% endif %}</li>{% endfor %}</ul>{% endif %}
</body></html>"""
