"""A local, scriptable OpenAI-compatible HTTP server for tests.

The code under test (``langchain_openai.ChatOpenAI`` on top of the ``openai`` client) talks real
HTTP to ``127.0.0.1``; nothing leaves the machine. Tests queue the answers they want::

    def test_something(fake_openai):
        fake_openai.script(
            {"content": "Hello!"},
            {"tool_call": {"name": "Extraction", "arguments": {"company": "Acme"}}},
            {"json": {"intent": "pricing"}},
            {"status": 429, "headers": {"Retry-After": "1"}},
            {"delay": 2.5, "content": "slow"},
            lambda req: {"content": "saw " + req["messages"][-1]["content"]},
        )
        llm = ChatOpenAI(base_url=fake_openai.base_url, api_key="test", model="local",
                         max_retries=0)
        ...
        assert fake_openai.requests[0]["model"] == "local"

Each request to ``POST /v1/chat/completions`` consumes one queued step, in order; when the queue
is empty ``.default`` answers (a plain ``"ok"`` unless changed). Remember that the ``openai``
client retries 429/5xx/timeouts by itself (``max_retries``, 2 by default), and every retry is a
new request that consumes a new step.

Step keys (a step is a dict, or a callable ``f(request_json) -> step dict | None``; ``None``
means "use the default"):

``content``       assistant text (``finish_reason: "stop"``).
``json``          an object sent as ``json.dumps(obj)`` in the content (for json_mode).
``tool_call``     ``{"name": ..., "arguments": dict | str, "id": optional}``; a str is sent
                  verbatim, so tests can send malformed JSON. ``finish_reason: "tool_calls"``,
                  ``content: null`` (unless ``content`` is set as well).
``tool_calls``    a list of the above, for several calls in one message.
``refusal``       a refusal string in the message.
``finish_reason`` override the computed finish reason (e.g. ``"length"``).
``usage``         ``{"prompt_tokens": .., "completion_tokens": ..}`` (total is computed);
                  otherwise word counts are used.
``status``        an HTTP status >= 400 answers an OpenAI-style error:
                  ``{"error": {"message", "type", "param", "code"}}``. ``message``, ``type``,
                  ``code`` keys on the step override the defaults; ``body`` (dict or str) replaces
                  the whole body verbatim. ``headers`` adds response headers (any status).
``raw``           a str/bytes body sent verbatim with the step's status (default 200) and
                  ``content_type`` (default ``application/json``) - for malformed responses.
``delay``         seconds to sleep before answering (ends early when the server stops, which
                  then answers 503).
``chunk_delay``   seconds to sleep between streamed chunks.
``model`` / ``id`` override the echoed model / the completion id.

Streaming (``"stream": true`` in the request) answers ``text/event-stream`` with
``chat.completion.chunk`` events: content split by word, tool-call arguments in pieces, a final
chunk with ``finish_reason``, a usage chunk when ``stream_options.include_usage`` is true, then
``data: [DONE]``.
"""
from __future__ import annotations

import collections
import itertools
import json
import re
import threading
import time
from typing import Any, Callable, Iterator, Union

import pytest
from werkzeug.wrappers import Request, Response

from http_fake import HttpFake, json_response, serving

Step = Union[dict, Callable[[dict], Union[dict, None]]]

DEFAULT_STEP: dict = {"content": "ok"}

_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request (fake server)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (fake server)."),
    403: ("permission_error", None, "Permission denied (fake server)."),
    404: ("invalid_request_error", "model_not_found", "Not found (fake server)."),
    409: ("invalid_request_error", None, "Conflict (fake server)."),
    422: ("invalid_request_error", None, "Unprocessable entity (fake server)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake server)."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway (fake server)."),
    503: ("server_error", None, "The engine is currently overloaded (fake server)."),
}


def _words(text: Any) -> int:
    if text is None:
        return 0
    if not isinstance(text, str):
        text = json.dumps(text)
    return len(text.split())


def _content_text(content: Any) -> str:
    """Flatten a request message's content (str or list of parts) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text", "")))
            else:
                parts.append(str(part))
        return " ".join(parts)
    return str(content)


def _split_words(text: str) -> list[str]:
    """Split text into word-sized pieces whose concatenation is exactly the text."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    return pieces or [text]


