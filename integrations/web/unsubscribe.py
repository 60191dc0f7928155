"""Unsubscribe: GET /unsubscribe/<token> shows one button; POST unsubscribes at once, no login.

The link is in every email's footer and its `List-Unsubscribe` header; mail clients that offer
"unsubscribe" POST `List-Unsubscribe=One-Click` to it (RFC 8058 §3.1), which must work without a
page, a cookie or a confirmation. The token is the lead's unguessable email token
(bot/emails.py): an unknown token answers 404 and changes nothing; unsubscribing twice is one event.
"""
from __future__ import annotations

from flask import Blueprint, Response, render_template

from .access import current_sdr

bp = Blueprint("unsubscribe", __name__)
_MAX_TOKEN = 64


def _known(token: str) -> bool:
    from bot.emails import lead_for_token

    sdr = current_sdr()
    with sdr.store.session() as s:
        return len(token) <= _MAX_TOKEN and lead_for_token(s, token, "unsubscribe") is not None


@bp.get("/unsubscribe/<token>")
def page(token: str) -> tuple[str, int]:
    """The one-button page (404 for an unknown token)."""
    sdr = current_sdr()
    if not _known(token):
        return render_template("unsubscribe.html", state="unknown", company=sdr.playbook.company.name), 404
    return render_template("unsubscribe.html", state="ask", token=token, company=sdr.playbook.company.name), 200


@bp.post("/unsubscribe/<token>")
def one_click(token: str) -> tuple[str | Response, int]:
    """Unsubscribe now: the page's button or a mail client's one-click POST (200 either way;
    404 for an unknown token, nothing changed)."""
    from flask import request

    sdr = current_sdr()
    one_click = (request.form.get("List-Unsubscribe") or "") == "One-Click"
    if len(token) > _MAX_TOKEN or not sdr.unsubscribe(token, source="one_click" if one_click else "link"):
        return render_template("unsubscribe.html", state="unknown", company=sdr.playbook.company.name), 404
    return render_template("unsubscribe.html", state="done", company=sdr.playbook.company.name), 200
