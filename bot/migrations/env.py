"""Alembic's environment: the migrations run on the connection bot.schema passes in
(`config.attributes["connection"]`, inside its transaction and lock), or, from the alembic
command line, on the database of SDR_DATABASE_URL (SQLite in SDR_DATA_DIR when unset).
SQLite cannot ALTER most things in place: operations are rendered as batches (copy and move)."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from bot.store import Base


def _configure(**kw: object) -> None:
    context.configure(target_metadata=Base.metadata, compare_type=True, **kw)


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    from bot.settings import Settings
    return Settings.from_env().database_url


def run_offline() -> None:
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        _configure(connection=given, render_as_batch=given.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
