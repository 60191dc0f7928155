"""Schema migrations (bot/schema.py, bot/migrations): a database of the last release before
migrations (e075b0e) upgrades in place with its rows, a new one is created at head, upgrading twice
does nothing, a failed upgrade changes nothing, and the head revision is exactly the models of
bot/store.py — on SQLite and, when SDR_TEST_DATABASE_URL is set, on PostgreSQL (a fresh schema
per test, dropped after)."""
from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import click
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from bot import schema
from bot.store import Base, Enrollment, NurturePause, SequenceStepRun

ROOT = Path(__file__).resolve().parent.parent
RELEASE = "e075b0e"
HEAD = "0002_nurture_sequences"
PG = os.environ.get("SDR_TEST_DATABASE_URL")
NEEDS_PG = ("set SDR_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to test the "
            "PostgreSQL path; .ci/run does")
WRITE_ONE = ("write a migration: `alembic -c bot/migrations/alembic.ini revision --autogenerate --rev-id 0003_<what> "
             "-m '<what>'` against a database at head (`sdr db upgrade`), then read the file it wrote in "
             "bot/migrations/versions/")

# What release e075b0e's Store() created on SQLite (`Base.metadata.create_all`), statement by statement
# as sqlite_master keeps it; test_frozen_schema_is_release_e075b0e checks it against that release's code.
RELEASE_SQL = """
CREATE TABLE leads (
	id VARCHAR(40) NOT NULL, 
	email VARCHAR(320), 
	fields JSON NOT NULL, 
	field_sources JSON NOT NULL, 
	fit_rules JSON NOT NULL, 
	stage VARCHAR(20) NOT NULL, 
	score FLOAT NOT NULL, 
	fit_score FLOAT NOT NULL, 
	engagement_score FLOAT NOT NULL, 
	disqualified_reason VARCHAR(200), 
	human_requested_at DATETIME, 
	handed_off_at DATETIME, 
	owner VARCHAR(200), 
	owner_assigned_at DATETIME, 
	claimed_by VARCHAR(200), 
	unsubscribed INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_leads_email ON leads (email);
CREATE TABLE suppressed (
	email_hash VARCHAR(64) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (email_hash)
);
CREATE TABLE used_signin_codes (
	nonce VARCHAR(64) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (nonce)
);
CREATE TABLE conversations (
	id VARCHAR(80) NOT NULL, 
	lead_id VARCHAR(40) NOT NULL, 
	channel VARCHAR(20) NOT NULL, 
	state JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE INDEX ix_conversations_lead_id ON conversations (lead_id);
CREATE TABLE score_events (
	id INTEGER NOT NULL, 
	lead_id VARCHAR(40) NOT NULL, 
	kind VARCHAR(20) NOT NULL, 
	rule VARCHAR(100) NOT NULL, 
	points FLOAT NOT NULL, 
	reason VARCHAR(500) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE INDEX ix_score_events_lead_id ON score_events (lead_id);
CREATE TABLE activities (
	id INTEGER NOT NULL, 
	lead_id VARCHAR(40) NOT NULL, 
	type VARCHAR(60) NOT NULL, 
	properties JSON NOT NULL, 
	points_awarded FLOAT NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE INDEX ix_activities_lead_id ON activities (lead_id);
CREATE TABLE content_sent (
	id INTEGER NOT NULL, 
	lead_id VARCHAR(40) NOT NULL, 
	url VARCHAR(1000) NOT NULL, 
	title VARCHAR(500) NOT NULL, 
	type VARCHAR(40) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (lead_id, url), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE INDEX ix_content_sent_lead_id ON content_sent (lead_id);
CREATE TABLE outbox (
	id INTEGER NOT NULL, 
	lead_id VARCHAR(40), 
	kind VARCHAR(40) NOT NULL, 
	idempotency_key VARCHAR(200) NOT NULL, 
	payload JSON NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	attempts INTEGER NOT NULL, 
	last_error TEXT, 
	created_at DATETIME NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	delivered_at DATETIME, 
	locked_by VARCHAR(100), 
	locked_until DATETIME, 
	result JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(lead_id) REFERENCES leads (id), 
	UNIQUE (idempotency_key)
);
CREATE INDEX ix_outbox_status ON outbox (status);
CREATE INDEX ix_outbox_lead_id ON outbox (lead_id);
CREATE TABLE meetings (
	id INTEGER NOT NULL, 
	lead_id VARCHAR(40) NOT NULL, 
	rep_id VARCHAR(100) NOT NULL, 
	start DATETIME NOT NULL, 
	"end" DATETIME NOT NULL, 
	timezone VARCHAR(64) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	backend VARCHAR(20) NOT NULL, 
	external_id VARCHAR(200), 
	ics TEXT, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (rep_id, start), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE INDEX ix_meetings_lead_id ON meetings (lead_id);
CREATE INDEX ix_meetings_rep_id ON meetings (rep_id);
CREATE TABLE inbound_receipts (
	id INTEGER NOT NULL, 
	"key" VARCHAR(400) NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	channel VARCHAR(20) NOT NULL, 
	source VARCHAR(40) NOT NULL, 
	lead_id VARCHAR(40), 
	payload JSON NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	note VARCHAR(300), 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE ("key"), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE INDEX ix_inbound_receipts_lead_id ON inbound_receipts (lead_id);
CREATE INDEX ix_inbound_receipts_content_hash ON inbound_receipts (content_hash);
CREATE INDEX ix_inbound_receipts_at ON inbound_receipts (at);
CREATE TABLE email_messages (
	message_id VARCHAR(400) NOT NULL, 
	lead_id VARCHAR(40) NOT NULL, 
	conversation_id VARCHAR(80), 
	direction VARCHAR(3) NOT NULL, 
	subject VARCHAR(500) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (message_id), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE INDEX ix_email_messages_lead_id ON email_messages (lead_id);
CREATE TABLE lead_tokens (
	token VARCHAR(64) NOT NULL, 
	lead_id VARCHAR(40) NOT NULL, 
	purpose VARCHAR(20) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (token), 
	UNIQUE (lead_id, purpose), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE INDEX ix_lead_tokens_lead_id ON lead_tokens (lead_id);
CREATE TABLE email_status (
	lead_id VARCHAR(40) NOT NULL, 
	bounced_at DATETIME, 
	bounce_reason VARCHAR(500), 
	unsubscribed_at DATETIME, 
	unsubscribe_source VARCHAR(60), 
	consent VARCHAR(60), 
	PRIMARY KEY (lead_id), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE TABLE messages (
	id INTEGER NOT NULL, 
	conversation_id VARCHAR(80) NOT NULL, 
	lead_id VARCHAR(40) NOT NULL, 
	role VARCHAR(10) NOT NULL, 
	text TEXT NOT NULL, 
	meta JSON NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(conversation_id) REFERENCES conversations (id), 
	FOREIGN KEY(lead_id) REFERENCES leads (id)
);
CREATE INDEX ix_messages_conversation_id ON messages (conversation_id);
CREATE INDEX ix_messages_lead_id ON messages (lead_id);
"""


# ---------------------------------------------------------------------------------------------
# databases: an empty one on SQLite (a file) or PostgreSQL (a fresh schema of the test server)

@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database. `sqlite-immediate` (where WITH_STORE_ENGINE asks for it): engines
    on it are configured as the Store's (the driver in autocommit, SQLAlchemy's "begin" emitting
    BEGIN IMMEDIATE), which prepare must work with too."""
    if request.param.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'sdr.db'}"
        return
    if not PG:
        pytest.skip(NEEDS_PG)
    name = f"mig_{secrets.token_hex(6)}"
    admin = create_engine(PG)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield make_url(PG).update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


WITH_STORE_ENGINE = pytest.mark.parametrize("database", ["sqlite", "sqlite-immediate", "postgresql"], indirect=True)


def _engine(url: str, immediate: bool = False) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url)
    eng = create_engine(url, connect_args={"timeout": 30})
    if immediate:
        @event.listens_for(eng, "connect")
        def _autocommit(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(eng, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return eng


def _immediate(request: pytest.FixtureRequest) -> bool:
    return getattr(request.node, "callspec", None) is not None and \
        request.node.callspec.params.get("database") == "sqlite-immediate"


@pytest.fixture
def engine(database: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    eng = _engine(database, _immediate(request))
    yield eng
    eng.dispose()


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def _ddl(engine: Engine) -> set[str]:
    """SQLite: every CREATE statement the database keeps, whitespace normalised."""
    with engine.connect() as c:
        rows = c.exec_driver_sql("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'alembic_version'")
        return {" ".join(sql.split()) for (sql,) in rows}


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as c:
        return set(inspect(c).get_table_names())


def _diff(engine: Engine) -> list[Any]:
    with engine.connect() as c:
        return compare_metadata(MigrationContext.configure(c), Base.metadata)


def _migrate(engine: Engine, to: str) -> None:
    """The migrations themselves (not prepare's create_all), from wherever the database is to `to`."""
    with engine.begin() as c:
        command.upgrade(schema.config(c), to)


def make_release_database(engine: Engine) -> None:
    """A database as release e075b0e left it (no alembic_version): on SQLite its exact statements; on
    PostgreSQL the baseline revision's (checked equal to the release on SQLite below), unversioned."""
    with engine.begin() as c:
        if engine.dialect.name == "sqlite":
            for statement in _statements(RELEASE_SQL):
                c.exec_driver_sql(statement)
        else:
            command.upgrade(schema.config(c), schema.BASELINE)
            c.execute(text("DROP TABLE alembic_version"))


def add_release_rows(engine: Engine) -> None:
    """A lead with a conversation, a message and a pending outbox entry, written as that release did."""
    at = "'2026-11-29 10:00:00'"
    with engine.begin() as c:
        c.execute(text(
            "INSERT INTO leads (id, email, fields, field_sources, fit_rules, stage, score, fit_score, engagement_score,"
            " unsubscribed, created_at, updated_at) VALUES ('lead_1', 'dana@acme.example', '{\"role\": \"VP Sales\"}',"
            f" '{{}}', '{{}}', 'mql', 42.5, 30.0, 12.5, 0, {at}, {at})"))
        c.execute(text(f"INSERT INTO conversations (id, lead_id, channel, state, created_at, updated_at) "
                       f"VALUES ('s_1', 'lead_1', 'web', '{{}}', {at}, {at})"))
        c.execute(text(f"INSERT INTO messages (conversation_id, lead_id, role, text, meta, at) "
                       f"VALUES ('s_1', 'lead_1', 'visitor', 'we need forecasting', '{{}}', {at})"))
        c.execute(text(
            "INSERT INTO outbox (lead_id, kind, idempotency_key, payload, status, attempts, created_at,"
            " next_attempt_at, result) VALUES ('lead_1', 'handoff', 'handoff:lead_1', '{\"why\": \"sql\"}',"
            f" 'pending', 0, {at}, {at}, '{{}}')"))


def assert_release_rows_kept(engine: Engine) -> None:
    from bot.store import Lead, Message, OutboxEntry
    with Session(engine) as s:
        lead = s.get(Lead, "lead_1")
        assert lead and lead.email == "dana@acme.example" and lead.fields == {"role": "VP Sales"} and lead.score == 42.5
        assert [m.text for m in s.query(Message).all()] == ["we need forecasting"]
        (entry,) = s.query(OutboxEntry).all()
        assert (entry.idempotency_key, entry.payload, entry.status) == ("handoff:lead_1", {"why": "sql"}, "pending")


def assert_sequence_tables_work(engine: Engine) -> None:
    """The tables added after the release take rows through the current models."""
    with Session(engine) as s:
        e = Enrollment(lead_id="lead_1", sequence_id="welcome", trigger="form_fill")
        s.add(e)
        s.flush()
        from bot.store import utcnow
        s.add(SequenceStepRun(enrollment_id=e.id, lead_id="lead_1", step_id="day-1", scheduled_for=utcnow(),
                              due_at=utcnow()))
        s.add(NurturePause(lead_id="lead_1", by="ops"))
        s.commit()
        assert s.query(SequenceStepRun).one().enrollment_id == e.id


# ---------------------------------------------------------------------------------------------
# the release before migrations, upgraded in place

@WITH_STORE_ENGINE
def test_release_database_upgrades_in_place(engine: Engine):
    make_release_database(engine)
    add_release_rows(engine)
    assert schema.current(engine) is None

    outcome = schema.prepare(engine)

    assert (outcome.action, outcome.before, outcome.after) == ("adopted", schema.BASELINE, HEAD)
    assert "stamped 0001_baseline, upgraded to 0002_nurture_sequences" in str(outcome)
    assert schema.current(engine) == HEAD == schema.head()
    assert {"sequence_enrollments", "sequence_steps", "nurture_pauses", "alembic_version"} <= _tables(engine)
    assert_release_rows_kept(engine)
    assert_sequence_tables_work(engine)
    assert _diff(engine) == [], "the upgraded release database differs from the models"


def test_upgrading_twice_changes_nothing(engine: Engine):
    make_release_database(engine)
    add_release_rows(engine)
    schema.prepare(engine)
    tables = _tables(engine)

    again = schema.prepare(engine)

    assert (again.action, again.before, again.after) == ("current", HEAD, HEAD)
    assert "nothing to do" in str(again)
    assert _tables(engine) == tables and schema.current(engine) == HEAD
    assert_release_rows_kept(engine)


def test_a_new_database_is_created_at_head(engine: Engine):
    outcome = schema.prepare(engine)
    assert (outcome.action, outcome.before, outcome.after) == ("created", None, HEAD)
    assert schema.current(engine) == HEAD
    assert _tables(engine) == set(Base.metadata.tables) | {"alembic_version"}
    assert schema.prepare(engine).action == "current"


def test_the_start_up_shortcut_knows_the_head():
    """bot.schema.HEAD lets a start on a current database skip Alembic; a new migration must move it."""
    assert schema.HEAD == schema.head(), (f"set HEAD in bot/schema.py to {schema.head()!r}, the newest revision in "
                                          "bot/migrations/versions/")


def test_a_start_on_a_current_database_does_not_import_alembic(tmp_path: Path):
    """The usual start (the database at head) reads alembic_version and stops: no Alembic import."""
    url = f"sqlite:///{tmp_path / 'sdr.db'}"
    schema.upgrade(url)
    code = ("import sys; from sqlalchemy import create_engine; from bot import schema; "
            f"out = schema.prepare(create_engine({url!r})); "
            "print(out.action, sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["current", "[]"], done.stdout + done.stderr


def test_the_head_revision_is_exactly_the_models(engine: Engine):
    """Run every migration from nothing and compare with bot/store.py: a model changed without a
    migration fails here."""
    _migrate(engine, "head")
    diff = _diff(engine)
    assert not diff, (f"bot/store.py's models differ from the migrations' head ({schema.head()}): {WRITE_ONE}. "
                      f"The differences: {diff}")


def test_a_versioned_database_behind_head_is_upgraded(engine: Engine):
    _migrate(engine, schema.BASELINE)
    add_release_rows(engine)
    assert schema.current(engine) == schema.BASELINE

    outcome = schema.prepare(engine)

    assert (outcome.action, outcome.before, outcome.after) == ("upgraded", schema.BASELINE, HEAD)
    assert str(outcome) == "upgraded from 0001_baseline to 0002_nurture_sequences"
    assert_release_rows_kept(engine)
    assert_sequence_tables_work(engine)


@WITH_STORE_ENGINE
def test_a_failed_upgrade_changes_nothing(engine: Engine):
    """The upgrade runs in one transaction: a step that fails leaves the database as it was."""
    _migrate(engine, schema.BASELINE)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE sequence_steps (id INTEGER PRIMARY KEY)"))   # in the way of 0002

    with pytest.raises(Exception, match="(?i)sequence_steps"):
        schema.prepare(engine)

    assert "sequence_enrollments" not in _tables(engine)
    assert schema.current(engine) == schema.BASELINE


@WITH_STORE_ENGINE
def test_workers_starting_together_prepare_once(database: str, request: pytest.FixtureRequest):
    immediate = _immediate(request)
    outcomes: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker() -> None:
        eng = _engine(database, immediate)
        try:
            start.wait()
            outcomes.append(schema.prepare(eng).action)
        except BaseException as e:   # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(outcomes) == ["created", "current", "current", "current"]


# ---------------------------------------------------------------------------------------------
# other states a database can be in (SQLite)

@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = _engine(f"sqlite:///{tmp_path / 'sdr.db'}")
    yield eng
    eng.dispose()


def test_a_database_from_before_migrations_with_the_sequence_tables_is_stamped_at_0002(sqlite_engine: Engine):
    """The main branch between e075b0e and migrations: create_all had added the sequence tables."""
    Base.metadata.create_all(sqlite_engine)
    outcome = schema.prepare(sqlite_engine)
    assert (outcome.action, outcome.before, outcome.after) == ("adopted", HEAD, HEAD)
    assert "already at head" in str(outcome)
    assert schema.current(sqlite_engine) == HEAD


def test_a_database_older_than_the_baseline_is_refused(sqlite_engine: Engine):
    make_release_database(sqlite_engine)
    with sqlite_engine.begin() as c:
        c.exec_driver_sql("DROP TABLE email_status")
        c.exec_driver_sql("ALTER TABLE leads DROP COLUMN claimed_by")
    missing = r"older than release e075b0e.*email_status \(table\), leads.claimed_by"
    with pytest.raises(schema.SchemaError, match=missing):
        schema.prepare(sqlite_engine)
    assert schema.current(sqlite_engine) is None


def test_some_but_not_all_sequence_tables_is_refused(sqlite_engine: Engine):
    make_release_database(sqlite_engine)
    with sqlite_engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE nurture_pauses (lead_id VARCHAR(40) PRIMARY KEY)")
    with pytest.raises(schema.SchemaError, match="not made by a release"):
        schema.prepare(sqlite_engine)


def test_a_revision_from_a_newer_release_is_refused(sqlite_engine: Engine):
    schema.prepare(sqlite_engine)
    with sqlite_engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    with pytest.raises(schema.SchemaError, match="0099_from_the_future.*does not know"):
        schema.prepare(sqlite_engine)


def test_tables_dropped_but_the_version_left_are_created_again(sqlite_engine: Engine):
    """Tests (and operators) drop the tables with Base.metadata.drop_all, which leaves alembic_version."""
    schema.prepare(sqlite_engine)
    Base.metadata.drop_all(sqlite_engine)
    outcome = schema.prepare(sqlite_engine)
    assert (outcome.action, outcome.before) == ("created", HEAD)
    assert _tables(sqlite_engine) == set(Base.metadata.tables) | {"alembic_version"}


def test_prepare_without_upgrade_leaves_it_to_the_operator(sqlite_engine: Engine):
    """prepare(upgrade=False) creates and stamps, but a database behind head is the operator's call."""
    assert schema.prepare(sqlite_engine, upgrade=False).action == "created"
    with sqlite_engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '0001_baseline'")
        c.exec_driver_sql("DROP TABLE nurture_pauses")
    with pytest.raises(schema.SchemaError, match="at revision 0001_baseline.*run `sdr db upgrade`"):
        schema.prepare(sqlite_engine, upgrade=False)
    assert schema.current(sqlite_engine) == schema.BASELINE


def test_the_baseline_revision_is_the_release_schema(sqlite_engine: Engine, tmp_path: Path):
    """Statement for statement, the baseline revision creates what release e075b0e's create_all did."""
    _migrate(sqlite_engine, schema.BASELINE)
    release = _engine(f"sqlite:///{tmp_path / 'release.db'}")
    make_release_database(release)
    try:
        assert _ddl(sqlite_engine) == _ddl(release)
    finally:
        release.dispose()


def test_frozen_schema_is_release_e075b0e(tmp_path: Path):
    """RELEASE_SQL is what that release's own code creates (its bot/store.py, from git)."""
    shown = subprocess.run(["git", "show", f"{RELEASE}:bot/store.py"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        pytest.skip(f"release {RELEASE} is not in this clone's history ({shown.stderr.strip()[:100]})")
    path = tmp_path / "store_e075b0e.py"
    path.write_text(shown.stdout, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("store_e075b0e", path)
    old = importlib.util.module_from_spec(spec)
    sys.modules["store_e075b0e"] = old
    try:
        spec.loader.exec_module(old)
        made, frozen = _engine(f"sqlite:///{tmp_path / 'made.db'}"), _engine(f"sqlite:///{tmp_path / 'frozen.db'}")
        old.Base.metadata.create_all(made)
        make_release_database(frozen)
        assert _ddl(made) == _ddl(frozen)
        assert sorted(old.Base.metadata.tables) == sorted(set(_tables(frozen)))
        made.dispose(), frozen.dispose()
    finally:
        sys.modules.pop("store_e075b0e", None)


# ---------------------------------------------------------------------------------------------
# the command line: sdr db upgrade / sdr db current

def _cli() -> click.Group:
    from integrations.cli_db import db

    @click.group()
    def sdr() -> None:
        """A stand-in for `sdr` with only the `db` group."""
    sdr.add_command(db)
    return sdr


def test_sdr_db_upgrade_and_current(data_dir: Path):
    run = CliRunner().invoke
    r = run(_cli(), ["db", "current"])
    assert r.exit_code == 0, r.output
    assert "no schema version" in r.output and "sdr db upgrade" in r.output
    assert run(_cli(), ["db", "current", "--check"]).exit_code == 1

    r = run(_cli(), ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    assert str(data_dir / "sdr.db") in r.output and f"created the schema at {HEAD}" in r.output

    r = run(_cli(), ["db", "upgrade"])
    assert r.exit_code == 0 and "nothing to do" in r.output, r.output
    r = run(_cli(), ["db", "current", "--check"])
    assert r.exit_code == 0 and f"{HEAD} (head)" in r.output, r.output


def test_sdr_db_upgrade_upgrades_a_release_database(database: str, monkeypatch: pytest.MonkeyPatch):
    eng = _engine(database)
    make_release_database(eng)
    add_release_rows(eng)
    monkeypatch.setenv("SDR_DATABASE_URL", database)

    r = CliRunner().invoke(_cli(), ["db", "upgrade"])

    assert r.exit_code == 0, r.output
    assert f"stamped {schema.BASELINE}, upgraded to {HEAD}" in r.output
    r = CliRunner().invoke(_cli(), ["db", "current"])
    assert r.exit_code == 0 and f"{HEAD} (head)" in r.output, r.output
    assert_release_rows_kept(eng)
    eng.dispose()


@pytest.mark.parametrize("url", ["not a database url", "sqlite:////nonexistent-dir/nowhere/sdr.db",
                                 "nosuchdialect://user:hunter2@127.0.0.1/db"])
def test_a_bad_database_url_names_the_setting(url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SDR_DATABASE_URL", url)
    for args in (["db", "upgrade"], ["db", "current"]):
        r = CliRunner().invoke(_cli(), args)
        assert r.exit_code != 0 and r.exception is None or isinstance(r.exception, SystemExit), r.output
        assert "SDR_DATABASE_URL" in r.output and "hunter2" not in r.output, r.output
        assert "Traceback" not in r.output
