"""A local, scriptable Slack Web API server for tests (in the spirit of slack-bolt's mock server).

The code under test talks real HTTP to ``127.0.0.1``; nothing leaves the machine::

    def test_handoff(fake_slack):
        fake_slack.add_user("U0REP0001", "dana", "dana@example.com", "America/New_York")
        client = WebClient(token=fake_slack.token, base_url=fake_slack.base_url)
        resp = client.chat_postMessage(channel="#sales", text="New lead", blocks=[...])
        assert resp["channel"].startswith("C") and resp["ts"]
        call = fake_slack.calls_to("chat.postMessage")[0]
        assert call.body["blocks"][0]["type"] == "section"   # decoded, even from a form body

        fake_slack.fail("chat.postMessage", {"status": 429, "headers": {"Retry-After": "1"}})
        fake_slack.stop()      # connection refused from now on ("Slack is down")
        fake_slack.restart()   # back on the same port: a client built with .base_url reconnects

The ``fake_slack`` fixture at the bottom is not global: import it where it is used
(``from fake_slack import fake_slack`` in a test module, or in ``conftest.py`` next to
``fake_openai``).

The outbound side (the app calling Slack)
-----------------------------------------
``POST|GET /api/<method>`` with the token as ``Authorization: Bearer <token>`` (a ``token`` field in
the form/JSON body or query string is accepted too, as Slack does). No token answers
``{"ok": false, "error": "not_authed"}``, a token other than ``.token`` ``invalid_auth`` (both HTTP
200, like Slack). Bodies may be form-encoded, JSON or multipart; query-string params (slack_sdk
sends ``users.info``/``auth.test``/``conversations.info`` args that way) are merged in. JSON-string
fields of form bodies (``blocks``, ``attachments``, ``view``, ``metadata``, ...) are decoded.

Every request is recorded as a :class:`Call` (``method``, ``body``, ``headers`` - headers are
looked up case-insensitively - plus the ``token`` used and the ``status``/``response`` answered).
``.calls``, ``.calls_to(method)``, ``.last_call(method)``, ``.wait_for(method, count, timeout)``
(bolt runs listeners in a thread pool *after* the HTTP ack, so tests usually need to wait).

Implemented methods (others answer ``{"ok": true}``): ``auth.test``, ``api.test``,
``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``, ``chat.delete``,
``chat.getPermalink``, ``users.info``, ``users.lookupByEmail``, ``conversations.info``,
``conversations.open``, ``views.open``, ``views.push``, ``views.update``.

* Timestamps are unique and increasing: ``"1700000000.000100"``, ``"1700000000.000200"``, ...
* ``channel`` may be an ID, ``#name`` or a bare name. Like Slack, responses carry the channel *ID*:
  names of channels added with ``.add_channel`` resolve to their ID, unknown names get an ID
  (``C0AUTO0001``...) and are registered; a user ID (``U...``/``W...``) posts to the DM ``D...``
  (the user ID with its first letter replaced).
* Posted messages are kept (``.messages``, ``.get_message(ts)``); ``chat.update`` edits them
  (fields you don't send are retained, as Slack does for blocks/attachments/metadata).
* ``strict = True`` makes unknown channels ``channel_not_found`` and updates/deletes of unknown
  messages ``message_not_found`` (default: lenient, unknown ones are created on the fly).
* ``trigger_id``\\ s handed out by the inbound helpers below expire after ``trigger_ttl`` seconds
  (3.0, like Slack; ``None`` disables): ``views.open`` then answers ``expired_trigger_id``.
  Trigger IDs the fake did not issue are accepted.

Scripted failures
-----------------
``.fail(method, *steps)`` queues steps for one method (``"*"``: any API method, used after the
method's own queue is empty; ``"response_url"``: posts to response URLs). Each request consumes one
step; when the queue is empty normal behaviour resumes. A step is a dict, or a callable
``f(call) -> dict | None`` (``None``: behave normally). Keys:

``delay``          seconds to sleep first (cut short by ``stop()``, which then answers 503).
``status``         HTTP status. >= 400 without a body answers Slack-style: 429 ->
                   ``{"ok": false, "error": "ratelimited"}`` (+ ``Retry-After: 1`` unless given),
                   500 -> ``internal_error``, 502/503/504 -> ``service_unavailable``, else
                   ``invalid_request``.
``headers``        extra response headers.
``ok``/``error``/any other key: the JSON body (``ok`` defaults to false when ``error`` is given),
                   e.g. ``{"ok": False, "error": "channel_not_found"}`` (HTTP 200).
``body``           a dict/str body sent verbatim.  ``raw``: str/bytes verbatim with
                   ``content_type`` (default ``text/html``) - e.g. an HTML 502 page.

A step with only ``delay``/``headers`` (and a status < 400) delays, then behaves normally.

The inbound side (requests Slack sends to the app)
--------------------------------------------------
``sign(body, secret, timestamp=None)`` -> headers with a valid ``v0`` signature.
``block_action_body(...)``, ``slash_command_body(...)``, ``view_submission_body(...)``,
``event_body(...)`` build request bodies. The same-named *methods* on :class:`FakeSlack` point
``response_url`` at the fake (``http://127.0.0.1:PORT/response/<id>``; what is POSTed there is
recorded in ``.responses``, see ``.wait_for_response``), issue expiring ``trigger_id``\\ s, and
``FakeSlack.block_action_body`` finds the posted message carrying the button (by ``action_id``)
and fills in channel, ts, block_id, value, text and blocks from it::

    body = fake_slack.block_action_body("claim_lead", user_id="U0REP0001")
    r = flask_client.post("/slack/events", data=body, headers=sign(body, SIGNING_SECRET))
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import itertools
import json
import posixpath
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Union
from urllib.parse import parse_qsl, urlencode

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

Step = Union[dict, Callable[["Call"], Union[dict, None]]]

DEFAULT_TOKEN = "xoxb-test-token"
TEAM_ID = "T0FAKE0001"
TEAM_NAME = "Fake Workspace"
TEAM_DOMAIN = "fake-workspace"
BOT_USER_ID = "U0BOT00001"
BOT_ID = "B0BOT00001"
BOT_NAME = "sdr-bot"
APP_ID = "A0FAKE0001"
DEFAULT_USER_ID = "U0REP00001"
DEFAULT_CHANNEL_ID = "C0SALES001"
VERIFICATION_TOKEN = "fake-verification-token"
TS_BASE = 1_700_000_000

# Form fields Slack takes as JSON-encoded strings.
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata", "user_auth_blocks", "chunks", "unfurls")
_STEP_CONTROL_KEYS = {"delay", "status", "headers", "content_type"}
_NO_AUTH_METHODS = {"api.test", "oauth.access", "oauth.v2.access", "oauth.v2.exchange",
                    "openid.connect.token"}
_ERROR_BY_STATUS = {429: "ratelimited", 500: "internal_error", 502: "service_unavailable",
                    503: "service_unavailable", 504: "service_unavailable"}
_ID_RE = re.compile(r"[CDGUW][A-Z0-9]{2,}")


# ---------------------------------------------------------------------------------------------
# Records


class _Headers(dict):
    """A dict of request headers with case-insensitive lookups (keys stored lower-cased)."""

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        super().__init__()
        pairs = items.items() if isinstance(items, Mapping) else items
        for k, v in pairs:
            super().__setitem__(k.lower(), v)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class Call:
    """One request to ``/api/<method>``: what was sent and what the fake answered."""

    method: str
    body: dict
    headers: dict
    token: str | None = None
    status: int | None = None  # filled in once answered
    response: Any = None  # the JSON answered (or the raw text of a scripted raw body)
    at: float = field(default_factory=time.time)


@dataclass
class ResponsePost:
    """One POST to a ``response_url`` handed out by the fake."""

    id: str
    body: dict
    headers: dict
    at: float = field(default_factory=time.time)


class _QuietHandler(WSGIRequestHandler):
    """Don't print a line per request; real errors still go to the werkzeug logger."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Inbound helpers (module level: usable without a server)


