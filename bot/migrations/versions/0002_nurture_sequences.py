"""Nurture sequences: enrolments, their steps and operator pauses (issue 13).

`create_all` added these tables to databases of releases before migrations existed, so
bot.schema.prepare stamps a pre-migration database that already has all three at this revision.

Revision 0002_nurture_sequences, after 0001_baseline.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_nurture_sequences"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

TABLES = ("sequence_enrollments", "sequence_steps", "nurture_pauses")


def upgrade() -> None:
    op.create_table(
        "sequence_enrollments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("sequence_id", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=40), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=300), nullable=True),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lead_id", "sequence_id"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
    )
    op.create_index("ix_sequence_enrollments_lead_id", "sequence_enrollments", ["lead_id"], unique=False)
    op.create_index("ix_sequence_enrollments_status", "sequence_enrollments", ["status"], unique=False)
    op.create_table(
        "sequence_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("step_id", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("url", sa.String(length=1000), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("enrollment_id", "step_id"),
        sa.ForeignKeyConstraint(["enrollment_id"], ["sequence_enrollments.id"]),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
    )
    for column in ("due_at", "enrollment_id", "lead_id", "status"):
        op.create_index(f"ix_sequence_steps_{column}", "sequence_steps", [column], unique=False)
    op.create_table(
        "nurture_pauses",
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("paused_at", sa.DateTime(), nullable=False),
        sa.Column("by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("lead_id"),
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
