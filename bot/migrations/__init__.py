"""The Alembic environment of the database schema: `env.py`, the revisions in `versions/`.

Run through `bot.schema` (`prepare`, `upgrade`, `current`) and `sdr db upgrade` / `sdr db current`;
`alembic -c bot/migrations/alembic.ini ...` works too (it reads SDR_DATABASE_URL / SDR_DATA_DIR).
After changing a model in bot/store.py, write the migration next to the others:

    alembic -c bot/migrations/alembic.ini revision --autogenerate --rev-id 0003_<what> -m "<what>"

against a database at head, read what it generated, and keep one file per change.
"""
