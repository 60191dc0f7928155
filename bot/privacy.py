"""Export and forget a person (GDPR art. 15 and 17, CCPA "right to know" and "right to delete").

`export_person` gathers everything held about one email: the lead, its conversations and messages,
score events, activities, content sent, meetings and outbox entries. `forget_person` deletes all of
it from every table, then from the files of the data dir — SQLite's free pages and WAL (VACUUM and a
WAL checkpoint) and the log files (the address replaced) — and keeps only a keyed hash of the
address on a suppression list, so the person is never contacted again and nobody can read the
address back from it. It returns the Slack messages that were posted about them (channel, ts), for
the operator to remove.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from .store import (Activity, ContentSent, Conversation, Lead, Meeting, Message, OutboxEntry, ScoreEvent, Store,
                    Suppressed, utcnow)


PER_LEAD = (Message, ScoreEvent, Activity, ContentSent, Meeting, OutboxEntry, Conversation)


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


def export_person(store: Store, email: str) -> dict[str, Any] | None:
    """Everything held about `email` as JSON-ready data (None when there is no such lead):
    {"email", "exported_at", "lead", "conversations", "messages", "score_events", "activities",
    "content_sent", "meetings", "outbox"}."""
    email = email.strip().lower()
    with store.session() as s:
        lead = s.scalars(select(Lead).where(Lead.email == email)).first()
        if lead is None:
            return None
        out: dict[str, Any] = {"email": email, "exported_at": utcnow().isoformat() + "Z", "lead": _plain(lead)}
        for name, model in (("conversations", Conversation), ("messages", Message), ("score_events", ScoreEvent),
                            ("activities", Activity), ("content_sent", ContentSent), ("meetings", Meeting),
                            ("outbox", OutboxEntry)):
            out[name] = [_plain(r) for r in _rows(s, model, lead.id)]
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
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.commit()
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM"))
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def forget_person(store: Store, email: str, data_dir: Path, log_dir: Path) -> dict[str, Any]:
    """Delete everything held about `email` and suppress it. Returns {"found": bool, "deleted":
    {table: rows}, "log_files_scrubbed": n, "slack_messages": [{"channel", "ts"}]} — the Slack
    messages posted about the lead, which only Slack can delete."""
    email = email.strip().lower()
    deleted: dict[str, int] = {}
    slack: list[dict[str, Any]] = []
    with store.session() as s:
        lead = s.scalars(select(Lead).where(Lead.email == email)).first()
        if lead is not None:
            for model in PER_LEAD:
                rows = _rows(s, model, lead.id)
                if model is OutboxEntry:
                    slack = [{"channel": r.result.get("channel"), "ts": r.result.get("ts")} for r in rows
                             if (r.result or {}).get("ts")]
                for r in rows:
                    s.delete(r)
                deleted[model.__tablename__] = len(rows)
                s.flush()
            s.delete(lead)
            deleted["leads"] = 1
        h = email_hash(email, data_dir)
        if s.get(Suppressed, h) is None:
            s.add(Suppressed(email_hash=h, at=utcnow()))
    _compact(store)
    return {"found": lead is not None, "deleted": deleted, "log_files_scrubbed": _scrub_logs(log_dir, email),
            "slack_messages": slack}