def _split_fixed(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeOpenAI(HttpFake):
    """A scriptable OpenAI Chat Completions server on 127.0.0.1 (random port)."""

    def __init__(self, default: Step | None = None, models: list[str] | None = None) -> None:
        super().__init__()
        self.default: Step = dict(DEFAULT_STEP) if default is None else default
        self.models: list[str] = list(models or ["local"])
        self._lock = threading.Lock()
        self._queue: collections.deque[Step] = collections.deque()
        self._requests: list[dict] = []
        self._headers: list[dict] = []
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *steps: Step) -> "FakeOpenAI":
        """Queue steps; each chat-completions request consumes one, in order."""
        for step in steps:
            if not (isinstance(step, dict) or callable(step)):
                raise TypeError(f"a step must be a dict or a callable, got {type(step).__name__}")
        with self._lock:
            self._queue.extend(steps)
        return self

    def reset(self) -> None:
        """Drop queued steps and recorded requests; restore the default step."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._headers.clear()
            self.default = dict(DEFAULT_STEP)

    @property
    def requests(self) -> list[dict]:
        """The parsed JSON bodies of chat-completions requests, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict]:
        """The headers of those requests (lower-cased names), same order as ``requests``."""
        with self._lock:
            return list(self._headers)

    @property
    def last_request(self) -> dict | None:
        with self._lock:
            return self._requests[-1] if self._requests else None

    @property
    def pending(self) -> int:
        """How many scripted steps have not been consumed yet."""
        with self._lock:
            return len(self._queue)

    # -- HTTP --------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path in ("/v1/models", "/models") and request.method == "GET":
            return self._json(200, self._models_body())
        if path in ("/v1/chat/completions", "/chat/completions"):
            if request.method != "POST":
                return self._error(405, message=f"Method {request.method} not allowed.")
            return self._chat_completions(request)
        return self._error(
            404,
            message=f"Unknown path {request.method} {request.path} (fake OpenAI server).",
            code="unknown_url",
        )

    def _models_body(self) -> dict:
        now = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": now, "owned_by": "fake-openai"}
                for m in self.models
            ],
        }

    def _chat_completions(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            return self._error(400, message="Request body is not valid JSON.")
        if not isinstance(body, dict):
            return self._error(400, message="Request body must be a JSON object.")

        with self._lock:
            self._requests.append(body)
            self._headers.append({k.lower(): v for k, v in request.headers.items()})
            step: Step = self._queue.popleft() if self._queue else self.default

        if callable(step):
            step = step(body)
        if step is None:
            step = self.default(body) if callable(self.default) else self.default
        if not isinstance(step, dict):
            return self._error(500, message=f"Fake step is not a dict: {step!r}")

        delay = float(step.get("delay") or 0)
        if self.pause(delay):
            return self._error(503, message="Fake OpenAI server is shutting down.")

        extra_headers = dict(step.get("headers") or {})
        status = int(step.get("status", 200))

        if "raw" in step:
            return Response(
                step["raw"],
                status=status,
                headers=extra_headers,
                content_type=step.get("content_type", "application/json"),
            )
        if status >= 400:
            return self._error(
                status,
                message=step.get("message"),
                type_=step.get("type"),
                code=step.get("code"),
                body=step.get("body"),
                headers=extra_headers,
            )

        message, finish_reason = self._build_message(step)
        usage = self._usage(step, body, message)
        completion_id = step.get("id") or f"chatcmpl-fake{next(self._ids):06d}"
        model = step.get("model") or body.get("model") or "local"
        created = int(time.time())

        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunk_delay = float(step.get("chunk_delay") or 0)
            events = self._stream_events(
                completion_id, created, model, message, finish_reason, usage, include_usage,
                chunk_delay,
            )
            headers = {"Cache-Control": "no-cache", **extra_headers}
            return Response(
                events, status=status, headers=headers, content_type="text/event-stream"
            )

        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        return self._json(status, payload, extra_headers)

    # -- building answers --------------------------------------------------------------------

    def _build_message(self, step: dict) -> tuple[dict, str]:
        content: str | None = None
        if "json" in step:
            content = json.dumps(step["json"])
        elif "content" in step:
            content = None if step["content"] is None else str(step["content"])

        calls = list(step.get("tool_calls") or [])
        if "tool_call" in step:
            calls.insert(0, step["tool_call"])
        tool_calls = []
        for i, call in enumerate(calls, start=1):
            args = call.get("arguments", {})
            tool_calls.append(
                {
                    "id": call.get("id") or f"call_{i}",
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
            )

        message: dict = {
            "role": "assistant",
            "content": content,
            "refusal": step.get("refusal"),
            "annotations": [],
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        elif content is None and step.get("refusal") is None:
            message["content"] = ""
        finish_reason = step.get("finish_reason") or ("tool_calls" if tool_calls else "stop")
        return message, finish_reason

    @staticmethod
    def _usage(step: dict, body: dict, message: dict) -> dict:
        given = dict(step.get("usage") or {})
        if "prompt_tokens" not in given:
            prompt = 0
            for m in body.get("messages") or []:
                if isinstance(m, dict):
                    prompt += _words(_content_text(m.get("content"))) + 1
            if body.get("tools"):
                prompt += _words(body["tools"])
            given["prompt_tokens"] = max(prompt, 1)
        if "completion_tokens" not in given:
            completion = _words(message.get("content")) + _words(message.get("refusal"))
            for call in message.get("tool_calls") or []:
                completion += _words(call["function"]["arguments"]) + 1
            given["completion_tokens"] = max(completion, 1)
        given.setdefault("total_tokens", given["prompt_tokens"] + given["completion_tokens"])
        given.setdefault("prompt_tokens_details", {"cached_tokens": 0, "audio_tokens": 0})
        given.setdefault(
            "completion_tokens_details",
            {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        )
        return given

    def _stream_events(
        self,
        completion_id: str,
        created: int,
        model: str,
        message: dict,
        finish_reason: str,
        usage: dict,
        include_usage: bool,
        chunk_delay: float,
    ) -> Iterator[bytes]:
        def chunk(delta: dict, finish: str | None = None) -> dict:
            c = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                c["usage"] = None
            return c

        chunks: list[dict] = []
        content = message.get("content")
        tool_calls = message.get("tool_calls") or []
        first: dict = {"role": "assistant", "content": "" if content is not None else None}
        if message.get("refusal") is not None:
            first["refusal"] = None
        chunks.append(chunk(first))
        if content:
            for piece in _split_words(content):
                chunks.append(chunk({"content": piece}))
        if message.get("refusal"):
            for piece in _split_words(message["refusal"]):
                chunks.append(chunk({"refusal": piece}))
        for index, call in enumerate(tool_calls):
            chunks.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            args = call["function"]["arguments"]
            if args:
                for piece in _split_fixed(args):
                    chunks.append(
                        chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                    )
        chunks.append(chunk({}, finish_reason))
        if include_usage:
            chunks.append(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "service_tier": "default",
                    "system_fingerprint": "fp_fake",
                    "choices": [],
                    "usage": usage,
                }
            )

        for i, c in enumerate(chunks):
            if i and self.pause(chunk_delay):
                return  # server stopping: cut the stream short
            yield f"data: {json.dumps(c)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    # -- helpers -----------------------------------------------------------------------------

    _json = staticmethod(json_response)

    def _error(
        self,
        status: int,
        *,
        message: str | None = None,
        type_: str | None = None,
        code: str | None = None,
        body: Any = None,
        headers: dict | None = None,
    ) -> Response:
        if body is not None:
            if isinstance(body, (str, bytes)):
                return Response(
                    body, status=status, headers=headers or {}, content_type="application/json"
                )
            return self._json(status, body, headers)
        d_type, d_code, d_message = _ERROR_DEFAULTS.get(
            status,
            ("server_error" if status >= 500 else "invalid_request_error", None,
             f"Error {status} (fake server)."),
        )
        payload = {
            "error": {
                "message": message or d_message,
                "type": type_ or d_type,
                "param": None,
                "code": code if code is not None else d_code,
            }
        }
        return self._json(status, payload, headers)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started FakeOpenAI server; stopped after the test."""
    yield from serving(FakeOpenAI())
