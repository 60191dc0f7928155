"""Export and forget a person (GDPR art. 15 and 17, CCPA "right to know" and "right to delete").

A person is every lead that carries their address: the lead whose `Lead.email` it is, and any lead
where it was only told, unverified, in chat (`fields["email"]`, with `Lead.email` left empty because
the address already belongs to another lead). `export_person` gathers everything held about them:
those leads, their conversations and messages, score events, activities, content sent, meetings and
outbox entries. `forget_person` deletes all of it from every table, then from the files of the data
dir — SQLite's free pages and WAL (VACUUM and a WAL checkpoint) and the log files (the address
replaced) — and keeps only a keyed hash of the address on a suppression list, so the person is never
contacted again and nobody can read the address back from it. It returns the Slack messages that
were posted about them (channel, ts); `integrations.wiring.forget_person_everywhere` deletes those
through Slack's chat.delete.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, func, or_, select, text

from .store import (Enrollment, NurturePause, SequenceStepRun, Activity, ContentSent, Conversation, EmailMessage, EmailStatus, InboundReceipt, Lead, LeadToken,
                    Meeting, Message, OutboxEntry, ScoreEvent, Store, Suppressed, utcnow)


PER_LEAD = (SequenceStepRun, Enrollment, NurturePause, Message, ScoreEvent, Activity, ContentSent, Meeting, OutboxEntry, EmailMessage, LeadToken, EmailStatus,
            InboundReceipt, Conversation)


def _salt(data_dir: Path) -> bytes:
    """This install's secret salt for the suppression list (created once, kept in the data dir)."""
    path = data_dir / "privacy_salt"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def email_hash(email: str, data_dir: Path) -> str:
    return hmac.new(_salt(data_dir), email.strip().lower().encode(), hashlib.sha256).hexdigest()


def is_suppressed(store: Store, email: str, data_dir: Path) -> bool:
    """True when this address was forgotten: never contact it again."""
    with store.session() as s:
        return s.get(Suppressed, email_hash(email, data_dir)) is not None


def _rows(s: Any, model: Any, lead_id: str) -> list[Any]:
    return list(s.scalars(select(model).where(model.lead_id == lead_id)))


def _plain(row: Any) -> dict[str, Any]:
    out = {}
    for col in row.__table__.columns:
        v = getattr(row, col.key)
        out[col.key] = v.isoformat() + "Z" if isinstance(v, datetime) else v
    return out


def _holds(lead: Lead, email: str) -> bool:
    told = (lead.fields or {}).get("email")
    return (lead.email or "").strip().lower() == email or (isinstance(told, str) and told.strip().lower() == email)


def person_leads(s: Any, email: str) -> list[Lead]:
    """Every lead that carries `email` (lower-case), as `Lead.email` or as the unverified
    `fields["email"]`; the lead that owns the address first, then the oldest. The JSON column is
    searched as text (SQLite and PostgreSQL alike), then each hit checked exactly."""
    needle = json.dumps(email)[1:-1]      # the address as the JSON text of `fields` spells it
    found = s.scalars(select(Lead).where(or_(func.lower(Lead.email) == email,
                                             func.lower(cast(Lead.fields, String)).contains(needle, autoescape=True))))
    leads = [lead for lead in found if _holds(lead, email)]
    return sorted(leads, key=lambda lead: ((lead.email or "").lower() != email, lead.created_at, lead.id))


EXPORTED = (("conversations", Conversation), ("messages", Message), ("score_events", ScoreEvent),
            ("activities", Activity), ("content_sent", ContentSent), ("meetings", Meeting), ("outbox", OutboxEntry))


def export_person(store: Store, email: str) -> dict[str, Any] | None:
    """Everything held about `email` as JSON-ready data (None when no lead carries it):
    {"email", "exported_at", "lead", "leads", "conversations", "messages", "score_events",
    "activities", "content_sent", "meetings", "outbox"}. "lead" is the lead that owns the address
    (else the oldest that carries it); "leads" is every lead that carries it, "lead" first; the other
    lists hold the rows of all of them (each row names its `lead_id`)."""
    email = email.strip().lower()
    with store.session() as s:
        leads = person_leads(s, email)
        if not leads:
            return None
        out: dict[str, Any] = {"email": email, "exported_at": utcnow().isoformat() + "Z", "lead": _plain(leads[0]),
                               "leads": [_plain(lead) for lead in leads]}
        for name, model in EXPORTED:
            out[name] = [_plain(r) for lead in leads for r in _rows(s, model, lead.id)]
        return out


def _scrub_logs(log_dir: Path, email: str) -> int:
    """Replace the address in every log file (case-insensitive); returns the files changed."""
    changed = 0
    for path in sorted(log_dir.glob("*.log*")) if log_dir.exists() else []:
        data = path.read_bytes()
        low = data.lower()
        needle = email.encode()
        if needle not in low:
            continue
        out, i = bytearray(), 0
        while (j := low.find(needle, i)) >= 0:
            out += data[i:j] + b"[forgotten]"
            i = j + len(needle)
        path.write_bytes(bytes(out + data[i:]))
        changed += 1
    return changed


def _compact(store: Store) -> None:
    """Deleted rows leave the address in free pages and the WAL until they are rewritten."""
    if store.engine.dialect.name != "sqlite":
        return   # PostgreSQL: autovacuum reclaims dead tuples; the data dir holds no database file
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:   # outside any transaction
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute(text("VACUUM"))
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _posted(rows: list[OutboxEntry]) -> list[dict[str, Any]]:
    """The Slack messages that outbox deliveries posted (their result keeps channel and ts)."""
    return [{"channel": r.result.get("channel"), "ts": r.result.get("ts")} for r in rows
            if isinstance(r.result, dict) and r.result.get("ts")]


def _delete_lead(s: Any, lead: Lead, deleted: dict[str, int]) -> list[dict[str, Any]]:
    """Delete one lead and every row that hangs off it; returns the Slack messages posted about it."""
    slack: list[dict[str, Any]] = []
    for model in PER_LEAD:
        rows = _rows(s, model, lead.id)
        if model is OutboxEntry:
            slack = _posted(rows)
        for r in rows:
            s.delete(r)
        deleted[model.__tablename__] = deleted.get(model.__tablename__, 0) + len(rows)
        s.flush()
    s.delete(lead)
    deleted["leads"] = deleted.get("leads", 0) + 1
    return slack


def forget_person(store: Store, email: str, data_dir: Path, log_dir: Path) -> dict[str, Any]:
    """Delete everything held about `email` — every lead that carries it — and suppress it. Returns
    {"found": bool, "deleted": {table: rows}, "log_files_scrubbed": n, "lead_ids": [...],
    "slack_messages": [{"channel", "ts"}]} — the Slack messages posted about those leads, which only
    Slack can delete (`integrations.wiring.forget_person_everywhere` does)."""
    email = email.strip().lower()
    deleted: dict[str, int] = {}
    slack: list[dict[str, Any]] = []
    with store.session() as s:
        leads = person_leads(s, email)
        lead_ids = [lead.id for lead in leads]
        for lead in leads:
            slack += [m for m in _delete_lead(s, lead, deleted) if m not in slack]
        h = email_hash(email, data_dir)
        if s.get(Suppressed, h) is None:
            s.add(Suppressed(email_hash=h, at=utcnow()))
    _compact(store)
    return {"found": bool(lead_ids), "deleted": deleted, "log_files_scrubbed": _scrub_logs(log_dir, email),
            "lead_ids": lead_ids, "slack_messages": slack}
