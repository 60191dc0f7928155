"""A local, scriptable Slack Web API for tests: real HTTP on 127.0.0.1, Slack's wire format, and only
the methods the product calls (integrations/slack through slack_sdk and slack-bolt)::

    def test_handoff(fake_slack):
        client = WebClient(token=fake_slack.token, base_url=fake_slack.base_url)
        resp = client.chat_postMessage(channel="#sales", text="New lead", blocks=[...])
        call = fake_slack.calls_to("chat.postMessage")[0]     # .body decoded, .status answered

        fake_slack.fail("chat.postMessage", {"status": 429, "headers": {"Retry-After": "1"}})
        fake_slack.stop()      # connection refused from now on ("Slack is down")
        fake_slack.restart()   # back on the same port

The outbound side (the app calling Slack)
-----------------------------------------
``POST|GET /api/<method>`` with ``Authorization: Bearer <token>`` (or a ``token`` field). No token
answers ``not_authed``, another token ``invalid_auth`` (HTTP 200, like Slack). Form, JSON and
query-string arguments are merged; JSON-string form fields (``blocks``, ``metadata``, ...) decoded.

Methods: ``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.delete``, ``chat.getPermalink``,
``chat.postEphemeral``, ``conversations.history``, ``conversations.open`` (one user: the DM's ID),
``conversations.list`` (the channels seen so far, one page); any other answers ``unknown_method``, as
Slack does for a name it doesn't know, so a new call in the product shows up here first. ``channel``
may be an ID, ``#name`` or a bare name (a name gets an ID ``C0AUTO0001``..., kept) or a user ID
(``U...``: the DM ``D...``); responses carry the ID. ``history_needs_id = True`` makes
``conversations.history`` answer ``channel_not_found`` for anything but an ID, as Slack does.

``conversations.history`` pages as Slack does: newest first, ``limit`` (default 100, at most 999),
``oldest``/``latest`` exclusive unless ``inclusive=true``, ``has_more`` and
``response_metadata.next_cursor`` (opaque) while more remain, ``cursor`` for the next page (one it
never gave: ``invalid_cursor``); ``metadata`` only with ``include_all_metadata=true``.

Timestamps are Slack's clock: ``FakeSlack(clock=...)`` (epoch seconds; default ``time.time``, or set
``.clock``), unique and increasing (at least 100 µs apart) even when the clock stands still. Posted messages are kept in ``._messages`` (``{(channel, ts): message}``); ``chat.update``
edits them, ``chat.delete`` removes them (an unknown ts: ``message_not_found``; a token that may not
delete is scripted: ``fail("chat.delete", {"ok": False, "error": "cant_delete_message"})`` or
``{"ok": False, "error": "missing_scope", "needed": "chat:write", "provided": "..."}``).
``chat.getPermalink`` answers ``https://fake-workspace.slack.com/archives/<channel>/p<ts digits>``.

Every request is recorded as a :class:`Call`: ``.calls``, ``.calls_to(method)``,
``.wait_for(method, count)`` (bolt runs listeners after the HTTP ack, so tests wait for them).

Scripted failures
-----------------
``.fail(method, *steps)`` queues steps (``"*"``: any method once the method's own queue is empty;
``"response_url"``: posts to response URLs); each request takes one, then normal answers resume. A
step is a dict or ``f(call) -> dict | None`` (``None``: normal). Keys: ``delay`` (seconds, then
answer; with nothing else that is "accepted but answered late"; ``stop()`` cuts it short with a 503),
(the message is stored at once, the answer comes after the delay), ``status`` (>= 400 without a body answers Slack-style: 429 ``ratelimited`` with ``Retry-After: 1``
unless given, 500 ``internal_error``, 502-504 ``service_unavailable``), ``headers``, ``body``
(verbatim), ``raw`` (+ ``content_type``, e.g. an HTML 502 page), or any other keys as the JSON body
(``{"ok": False, "error": "channel_not_found"}``).

The inbound side (requests Slack sends to the app)
--------------------------------------------------
``sign(body, secret)`` gives the ``v0`` signature headers. ``block_action_body(...)`` and
``slash_command_body(...)`` build request bodies; the same-named *methods* point ``response_url`` at
the fake (POSTs there land in ``.responses``) and ``FakeSlack.block_action_body`` fills channel, ts,
block and value from the latest posted message carrying the button::

    body = fake_slack.block_action_body("sdr_claim", user_id="U0MAYA")
    r = flask_client.post("/slack/events", data=body, headers=sign(body, SIGNING_SECRET))
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Union
from urllib.parse import urlencode

import pytest
from werkzeug.wrappers import Request, Response

from http_fake import HttpFake, json_response, serving

Step = Union[dict, Callable[[Any], Union[dict, None]]]

DEFAULT_TOKEN = "xoxb-test-token"
TEAM_ID = "T0FAKE0001"
TEAM_DOMAIN = "fake-workspace"
BOT_USER_ID = "U0BOT00001"
BOT_ID = "B0BOT00001"
APP_ID = "A0FAKE0001"
DEFAULT_USER_ID = "U0REP00001"
DEFAULT_CHANNEL_ID = "C0SALES001"
VERIFICATION_TOKEN = "fake-verification-token"

_JSON_FIELDS = ("blocks", "attachments", "metadata")   # form fields Slack takes as JSON strings
_CONTROL_KEYS = {"delay", "status", "headers", "content_type"}
_ID_RE = re.compile(r"[CDGUW][A-Z0-9]{2,}")
_ERROR_BY_STATUS = {429: "ratelimited", 500: "internal_error", 502: "service_unavailable",
                    503: "service_unavailable", 504: "service_unavailable"}


@dataclass
class Call:
    """One request to ``/api/<method>``: what was sent and what the fake answered."""

    method: str
    body: dict
    headers: dict        # lower-cased names
    token: str | None = None
    status: int | None = None    # filled in once answered
    response: Any = None
    at: float = field(default_factory=time.time)


@dataclass
class ResponsePost:
    """One POST to a ``response_url`` handed out by the fake."""

    id: str
    body: dict
    headers: dict


# ---------------------------------------------------------------------------------------------
# Inbound helpers (usable without a server)


def sign(body: bytes | str, secret: str, timestamp: int | None = None) -> dict:
    """The headers Slack signs a request with: ``v0=`` HMAC-SHA256 of ``v0:{ts}:{body}``."""
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    ts = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode("utf-8"), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    content_type = "application/json" if raw.lstrip().startswith(b"{") else "application/x-www-form-urlencoded"
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}", "Content-Type": content_type}


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**13}.{uuid.uuid4().hex[:24]}"


def _outside_response_url() -> str:
    # Not on loopback: the network guard stops anything posting there. The FakeSlack methods hand
    # out recorded ones.
    return f"https://hooks.slack.com/actions/{TEAM_ID}/0000000001/{uuid.uuid4().hex[:24]}"


def block_action_body(action_id: str, value: str | None = None, user_id: str = DEFAULT_USER_ID,
                      channel_id: str = DEFAULT_CHANNEL_ID, message_ts: str = "1700000000.000100", *,
                      block_id: str | None = None, text: str = "", blocks: list | None = None,
                      response_url: str | None = None) -> str:
    """The form body (``payload=<json>``) of a ``block_actions`` click on a message's button."""
    action: dict[str, Any] = {"action_id": action_id, "block_id": block_id or f"blk_{action_id}", "type": "button",
                              "text": {"type": "plain_text", "text": action_id}, "action_ts": f"{time.time():.6f}"}
    if value is not None:
        action["value"] = value
    user = {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": TEAM_ID}
    payload = {
        "type": "block_actions", "user": user, "api_app_id": APP_ID, "token": VERIFICATION_TOKEN,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id, "is_ephemeral": False},
        "trigger_id": _trigger_id(), "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None, "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_id.lower()},
        "message": {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "team": TEAM_ID,
                    "ts": message_ts, "text": text, "blocks": list(blocks or [])},
        "state": {"values": {}}, "response_url": response_url or _outside_response_url(), "actions": [action],
    }
    return urlencode({"payload": json.dumps(payload)})


