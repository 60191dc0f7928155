"""Errors the web channel answers with: always JSON, `{"error": {"code": ..., "message": ...}}`,
with a 4xx status that says what was wrong and a message that says how to fix it — never a 500
page for bad input."""
from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from bot.locks import Busy
from bot.turn import InputError

log = logging.getLogger("sdr.web")

HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _api_error(e: ApiError) -> Response:
    return error_response(e.status, e.code, e.message, e.headers)


def _input_error(e: InputError) -> Response:
    """The turn refused the message (empty, too long, ...): its code and status, as JSON."""
    return error_response(e.status, e.code, str(e))


def _busy(e: Busy) -> Response:
    """Another message of this chat session is still being answered (and did not finish within the
    lock's wait): try again in a moment."""
    from .observability import count_refused

    count_refused("turn_in_progress")
    return error_response(429, "turn_in_progress", "the previous message of this session is still being answered; "
                          "send this one again in a moment", {"Retry-After": "1"})


def _http_error(e: HTTPException) -> Response:
    status = e.code or 500
    messages = {413: f"the request body is over {current_app.config['MAX_CONTENT_LENGTH'] // 1024} KB",
                404: f"no route {request.path}", 405: f"{request.method} is not allowed on {request.path}"}
    resp = error_response(status, HTTP_CODES.get(status, "http_error"),
                          messages.get(status, e.description or "bad request"))
    allow = dict(e.get_headers()).get("Allow")   # a 405 says which methods the route takes
    if allow:
        resp.headers["Allow"] = allow
    return resp


def _undecodable(e: UnicodeDecodeError) -> Response:
    """A URL or form that is not UTF-8 (a PEP 3333 server hands raw bytes through): the client's mistake."""
    return error_response(400, "bad_encoding", "the request's URL or form is not valid UTF-8; percent-encode it")


def _unexpected(e: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "something went wrong on our side; it is logged")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(InputError, _input_error)
    app.register_error_handler(Busy, _busy)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(UnicodeDecodeError, _undecodable)
    app.register_error_handler(Exception, _unexpected)
