"""What the local fake servers share (fake_slack, fake_openai, fake_calcom): a WSGI app served over
real HTTP on 127.0.0.1 in a thread, started and stopped by the test.

A subclass implements ``handle(request) -> Response``. ``start()`` binds a random port the first
time and the same port after a ``stop()`` (so a client built with the old URL reconnects: "the
service is back"); ``stop()`` closes the listening socket (connection refused from then on) and
wakes any request sleeping in ``pause()``. Requests are not logged line by line.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

F = TypeVar("F", bound="HttpFake")


class _QuietHandler(WSGIRequestHandler):
    """Don't print a line per request; real errors still go to the werkzeug logger."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def json_response(status: int, payload: Any, headers: dict | None = None,
                  content_type: str = "application/json") -> Response:
    return Response(json.dumps(payload), status=status, headers=headers or {}, content_type=content_type)


class HttpFake:
    """A local HTTP server for one fake service (random port on 127.0.0.1, kept across restarts)."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def pause(self, seconds: float) -> bool:
        """Sleep in a request; True when the server was stopped meanwhile (answer 503 then)."""
        return seconds > 0 and self._stop_event.wait(seconds)

    def start(self: F) -> F:
        if self._server is not None:
            return self
        self._stop_event.clear()
        port = self.port or 0
        deadline = time.monotonic() + 5.0
        while True:
            try:
                server = make_server(self.host, port, self._wsgi, threaded=True, request_handler=_QuietHandler)
                break
            except (SystemExit, OSError) as exc:   # werkzeug sys.exit(1)s when the port is taken
                if port == 0 or time.monotonic() > deadline:
                    raise RuntimeError(f"{type(self).__name__} could not bind {self.host}:{port}") from exc
                time.sleep(0.05)
        self._server, self.port = server, server.server_port
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_event.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def restart(self: F) -> F:
        """``stop()`` (if running) then ``start()`` on the same port."""
        self.stop()
        return self.start()

    def __enter__(self: F) -> F:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _wsgi(self, environ: dict, start_response: Callable) -> Any:
        return self.handle(Request(environ))(environ, start_response)


def serving(fake: F) -> Iterator[F]:
    """The body of a fixture: the fake started for one test, stopped after it."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
