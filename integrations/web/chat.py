"""POST /api/chat (the reply as JSON) and /api/chat/stream (the same turn as server-sent events)."""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify

from bot.turn import Inbound

from .access import current_sdr
from .errors import log
from .schemas import ChatRequest, json_object

bp = Blueprint("chat", __name__)


@bp.route("/api/chat", methods=["OPTIONS"])
@bp.route("/api/chat/stream", methods=["OPTIONS"])
def preflight() -> Response:
    return Response(status=204)


def chat_inbound() -> Inbound:
    body = ChatRequest.parse(json_object())
    return Inbound(text=body.message, channel="web", session_id=body.session_id, visitor=body.visitor_fields(),
                   message_id=body.message_id)


@bp.post("/api/chat")
def chat() -> Response:
    return jsonify(current_sdr().handle(chat_inbound()).as_dict())


@bp.post("/api/chat/stream")
def chat_stream() -> Response:
    """The same turn as /api/chat, the reply as server-sent events: `delta` (text to append),
    `reset` (clear what was shown; the safe reply follows), `done` (the full /api/chat JSON),
    `error` (the turn failed after the 200 was sent)."""
    events = current_sdr().handle_stream(chat_inbound())
    first = next(events)   # validation errors surface here, before the 200 is sent
    resp = Response(_sse(itertools.chain([first], events)), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    try:
        for ev in events:
            if ev["type"] == "delta":
                yield f"event: delta\ndata: {json.dumps({'text': ev['text']}, ensure_ascii=False)}\n\n"
            elif ev["type"] == "reset":
                yield "event: reset\ndata: {}\n\n"
            elif ev["type"] == "done":
                yield f"event: done\ndata: {json.dumps(ev['result'], ensure_ascii=False)}\n\n"
    except Exception:  # noqa: BLE001 - the stream is already 200; say so in-band
        log.exception("stream failed")
        yield 'event: error\ndata: {"error": {"code": "internal_error", "message": "the reply failed; please resend"}}\n\n'