def sign(body: bytes | str, secret: str, timestamp: int | None = None,
         content_type: str | None = None) -> dict:
    """Headers Slack sends with a request: ``v0`` HMAC-SHA256 of ``v0:{ts}:{body}``, hex digest.

    ``Content-Type`` is ``application/json`` for a body starting with ``{``, otherwise form-encoded,
    unless given. Bolt rejects timestamps more than 5 minutes off, so pass ``timestamp`` only to
    test that.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    ts = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode("utf-8"), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    if content_type is None:
        content_type = ("application/json" if raw.lstrip().startswith(b"{")
                        else "application/x-www-form-urlencoded")
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": content_type,
    }


def _new_trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**13}.{uuid.uuid4().hex[:24]}"


def _default_response_url() -> str:
    # Not on loopback: the tests' network guard stops it if anything posts there. Use the
    # FakeSlack methods (or pass response_url=fake.response_url()) for a recorded one.
    return f"https://hooks.slack.com/actions/{TEAM_ID}/0000000001/{uuid.uuid4().hex[:24]}"


def _now_action_ts() -> str:
    return f"{time.time():.6f}"


def block_action_body(
    action_id: str,
    value: str | None = None,
    user_id: str = DEFAULT_USER_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    message_ts: str = "1700000000.000100",
    *,
    block_id: str | None = None,
    text: str = "",
    blocks: list | None = None,
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    channel_name: str | None = None,
    action_type: str = "button",
    button_text: str | None = None,
    response_url: str | None = None,
    trigger_id: str | None = None,
    api_app_id: str = APP_ID,
    state: dict | None = None,
    extra: dict | None = None,
) -> str:
    """The form body (``payload=<json>``) of a ``block_actions`` interaction on a message."""
    user_name = user_name or user_id.lower()
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id or f"blk_{action_id}",
        "type": action_type,
        "action_ts": _now_action_ts(),
    }
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": button_text or action_id, "emoji": True}
    if value is not None:
        action["value"] = value
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id,
                      "is_ephemeral": False},
        "trigger_id": trigger_id or _new_trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name or channel_id.lower()},
        "message": {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": api_app_id,
            "team": team_id,
            "ts": message_ts,
            "text": text,
            "blocks": list(blocks or []),
        },
        "state": {"values": state or {}},
        "response_url": response_url or _default_response_url(),
        "actions": [action],
    }
    if extra:
        payload.update(extra)
    return urlencode({"payload": json.dumps(payload)})


def slash_command_body(
    command: str,
    text: str = "",
    user_id: str = DEFAULT_USER_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    *,
    user_name: str | None = None,
    channel_name: str | None = None,
    team_id: str = TEAM_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
    token: str = VERIFICATION_TOKEN,
    api_app_id: str = APP_ID,
) -> str:
    """The form-encoded body of a slash command invocation (``/sdr status`` ...)."""
    if not command.startswith("/"):
        command = "/" + command
    return urlencode({
        "token": token,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name or channel_id.lower(),
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url or _default_response_url(),
        "trigger_id": trigger_id or _new_trigger_id(),
    })


def _input_values(values: Mapping[str, Mapping[str, Any]]) -> dict:
    """``{block_id: {action_id: "text" | {...}}}`` -> Slack's ``state.values`` shape."""
    out: dict[str, dict] = {}
    for block_id, actions in values.items():
        out[block_id] = {}
        for action_id, v in actions.items():
            out[block_id][action_id] = (v if isinstance(v, dict)
                                        else {"type": "plain_text_input", "value": v})
    return out


