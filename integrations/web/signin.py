"""Operators sign in to the team pages: GET /signin?code=... (the one-time link `sdr serve` or
`sdr signin` prints), or the form at /signin with the API token; POST /signout. Forms carry a CSRF
token (Flask-WTF); the session is the signed cookie set up in access.py. After sign-in the browser
goes to `next` — a path on this server only, never another site."""
from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, session
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms.validators import ValidationError

from .access import current_sdr, is_operator, redeem_signin_code, same, sign_in

bp = Blueprint("signin", __name__)


def safe_next(raw: str | None) -> str:
    """`raw` when it is a path on this server (starts with one '/', no scheme, no backslash), else /leads."""
    if raw and raw.startswith("/") and not raw.startswith(("//", "/\\")) and "\\" not in raw and raw.isprintable():
        return raw
    return "/leads"


def _form(error: str | None = None, status: int = 200) -> tuple[str, int]:
    return render_template("signin.html", error=error, next=safe_next(request.values.get("next")),
                           csrf_token=generate_csrf()), status


@bp.get("/signin")
def signin_page() -> Response | tuple[str, int]:
    code = request.args.get("code")
    if code is not None:
        if not redeem_signin_code(code):
            return _form("That sign-in link was already used or has expired. Run `sdr signin` on the server for a "
                         "new one (a server that made its own token prints a new link when restarted), or paste the "
                         "API token below.", 401)
        sign_in()
        return redirect(safe_next(request.args.get("next")), code=303)
    if is_operator():
        return redirect(safe_next(request.args.get("next")), code=303)
    return _form()


def csrf_ok() -> bool:
    try:
        validate_csrf(request.form.get("csrf_token"))
        return True
    except ValidationError:
        return False


@bp.post("/signin")
def signin_submit() -> Response | tuple[str, int]:
    if not csrf_ok():
        return _form("The form expired; please try again.", 400)
    if not same(request.form.get("token", "").strip(), current_sdr().settings.admin_token or ""):
        return _form("That is not the API token (SDR_ADMIN_TOKEN).", 401)
    sign_in()
    return redirect(safe_next(request.form.get("next")), code=303)


@bp.post("/signout")
def signout() -> Response | tuple[str, int]:
    if not csrf_ok():
        return _form("The form expired; please try again.", 400)
    session.clear()
    return redirect("/signin", code=303)
