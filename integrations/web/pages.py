"""Pages: the chat page and widget, the health check, meeting invitations, and the team pages
(the funnel with the latest leads at /leads, one lead's story at /leads/<id>) as Jinja templates."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
)

from bot.reports import FUNNEL_STAGES, SIDE_STAGES, STAGE_LABELS, funnel
from bot.store import Meeting
from bot.turn import NotFound

from .access import current_sdr, is_operator
from .errors import ApiError

STATIC = Path(__file__).with_name("static")
bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html")


@bp.get("/widget.js")
def widget() -> Response:
    resp = send_from_directory(STATIC, "widget.js", mimetype="application/javascript")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/healthz")
def healthz() -> Response:
    sdr = current_sdr()
    # the content store's state, without waiting for it: ready (with its chunks), opening, unavailable (why)
    content = sdr.kb.status() if sdr.kb is not None else {"content": "none", "content_chunks": 0}
    counters = dict(sdr.counters)
    turns = max(1, counters.get("turns", 0))
    per_turn = {k: round(counters.get(k, 0) / turns, 2) for k in ("model_calls", "prompt_tokens", "completion_tokens")}
    return jsonify({"status": "ok", "brain": sdr.brain.name, **content,
                    "database": sdr.store.engine.dialect.name, "counters": counters,
                    "per_turn": per_turn})   # this worker process's, since it started


@bp.get("/meetings/<int:meeting_id>.ics")
def meeting_invite(meeting_id: int) -> Response:
    """The calendar invitation for a booked meeting (the lead id in the link is the key)."""
    with current_sdr().store.session() as s:
        m = s.get(Meeting, meeting_id) if 0 < meeting_id < 2**63 else None   # ids are 64-bit in every database
        if m is None or m.lead_id != request.args.get("lead") or not m.ics:
            raise ApiError(404, "meeting_not_found", "no such meeting invitation; use the link from the booking")
        resp = Response(m.ics, mimetype="text/calendar")
        resp.headers["Content-Disposition"] = f'attachment; filename="meeting-{meeting_id}.ics"'
        return resp


def _sign_in_first() -> Response | None:
    """Team pages are for signed-in operators: others go to /signin and come back here after."""
    if is_operator():
        return None
    return redirect(f"/signin?next={quote(request.full_path.rstrip('?'), safe='/')}", code=303)


@bp.get("/leads")
def leads_page() -> Response | str:
    """The funnel (counted as `sdr leads` counts it) and the latest leads, for the team."""
    if (go := _sign_in_first()) is not None:
        return go
    sdr = current_sdr()
    f = funnel(sdr.store)
    bars = [(STAGE_LABELS[st], f.reached[st]) for st in FUNNEL_STAGES]
    side = [(STAGE_LABELS[st], f.at[st]) for st in SIDE_STAGES]
    return render_template("leads.html", bars=bars, side=side, top=max(f.reached.values()) or 1, total=f.total,
                           rows=sdr.store.list_leads(limit=50), labels=STAGE_LABELS)


@bp.get("/leads/<lead_id>")
def lead_page(lead_id: str) -> Response | str:
    """The story a rep opens from Slack: fields, score over time, why, transcript, actions."""
    if (go := _sign_in_first()) is not None:
        return go
    try:
        d = current_sdr().lead_detail(lead_id)
    except NotFound as e:
        raise ApiError(404, "lead_not_found", str(e)) from None
    return render_template("lead.html", d=d, chart=score_chart(d["score_events"], d["thresholds"]),
                           labels=STAGE_LABELS)


def score_chart(events: list[dict[str, Any]], thresholds: dict[str, float], width: int = 600,
                height: int = 160) -> dict[str, Any]:
    """The running score as SVG polyline points, and the y of the MQL and SQL lines, in a
    width x height box with a 10 px margin."""
    running, points = 0.0, []
    for e in events:
        running += e["points"]
        points.append(running)
    hi = max([thresholds["sql"] * 1.2] + points)
    lo = min([0.0] + points)
    n = max(len(points) - 1, 1)
    plot_w, plot_h, base, span = width - 20, height - 20, height - 10, (hi - lo) or 1.0

    def y(v: float) -> float:
        return base - plot_h * (v - lo) / span

    xy = " ".join(f"{10 + plot_w * i / n:.1f},{y(v):.1f}" for i, v in enumerate(points))
    return {"points": xy, "mql": y(thresholds["mql"]), "sql": y(thresholds["sql"]), "width": width, "height": height}