def view_submission_body(
    callback_id: str,
    values: Mapping[str, Mapping[str, Any]] | None = None,
    user_id: str = DEFAULT_USER_ID,
    *,
    view_id: str = "V0FAKE0001",
    private_metadata: str = "",
    blocks: list | None = None,
    title: str = "Modal",
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
    api_app_id: str = APP_ID,
) -> str:
    """The form body of a ``view_submission`` (a modal's Submit). ``values`` maps block_id ->
    action_id -> text (a plain_text_input) or a full state dict."""
    user_name = user_name or user_id.lower()
    payload = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or _new_trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "title": {"type": "plain_text", "text": title},
            "blocks": list(blocks or []),
            "state": {"values": _input_values(values or {})},
            "hash": f"{int(time.time())}.fakehash",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": api_app_id,
            "bot_id": BOT_ID,
            "external_id": "",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return urlencode({"payload": json.dumps(payload)})


def event_body(event: dict, *, team_id: str = TEAM_ID, api_app_id: str = APP_ID,
               event_id: str | None = None) -> str:
    """The JSON body of an Events API ``event_callback`` wrapping ``event``
    (e.g. ``{"type": "app_mention", "user": "U..", "text": "<@U0BOT00001> hi", "ts": .., "channel": ..}``)."""
    now = int(time.time())
    event = dict(event)
    event.setdefault("event_ts", f"{time.time():.6f}")
    return json.dumps({
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": now,
        "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": BOT_USER_ID,
                            "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    })


# ---------------------------------------------------------------------------------------------
# The server


def _tz_info(tz: str) -> tuple[int, str]:
    """(offset seconds, label) for an IANA zone, now; (0, tz) if zoneinfo lacks it."""
    try:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        now = datetime.now(ZoneInfo(tz))
        offset = now.utcoffset()
        return (int(offset.total_seconds()) if offset else 0), (now.tzname() or tz)
    except Exception:
        return 0, tz


def _find_action(blocks: Any, action_id: str) -> tuple[str | None, dict] | None:
    """(block_id, element) of the interactive element with ``action_id`` in a block list."""
    if not isinstance(blocks, list):
        return None
    for block in blocks:
        if not isinstance(block, dict):
            continue
        candidates = list(block.get("elements") or [])
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict):
                candidates.append(block[key])
        for el in candidates:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return block.get("block_id"), el
    return None


class FakeSlack:
    """A scriptable Slack Web API on 127.0.0.1 (random port, kept across stop/restart)."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, strict: bool = False,
                 trigger_ttl: float | None = 3.0) -> None:
        self.token = token
        self.strict = strict
        self.trigger_ttl = trigger_ttl
        self.team_id = TEAM_ID
        self.team_name = TEAM_NAME
        self.bot_user_id = BOT_USER_ID
        self.bot_id = BOT_ID
        self.bot_name = BOT_NAME
        self.app_id = APP_ID
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop_event = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._calls: list[Call] = []
        self._responses: list[ResponsePost] = []
        self._failures: dict[str, collections.deque[Step]] = {}
        self._users: dict[str, dict] = {}
        self._channels: dict[str, dict] = {}
        self._messages: dict[tuple[str, str], dict] = {}
        self._views: dict[str, dict] = {}
        self._triggers: dict[str, float] = {}
        self._ts_counter = itertools.count(1)
        self._ids = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/`` - what ``WebClient(base_url=...)`` wants."""
        if self.port is None:
            raise RuntimeError("FakeSlack has never been started")
        return f"http://{self.host}:{self.port}/api/"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> "FakeSlack":
        """Start serving; after a ``stop()`` this reuses the same port."""
        if self._server is not None:
            return self
        self._stop_event.clear()
        port = self.port or 0
        deadline = time.monotonic() + 5.0
        while True:
            try:
                server = make_server(self.host, port, self._wsgi_app, threaded=True,
                                     request_handler=_QuietHandler)
                break
            except (SystemExit, OSError) as exc:  # werkzeug sys.exit(1)s when the port is taken
                if port == 0 or time.monotonic() > deadline:
                    raise RuntimeError(f"FakeSlack could not bind {self.host}:{port}") from exc
                time.sleep(0.05)
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-slack-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket: new connections are refused.

        A request sleeping in a scripted ``delay`` wakes up and answers 503.
        """
        self._stop_event.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def restart(self) -> "FakeSlack":
        """``stop()`` (if running) then ``start()`` on the same port - "Slack is back"."""
        self.stop()
        return self.start()

    def __enter__(self) -> "FakeSlack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- workspace data ----------------------------------------------------------------------

    def add_user(self, id: str, name: str, email: str | None = None,
                 tz: str = "America/Los_Angeles", *, real_name: str | None = None,
                 is_bot: bool = False, **extra: Any) -> dict:
        """Register a user for ``users.info`` / ``users.lookupByEmail``; returns the user dict."""
        offset, label = _tz_info(tz)
        real_name = real_name or name
        profile = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": name,
            "display_name_normalized": name,
            "first_name": real_name.split(" ")[0],
            "last_name": " ".join(real_name.split(" ")[1:]),
            "title": "",
            "phone": "",
            "status_text": "",
            "status_emoji": "",
            "avatar_hash": "g000fake0000",
            "image_72": "https://a.slack-edge.com/fake/avatar_72.png",
            "team": self.team_id,
        }
        if email is not None:
            profile["email"] = email
        user = {
            "id": id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "color": "9f69e7",
            "real_name": real_name,
            "tz": tz,
            "tz_label": label,
            "tz_offset": offset,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
            "has_2fa": False,
        }
        user.update(extra)
        with self._lock:
            self._users[id] = user
        return user

    def add_channel(self, id: str, name: str, *, is_private: bool = False,
                    is_member: bool = True, **extra: Any) -> dict:
        """Register a channel for name resolution and ``conversations.info``."""
        channel = self._channel_dict(id, name.lstrip("#"), is_private=is_private,
                                     is_member=is_member)
        channel.update(extra)
        with self._lock:
            self._channels[id] = channel
        return channel

    def _channel_dict(self, id: str, name: str, *, is_private: bool = False,
                      is_member: bool = True) -> dict:
        now = int(time.time())
        if id.startswith("D"):
            return {"id": id, "created": now, "is_im": True, "is_org_shared": False,
                    "user": "U" + id[1:], "is_user_deleted": False, "priority": 0}
        return {
            "id": id, "name": name, "name_normalized": name, "is_channel": not is_private,
            "is_group": False, "is_im": False, "is_mpim": False, "is_private": is_private,
            "created": now, "is_archived": False, "is_general": name == "general",
            "unlinked": 0, "is_shared": False, "is_org_shared": False, "is_ext_shared": False,
            "is_pending_ext_shared": False, "is_member": is_member, "creator": self.bot_user_id,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
        }

    def _resolve_channel(self, raw: Any, *, allow_names: bool = True) -> str | None:
        """Channel ID for an ID/#name/user ID, registering unknown ones unless strict."""
        ch = str(raw or "").strip()
        if not ch:
            return None
        with self._lock:
            if ch in self._channels:
                return ch
            name = ch[1:] if ch.startswith("#") else ch
            for c in self._channels.values():
                if c.get("name") == name:
                    return c["id"] if allow_names else None
            if _ID_RE.fullmatch(ch) and ch[0] in "UW":
                dm = "D" + ch[1:]
                self._channels.setdefault(dm, self._channel_dict(dm, dm.lower()))
                return dm
            if self.strict:
                return None
            if _ID_RE.fullmatch(ch):
                self._channels[ch] = self._channel_dict(ch, ch.lower())
                return ch
            if not allow_names:
                return None
            cid = f"C0AUTO{next(self._ids):04d}"
            self._channels[cid] = self._channel_dict(cid, name)
            return cid

    def _next_ts(self) -> str:
        micro = next(self._ts_counter) * 100
        return f"{TS_BASE + micro // 1_000_000}.{micro % 1_000_000:06d}"

    # -- scripting ---------------------------------------------------------------------------

    def fail(self, method: str, *responses: Step) -> "FakeSlack":
        """Queue scripted responses for ``method`` (``"*"`` = any API method), used in order."""
        for step in responses:
            if not (isinstance(step, dict) or callable(step)):
                raise TypeError(f"a response must be a dict or a callable, got {type(step).__name__}")
        with self._lock:
            self._failures.setdefault(method, collections.deque()).extend(responses)
        return self

    def pending(self, method: str | None = None) -> int:
        """Scripted responses not consumed yet (for one method, or all)."""
        with self._lock:
            if method is not None:
                return len(self._failures.get(method, ()))
            return sum(len(q) for q in self._failures.values())

    def reset(self) -> None:
        """Forget calls, response-URL posts, scripted failures, messages and views.

        Users, channels, the token and the ts counter (ts stay unique) are kept.
        """
        with self._lock:
            self._calls.clear()
            self._responses.clear()
            self._failures.clear()
            self._messages.clear()
            self._views.clear()
            self._triggers.clear()

    # -- inspection --------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every API request, in arrival order (a copy of the list)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def last_call(self, method: str | None = None) -> Call | None:
        with self._lock:
            calls = [c for c in self._calls if method is None or c.method == method]
            return calls[-1] if calls else None

    @property
    def methods(self) -> list[str]:
        """The method names called, in order (handy in assertion messages)."""
        with self._lock:
            return [c.method for c in self._calls]

    @property
    def responses(self) -> list[ResponsePost]:
        """Everything POSTed to response URLs handed out by the fake, in order."""
        with self._lock:
            return list(self._responses)

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Block until ``count`` calls to ``method`` have been *answered*; return them all."""
        def ready() -> bool:
            return sum(1 for c in self._calls if c.method == method and c.status is not None) >= count

        with self._changed:
            if not self._changed.wait_for(ready, timeout):
                raise AssertionError(f"waited {timeout}s for {count} call(s) to {method}; "
                                     f"calls so far: {[c.method for c in self._calls]}")
            return [c for c in self._calls if c.method == method]

    def wait_for_response(self, count: int = 1, timeout: float = 5.0) -> list[ResponsePost]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._responses) >= count, timeout):
                raise AssertionError(f"waited {timeout}s for {count} response_url post(s); "
                                     f"got {len(self._responses)}")
            return list(self._responses)

    @property
    def messages(self) -> list[dict]:
        """Messages posted (and not deleted), oldest first; each has its ``channel``."""
        with self._lock:
            return sorted((dict(m) for m in self._messages.values()), key=lambda m: float(m["ts"]))

    def get_message(self, ts: str, channel: str | None = None) -> dict | None:
        with self._lock:
            for (ch, mts), m in self._messages.items():
                if mts == ts and (channel is None or ch == channel):
                    return dict(m)
        return None

    @property
    def views(self) -> list[dict]:
        with self._lock:
            return [dict(v) for v in self._views.values()]

    # -- inbound helpers bound to this server ------------------------------------------------

    def response_url(self, response_id: str | None = None) -> str:
        response_id = response_id or f"R{next(self._ids):05d}{uuid.uuid4().hex[:6]}"
        return f"http://{self.host}:{self.port}/response/{response_id}"

    def trigger_id(self) -> str:
        """A fresh trigger_id that ``views.open`` accepts for ``trigger_ttl`` seconds."""
        tid = _new_trigger_id()
        with self._lock:
            self._triggers[tid] = time.monotonic()
        return tid

    def block_action_body(self, action_id: str, value: str | None = None,
                          user_id: str = DEFAULT_USER_ID, channel_id: str | None = None,
                          message_ts: str | None = None, **kwargs: Any) -> str:
        """Like the module function, but about a message this fake holds: by ``message_ts``, or
        else the latest posted message with an element whose ``action_id`` matches. Channel,
        ts, block_id, value, text and blocks come from that message unless given."""
        with self._lock:
            candidates = sorted(self._messages.values(), key=lambda m: float(m["ts"]), reverse=True)
            msg = None
            for m in candidates:
                if message_ts is not None and m["ts"] != message_ts:
                    continue
                if channel_id is not None and m["channel"] != channel_id:
                    continue
                if message_ts is not None or _find_action(m.get("blocks"), action_id):
                    msg = m
                    break
            user = self._users.get(user_id)
        if msg is None and (channel_id is None or message_ts is None):
            raise LookupError(f"no posted message has an element with action_id {action_id!r}; "
                              "pass channel_id and message_ts")
        if msg is not None:
            channel_id = msg["channel"]
            message_ts = msg["ts"]
            kwargs.setdefault("text", msg.get("text") or "")
            kwargs.setdefault("blocks", msg.get("blocks") or [])
            found = _find_action(msg.get("blocks"), action_id)
            if found:
                block_id, element = found
                kwargs.setdefault("block_id", block_id)
                kwargs.setdefault("action_type", element.get("type", "button"))
                if isinstance(element.get("text"), dict):
                    kwargs.setdefault("button_text", element["text"].get("text"))
                if value is None:
                    value = element.get("value")
            with self._lock:
                chan = self._channels.get(channel_id)
            if chan and chan.get("name"):
                kwargs.setdefault("channel_name", chan["name"])
        if user:
            kwargs.setdefault("user_name", user["name"])
        kwargs.setdefault("team_id", self.team_id)
        kwargs.setdefault("api_app_id", self.app_id)
        kwargs.setdefault("response_url", self.response_url())
        kwargs.setdefault("trigger_id", self.trigger_id())
        return block_action_body(action_id, value, user_id, channel_id, message_ts,  # type: ignore[arg-type]
                                 **kwargs)

    def slash_command_body(self, command: str, text: str = "", user_id: str = DEFAULT_USER_ID,
                           channel_id: str = DEFAULT_CHANNEL_ID, **kwargs: Any) -> str:
        with self._lock:
            user = self._users.get(user_id)
            chan = self._channels.get(channel_id)
        if user:
            kwargs.setdefault("user_name", user["name"])
        if chan and chan.get("name"):
            kwargs.setdefault("channel_name", chan["name"])
        kwargs.setdefault("team_id", self.team_id)
        kwargs.setdefault("api_app_id", self.app_id)
        kwargs.setdefault("response_url", self.response_url())
        kwargs.setdefault("trigger_id", self.trigger_id())
        return slash_command_body(command, text, user_id, channel_id, **kwargs)

    def view_submission_body(self, callback_id: str | None = None,
                             values: Mapping[str, Mapping[str, Any]] | None = None,
                             user_id: str = DEFAULT_USER_ID, *, view_id: str | None = None,
                             **kwargs: Any) -> str:
        """Submit a modal this fake opened (by ``view_id``, else the latest with ``callback_id``)."""
        with self._lock:
            view = None
            for v in reversed(list(self._views.values())):
                if (view_id is None or v["id"] == view_id) and (
                        callback_id is None or v.get("callback_id") == callback_id):
                    view = v
                    break
        if view is not None:
            view_id = view["id"]
            callback_id = callback_id or view.get("callback_id", "")
            kwargs.setdefault("private_metadata", view.get("private_metadata", ""))
            kwargs.setdefault("blocks", view.get("blocks", []))
        if callback_id is None:
            raise LookupError("no view opened with that callback_id/view_id; pass callback_id")
        kwargs.setdefault("team_id", self.team_id)
        kwargs.setdefault("api_app_id", self.app_id)
        return view_submission_body(callback_id, values, user_id, view_id=view_id or "V0FAKE0001",
                                    **kwargs)

    def event_body(self, event: dict, **kwargs: Any) -> str:
        kwargs.setdefault("team_id", self.team_id)
        kwargs.setdefault("api_app_id", self.app_id)
        return event_body(event, **kwargs)

    # -- HTTP --------------------------------------------------------------------------------

    def _wsgi_app(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except Exception as exc:  # a bug in the fake: answer like Slack's fatal_error, visibly
            response = self._json(500, {"ok": False, "error": "fatal_error",
                                        "fake_slack_exception": repr(exc)})
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = posixpath.normpath(request.path)
        if path.startswith("/api/"):
            method = path[len("/api/"):].strip("/")
            if method and "/" not in method:
                return self._api(method, request)
        if path.startswith("/response/") and request.method == "POST":
            return self._response_url(path[len("/response/"):], request)
        return Response("Not Found (fake Slack)", status=404, content_type="text/plain")

    @staticmethod
    def _parse_body(request: Request) -> dict:
        body: dict[str, Any] = dict(request.args.items())
        mimetype = request.mimetype
        if mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            body.update(request.form.items())
            for name, f in request.files.items():
                body[name] = f.filename
        else:
            raw = request.get_data(cache=True)
            if raw:
                text = raw.decode(request.mimetype_params.get("charset") or "utf-8", "replace")
                data: Any = None
                try:
                    data = json.loads(text)
                except ValueError:
                    if mimetype != "application/json":
                        data = dict(parse_qsl(text, keep_blank_values=True)) or None
                if isinstance(data, dict):
                    body.update(data)
                else:
                    body["_raw"] = text
        for key in _JSON_FIELDS:
            value = body.get(key)
            if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
                try:
                    body[key] = json.loads(value)
                except ValueError:
                    pass
        return body

    def _api(self, method: str, request: Request) -> Response:
        body = self._parse_body(request)
        auth = request.headers.get("Authorization", "")
        token: str | None = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if not token and isinstance(body.get("token"), str):
            token = body["token"]
        call = Call(method=method, body=body, headers=_Headers(request.headers.items()), token=token)
        with self._lock:
            self._calls.append(call)
            queue = self._failures.get(method)
            if not queue:
                queue = self._failures.get("*")
            step: Step | None = queue.popleft() if queue else None

        response = self._run_step(step, call, lambda: self._json(200, self._handle(method, call)))
        with self._changed:
            call.status = response.status_code
            try:
                call.response = json.loads(response.get_data(as_text=True))
            except ValueError:
                call.response = response.get_data(as_text=True)
            self._changed.notify_all()
        return response

    def _run_step(self, step: Step | None, call: Any, normal: Callable[[], Response]) -> Response:
        if callable(step):
            step = step(call)
        if step is None:
            return normal()
        if not isinstance(step, dict):
            return self._json(500, {"ok": False, "error": "fatal_error",
                                    "fake_slack_exception": f"step is not a dict: {step!r}"})
        delay = float(step.get("delay") or 0)
        if delay > 0 and self._stop_event.wait(delay):
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
                return Response(step["body"], status=status, headers=headers,
                                content_type=step.get("content_type", "application/json"))
            return self._json(status, step["body"], headers)
        payload = {k: v for k, v in step.items() if k not in _STEP_CONTROL_KEYS}
        if payload:
            payload.setdefault("ok", "error" not in payload)
            return self._json(status, payload, headers)
        if status >= 400:
            error = _ERROR_BY_STATUS.get(status, "invalid_request")
            return self._json(status, {"ok": False, "error": error}, headers)
        response = normal()
        response.status_code = status
        response.headers.update(headers)
        return response

    def _response_url(self, response_id: str, request: Request) -> Response:
        body = self._parse_body(request)
        post = ResponsePost(response_id, body, _Headers(request.headers.items()))
        with self._changed:
            self._responses.append(post)
            queue = self._failures.get("response_url")
            step: Step | None = queue.popleft() if queue else None
            self._changed.notify_all()
        return self._run_step(step, post, lambda: Response("ok", status=200, content_type="text/html"))

    @staticmethod
    def _json(status: int, payload: Any, headers: dict | None = None) -> Response:
        hdrs = {"X-Slack-Req-Id": uuid.uuid4().hex, **(headers or {})}
        return Response(json.dumps(payload), status=status, headers=hdrs,
                        content_type="application/json; charset=utf-8")

    # -- API methods -------------------------------------------------------------------------

    def _handle(self, method: str, call: Call) -> dict:
        if method not in _NO_AUTH_METHODS:
            if not call.token:
                return {"ok": False, "error": "not_authed"}
            if call.token != self.token:
                return {"ok": False, "error": "invalid_auth"}
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": True}
        return handler(call.body)

    def _m_api_test(self, body: dict) -> dict:
        args = {k: v for k, v in body.items() if k != "token"}
        if "error" in args:
            return {"ok": False, "error": args["error"], "args": args}
        return {"ok": True, "args": args} if args else {"ok": True}

    def _m_auth_test(self, body: dict) -> dict:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    @staticmethod
    def _check_content(body: dict) -> str | None:
        blocks = body.get("blocks")
        if blocks is not None:
            if not isinstance(blocks, list) or len(blocks) > 50 or not all(
                    isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks):
                return "invalid_blocks"
        attachments = body.get("attachments")
        if attachments is not None and not isinstance(attachments, list):
            return "invalid_attachments"
        if len(str(body.get("text") or "")) > 40_000:
            return "msg_too_long"
        return None

    def _m_chat_postMessage(self, body: dict) -> dict:
        channel = self._resolve_channel(body.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not (body.get("text") or body.get("blocks") or body.get("attachments")
                or body.get("markdown_text")):
            return {"ok": False, "error": "no_text"}
        error = self._check_content(body)
        if error:
            return {"ok": False, "error": error}
        with self._lock:
            ts = self._next_ts()
            message: dict[str, Any] = {
                "type": "message",
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
                "app_id": self.app_id,
                "team": self.team_id,
                "text": body.get("text") or body.get("markdown_text") or "",
                "blocks": body.get("blocks") or [],
                "ts": ts,
            }
            for key in ("attachments", "metadata", "thread_ts"):
                if body.get(key):
                    message[key] = body[key]
            self._messages[(channel, ts)] = {**message, "channel": channel}
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _m_chat_update(self, body: dict) -> dict:
        channel = self._resolve_channel(body.get("channel"), allow_names=not self.strict)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        ts = str(body.get("ts") or "")
        if not ts:
            return {"ok": False, "error": "message_not_found"}
        if not (body.get("text") or body.get("blocks") or body.get("attachments")
                or body.get("markdown_text")):
            return {"ok": False, "error": "no_text"}
        error = self._check_content(body)
        if error:
            return {"ok": False, "error": error}
        with self._lock:
            stored = self._messages.get((channel, ts))
            if stored is None:
                if self.strict:
                    return {"ok": False, "error": "message_not_found"}
                stored = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id,
                          "app_id": self.app_id, "team": self.team_id, "text": "", "blocks": [],
                          "ts": ts, "channel": channel}
                self._messages[(channel, ts)] = stored
            if "text" in body or "markdown_text" in body:
                stored["text"] = body.get("text") or body.get("markdown_text") or ""
            for key in ("blocks", "attachments", "metadata"):
                if key in body:
                    stored[key] = body[key]
            stored["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
            message = {k: v for k, v in stored.items() if k not in ("channel", "ts", "type")}
        return {"ok": True, "channel": channel, "ts": ts, "text": stored["text"], "message": message}

    def _m_chat_postEphemeral(self, body: dict) -> dict:
        channel = self._resolve_channel(body.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not body.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        if not (body.get("text") or body.get("blocks") or body.get("attachments")):
            return {"ok": False, "error": "no_text"}
        error = self._check_content(body)
        if error:
            return {"ok": False, "error": error}
        with self._lock:
            return {"ok": True, "message_ts": self._next_ts()}

    def _m_chat_delete(self, body: dict) -> dict:
        channel = self._resolve_channel(body.get("channel"), allow_names=not self.strict)
        ts = str(body.get("ts") or "")
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            if self._messages.pop((channel, ts), None) is None and self.strict:
                return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": channel, "ts": ts}

    def _m_chat_getPermalink(self, body: dict) -> dict:
        channel = self._resolve_channel(body.get("channel"), allow_names=False)
        ts = str(body.get("message_ts") or "")
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not ts:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": channel,
                "permalink": f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    def _m_users_info(self, body: dict) -> dict:
        with self._lock:
            user = self._users.get(str(body.get("user") or ""))
            if user is None:
                return {"ok": False, "error": "user_not_found"}
            user = json.loads(json.dumps(user))
        if str(body.get("include_locale", "")).lower() in ("1", "true"):
            user["locale"] = "en-US"
        return {"ok": True, "user": user}

    def _m_users_lookupByEmail(self, body: dict) -> dict:
        email = str(body.get("email") or "").lower()
        with self._lock:
            for user in self._users.values():
                if str(user["profile"].get("email", "")).lower() == email and email:
                    return {"ok": True, "user": json.loads(json.dumps(user))}
        return {"ok": False, "error": "users_not_found"}

    def _m_conversations_history(self, body: dict) -> dict:
        channel = self._resolve_channel(body.get("channel"), allow_names=not self.strict)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        limit = int(body.get("limit") or 100)
        with_meta = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        with self._lock:
            msgs = [dict(m) for (ch, _ts), m in self._messages.items() if ch == channel]
        msgs.sort(key=lambda m: m["ts"], reverse=True)
        out = []
        for m in msgs[:limit]:
            m.pop("channel", None)
            if not with_meta:
                m.pop("metadata", None)
            out.append(m)
        return {"ok": True, "channel": channel, "messages": out, "has_more": len(msgs) > limit}

    def _m_conversations_info(self, body: dict) -> dict:
        with self._lock:
            channel = self._channels.get(str(body.get("channel") or ""))
            if channel is None:
                return {"ok": False, "error": "channel_not_found"}
            return {"ok": True, "channel": dict(channel)}

    def _m_conversations_open(self, body: dict) -> dict:
        if body.get("channel"):
            channel = self._resolve_channel(body["channel"], allow_names=False)
            if channel is None:
                return {"ok": False, "error": "channel_not_found"}
            return {"ok": True, "channel": {"id": channel}}
        users = [u.strip() for u in str(body.get("users") or "").split(",") if u.strip()]
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        if len(users) == 1:
            cid = self._resolve_channel(users[0], allow_names=False)
            if cid is None:
                return {"ok": False, "error": "user_not_found"}
        else:
            digest = hashlib.sha1(",".join(sorted(users)).encode()).hexdigest()[:8].upper()
            cid = f"G0MPIM{digest}"
            with self._lock:
                self._channels.setdefault(cid, {**self._channel_dict(cid, f"mpdm-{cid.lower()}",
                                                                     is_private=True),
                                                "is_mpim": True})
        return {"ok": True, "no_op": False, "already_open": False, "channel": {"id": cid}}

    def _check_trigger(self, trigger_id: str) -> str | None:
        with self._lock:
            issued = self._triggers.get(trigger_id)
        if issued is not None and self.trigger_ttl is not None and (
                time.monotonic() - issued > self.trigger_ttl):
            return "expired_trigger_id"
        return None

    def _store_view(self, view: dict, view_id: str | None = None,
                    previous: dict | None = None) -> dict:
        with self._lock:
            view_id = view_id or f"V0FAKE{next(self._ids):04d}"
            stored = {
                "id": view_id,
                "team_id": self.team_id,
                "type": view.get("type", "modal"),
                "blocks": view.get("blocks", []),
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view.get("callback_id", ""),
                "external_id": view.get("external_id", ""),
                "state": {"values": {}},
                "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
                "clear_on_close": bool(view.get("clear_on_close", False)),
                "notify_on_close": bool(view.get("notify_on_close", False)),
                "root_view_id": (previous or {}).get("root_view_id", view_id),
                "previous_view_id": None,
                "app_id": self.app_id,
                "bot_id": self.bot_id,
            }
            for key in ("title", "submit", "close"):
                if key in view:
                    stored[key] = view[key]
            self._views[view_id] = stored
            return dict(stored)

    def _view_arg(self, body: dict) -> dict | None:
        view = body.get("view")
        return view if isinstance(view, dict) and isinstance(view.get("type"), str) else None

    def _m_views_open(self, body: dict) -> dict:
        trigger_id = str(body.get("trigger_id") or body.get("interactivity_pointer") or "")
        view = self._view_arg(body)
        if not trigger_id or view is None:
            missing = "trigger_id" if not trigger_id else "view"
            return {"ok": False, "error": "invalid_arguments",
                    "response_metadata": {"messages": [f"[ERROR] missing required field: {missing}"]}}
        error = self._check_trigger(trigger_id)
        if error:
            return {"ok": False, "error": error}
        return {"ok": True, "view": self._store_view(view)}

    _m_views_push = _m_views_open

    def _m_views_update(self, body: dict) -> dict:
        view = self._view_arg(body)
        if view is None:
            return {"ok": False, "error": "invalid_arguments",
                    "response_metadata": {"messages": ["[ERROR] missing required field: view"]}}
        with self._lock:
            view_id = body.get("view_id")
            if not view_id and body.get("external_id"):
                view_id = next((v["id"] for v in self._views.values()
                                if v.get("external_id") == body["external_id"]), None)
            previous = self._views.get(str(view_id or ""))
        if previous is None:
            return {"ok": False, "error": "not_found"}
        return {"ok": True, "view": self._store_view(view, previous["id"], previous)}


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A started FakeSlack server (token ``xoxb-test-token``); stopped after the test."""
    server = FakeSlack().start()
    try:
        yield server
    finally:
        server.stop()
