"""The web channel: the chat API, tracked events, lead lookups, the chat page, the widget and the
team pages, as Flask blueprints (chat.py, tracking.py, leads_api.py, pages.py).

Routes translate HTTP into an `Inbound` (or an event) and the result back into JSON; the turn
decides everything. Bad input gets a JSON error with a 4xx status that says what was wrong —
never a 500 or an HTML page (errors.py, schemas.py). Rate limits: limits.py.

`create_app(sdr)` only builds the app; the composition root mounts other channels (Slack) on it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, request
from flask.json.provider import DefaultJSONProvider

from bot.text import clean_text
from bot.turn import SDR

from flask_wtf.csrf import generate_csrf

from integrations.email import email_webhooks
from integrations.forms import form_webhooks

from . import access, chat, demo_form, email_tracking, leads_api, openapi, pages, signin, tracking, unsubscribe
from . import observability
from .errors import register_error_handlers
from .limits import install as install_rate_limits

CORS_PATHS = ("/api/chat", "/api/events", "/widget.js")   # what other sites' pages call


def create_app(sdr: SDR | None = None, *, config: Mapping[str, Any] | None = None) -> Flask:
    """The web app for `sdr`. `config` overrides Flask settings (e.g. `RATELIMIT_KEY_PREFIX`)."""
    sdr = sdr or SDR()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = sdr.settings.max_body_bytes
    app.config.update(config or {})
    app.json = CleanJSONProvider(app)
    app.jinja_env.finalize = _clean_output   # data stored before cleaning existed never breaks a page
    app.extensions["sdr"] = sdr
    access.install(app, sdr)   # an API token always exists; the team pages' signed session cookie
    app.jinja_env.globals["csrf_token"] = generate_csrf
    register_error_handlers(app)
    install_rate_limits(app, sdr, by_ip=[chat.bp, tracking.bp], by_session=[chat.bp],
                        by_credentials=[signin.bp, leads_api.bp, observability.bp])
    observability.install(app, sdr)   # /metrics, the SDR's turn observer, a request id per request
    for bp in (pages.bp, signin.bp, chat.bp, tracking.bp, leads_api.bp, openapi.bp, form_webhooks.bp,
               email_webhooks.bp, unsubscribe.bp, demo_form.bp, email_tracking.bp):
        app.register_blueprint(bp)
    app.after_request(_headers)
    return app


class CleanJSONProvider(DefaultJSONProvider):
    """JSON as UTF-8 text, with any lone surrogate that reached the store (older data) replaced, so
    one bad character never turns a response into a 500."""
    ensure_ascii = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return clean_text(super().dumps(obj, **kwargs))


def _clean_output(value: Any) -> Any:
    return clean_text(value) if isinstance(value, str) else value


def _headers(resp: Response) -> Response:
    """CORS only for the sites in SDR_ALLOWED_ORIGINS (the browser then lets their pages read the
    answer); same-origin pages need none; `*` only when the operator wrote it."""
    origin = request.headers.get("Origin")
    if origin and request.path.startswith(CORS_PATHS):
        allowed = current_app.extensions["sdr"].settings.origins
        if "*" in allowed or origin.rstrip("/") in allowed:
            resp.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
            resp.headers["Access-Control-Allow-Headers"] = "Content-Type"   # no credentials: cookies stay home
            resp.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
            resp.headers["Access-Control-Max-Age"] = "600"
        resp.headers.add("Vary", "Origin")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp
