"""The production web server behind `sdr serve` and `sdr demo`: gunicorn with threaded workers
(the `gthread` worker class), and a bound on the requests each worker has in flight.

Shape of a run: one master process (the `sdr` command itself) binds the port and forks WORKERS
worker processes; each worker builds its own app by calling the factory it was given *after the
fork* — its own database engine, Chroma client, embedding model and outbox worker thread; nothing
that holds a connection, a file lock or a native thread pool is shared across the fork. Each worker
serves with a pool of threads.

Overload (never a silent wait of tens of seconds, never a 500): `InFlightLimit` lets at most
`max_in_flight` requests of a worker run the app at once; a request that cannot start within
`queue_wait_s` (2 s) is answered at once with 503, `Retry-After: 1` and the API's JSON error
`{"error": {"code": "overloaded", "message": ...}}`. The worker's thread pool is larger than the
limit (`spare` threads), so a request beyond the limit reaches the middleware and is answered
instead of waiting in the pool's queue; gunicorn accepts at most `worker_connections` connections
per worker (in flight + spares + a short queue) and the kernel holds at most `backlog` more.
Responses close the connection (no keep-alive), so every request queues fairly in the backlog.

Stopping: Ctrl+C (SIGINT) or SIGQUIT is a quick shutdown: the master stops listening and tells
the workers to quit; a worker still busy after `QUICK_EXIT_S` (1.5 s) exits anyway. SIGTERM is
graceful: requests in flight (a chat stream lasts up to ~30 s) get `graceful_timeout` (30 s).
"""
from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

WSGIApp = Callable[..., Iterable[bytes]]

QUEUE_WAIT_S = 2.0      # longest a request waits for a free slot before it gets 503
RETRY_AFTER_S = 1       # what a 503 tells the client to wait, in seconds
QUICK_EXIT_S = 1.5      # on Ctrl+C a worker gives requests in flight this long, then exits
TIMEOUT_S = 60          # gunicorn's heartbeat: a worker silent this long is restarted
GRACEFUL_TIMEOUT_S = 30  # on SIGTERM requests in flight (a chat stream: up to ~30 s) may finish
KEEPALIVE_S = 0         # no keep-alive: see ServerOptions.gunicorn_config
UNLIMITED_PATHS = ("/healthz",)   # a load balancer's probe is never turned away


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask; the machine's count elsewhere), ≥ 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


DEFAULT_THREADS = 4


@dataclass(frozen=True)
class ServerOptions:
    """How to serve. `workers`: processes (default: one per core); `threads`: requests each worker
    works on at once (default 4: a turn waits on the database and, with a model, on the network, so
    a few threads keep a core busy); `max_in_flight`: the in-flight bound per worker (default =
    `threads`); `queue_wait_s`: seconds a request may wait for a slot before its 503."""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 0
    threads: int = DEFAULT_THREADS
    max_in_flight: int = 0
    queue_wait_s: float = QUEUE_WAIT_S

    def __post_init__(self) -> None:
        if self.workers <= 0:
            object.__setattr__(self, "workers", cores())
        if self.threads <= 0:
            raise ValueError("threads must be at least 1")
        if self.max_in_flight <= 0:
            object.__setattr__(self, "max_in_flight", self.threads)

    @property
    def pool_threads(self) -> int:
        """Threads per worker: the in-flight slots plus as many spares (at least 2), which only ever
        wait ≤ queue_wait_s for a slot and then answer 503."""
        return self.max_in_flight + max(2, self.max_in_flight)

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def gunicorn_config(self) -> dict[str, Any]:
        """The gunicorn settings these options mean (names as in gunicorn's docs)."""
        pool = self.pool_threads
        return {
            "bind": [self.bind],
            "workers": self.workers,
            "worker_class": "gthread",
            "threads": pool,
            # connections a worker holds: its pool plus a short queue; the next wait in the kernel's
            # backlog, where any worker may take them, first come first served. Keep-alive is off:
            # a busy kept-alive connection never leaves its worker, so with it clients beyond
            # worker_connections could wait in the backlog as long as the others keep talking
            # (measured: 20 clients, 1 worker, max wait 30 s with keep-alive).
            "worker_connections": pool + self.max_in_flight,
            "backlog": min(2048, max(32, 2 * self.workers * pool)),
            "timeout": TIMEOUT_S,
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "keepalive": KEEPALIVE_S,
            "preload_app": False,          # each worker builds its app after the fork
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "sdr",
            "control_socket_disable": True,   # no gunicornc socket shared by every server of this user (~/.gunicorn)
        }


def overloaded_body(message: str) -> bytes:
    """The API's JSON error for an overloaded server, as bytes."""
    return json.dumps({"error": {"code": "overloaded", "message": message}}).encode()


class InFlightLimit:
    """WSGI middleware: at most `limit` requests run `app` at once in this process; the next waits
    up to `wait_s` seconds for a slot and then gets 503 + `Retry-After` + the JSON error. A slot is
    held until the response has been sent (a streamed response holds it while it streams) — it is
    released when the server closes the response iterable, or when the app raises.

    `exempt` paths (/healthz) bypass the limit. `rejected` counts the 503s answered."""

    def __init__(self, app: WSGIApp, limit: int, wait_s: float = QUEUE_WAIT_S, retry_after_s: int = RETRY_AFTER_S,
                 exempt: tuple[str, ...] = UNLIMITED_PATHS) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.app, self.limit, self.wait_s, self.retry_after_s, self.exempt = app, limit, wait_s, retry_after_s, exempt
        self._slots = threading.BoundedSemaphore(limit)
        self._count_lock = threading.Lock()
        self.in_flight = 0    # requests holding a slot now
        self.rejected = 0
        _LIMITS.append(self)

    def __getattr__(self, name: str) -> Any:   # the Flask app's attributes (extensions, ...) stay reachable
        return getattr(self.app, name)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.exempt:
            return self.app(environ, start_response)
        if not self._slots.acquire(timeout=self.wait_s):
            self.rejected += 1
            return self._overloaded(environ, start_response)
        with self._count_lock:
            self.in_flight += 1
        try:
            result = self.app(environ, start_response)
        except BaseException:
            self._release()
            raise
        return _ReleaseOnClose(result, self._release)

    def _release(self) -> None:
        with self._count_lock:
            self.in_flight -= 1
        self._slots.release()

    def _overloaded(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The 503, with a request id as every answer has (the client's X-Request-ID when sane), logged."""
        import logging

        from .observability import REQUEST_ID_HEADER, request_id

        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        logging.getLogger("sdr.server").warning("503 overloaded: %s requests in progress; request %s refused",
                                                self.limit, rid)
        body = overloaded_body(f"the server is busy ({self.limit} requests in progress in this process); "
                               f"retry in {self.retry_after_s} s")
        start_response("503 Service Unavailable", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body))),
                                                   ("Retry-After", str(self.retry_after_s)),
                                                   ("Cache-Control", "no-store"), (REQUEST_ID_HEADER, rid)])
        return [body]


class _ReleaseOnClose:
    """The app's response iterable, calling `release` once when closed (PEP 3333: the server always
    calls close(), also when the client went away mid-stream)."""

    def __init__(self, result: Iterable[bytes], release: Callable[[], None]) -> None:
        self._result, self._release, self._released = result, release, False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            if not self._released:
                self._released = True
                self._release()


def serve(factory: Callable[[], WSGIApp], options: ServerOptions,
          on_worker_ready: Callable[[int], None] | None = None,
          before_fork: Callable[[int], None] | None = None, preload: Callable[[], None] | None = None) -> None:
    """Run gunicorn until stopped. `factory()` builds the WSGI app; it is called once in each worker
    process after the fork, and its app is wrapped in `InFlightLimit(options.max_in_flight)`.
    `on_worker_ready(age)` runs in each worker once its app is built (age 1 = the first worker
    started): a place to print start-up notes once. `before_fork(age)` runs in the master before it
    forks each worker (while the first boots, the master can load what later ones share); `preload()`
    runs in the master before the first fork (imports every worker would make). Returns when the
    server stops (Ctrl+C); raises SystemExit(1) with gunicorn's message when it cannot start (the
    port is taken, a worker fails to boot)."""
    import gc
    import tempfile

    from gunicorn.app.base import BaseApplication

    # The collector as Python's docs advise for a fork without exec (gc.freeze): off in the master, frozen
    # before each fork, on in each worker once built — the workers share the master's pages, never copy them.
    gc.disable()
    if preload is not None:
        preload()

    fd, boot_lock = tempfile.mkstemp(prefix="sdr-boot-", suffix=".lock")
    os.close(fd)
    booting = _BootTurn(boot_lock, TIMEOUT_S / 2)   # workers build one at a time (see _BootTurn)

    class _App(BaseApplication):   # gunicorn's custom-application API
        def load_config(self) -> None:
            for key, value in options.gunicorn_config().items():
                if key in self.cfg.settings:   # control_socket_disable is new in gunicorn 25
                    self.cfg.set(key, value)
            self.cfg.set("post_worker_init", _post_worker_init)
            self.cfg.set("pre_fork", _pre_fork)
            self.cfg.set("worker_int", _quick_exit)
            self.cfg.set("on_starting", _on_starting)
            self.cfg.set("child_exit", _child_exit)

        def load(self) -> WSGIApp:   # in the worker, after the fork
            with booting:   # one worker builds at a time: the first is ready (and answers) soonest
                app = InFlightLimit(factory(), options.max_in_flight, options.queue_wait_s)
            gc.freeze()   # what the worker built lives as long as it: its collections skip it from now on
            gc.enable()
            return app

    def _pre_fork(arbiter: Any, worker: Any) -> None:
        if before_fork is not None:
            before_fork(worker.age)
        gc.freeze()   # the master's objects: the worker's collections never touch (and copy) their pages

    def _post_worker_init(worker: Any) -> None:
        if on_worker_ready is not None:
            on_worker_ready(worker.age)

    try:
        _App().run()
    finally:
        if os.getpid() == booting.owner:   # the master, not a worker leaving
            os.unlink(boot_lock)
            gc.unfreeze()
            gc.enable()


class _BootTurn:
    """A lock across the server's processes on the file `path`, waited for at most `wait_s` seconds
    (then the holder is presumed stuck, and the caller goes on without it).

    Workers build their apps one at a time. All at once, 4 workers on 2 cores each took ~4× as
    long, and none answered until they nearly all had; in turn, the first answers after one build
    and the rest follow. The lock is on a file (flock, by `filelock`): the kernel releases it when a
    worker dies while building (kill -9, the OOM killer), so the next one never waits on a dead
    holder; a build still stuck after TIMEOUT_S / 2 lets the next worker build anyway."""

    def __init__(self, path: str, wait_s: float) -> None:
        self.path, self._wait_s, self.owner = path, wait_s, os.getpid()
        self._lock: Any = None

    def __enter__(self) -> None:
        from filelock import FileLock, Timeout

        lock = FileLock(self.path)   # made in this process (after the fork): its own file descriptor
        try:
            lock.acquire(timeout=self._wait_s)
            self._lock = lock
        except Timeout:
            self._lock = None

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _on_starting(arbiter: Any) -> None:
    """In the master, before the first worker: empty PROMETHEUS_MULTIPROC_DIR (when set) so counts
    of an earlier run are not added to this one's (observability.py)."""
    from .observability import wipe_multiprocess_dir

    wipe_multiprocess_dir()


def _child_exit(arbiter: Any, worker: Any) -> None:
    """In the master, after a worker exited: its live gauges leave the multiprocess metrics."""
    from .observability import multiprocess_dir

    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


_LIMITS: list[InFlightLimit] = []   # this process's limiters (one per worker process)


def _quick_exit(worker: Any) -> None:
    """A worker told to quit at once (Ctrl+C, SIGQUIT): requests in flight get up to QUICK_EXIT_S to
    finish, then the process exits at once, whatever still runs (a chat stream, an outbox delivery:
    its lease expires and another worker retries it). Exiting with os._exit skips the interpreter's
    slow teardown of the model and the content store; SQLite rolls back any open transaction."""
    import logging
    import time

    deadline = time.monotonic() + QUICK_EXIT_S
    while any(limit.in_flight for limit in _LIMITS) and time.monotonic() < deadline:
        time.sleep(0.05)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
