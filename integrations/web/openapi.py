"""GET /openapi.json: the HTTP API described as OpenAPI 3.1, with the request bodies generated from
the same pydantic models that validate them (schemas.py), so the description cannot drift."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic.json_schema import models_json_schema

from .schemas import ChatRequest, EventRequest

bp = Blueprint("openapi", __name__)

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}


def _op(summary: str, *, body: str | None = None, ok: str = "application/json", auth: bool = False,
        params: list[dict[str, Any]] | None = None, errors: tuple[int, ...] = (400,)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK", "content": {ok: {}}}}}
    for status in errors + ((401,) if auth else ()):
        op["responses"][str(status)] = {"description": "what was wrong, and how to fix it",
                                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    if auth:
        op["security"] = [{"bearer": []}]
    if params:
        op["parameters"] = params
    return op


def _param(name: str, where: str = "query", required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}}


def spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    _, defs = models_json_schema([(ChatRequest, "validation"), (EventRequest, "validation")],
                                 ref_template="#/components/schemas/{model}")
    schemas = {**defs.get("$defs", {}), "Error": ERROR}
    chat_errors = (400, 413, 415, 429)
    paths = {
        "/api/chat": {"post": _op("One chat turn: the reply, sources and actions", body="ChatRequest", errors=chat_errors)},
        "/api/chat/stream": {"post": _op("The same turn as server-sent events (delta, reset, done)", body="ChatRequest",
                                         ok="text/event-stream", errors=chat_errors)},
        "/api/events": {"post": _op("A tracked event (page view, webinar...) for a lead", body="EventRequest",
                                    errors=(400, 404, 415, 429))},
        "/api/leads": {"get": _op("Recent leads", auth=True, params=[_param("limit", required=False)])},
        "/api/leads/{lead_id}": {"get": _op("One lead: score events, messages, actions, content sent, nurture",
                                            auth=True, params=[_param("lead_id", "path")], errors=(404,))},
        "/api/leads/{lead_id}/pause": {"post": _op("Pause the lead's nurture sequences (the API token itself)",
                                                   auth=True, params=[_param("lead_id", "path")], errors=(401, 404))},
        "/api/leads/{lead_id}/resume": {"post": _op("Resume the lead's nurture sequences (the API token itself)",
                                                    auth=True, params=[_param("lead_id", "path")], errors=(401, 404))},
        "/api/privacy/export": {"get": _op("Everything held about a person (GDPR/CCPA)", auth=True,
                                           params=[_param("email")], errors=(400, 403, 404))},
        "/api/privacy/forget": {"post": _op("Delete a person everywhere and suppress their address", auth=True,
                                            errors=(400, 403))},
        "/healthz": {"get": _op("Status, brain, content store state and chunks, database", errors=())},
        "/metrics": {"get": _op("Prometheus metrics (the API token, unless SDR_METRICS_PUBLIC)", auth=True,
                                ok="text/plain", errors=())},
        "/meetings/{meeting_id}.ics": {"get": _op("A booked meeting's invitation", ok="text/calendar",
                                                  params=[_param("meeting_id", "path"), _param("lead")], errors=(404,))},
    }
    return {"openapi": "3.1.0",
            "info": {"title": "Open SDR API", "version": "1",
                     "description": "Errors are JSON {\"error\": {\"code\", \"message\"}} with a 4xx status."},
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                          "description": "SDR_ADMIN_TOKEN"}}}}


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(spec())