def slash_command_body(command: str, text: str = "", user_id: str = DEFAULT_USER_ID,
                       channel_id: str = DEFAULT_CHANNEL_ID, *, response_url: str | None = None) -> str:
    """The form body of a slash command (``/sdr stats``)."""
    return urlencode({
        "token": VERIFICATION_TOKEN, "team_id": TEAM_ID, "team_domain": TEAM_DOMAIN, "channel_id": channel_id,
        "channel_name": channel_id.lower(), "user_id": user_id, "user_name": user_id.lower(),
        "command": command if command.startswith("/") else "/" + command, "text": text, "api_app_id": APP_ID,
        "is_enterprise_install": "false", "response_url": response_url or _outside_response_url(),
        "trigger_id": _trigger_id(),
    })


def _find_button(blocks: Any, action_id: str) -> tuple[str | None, dict] | None:
    """(block_id, element) of the element with ``action_id`` in a block list."""
    for block in blocks if isinstance(blocks, list) else []:
        for el in list(block.get("elements") or []) + [block.get("accessory")]:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return block.get("block_id"), el
    return None


# ---------------------------------------------------------------------------------------------
# The server


class FakeSlack(HttpFake):
    """A scriptable Slack Web API on 127.0.0.1 (random port, kept across stop/restart)."""

    def __init__(self, token: str = DEFAULT_TOKEN, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.token = token
        self.clock = clock                                   # Slack's clock (epoch seconds): stamps every ts
        self.history_needs_id = False                        # True: conversations.history wants an ID, as Slack does
        self._last_ts = 0                                    # microseconds
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._responses: list[ResponsePost] = []
        self._failures: dict[str, collections.deque[Step]] = {}
        self._channels: dict[str, str] = {}                  # name -> ID
        self._messages: dict[tuple[str, str], dict] = {}     # (channel ID, ts) -> message
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/``: what ``WebClient(base_url=...)`` wants."""
        return self.url + "/api/"

    # -- scripting and inspection ------------------------------------------------------------

    def fail(self, method: str, *steps: Step) -> "FakeSlack":
        """Queue scripted answers for ``method`` (``"*"``: any API method), used in order."""
        with self._lock:
            self._failures.setdefault(method, collections.deque()).extend(steps)
        return self

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    @property
    def responses(self) -> list[ResponsePost]:
        """Everything POSTed to response URLs handed out by the fake, in order."""
        with self._lock:
            return list(self._responses)

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Block until ``count`` calls to ``method`` have been answered; return them all."""
        def ready() -> bool:
            return sum(1 for c in self._calls if c.method == method and c.status is not None) >= count

        with self._changed:
            if not self._changed.wait_for(ready, timeout):
                raise AssertionError(f"waited {timeout}s for {count} call(s) to {method}; "
                                     f"calls so far: {[c.method for c in self._calls]}")
            return [c for c in self._calls if c.method == method]

    # -- inbound helpers bound to this server ------------------------------------------------

    def response_url(self) -> str:
        return f"{self.url}/response/R{next(self._ids):05d}{uuid.uuid4().hex[:6]}"

    def block_action_body(self, action_id: str, value: str | None = None, user_id: str = DEFAULT_USER_ID,
                          **kwargs: Any) -> str:
        """A click on the button ``action_id`` of the latest posted message that has it."""
        with self._lock:
            found = next(((m, b) for m in sorted(self._messages.values(), key=lambda m: float(m["ts"]), reverse=True)
                          if (b := _find_button(m.get("blocks"), action_id))), None)
        if found is None:
            raise LookupError(f"no posted message has a button with action_id {action_id!r}")
        msg, (block_id, button) = found
        kwargs.setdefault("response_url", self.response_url())
        return block_action_body(action_id, button.get("value") if value is None else value, user_id,
                                 msg["channel"], msg["ts"], block_id=block_id, text=msg.get("text") or "",
                                 blocks=msg.get("blocks") or [], **kwargs)

    def slash_command_body(self, command: str, text: str = "", user_id: str = DEFAULT_USER_ID,
                           channel_id: str = DEFAULT_CHANNEL_ID) -> str:
        return slash_command_body(command, text, user_id, channel_id, response_url=self.response_url())

    # -- HTTP --------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        try:
            if request.path.startswith("/api/") and "/" not in request.path[5:].strip("/"):
                return self._api(request.path[5:].strip("/"), request)
            if request.path.startswith("/response/") and request.method == "POST":
                return self._response_url(request.path[len("/response/"):], request)
            return Response("Not Found (fake Slack)", status=404, content_type="text/plain")
        except Exception as exc:   # a bug in the fake: answer like Slack's fatal_error, visibly
            return self._json(500, {"ok": False, "error": "fatal_error", "fake_slack_exception": repr(exc)})

    @staticmethod
    def _json(status: int, payload: Any, headers: dict | None = None) -> Response:
        return json_response(status, payload, {"X-Slack-Req-Id": uuid.uuid4().hex, **(headers or {})},
                             content_type="application/json; charset=utf-8")

    @staticmethod
    def _parse_body(request: Request) -> dict:
        body: dict[str, Any] = dict(request.args.items())
        if request.mimetype == "application/x-www-form-urlencoded":
            body.update(request.form.items())
        elif request.get_data(cache=True):
            data = json.loads(request.get_data(as_text=True))
            body.update(data if isinstance(data, dict) else {"_raw": data})
        for key in _JSON_FIELDS:
            if isinstance(body.get(key), str) and body[key].strip()[:1] in ("[", "{"):
                body[key] = json.loads(body[key])
        return body

    def _api(self, method: str, request: Request) -> Response:
        body = self._parse_body(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else body.get("token")
        call = Call(method, body, {k.lower(): v for k, v in request.headers.items()}, token)
        with self._lock:
            self._calls.append(call)
            queue = self._failures.get(method) or self._failures.get("*")
            step = queue.popleft() if queue else None
        response = self._run_step(step, call, lambda: self._json(200, self._answer(method, call)))
        with self._changed:
            call.status = response.status_code
            try:
                call.response = json.loads(response.get_data(as_text=True))
            except ValueError:
                call.response = response.get_data(as_text=True)
            self._changed.notify_all()
        return response

    def _response_url(self, response_id: str, request: Request) -> Response:
        post = ResponsePost(response_id, self._parse_body(request), {k.lower(): v for k, v in request.headers.items()})
        with self._changed:
            self._responses.append(post)
            queue = self._failures.get("response_url")
            step = queue.popleft() if queue else None
            self._changed.notify_all()
        return self._run_step(step, post, lambda: Response("ok", status=200, content_type="text/html"))

    def _run_step(self, step: Step | None, call: Any, normal: Callable[[], Response]) -> Response:
        if callable(step):
            step = step(call)
        if step is None:
            return normal()
        if set(step) == {"delay"}:      # a delay alone: accepted now (the message exists), answered late
            response = normal()
            if self.pause(float(step["delay"])):
                return self._json(503, {"ok": False, "error": "service_unavailable"})
            return response
        if self.pause(float(step.get("delay") or 0)):
            return self._json(503, {"ok": False, "error": "service_unavailable"})
        status = int(step.get("status", 200))
        headers = {str(k): str(v) for k, v in (step.get("headers") or {}).items()}
        if status == 429 and not any(k.lower() == "retry-after" for k in headers):
            headers["Retry-After"] = "1"
        if "raw" in step:
            return Response(step["raw"], status=status, headers=headers,
                            content_type=step.get("content_type", "text/html"))
        if "body" in step:
            if isinstance(step["body"], (str, bytes)):
                return Response(step["body"], status=status, headers=headers, content_type="application/json")
            return self._json(status, step["body"], headers)
        payload = {k: v for k, v in step.items() if k not in _CONTROL_KEYS}
        if payload:
            payload.setdefault("ok", "error" not in payload)
            return self._json(status, payload, headers)
        if status >= 400:
            return self._json(status, {"ok": False, "error": _ERROR_BY_STATUS.get(status, "invalid_request")}, headers)
        response = normal()            # a delay alone: accepted, answered late
        response.status_code = status
        response.headers.update(headers)
        return response

    # -- the API methods ---------------------------------------------------------------------

    def _answer(self, method: str, call: Call) -> dict:
        if not call.token:
            return {"ok": False, "error": "not_authed"}
        if call.token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        return handler(call.body) if handler else {"ok": False, "error": "unknown_method"}

    def _channel(self, raw: Any) -> str | None:
        """The channel ID for an ID, ``#name``/name or user ID (its DM)."""
        ch = str(raw or "").strip()
        if not ch:
            return None
        if _ID_RE.fullmatch(ch):
            return "D" + ch[1:] if ch[0] in "UW" else ch
        with self._lock:
            return self._channels.setdefault(ch.lstrip("#"), f"C0AUTO{next(self._ids):04d}")

    def _next_ts(self) -> str:
        """Slack's clock as ``seconds.micros``, unique and increasing even when the clock stands still."""
        with self._lock:
            self._last_ts = micro = max(int(self.clock() * 1_000_000), self._last_ts + 100)
        return f"{micro // 1_000_000}.{micro % 1_000_000:06d}"

    @staticmethod
    def _content_error(body: dict) -> str | None:
        if not (body.get("text") or body.get("blocks") or body.get("attachments")):
            return "no_text"
        blocks = body.get("blocks")
        if blocks is not None and (not isinstance(blocks, list) or len(blocks) > 50 or not all(
                isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)):
            return "invalid_blocks"
        if len(str(body.get("text") or "")) > 40_000:
            return "msg_too_long"
        return None

    def _m_auth_test(self, body: dict) -> dict:
        return {"ok": True, "url": f"https://{TEAM_DOMAIN}.slack.com/", "team": "Fake Workspace", "user": "sdr-bot",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _m_chat_postMessage(self, body: dict) -> dict:
        channel = self._channel(body.get("channel"))
        error = "channel_not_found" if channel is None else self._content_error(body)
        if error:
            return {"ok": False, "error": error}
        with self._lock:
            ts = self._next_ts()
            message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "team": TEAM_ID,
                       "text": body.get("text") or "", "blocks": body.get("blocks") or [], "ts": ts}
            message.update({k: body[k] for k in ("attachments", "metadata", "thread_ts") if body.get(k)})
            self._messages[(channel, ts)] = {**message, "channel": channel}
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _m_chat_update(self, body: dict) -> dict:
        channel, ts = self._channel(body.get("channel")), str(body.get("ts") or "")
        error = "channel_not_found" if channel is None else self._content_error(body)
        if error:
            return {"ok": False, "error": error}
        with self._lock:
            stored = self._messages.get((channel, ts))
            if stored is None:
                return {"ok": False, "error": "message_not_found"}
            stored.update({k: body[k] for k in ("text", "blocks", "attachments", "metadata") if k in body})
            stored["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
            message = {k: v for k, v in stored.items() if k not in ("channel", "ts", "type")}
        return {"ok": True, "channel": channel, "ts": ts, "text": stored["text"], "message": message}

    def _m_chat_delete(self, body: dict) -> dict:
        channel, ts = self._channel(body.get("channel")), str(body.get("ts") or "")
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            if self._messages.pop((channel, ts), None) is None:
                return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": channel, "ts": ts}

    def _m_chat_getPermalink(self, body: dict) -> dict:
        channel, ts = self._channel(body.get("channel")), str(body.get("message_ts") or "")
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            if (channel, ts) not in self._messages:
                return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": channel,
                "permalink": f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    def _m_chat_postEphemeral(self, body: dict) -> dict:
        channel = self._channel(body.get("channel"))
        error = ("channel_not_found" if channel is None else "user_not_in_channel" if not body.get("user")
                 else self._content_error(body))
        if error:
            return {"ok": False, "error": error}
        with self._lock:
            return {"ok": True, "message_ts": self._next_ts()}

    def _m_conversations_history(self, body: dict) -> dict:
        """Newest first, ``oldest``/``latest`` exclusive unless ``inclusive`` (Slack's defaults:
        0 and now), ``limit`` (default 100, at most 999) per page, then ``has_more`` and
        ``response_metadata.next_cursor`` for the next page; metadata only with
        ``include_all_metadata``."""
        raw = str(body.get("channel") or "")
        channel = self._channel(raw) if not self.history_needs_id or _ID_RE.fullmatch(raw) else None
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        try:
            limit = min(max(int(body.get("limit") or 100), 1), 999)
            oldest, latest = float(body.get("oldest") or 0), float(body.get("latest") or 9e12)
            before = _decode_cursor(body.get("cursor"))
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        if before is False:
            return {"ok": False, "error": "invalid_cursor"}
        inclusive = _flag(body.get("inclusive"))
        with self._lock:
            msgs = sorted((dict(m) for (ch, _), m in self._messages.items() if ch == channel),
                          key=lambda m: float(m["ts"]), reverse=True)
        msgs = [m for m in msgs if (oldest <= float(m["ts"]) <= latest if inclusive else oldest < float(m["ts"]) < latest)
                and (before is None or float(m["ts"]) < before)]
        page, more = msgs[:limit], len(msgs) > limit
        for m in page:
            m.pop("channel")
            if not _flag(body.get("include_all_metadata")):
                m.pop("metadata", None)
        answer = {"ok": True, "channel": channel, "messages": page, "has_more": more, "pin_count": 0}
        if more:
            answer["response_metadata"] = {"next_cursor": _encode_cursor(page[-1]["ts"])}
        return answer

    def _m_conversations_open(self, body: dict) -> dict:
        users = [u.strip() for u in str(body.get("users") or "").split(",") if u.strip()]
        if len(users) != 1 or not _ID_RE.fullmatch(users[0]) or users[0][0] not in "UW":
            return {"ok": False, "error": "users_list_not_supplied" if not users else "user_not_found"}
        return {"ok": True, "channel": {"id": self._channel(users[0])}}

    def _m_conversations_list(self, body: dict) -> dict:
        with self._lock:
            channels = [{"id": cid, "name": name, "is_channel": True, "is_archived": False}
                        for name, cid in self._channels.items()]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}


def _flag(value: Any) -> bool:
    return str(value or "").lower() in ("1", "true")


def _encode_cursor(ts: str) -> str:
    """Opaque, like Slack's (base64 of ``next_ts:<ts>``)."""
    import base64
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: Any) -> float | None | bool:
    """The ts a page continues below; None for the first page; False for a cursor we never gave."""
    import base64
    import binascii
    if not cursor:
        return None
    try:
        text = base64.b64decode(str(cursor), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    if not text.startswith("next_ts:"):
        return False
    try:
        return float(text[len("next_ts:"):])
    except ValueError:
        return False


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A started FakeSlack (token ``xoxb-test-token``); stopped after the test."""
    yield from serving(FakeSlack())
