"""Observability for the web app: Prometheus metrics at GET /metrics, and a request id on every
request (echoed in `X-Request-ID`, carried by every log line written while serving it).

/metrics needs the API token (`Authorization: Bearer <SDR_ADMIN_TOKEN>`: volumes are business data)
unless SDR_METRICS_PUBLIC=1. A request without the token counts against the sign-in limit of its
address, as the other token-checking routes do. Metrics (prometheus-client):

    sdr_speed_to_lead_seconds{channel}       histogram: how long a new lead waited for the first answer —
                                             web: the first turn's total latency; form: from the fill's
                                             arrival (its InboundReceipt) to the end of its turn (the first
                                             touch email is queued right after, in the same worker call);
                                             email: the same for every inbound email answered
    sdr_turn_step_seconds{step}              histogram: each step of a turn (understand, decide, compose, …,
                                             "persist" after the last mark) and "total"
    sdr_turns_total{channel}                 counter
    sdr_model_calls_total                    counter
    sdr_model_tokens_total{kind}             counter: kind = prompt | completion
    sdr_model_seconds_total                  counter: time spent waiting for the model
    sdr_fallbacks_total{cause}               counter: turns the model brain fell back, by cause
    sdr_handoffs_total{channel}              counter: handoff actions queued by turns
    sdr_rate_limited_total{scope}            counter: 429s from the rate limiter (ip, session, credentials) and
                                             for a session's message sent while its last is answered (turn_in_progress)
    sdr_outbox_lag_seconds                   gauge: how long the oldest due pending outbox entry has been due
    sdr_outbox_due                           gauge: pending entries that are due
    sdr_outbox_dead                          gauge: dead letters (entries that gave up)

The counters and histograms are fed by an observer on the SDR (`sdr.observers`: every turn's
`TurnResult`, one observer per SDR however many apps are built on it) and by limits.py. Speed to
lead is measured in the observer, not from the database at scrape time: a scrape would have to
remember which receipts it already counted, and the observer sees the turn as it ends; the arrival
time of a form fill or email is the visitor message's stored time (the receipt's), read with one
indexed query on those (rare) turns. The outbox gauges are computed at scrape time from the
database (two indexed queries), by the process that answers the scrape.

Several processes (gunicorn workers, `sdr worker`): the operator sets PROMETHEUS_MULTIPROC_DIR to an
empty directory writable by every process (a tmpfs such as /run/sdr-metrics is best), in the
environment the server starts with — not from Python, so every worker inherits it before
prometheus_client is imported — and empties it before each start (`wipe_multiprocess_dir()` in the
server's start hook does that). Each process then writes its counters and histograms to files there
and whichever worker answers GET /metrics adds them all up (prometheus_client's
MultiProcessCollector); the outbox gauges come from the database in that worker. A `sdr worker`
process that runs form and email turns counts them when it calls `observe(sdr)` and shares the
directory. Without the variable, each process reports its own counts (one process: all of them).
"""
from __future__ import annotations

import logging
import os
import re
import threading
import uuid
import weakref
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from bot.logs import REQUEST_ID
from bot.store import Message, OutboxEntry

from .access import current_sdr, is_api_client
from .errors import ApiError

log = logging.getLogger("sdr.metrics")
bp = Blueprint("metrics", __name__)

EXTENSION = "sdr.metrics"
REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SPEED_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SPEED_CHANNELS = ("web", "form", "email")


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR when it names a directory (prometheus_client read it at import)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and os.path.isdir(path) else None


def wipe_multiprocess_dir() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR: call it once before the first worker starts (gunicorn's
    `on_starting`), so counts of an earlier run are not added to this one's."""
    path = multiprocess_dir()
    for name in os.listdir(path) if path else []:
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


