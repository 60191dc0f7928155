"""Baseline: the schema of release e075b0e, the last one without migrations.

Written out table by table (not taken from the live models, which move on): a database that
release created with `create_all` is stamped at this revision by bot.schema.prepare, and every
later change is a revision after this one.

Revision 0001_baseline, the first.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ("leads", "suppressed", "used_signin_codes", "conversations", "messages", "score_events", "activities",
          "content_sent", "outbox", "meetings", "inbound_receipts", "email_messages", "lead_tokens",
          "email_status")


def _leads() -> None:
    op.create_table(
        "leads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("field_sources", sa.JSON(), nullable=False),
        sa.Column("fit_rules", sa.JSON(), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("fit_score", sa.Float(), nullable=False),
        sa.Column("engagement_score", sa.Float(), nullable=False),
        sa.Column("disqualified_reason", sa.String(length=200), nullable=True),
        sa.Column("human_requested_at", sa.DateTime(), nullable=True),
        sa.Column("handed_off_at", sa.DateTime(), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("owner_assigned_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("unsubscribed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_leads_email", "leads", ["email"], unique=True)


def _keyed_lists() -> None:
    op.create_table(
        "suppressed",
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email_hash"),
    )
    op.create_table(
        "used_signin_codes",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )


def _conversations() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conversations_lead_id", "conversations", ["lead_id"], unique=False)
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(length=80), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"]),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_messages_conversation_id", "messages", ["conversation_id"], unique=False)
    op.create_index("ix_messages_lead_id", "messages", ["lead_id"], unique=False)


def _scoring() -> None:
    op.create_table(
        "score_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_score_events_lead_id", "score_events", ["lead_id"], unique=False)
    op.create_table(
        "activities",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("points_awarded", sa.Float(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_activities_lead_id", "activities", ["lead_id"], unique=False)


def _content_sent() -> None:
    op.create_table(
        "content_sent",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lead_id", "url"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
    )
    op.create_index("ix_content_sent_lead_id", "content_sent", ["lead_id"], unique=False)


def _outbox() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_outbox_lead_id", "outbox", ["lead_id"], unique=False)
    op.create_index("ix_outbox_status", "outbox", ["status"], unique=False)


def _meetings() -> None:
    op.create_table(
        "meetings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("rep_id", sa.String(length=100), nullable=False),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("end", sa.DateTime(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("backend", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("ics", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rep_id", "start"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
    )
    op.create_index("ix_meetings_lead_id", "meetings", ["lead_id"], unique=False)
    op.create_index("ix_meetings_rep_id", "meetings", ["rep_id"], unique=False)


def _inbound_receipts() -> None:
    op.create_table(
        "inbound_receipts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.String(length=300), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
    )
    op.create_index("ix_inbound_receipts_at", "inbound_receipts", ["at"], unique=False)
    op.create_index("ix_inbound_receipts_content_hash", "inbound_receipts", ["content_hash"], unique=False)
    op.create_index("ix_inbound_receipts_lead_id", "inbound_receipts", ["lead_id"], unique=False)


def _email() -> None:
    op.create_table(
        "email_messages",
        sa.Column("message_id", sa.String(length=400), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("conversation_id", sa.String(length=80), nullable=True),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index("ix_email_messages_lead_id", "email_messages", ["lead_id"], unique=False)
    op.create_table(
        "lead_tokens",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token"),
        sa.UniqueConstraint("lead_id", "purpose"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
    )
    op.create_index("ix_lead_tokens_lead_id", "lead_tokens", ["lead_id"], unique=False)
    op.create_table(
        "email_status",
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("bounced_at", sa.DateTime(), nullable=True),
        sa.Column("bounce_reason", sa.String(length=500), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(), nullable=True),
        sa.Column("unsubscribe_source", sa.String(length=60), nullable=True),
        sa.Column("consent", sa.String(length=60), nullable=True),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("lead_id"),
    )


def upgrade() -> None:
    _leads()
    _keyed_lists()
    _conversations()
    _scoring()
    _content_sent()
    _outbox()
    _meetings()
    _inbound_receipts()
    _email()


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
