"""The database schema's version: Alembic migrations (bot/migrations), applied at start.

    prepare(engine)        # Store() at start-up: brings any database to head, says what it did
    upgrade(url_or_engine) # `sdr db upgrade`: the same for a URL (its own engine, disposed after)
    current(url_or_engine) # `sdr db current`: the revision the database is at (None: not versioned)

`prepare` looks at the database under an exclusive lock (SQLite `BEGIN IMMEDIATE`, a PostgreSQL
advisory lock) so that workers starting together do it once, in one transaction:

- none of our tables: a new install — the schema is created at head from the models
  (`create_all`, fast) and stamped head;
- our tables without `alembic_version`: an install from before migrations (release e075b0e and
  later) — its tables are checked against the revision it matches (`0001_baseline`, or
  `0002_nurture_sequences` when `create_all` already added the sequence tables), stamped there,
  then upgraded to head;
- `alembic_version`: upgraded to head (nothing to do when it is there).

A model change in bot/store.py needs a revision in bot/migrations/versions/ (see its __init__);
tests/test_migrations.py fails until the head matches the models.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = ["prepare", "upgrade", "current", "head", "config", "Outcome", "SchemaError", "BASELINE", "HEAD",
           "MIGRATIONS"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001_baseline"
SEQUENCES = "0002_nurture_sequences"
# The newest revision, known without Alembic: a server starting on a database already there (every
# start but the first after an upgrade) skips importing and reading the migrations (~0.3 s of a
# cold start). tests/test_migrations.py fails until it names the head of bot/migrations/versions.
HEAD = SEQUENCES
SEQUENCE_TABLES = frozenset({"sequence_enrollments", "sequence_steps", "nurture_pauses"})
VERSION_TABLE = "alembic_version"
_PG_LOCK = 0x5D4_5C4E3A          # pg_advisory_xact_lock key: one schema change at a time per database


class SchemaError(RuntimeError):
    """The database cannot be brought to the schema this code needs; the message says why and what to do."""


@dataclass(frozen=True)
class Outcome:
    """What `prepare` did: `action` is created | adopted | upgraded | current."""
    action: str
    before: str | None      # the revision before (None: not versioned)
    after: str

    def __str__(self) -> str:
        if self.action == "created":
            return f"created the schema at {self.after} (a new database)"
        if self.action == "adopted":
            return (f"a database from before migrations: stamped {self.before}"
                    + (f", upgraded to {self.after}" if self.after != self.before else " (already at head)"))
        if self.action == "upgraded":
            return f"upgraded from {self.before} to {self.after}"
        return f"already at {self.after} (head): nothing to do"


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code (no alembic.ini needed); `connection` is used by env.py."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision (the schema the models in bot/store.py describe)."""
    return _script().get_current_head()


def _our_tables() -> frozenset[str]:
    from bot.store import Base
    return frozenset(Base.metadata.tables)


def prepare(engine: Engine, upgrade: bool = True) -> Outcome:
    """Bring the database to head, whatever state it is in (see the module's docstring).
    `upgrade=False`: create a new database and stamp one from before migrations, but leave an
    upgrade to the operator (`sdr db upgrade`): a database behind head raises SchemaError."""
    with _exclusive(engine) as conn:
        tables = set(inspect(conn).get_table_names())
        before = _version(conn) if VERSION_TABLE in tables else None
        if before == HEAD and _our_tables() <= tables:   # the usual start: nothing to do
            return Outcome("current", before, HEAD)
        from alembic.migration import MigrationContext

        if not tables & _our_tables():
            from bot.store import Base
            Base.metadata.create_all(conn)
            MigrationContext.configure(conn).stamp(_script(), "head")
            outcome = Outcome("created", before, head())
        else:
            start = before
            if start is None:
                start = _adopt(conn, tables)
                MigrationContext.configure(conn).stamp(_script(), start)
            if start != head() and not upgrade:
                raise SchemaError(f"the database is at revision {start}, this version of Open SDR needs {head()}: "
                                  "run `sdr db upgrade` (back the database up first)")
            _upgrade(conn, start)
            action = "adopted" if before is None else "upgraded" if before != head() else "current"
            outcome = Outcome(action, start, head())
    if outcome.action != "current":
        log.info("database schema: %s", outcome)
    return outcome


