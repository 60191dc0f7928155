"""Storage: leads, conversations, messages, score events, activities, content sent, outbox.

SQLAlchemy; SQLite in WAL mode in the data dir by default, PostgreSQL by SDR_DATABASE_URL with the
same code. The schema is brought to the migrations' head at start (bot/schema.py, Alembic).
"""
from __future__ import annotations

import secrets
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import (JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint,
                        create_engine, event, func, select)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def utcnow() -> datetime:
    """Naive UTC, the one time representation stored (SQLite has no time zones)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_id(prefix: str) -> str:
    """`<prefix>_` and 128 random bits (32 hex digits): unguessable, as session ids must be."""
    return f"{prefix}_{secrets.token_hex(16)}"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Lead(Base):
    __tablename__ = "leads"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True, index=True)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    field_sources: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fit_rules: Mapped[dict[str, Any]] = mapped_column(default=dict)  # rule id -> points applied
    stage: Mapped[str] = mapped_column(String(20), default="new")
    score: Mapped[float] = mapped_column(Float, default=0.0)
    fit_score: Mapped[float] = mapped_column(Float, default=0.0)
    engagement_score: Mapped[float] = mapped_column(Float, default=0.0)
    disqualified_reason: Mapped[str | None] = mapped_column(String(200))
    human_requested_at: Mapped[datetime | None] = mapped_column(DateTime)
    handed_off_at: Mapped[datetime | None] = mapped_column(DateTime)
    owner: Mapped[str | None] = mapped_column(String(200))            # the rep id the lead is assigned to
    owner_assigned_at: Mapped[datetime | None] = mapped_column(DateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(200))       # the Slack user who claimed it
    unsubscribed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # the session id
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    channel: Mapped[str] = mapped_column(String(20), default="web")
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    role: Mapped[str] = mapped_column(String(10))  # visitor | agent
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ScoreEvent(Base):
    __tablename__ = "score_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # fit | engagement | decay
    rule: Mapped[str] = mapped_column(String(100))
    points: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(500))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Activity(Base):
    """A tracked engagement event as it arrived (page view, webinar, email open...)."""
    __tablename__ = "activities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    type: Mapped[str] = mapped_column(String(60))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    points_awarded: Mapped[float] = mapped_column(Float, default=0.0)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ContentSent(Base):
    __tablename__ = "content_sent"
    __table_args__ = (UniqueConstraint("lead_id", "url"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    url: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(String(500))
    type: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class OutboxEntry(Base):
    """A side effect to deliver (Slack handoff, email, booking), written with the state change."""
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str | None] = mapped_column(ForeignKey("leads.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending|delivered|skipped|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    locked_by: Mapped[str | None] = mapped_column(String(100))       # the worker holding the lease
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)  # the lease ends; another worker may take it
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)     # what delivery returned (e.g. Slack ts)


class Meeting(Base):
    """A booked (or pending) meeting between a lead and a rep. One rep, one start time: the unique
    constraint is what makes two visitors picking the same slot at once end with one booking."""
    __tablename__ = "meetings"
    __table_args__ = (UniqueConstraint("rep_id", "start"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    rep_id: Mapped[str] = mapped_column(String(100), index=True)
    start: Mapped[datetime] = mapped_column(DateTime)             # naive UTC
    end: Mapped[datetime] = mapped_column(DateTime)               # naive UTC
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")   # the visitor's
    status: Mapped[str] = mapped_column(String(20), default="booked")  # booked | pending | cancelled
    backend: Mapped[str] = mapped_column(String(20), default="local")
    external_id: Mapped[str | None] = mapped_column(String(200))
    ics: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Suppressed(Base):
    """A forgotten person: only a keyed hash of their email (HMAC-SHA256 with this install's salt)."""
    __tablename__ = "suppressed"
    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class UsedCode(Base):
    """A one-time sign-in code that was redeemed (its nonce), kept so it works once across
    restarts and processes."""
    __tablename__ = "used_signin_codes"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class InboundReceipt(Base):
    """A form fill or an email that arrived, stored before any work is done on it (the webhook
    answers at once; the outbox runs the turn). `key` makes a repeated delivery a no-op: the
    provider's event id or Message-ID, else a hash of source, email and body (`content_hash`,
    looked up within 24 h)."""
    __tablename__ = "inbound_receipts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(20))                  # form | email
    source: Mapped[str] = mapped_column(String(40))                   # generic | typeform | … | postmark | raw
    lead_id: Mapped[str | None] = mapped_column(ForeignKey("leads.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="received")   # received | done | ignored
    note: Mapped[str | None] = mapped_column(String(300))             # why it was ignored (auto-reply, …)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class EmailMessage(Base):
    """An email sent to or received from a lead: its Message-ID threads a reply back to the lead's
    email conversation (In-Reply-To / References)."""
    __tablename__ = "email_messages"
    message_id: Mapped[str] = mapped_column(String(400), primary_key=True)   # with the angle brackets
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    conversation_id: Mapped[str | None] = mapped_column(String(80))
    direction: Mapped[str] = mapped_column(String(3))                 # out | in
    subject: Mapped[str] = mapped_column(String(500), default="")
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LeadToken(Base):
    """An unguessable token of a lead: one in its reply address (reply+TOKEN@…, `purpose` "reply"),
    another in its unsubscribe link ("unsubscribe") — so holding the link never lets anyone write
    into the lead's thread."""
    __tablename__ = "lead_tokens"
    __table_args__ = (UniqueConstraint("lead_id", "purpose"),)
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(20), default="reply")
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class EmailStatus(Base):
    """Whether a lead may be emailed: bounced (a 5xx on their address or a bounce notice) or
    unsubscribed by email (the one-click link, "stop emailing me"); `Lead.unsubscribed` stops every
    channel. Checked at send time in the outbox, never by the callers."""
    __tablename__ = "email_status"
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), primary_key=True)
    bounced_at: Mapped[datetime | None] = mapped_column(DateTime)
    bounce_reason: Mapped[str | None] = mapped_column(String(500))
    unsubscribed_at: Mapped[datetime | None] = mapped_column(DateTime)
    unsubscribe_source: Mapped[str | None] = mapped_column(String(60))   # link | one_click | email_reply | chat
    consent: Mapped[str | None] = mapped_column(String(60))             # what the lead agreed to, as the form said it


class Enrollment(Base):
    """A lead in a nurture sequence (playbook `sequences:`), once per lead and sequence: active until
    every step is done (completed) or an exit condition ends it (exited, with the reason)."""
    __tablename__ = "sequence_enrollments"
    __table_args__ = (UniqueConstraint("lead_id", "sequence_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    sequence_id: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)   # active | completed | exited
    trigger: Mapped[str] = mapped_column(String(40))                  # form_fill | chat_ended_unqualified
    enrolled_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str | None] = mapped_column(String(300))
    sends: Mapped[int] = mapped_column(Integer, default=0)            # emails this enrolment sent


class SequenceStepRun(Base):
    """One step of one enrolment: scheduled with its due time, claimed by a worker with a lease,
    then sent, skipped (with the reason) or cancelled. Unique per enrolment and step: a step is
    done at most once, whatever the number of workers."""
    __tablename__ = "sequence_steps"
    __table_args__ = (UniqueConstraint("enrollment_id", "step_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("sequence_enrollments.id"), index=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(20), default="scheduled", index=True)  # scheduled|paused|sent|skipped|cancelled
    scheduled_for: Mapped[datetime] = mapped_column(DateTime)       # when the sequence's timing made it due
    due_at: Mapped[datetime] = mapped_column(DateTime, index=True)  # when it may run (moved by quiet hours, caps)
    done_at: Mapped[datetime | None] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(String(300))         # why it was moved, skipped or cancelled
    url: Mapped[str | None] = mapped_column(String(1000))           # the content piece sent
    outbox_id: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)


class NurturePause(Base):
    """A lead whose sequences an operator paused (`sdr lead pause ID`): nothing is sent until resumed."""
    __tablename__ = "nurture_pauses"
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    by: Mapped[str | None] = mapped_column(String(200))


class Store:
    """One per process: the engine and the session factory."""

    def __init__(self, url: str):
        self.url = url
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):  # noqa: ANN001
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
                dbapi_conn.isolation_level = None   # SQLAlchemy emits BEGIN itself (below), not the driver

            @event.listens_for(self.engine, "begin")
            def _begin(conn):  # noqa: ANN001
                # A unit of work that may write takes the write lock at BEGIN (IMMEDIATE): it then waits its
                # turn (busy_timeout) instead of failing with "database is locked" when it read a snapshot
                # another writer changed. Read-only sessions (session(readonly=True)) begin DEFERRED: WAL
                # lets them read beside a writer. https://www.sqlite.org/lang_transaction.html
                options = conn.get_execution_options()
                if options.get("isolation_level") == "AUTOCOMMIT":
                    return   # VACUUM, checkpoints: no transaction at all
                conn.exec_driver_sql("BEGIN" if options.get("sdr_readonly") else "BEGIN IMMEDIATE")
        from .schema import prepare

        # the schema at the migrations' head (bot/schema.py): a new database is created, one from before
        # migrations adopted; SQLite upgrades in place at start, PostgreSQL by `sdr db upgrade` (an operator step)
        prepare(self.engine, upgrade=url.startswith("sqlite"))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readonly = sessionmaker(self.engine.execution_options(sdr_readonly=True), expire_on_commit=False)

    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A unit of work: everything inside commits together or not at all. `readonly=True` for
        reads only (on SQLite it does not take the write lock; a write in it may fail when busy)."""
        s = (self._readonly if readonly else self._sessions)()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def rehearsal(self) -> Iterator[Session]:
        """A write transaction that is always rolled back: run the steps of a change to see what it
        would do (bot/assess.py) without keeping a row. On SQLite it takes the write lock (as the
        real change will: a read that turns into a write may fail when busy) for its few ms."""
        s = self._sessions()
        try:
            yield s
        finally:
            s.rollback()
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()

    # -- reads used by the API and the CLI ----------------------------------------------------

    def list_leads(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.session(readonly=True) as s:
            last_msg = (select(Message.lead_id, func.max(Message.id).label("mid"))
                        .group_by(Message.lead_id).subquery())
            rows = s.execute(
                select(Lead, Message.text)
                .outerjoin(last_msg, last_msg.c.lead_id == Lead.id)
                .outerjoin(Message, Message.id == last_msg.c.mid)
                .order_by(Lead.updated_at.desc()).limit(limit)
            ).all()
            return [{"lead": lead, "last_message": text} for lead, text in rows]
