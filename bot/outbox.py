"""The outbox worker: delivers side effects (Slack handoffs, invitations) until they succeed or are
dead-lettered with a visible reason.

An entry is written in the same transaction as the state change that caused it; the worker claims
entries with a lease (on PostgreSQL with FOR UPDATE SKIP LOCKED), so two workers never deliver the
same entry at once, and a worker that dies mid-delivery leaves an entry another worker picks up when
the lease ends. Each delivery attempt retries quickly with tenacity (exponential backoff, jitter,
Retry-After honoured); after that the entry is rescheduled with a growing backoff and dead-lettered
after `max_attempts`. Delivery handlers are given by the integrations (this module imports none).
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import and_, or_, select, update
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from .store import OutboxEntry, Store, utcnow

log = logging.getLogger("sdr.outbox")


def enqueue(s: Any, *, kind: str, key: str, lead_id: str | None, payload: dict[str, Any],
            now: datetime) -> OutboxEntry | None:
    """Queue a side effect in the caller's open transaction, so it commits with the change that
    caused it. `key` is the idempotency key: when an entry with it exists, nothing is added and
    None is returned (exactly once per key)."""
    if s.scalars(select(OutboxEntry.id).where(OutboxEntry.idempotency_key == key)).first() is not None:
        return None
    entry = OutboxEntry(lead_id=lead_id, kind=kind, idempotency_key=key, payload=payload, created_at=now,
                        next_attempt_at=now)
    s.add(entry)
    s.flush()
    return entry


def claim_rows(store: Store, model: Any, due: Any, order: tuple[Any, ...], limit: int, worker_id: str,
               until: datetime, retries: int = 3) -> list[int]:
    """Claim up to `limit` rows of `model` matching `due` for `worker_id` until `until` (a lease):
    sets locked_by, locked_until and attempts + 1, and returns the ids this worker got. On
    PostgreSQL the rows are selected FOR UPDATE SKIP LOCKED; everywhere the conditional UPDATE is
    the claim, so a row another worker took in between is not ours. SQLite has no SKIP LOCKED: a
    worker that lost every row it saw looks again (`retries` times in all)."""
    for _ in range(max(1, retries)):
        with store.session() as s:
            q = select(model.id).where(due).order_by(*order).limit(limit)
            if s.bind.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            ids = list(s.scalars(q))
            if not ids:
                return []
            s.execute(update(model).where(model.id.in_(ids), due)
                      .values(locked_by=worker_id, locked_until=until, attempts=model.attempts + 1))
            got = set(s.scalars(select(model.id).where(model.id.in_(ids), model.locked_by == worker_id,
                                                       model.locked_until == until)))
        if got:
            return [i for i in ids if i in got]   # in the order asked for (due first)
    return []


class RetryLater(Exception):
    """A temporary failure; `after_s` is how long the other side asked us to wait (Retry-After).
    `not_done`: the other side certainly did nothing (e.g. a 429); otherwise — a timeout, a reset
    connection, a 5xx — it may have, and the next try looks before doing it again."""

    def __init__(self, message: str, after_s: float | None = None, not_done: bool = False):
        super().__init__(message)
        self.after_s = after_s
        self.not_done = not_done


class PermanentError(Exception):
    """Retrying cannot help (bad channel, revoked token): dead-letter now, with this reason."""


@dataclass
class Delivery:
    """What a handler gets: the entry as plain data (no database session held while delivering)."""
    id: int
    kind: str
    lead_id: str | None
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int                     # attempts started before this one (one may have reached the other side)
    result: dict[str, Any]
    uncertain: bool = False           # an earlier try of this attempt ended without knowing (timeout, reset)

    @property
    def maybe_done(self) -> bool:
        """True when an earlier try may have been carried out: look before doing it again."""
        return self.attempts > 0 or bool(self.result) or self.uncertain


Handler = Callable[[Delivery], dict[str, Any]]


class OutboxWorker:
    def __init__(self, store: Store, handlers: dict[str, Handler], *, worker_id: str | None = None,
                 lease_s: float = 60.0, max_attempts: int = 8, quick_tries: int = 3,
                 max_backoff_s: float = 600.0, on_delivered: Callable[[Delivery, dict[str, Any]], None] | None = None,
                 clock: Callable[[], datetime] = utcnow, jobs: list[Callable[[datetime], dict[str, int]]] | None = None):
        self.store = store
        self.jobs = list(jobs or [])   # more work on the same loop (due nurture steps): job(now) -> counts
        self.handlers = handlers
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 10000}"
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.quick_tries = quick_tries
        self.max_backoff_s = max_backoff_s
        self.on_delivered = on_delivered
        self.clock = clock   # naive UTC now: due times are read on the same clock that stamped them
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- claiming ----------------------------------------------------------------------------------

    def claim(self, limit: int = 10, now: datetime | None = None) -> list[Delivery]:
        now = now or self.clock()
        kinds = list(self.handlers)
        if not kinds:
            return []
        due = and_(OutboxEntry.status == "pending", OutboxEntry.next_attempt_at <= now, OutboxEntry.kind.in_(kinds),
                   or_(OutboxEntry.locked_until.is_(None), OutboxEntry.locked_until < now))
        until = now + timedelta(seconds=self.lease_s)
        # Write-ahead: the attempt is counted before anyone calls out, so after a crash mid-delivery the
        # next worker knows it may have been done and looks before doing it again.
        ids = claim_rows(self.store, OutboxEntry, due, (OutboxEntry.id,), limit, self.worker_id, until, retries=1)
        if not ids:
            return []
        with self.store.session() as s:
            rows = s.scalars(select(OutboxEntry).where(OutboxEntry.id.in_(ids)).order_by(OutboxEntry.id)).all()
            return [Delivery(r.id, r.kind, r.lead_id, r.idempotency_key, dict(r.payload or {}), r.attempts - 1,
                             dict(r.result or {})) for r in rows]

    # -- delivering --------------------------------------------------------------------------------

    def _attempt(self, d: Delivery) -> dict[str, Any]:
        handler = self.handlers[d.kind]

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            after = getattr(exc, "after_s", None)
            if after is not None:
                return min(float(after), 30.0)
            return wait_exponential_jitter(initial=0.5, max=5.0, jitter=0.5)(rs)

        def note_outcome(rs: RetryCallState) -> None:
            exc = rs.outcome.exception() if rs.outcome else None
            d.uncertain = d.uncertain or not getattr(exc, "not_done", False)

        for attempt in Retrying(stop=stop_after_attempt(self.quick_tries), wait=wait, before_sleep=note_outcome,
                                retry=retry_if_exception_type(RetryLater), reraise=True):
            with attempt:
                return handler(d)
        raise RetryLater("no attempt ran")  # pragma: no cover

    def deliver(self, d: Delivery) -> str:
        """Deliver one claimed entry; returns its new status."""
        try:
            result = self._attempt(d)
        except PermanentError as e:
            return self._finish(d, "dead", error=f"permanent: {e}")
        except RetryLater as e:
            return self._reschedule(d, str(e), e.after_s)
        except Exception as e:  # noqa: BLE001 - any failure is retried, then dead-lettered with its reason
            log.exception("outbox entry %s (%s) failed", d.id, d.kind)
            return self._reschedule(d, f"{type(e).__name__}: {e}", None)
        # a handler that decided not to act (an email to an unsubscribed lead) says so: "skipped", not "delivered"
        status = self._finish(d, "skipped" if isinstance(result, dict) and result.get("skipped") else "delivered",
                              result=result)
        if status == "delivered" and self.on_delivered:
            try:
                self.on_delivered(d, result)
            except Exception:  # noqa: BLE001
                log.exception("after-delivery hook failed for outbox entry %s", d.id)
        return status

    def _finish(self, d: Delivery, status: str, *, result: dict[str, Any] | None = None, error: str | None = None) -> str:
        with self.store.session() as s:
            row = s.get(OutboxEntry, d.id)
            if row is None or row.locked_by != self.worker_id:
                log.warning("outbox entry %s: lease lost before finishing", d.id)
                return row.status if row else "missing"
            row.status = status
            row.attempts = d.attempts + 1
            row.locked_by = None
            row.locked_until = None
            if result is not None:
                row.result = result
                row.delivered_at = self.clock()
            if error:
                row.last_error = error[:2000]
            return status

    def _reschedule(self, d: Delivery, error: str, after_s: float | None) -> str:
        attempts = d.attempts + 1
        if attempts >= self.max_attempts:
            return self._finish(d, "dead", error=f"gave up after {attempts} attempts: {error}")
        backoff = min(self.max_backoff_s, 5.0 * 2 ** (attempts - 1)) * (0.75 + random.random() * 0.5)
        delay = max(backoff, after_s or 0.0)
        with self.store.session() as s:
            row = s.get(OutboxEntry, d.id)
            if row is None or row.locked_by != self.worker_id:
                return row.status if row else "missing"
            row.attempts = attempts
            row.last_error = error[:2000]
            row.next_attempt_at = self.clock() + timedelta(seconds=delay)
            row.locked_by = None
            row.locked_until = None
        log.info("outbox entry %s: attempt %d failed (%s); next in %.0fs", d.id, attempts, error, delay)
        return "pending"

    def run_once(self, limit: int = 10) -> dict[str, int]:
        """Deliver what is due now, then run the jobs (due nurture steps); counts by outcome."""
        counts: dict[str, int] = {}
        for d in self.claim(limit):
            status = self.deliver(d)
            counts[status] = counts.get(status, 0) + 1
        for job in self.jobs:
            for k, v in (job(self.clock()) or {}).items():
                if k not in ("moved", "waiting"):   # nothing to do again right away
                    counts[k] = counts.get(k, 0) + v
        return counts

    # -- running ------------------------------------------------------------------------------------

    def run_forever(self, poll_s: float = 1.0) -> None:
        log.info("outbox worker %s started (%s)", self.worker_id, ", ".join(self.handlers) or "no handlers")
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the worker
                log.exception("outbox worker loop failed; retrying")
                worked = {}
            if not worked:
                self._wake.wait(poll_s)
                self._wake.clear()

    def wake(self) -> None:
        """Look at the outbox now instead of at the next poll (called after something is queued,
        e.g. a form fill: its first touch should not wait for the poll interval)."""
        self._wake.set()

    def start(self, poll_s: float = 1.0) -> "OutboxWorker":
        self._thread = threading.Thread(target=self.run_forever, args=(poll_s,), daemon=True, name="sdr-outbox")
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)


def retry_entry(store: Store, entry_id: int, now: datetime | None = None) -> OutboxEntry | None:
    """Make a dead or waiting entry due now (sdr outbox retry ID); None when there is no such entry."""
    with store.session() as s:
        row = s.get(OutboxEntry, entry_id)
        if row is None:
            return None
        if row.status == "delivered":
            return row
        row.status = "pending"
        row.next_attempt_at = now or utcnow()
        row.locked_by = None
        row.locked_until = None
        if row.attempts >= 1:
            row.last_error = (row.last_error or "") + " · retried by hand"
        return row


def list_entries(store: Store, statuses: tuple[str, ...] = ("pending", "dead"), limit: int = 100) -> list[OutboxEntry]:
    with store.session(readonly=True) as s:
        return list(s.scalars(select(OutboxEntry).where(OutboxEntry.status.in_(statuses))
                              .order_by(OutboxEntry.id.desc()).limit(limit)))