class Metrics:
    """The counters and histograms of one SDR (one process's share of them in multiprocess mode)."""

    def __init__(self, registry: CollectorRegistry | None):
        r = {"registry": registry}
        self.speed_to_lead = Histogram("sdr_speed_to_lead_seconds", "Seconds a new lead waited for the first answer, "
                                       "by channel", ["channel"], buckets=SPEED_BUCKETS, **r)
        self.step = Histogram("sdr_turn_step_seconds", "Seconds per step of a turn, and the total", ["step"],
                              buckets=STEP_BUCKETS, **r)
        self.turns = Counter("sdr_turns", "Turns answered, by channel", ["channel"], **r)
        self.model_calls = Counter("sdr_model_calls", "Calls to the model", **r)
        self.tokens = Counter("sdr_model_tokens", "Model tokens, by kind (prompt, completion)", ["kind"], **r)
        self.model_seconds = Counter("sdr_model_seconds", "Seconds spent waiting for the model", **r)
        self.fallbacks = Counter("sdr_fallbacks", "Turns where the model brain fell back, by cause", ["cause"], **r)
        self.handoffs = Counter("sdr_handoffs", "Handoffs to sales queued by turns, by channel", ["channel"], **r)
        self.rate_limited = Counter("sdr_rate_limited", "Requests refused by the rate limiter (429), by scope",
                                    ["scope"], **r)
        for kind in ("prompt", "completion"):
            self.tokens.labels(kind)   # shown at 0 before the first call


_LOCK = threading.Lock()
_PER_SDR: weakref.WeakKeyDictionary[Any, tuple[Metrics, CollectorRegistry | None]] = weakref.WeakKeyDictionary()
_PROCESS: Metrics | None = None   # multiprocess mode: one set of metrics per process, written to files


def observe(sdr: Any) -> Metrics:
    """The SDR's metrics, with the observer that feeds them registered on it — once, however often
    this is called (several apps on one SDR)."""
    global _PROCESS
    with _LOCK:
        if sdr in _PER_SDR:
            return _PER_SDR[sdr][0]
        if multiprocess_dir():
            _PROCESS = _PROCESS or Metrics(None)
            metrics, registry = _PROCESS, None
        else:
            registry = CollectorRegistry()
            metrics = Metrics(registry)
        _PER_SDR[sdr] = (metrics, registry)
        sdr.observers.append(TurnObserver(sdr, metrics))
        return metrics


class TurnObserver:
    """`f(result)` for `sdr.observers`: the turn's numbers into the metrics. Never raises."""

    def __init__(self, sdr: Any, metrics: Metrics):
        self.sdr, self.metrics = weakref.proxy(sdr), metrics

    def __call__(self, result: Any) -> None:
        try:
            self._count(result)
        except Exception:  # noqa: BLE001 - metrics never break a turn
            log.warning("could not count a turn in the metrics", exc_info=True)

    def _count(self, result: Any) -> None:
        m, channel, usage = self.metrics, result.channel, result.usage or {}
        m.turns.labels(channel).inc()
        for step, seconds in step_seconds(result.timings_ms or {}).items():
            m.step.labels(step).observe(seconds)
        m.model_calls.inc(usage.get("model_calls") or 0)
        m.tokens.labels("prompt").inc(usage.get("prompt_tokens") or 0)
        m.tokens.labels("completion").inc(usage.get("completion_tokens") or 0)
        m.model_seconds.inc((usage.get("model_ms") or 0) / 1000)
        for cause in usage.get("fallbacks") or []:
            m.fallbacks.labels(str(cause)[:40]).inc()
        for action in result.actions or []:
            if action.get("type") == "handoff":
                m.handoffs.labels(channel).inc()
        waited = self._speed_to_lead(result)
        if waited is not None:
            m.speed_to_lead.labels(channel).observe(waited)

    def _speed_to_lead(self, result: Any) -> float | None:
        if result.channel == "web":
            return (result.timings_ms or {}).get("total", 0) / 1000 if result.first_turn else None
        if result.channel not in SPEED_CHANNELS:
            return None
        arrived = getattr(result, "received_at", None) or self._arrival(result.session_id)
        return None if arrived is None else max(0.0, (self.sdr.clock() - arrived).total_seconds())

    def _arrival(self, session_id: str) -> datetime | None:
        """When the inbound of this turn arrived: its visitor message's time (the receipt's)."""
        with self.sdr.store.session() as s:
            return s.scalar(select(Message.at).where(Message.conversation_id == session_id, Message.role == "visitor")
                            .order_by(Message.id.desc()).limit(1))


def step_seconds(timings_ms: dict[str, float]) -> dict[str, float]:
    """Each step's own duration from the turn's marks (ms since the turn started, in order), the
    time after the last mark as "persist", and "total"."""
    out: dict[str, float] = {}
    marks = sorted(((v, k) for k, v in timings_ms.items() if k != "total" and isinstance(v, (int, float))))
    before = 0.0
    for at, step in marks:
        out[step] = max(0.0, at - before) / 1000
        before = max(before, at)
    total = timings_ms.get("total")
    if isinstance(total, (int, float)):
        if marks and "persist" not in out:
            out["persist"] = max(0.0, total - before) / 1000
        out["total"] = total / 1000
    return out


