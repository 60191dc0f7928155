"""`sdr db`: the database schema's version (Alembic migrations in bot/migrations, through bot.schema).

    sdr db upgrade     bring the database of SDR_DATABASE_URL (SQLite in SDR_DATA_DIR when unset) to head
    sdr db current     print the revision it is at (--check: exit 1 unless at head)

`sdr serve` and every other command upgrade on their own when they open the store; these are for
operators who want to do it first (a deploy step) or look.
"""
from __future__ import annotations

from typing import Any, Callable

import click

from bot import schema
from bot.settings import Settings, SettingsError


def _settings(ctx: click.Context) -> Settings:
    obj = (ctx.find_root().obj if ctx else None) or {}
    try:
        return Settings.from_env(data_dir=obj.get("data_dir"))
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def _database(ctx: click.Context) -> str:
    """The database URL; the data dir is created when the URL is the default SQLite file in it."""
    settings = _settings(ctx)
    if settings.database_url == f"sqlite:///{settings.data_dir / 'sdr.db'}":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.database_url


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).render_as_string(hide_password=True)


def _run(url: str, fn: Callable[[str], Any]) -> Any:
    """`fn(url)`, with a database that cannot be opened or migrated reported in one line."""
    from sqlalchemy.exc import SQLAlchemyError
    try:
        return fn(url)
    except schema.SchemaError as e:
        raise click.ClickException(f"{_shown(url)}: {e}") from None
    except (SQLAlchemyError, ImportError) as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise click.ClickException(f"cannot use the database {_shown(url)} (SDR_DATABASE_URL): {reason}") from None


@click.group("db")
def db() -> None:
    """The database schema: upgrade it to this version's, or see which version it is at."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Bring the database to this version's schema; safe to run again.

    A new database is created at the newest revision; one from before migrations (release e075b0e
    or later) is checked, stamped and upgraded in place; a versioned one is upgraded."""
    url = _database(ctx)
    outcome = _run(url, schema.upgrade)
    click.echo(f"{_shown(url)}: {outcome}")


@db.command("current")
@click.option("--check", is_flag=True, help="Exit 1 unless the database is at the newest revision.")
@click.pass_context
def db_current(ctx: click.Context, check: bool) -> None:
    """Print the revision the database is at; --check: exit 1 unless head."""
    url = _database(ctx)
    revision = _run(url, schema.current)
    head = schema.head()
    if revision == head:
        click.echo(f"{_shown(url)}: {revision} (head)")
        return
    if revision is None:
        click.echo(f"{_shown(url)}: no schema version (a new database, or one from before migrations); "
                   f"`sdr db upgrade` brings it to {head}")
    else:
        click.echo(f"{_shown(url)}: {revision}, behind head {head}; `sdr db upgrade` brings it there")
    if check:
        ctx.exit(1)