def _version(conn: Connection) -> str | None:
    """The revision in alembic_version (read directly: a MigrationContext logs on every start)."""
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise SchemaError(f"the database has several schema versions ({', '.join(rows)}); Open SDR keeps one line "
                          "of migrations: fix alembic_version by hand or restore a backup")
    return rows[0] if rows else None


def _upgrade(conn: Connection, start: str) -> None:
    if start == head():
        return
    try:
        _script().get_revision(start)
    except Exception:   # noqa: BLE001 - alembic raises several kinds for an unknown revision
        raise SchemaError(f"the database is at revision {start!r}, which this version of Open SDR does not know "
                          f"(its newest is {head()}): a newer release wrote it; run that release or restore a "
                          "backup") from None
    from alembic import command

    command.upgrade(config(conn), "head")


def _adopt(conn: Connection, tables: set[str]) -> str:
    """The revision a database created by `create_all` (before migrations) is at, after checking
    that its tables and columns are those of that revision."""
    seq = tables & SEQUENCE_TABLES
    if seq and seq != SEQUENCE_TABLES:
        raise SchemaError(f"the database has some of the nurture sequence tables ({', '.join(sorted(seq))}) but "
                          f"not all of {', '.join(sorted(SEQUENCE_TABLES))}: it was not made by a release of "
                          "Open SDR; restore a backup or start a new database")
    start = SEQUENCES if seq else BASELINE
    expected = _columns_at(start)
    found = inspect(conn)
    missing = [f"{t} (table)" for t in sorted(expected) if t not in tables]
    missing += [f"{t}.{c}" for t in sorted(expected) if t in tables
                for c in sorted(expected[t] - {col["name"] for col in found.get_columns(t)})]
    if missing:
        raise SchemaError("the database predates migrations but is older than release e075b0e (the baseline "
                          f"{BASELINE}): missing {', '.join(missing[:12])}. Upgrade it with that release first, "
                          "or start a new database")
    return start


@lru_cache(maxsize=4)
def _columns_at(revision: str) -> dict[str, frozenset[str]]:
    """Each table's columns at `revision`: the migrations run up to it on an in-memory SQLite database."""
    from alembic import command

    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            command.upgrade(config(conn), revision)
            found = inspect(conn)
            return {t: frozenset(c["name"] for c in found.get_columns(t))
                    for t in found.get_table_names() if t != VERSION_TABLE}
    finally:
        engine.dispose()


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """One transaction that no other process's `prepare` runs beside: SQLite `BEGIN IMMEDIATE`
    (foreign keys off meanwhile, as batch ALTERs copy tables), PostgreSQL an advisory lock."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        raw = conn.connection.driver_connection if sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")   # outside any transaction, where SQLite honours it
        conn.begin()
        if raw is not None and not raw.in_transaction:
            # the driver has not begun (an engine whose "begin" event emits BEGIN IMMEDIATE itself has)
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


@contextmanager
def _engine(url_or_engine: str | Engine) -> Iterator[Engine]:
    if not isinstance(url_or_engine, str):
        yield url_or_engine
        return
    kwargs: dict[str, Any] = {}
    if url_or_engine.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_engine(url_or_engine, **kwargs)
    try:
        yield engine
    finally:
        engine.dispose()


def upgrade(url_or_engine: str | Engine) -> Outcome:
    """`prepare` for a database URL (or an engine): what `sdr db upgrade` runs."""
    with _engine(url_or_engine) as engine:
        return prepare(engine)


def current(url_or_engine: str | Engine) -> str | None:
    """The revision the database is at; None when it has no version (new, or from before migrations)."""
    with _engine(url_or_engine) as engine, engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        return _version(conn)