class OutboxCollector:
    """The outbox's lag, due entries and dead letters, read from the database at scrape time."""

    def __init__(self, sdr: Any):
        self.sdr = sdr

    def collect(self) -> Any:
        try:
            now = self.sdr.clock()
            with self.sdr.store.session() as s:
                due = (OutboxEntry.status == "pending", OutboxEntry.next_attempt_at <= now)
                oldest, n_due = s.execute(select(func.min(OutboxEntry.next_attempt_at), func.count())
                                          .where(*due)).one()
                dead = s.scalar(select(func.count()).select_from(OutboxEntry).where(OutboxEntry.status == "dead"))
        except Exception:  # noqa: BLE001 - a scrape shows what it can
            log.warning("could not read the outbox for the metrics", exc_info=True)
            return
        lag = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily("sdr_outbox_lag_seconds", "Seconds the oldest due pending outbox entry has waited",
                                value=lag)
        yield GaugeMetricFamily("sdr_outbox_due", "Pending outbox entries that are due", value=n_due or 0)
        yield GaugeMetricFamily("sdr_outbox_dead", "Outbox entries that gave up (dead letters)", value=dead or 0)


def scrape(sdr: Any) -> bytes:
    """The metrics text for `sdr`: its counters (every process's, in multiprocess mode) and the outbox."""
    observe(sdr)
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path:
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_Forward(_PER_SDR[sdr][1]))
    registry.register(OutboxCollector(sdr))
    return generate_latest(registry)


class _Forward:
    """Another registry's metrics, as one collector."""

    def __init__(self, registry: CollectorRegistry | None):
        self.registry = registry

    def collect(self) -> Any:
        return self.registry.collect() if self.registry is not None else iter(())


def metrics_public() -> bool:
    """SDR_METRICS_PUBLIC (`settings.metrics_public`): /metrics without the API token."""
    return bool(getattr(current_sdr().settings, "metrics_public", False))


@bp.get("/metrics")
def metrics() -> Response:
    if not (metrics_public() or is_api_client()):
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <SDR_ADMIN_TOKEN>' to read the metrics "
                       "(or set SDR_METRICS_PUBLIC=1)")
    return Response(scrape(current_sdr()), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def count_rate_limited(exc: Any) -> None:
    """limits.py calls this where it answers 429. Never raises."""
    count_refused(str(getattr(getattr(exc, "limit", None), "scope", None) or "other"))


def count_refused(scope: str) -> None:
    """One 429 more under `scope` (the limiter's ip/session/credentials, or `turn_in_progress` when
    the visitor's previous message is still being answered). Never raises."""
    try:
        observe(current_app.extensions["sdr"]).rate_limited.labels(scope[:40]).inc()
    except Exception:  # noqa: BLE001
        log.warning("could not count a refused request", exc_info=True)


# -- request ids ------------------------------------------------------------------------------------

def request_id(given: str | None) -> str:
    """The request's id: the client's X-Request-ID when it is sane (letters, digits, `._:-`, ≤ 128),
    else a new one (32 hex digits)."""
    return given if given and SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _start_request() -> None:
    rid = request_id(request.headers.get(REQUEST_ID_HEADER))
    g.request_id = rid
    REQUEST_ID.set(rid)


def _echo_request_id(resp: Response) -> Response:
    rid = g.get("request_id")
    if rid:
        resp.headers[REQUEST_ID_HEADER] = rid
        if resp.is_streamed:   # the body (a streamed turn) is produced after the teardown: keep the id till then
            g.request_id_streamed = True
            resp.call_on_close(lambda: REQUEST_ID.set(None))
    return resp


def _end_request(exc: BaseException | None) -> None:
    if not g.get("request_id_streamed"):
        REQUEST_ID.set(None)


def install(app: Flask, sdr: Any) -> None:
    """/metrics, the SDR's observer, and request ids (first among the app's before_request hooks,
    so even a request the rate limiter refuses has one)."""
    observe(sdr)
    app.register_blueprint(bp)
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)
    app.after_request(_echo_request_id)
    app.teardown_request(_end_request)
