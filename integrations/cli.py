"""`sdr`: run the demo, serve the chat, chat in the terminal, load content, look at leads.

The operator's channel: it builds the SDR through the composition root (`integrations.wiring`).
Every command honours SDR_DATA_DIR (default ./.sdr) for the database, the vector store and logs,
and SDR_PLAYBOOK / --playbook for the playbook; `sdr config` shows every setting.
"""
from __future__ import annotations

import json
import socket
import tempfile
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from bot.logs import setup_logging
from bot.playbook import PlaybookError
from bot.settings import Settings, SettingsError, describe

SAMPLE = Path(__file__).resolve().parent.parent / "knowledge" / "sample"


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    """The settings: the environment, with --data-dir / --playbook when given on the command line."""
    obj = (ctx.find_root().obj if ctx else None) or {}
    try:
        return Settings.from_env(data_dir=obj.get("data_dir"), playbook_path=obj.get("playbook"), **overrides)
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def _sdr(ctx: click.Context, load_knowledge: bool = True, clock: Any = None, **overrides: Any) -> Any:
    from bot.schema import SchemaError
    from integrations.calendar import CalendarConfigError
    from integrations.wiring import build_sdr

    settings = _settings(ctx, **overrides)
    setup_logging(settings)
    try:
        return build_sdr(settings, load_knowledge=load_knowledge, **({"clock": clock} if clock else {}))
    except (PlaybookError, CalendarConfigError, SettingsError, SchemaError) as e:
        raise click.ClickException(str(e)) from None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server will: TIME_WAIT is free
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _free_port(host: str, start: int) -> int:
    for port in range(start, start + 50):
        if _port_free(host, port):
            return port
    raise click.ClickException(f"no free port between {start} and {start + 49} on {host}; pass --port")


def _ingest(sdr: Any, paths: list[str], prune: bool, progress: bool = True) -> int:
    """Ingest PATHS; print every failure and warn about folders without content. Returns the number
    of paths or files that failed."""
    from knowledge.ingest import EXTENSIONS, iter_files

    for p in paths:
        if Path(p).is_dir() and not iter_files([p])[0]:
            click.secho(f"  warning: {p} holds no {'/'.join(sorted(EXTENSIONS))} files; nothing to load from it",
                        fg="yellow", err=True)
    report = sdr.kb.ingest(paths, prune=prune, progress=progress)
    for _path, msg in report.errors:
        click.secho(f"  failed: {msg}", fg="red", err=True)
    click.echo(f"Ingested {report.summary()}. The content store holds {sdr.kb.count()} chunks.")
    if report.files == 0 and not report.errors:
        click.secho("  warning: no supported files found: nothing was loaded", fg="yellow", err=True)
    warming = getattr(sdr, "warming", None)
    if warming is not None:   # what a server reads at start (<data dir>/cache) is ready before the server starts
        warming.join()
    return len(report.errors)


# The modules every worker imports to build its app (~0.9 s of CPU each): imported once in the master
# before the fork, the workers share them instead of importing them at once on the same cores
# (4 workers on 2 cores: first reply 5.3 → 2.x s). Code only — no model, database, Chroma client or
# thread is made by importing them (numpy's BLAS pool is told one thread first: the turn's vector
# math is small, and the embedding model keeps its own OpenMP threads, loaded after the fork).
PRELOADED = ("integrations.wiring", "bot.turn", "knowledge.retrieve", "knowledge.embeddings", "integrations.web.app",
             "integrations.llm", "integrations.calendar")


def _preload_code() -> None:
    import importlib
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    for name in PRELOADED:
        importlib.import_module(name)


def _preload_content_code(age: int) -> None:
    """In the master, before it forks worker `age`: from the second worker on, chromadb is imported
    here (~1 s, on the other core while the first worker boots), so the later workers share it. The
    first worker is forked without it: it takes requests first and opens the content store after."""
    if age >= 2:
        import importlib

        importlib.import_module("knowledge.chroma_function")   # chromadb's Python side (no client, no thread)


def _run_server(host: str, port: int, app: Any, options: Any = None) -> None:
    """Serve until Ctrl+C (the socket is already known to be free). With `options` (a
    `ServerOptions`), APP is a factory each gunicorn worker calls after the fork; without, APP is
    the app itself, served by Werkzeug's development server (`--dev`)."""
    if options is not None:
        from integrations.web.server import serve

        serve(app, options, on_worker_ready=_worker_ready, before_fork=_preload_content_code, preload=_preload_code)
        return
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)


def _server_options(host: str, port: int) -> Any:
    """The current command's --dev/--workers/--threads/--max-in-flight as `ServerOptions`, or None
    for --dev (Werkzeug)."""
    from integrations.web.server import ServerOptions

    params = click.get_current_context().params
    if params.get("dev"):
        return None
    try:
        return ServerOptions(host=host, port=port, workers=params.get("workers") or 0,
                             threads=params.get("threads") or 0, max_in_flight=params.get("max_in_flight") or 0)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


_STARTUP_NOTES: list[tuple[str, str]] = []   # (text, colour) a worker prints once: see _worker_ready


def _worker_app(settings: Settings, worker: bool) -> Any:
    """In a gunicorn worker, after the fork: this process's own SDR (database engine, embedding
    model; its Chroma client is opened once the worker is ready: `_open_content`), web app and,
    unless --no-worker, outbox worker thread (outbox entries and sequence steps are claimed with
    leases, so one per worker is safe)."""
    from integrations.wiring import build_sdr

    settings = settings.model_copy()
    setup_logging(settings)
    sdr = build_sdr(settings, warm_content=False)   # warms up in a thread while the app is built …
    app, notes = _app_and_worker(sdr, worker, settings)
    _STARTUP_NOTES.extend(notes)
    sdr.warming.join()   # … and takes requests once warm: a first turn waits for nothing but the content store
    getattr(getattr(sdr.kb, "embedder", None), "ready", lambda: None)()   # a model that failed to load fails the boot
    if sdr.kb is not None:
        _CONTENT_STORES.append(sdr.kb)   # opened once this worker takes requests: _worker_ready
    return app


_CONTENT_STORES: list[Any] = []   # this worker's content store, opened in the background once it is ready


def _open_content(kb: Any, first: bool) -> None:
    """In a server worker that takes requests: chromadb imported, the content store opened and its
    chunks and index loaded (~1.4 s on 2 cores; a turn that needs content meanwhile waits for it, a
    greeting does not). The first worker says when the store is empty. A store that cannot be opened
    is logged by the store itself (knowledge/retrieve.py): turns answer without content, and it is
    tried again."""
    kb.warm()
    status = kb.status()
    if first and status == {"content": "ready", "content_chunks": 0}:
        click.secho("  The content store is empty: the SDR will say it doesn't know. Load content with "
                    "`sdr ingest PATH` (or `sdr demo` for the sample).", fg="yellow", err=True)
    elif first and status["content"] == "unavailable":   # the operator's terminal, not only the log file
        click.secho(f"  {status['content_error']}", fg="red", err=True)


def _app_and_worker(sdr: Any, worker: bool, settings: Settings | None = None) -> tuple[Any, list[tuple[str, str]]]:
    """The web app and, when `worker`, the outbox worker thread started; with the notes to print
    as (text, colour): the app's warnings in red, what the worker lacks in yellow."""
    from integrations.wiring import build_outbox_worker, build_web_app

    app = build_web_app(sdr, settings)
    notes = [(w, "red") for w in app.extensions.get("sdr.warnings", [])]
    if worker:
        w, lacking = build_outbox_worker(sdr)
        notes += [(n, "yellow") for n in lacking]
        w.start()
    return app, notes


def _worker_ready(age: int) -> None:
    """The first worker says once what every worker would (warnings, what is not configured); each
    worker, now taking requests, opens its content store in the background."""
    import threading

    if age == 1:
        for text, colour in _STARTUP_NOTES:
            click.secho(f"  {text}", fg=colour, err=True)
    for kb in _CONTENT_STORES:
        threading.Thread(target=_open_content, args=(kb, age == 1), name="sdr-content", daemon=True).start()


def _serve(sdr: Any, host: str, port: int, worker: bool = True) -> None:
    """Print where to chat and how to sign in, then serve until Ctrl+C: gunicorn (each worker builds
    its own SDR from `sdr.settings` after the fork), or Werkzeug with --dev (this `sdr`)."""
    from integrations.web.access import session_key

    options = _server_options(host, port)
    if not sdr.settings.public_url:
        sdr.settings.public_url = f"http://{host}:{port}"
    if options is None:
        app, notes = _app_and_worker(sdr, worker)
        for text, colour in notes:
            click.secho(f"  {text}", fg=colour, err=colour == "red")
        generated = bool(app.extensions.get("sdr.generated_token"))
    else:
        import secrets

        if sdr.kb is not None:   # this process loaded the embedding model and Chroma (sdr demo): start afresh
            sdr.store.dispose()
            _exec_serve(host, port, worker, sdr.settings)
        generated = not sdr.settings.admin_token   # made here, before the fork: every worker signs with it
        if generated:
            sdr.settings.admin_token = secrets.token_urlsafe(32)
        sdr.store.dispose()   # no connection of this process is carried into the workers
        settings = sdr.settings.model_copy()
        app = lambda: _worker_app(settings, worker)   # noqa: E731 - called in each worker after the fork
    url = f"http://{host}:{port}"
    click.secho(f"\n  Chat with the SDR at {url}\n", fg="green", bold=True)
    _print_signin(session_key(sdr.settings.admin_token), generated, sdr.settings.public_url or url)
    click.echo(f"  widget for any site: <script src=\"{url}/widget.js\" defer></script>"
               " (list the site in SDR_ALLOWED_ORIGINS)")
    click.echo(f"  brain: {sdr.brain.name if options is None else _brain_name(sdr)} · leads: `sdr leads`"
               f" · data: {sdr.settings.data_dir} · logs: {sdr.settings.log_dir / 'sdr.log'}")
    if options is not None:
        click.echo(f"  server: gunicorn, {options.workers} worker process(es) × {options.max_in_flight} requests"
                   f" at once; more wait ≤ {options.queue_wait_s:g} s, then get 503 + Retry-After")
    else:
        click.echo("  server: Werkzeug's development server (--dev): one process, no overload protection")
    click.echo("  Ctrl+C stops.\n")
    _run_server(host, port, app, options)


def _exec_serve(host: str, port: int, worker: bool, settings: Settings) -> None:
    """Replace this process by `sdr serve` with the same options (and SDR_DEMO when on): the workers
    are then forked from a process that never loaded the embedding model (its native thread pool
    does not survive a fork) nor opened Chroma or the database."""
    import os

    ctx = click.get_current_context()
    obj, params = ctx.find_root().obj or {}, ctx.params
    args = [sys.executable, "-m", "integrations.cli"]
    for flag, key in (("--data-dir", "data_dir"), ("--playbook", "playbook")):
        if obj.get(key):
            args += [flag, str(obj[key])]
    args += ["serve", "--host", host, "--port", str(port), "--threads", str(params["threads"])]
    for flag in ("workers", "max_in_flight"):
        if params.get(flag):
            args += [f"--{flag.replace('_', '-')}", str(params[flag])]
    if not worker:
        args.append("--no-worker")
    env = dict(os.environ, **({"SDR_DEMO": "1"} if settings.demo_mode else {}))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, args, env)


def _brain_name(sdr: Any) -> str:
    """The brain each worker will build, named without building one here (a bad provider stops here)."""
    from integrations.llm import llm_config

    cfg = llm_config(sdr.playbook, sdr.settings)
    return f"model:{cfg.model}" if cfg.enabled else sdr.brain.name


def _print_signin(key: bytes, generated: bool, base: str) -> None:
    from integrations.web.access import signin_code

    click.echo(f"  team pages: sign in once at {base}/signin?code={signin_code(key)}")
    if generated:
        click.echo("    (a one-time link; SDR_ADMIN_TOKEN is unset, so this run made its own API token and\n"
                   "    nobody can read leads without this link: set SDR_ADMIN_TOKEN to keep one across restarts\n"
                   "    and to call /api/leads with 'Authorization: Bearer <token>')")
    else:
        click.echo("    (a one-time link; `sdr signin` prints another, or sign in with SDR_ADMIN_TOKEN)")


class _Commands(click.Group):
    """`sdr`'s commands; a content store that cannot be opened or read is an error that says what to
    check (exit 1), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from knowledge.index import ContentUnavailable

        try:
            return super().invoke(ctx)
        except ContentUnavailable as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="SDR_DATA_DIR", default=None,
              help="Where the database, vector store and logs live. [env SDR_DATA_DIR; default ./.sdr]")
@click.option("--playbook", type=click.Path(dir_okay=False), envvar="SDR_PLAYBOOK", default=None,
              help="Playbook YAML: questions, scoring rules, thresholds. [env SDR_PLAYBOOK; default: the bundled one]")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, playbook: str | None) -> None:
    """An AI SDR: answers website visitors from your content, qualifies and scores each lead
    with a reason for every point, and hands sales-qualified leads to a rep.

    \b
    Start here:
      sdr demo                      ingest the sample content and open the chat page (offline, no keys)
      sdr ingest ./content          load your own Markdown/HTML/text/PDF content
      sdr --playbook my.yaml serve  serve with your own playbook
      sdr chat                      talk to it in the terminal and watch the score move
      sdr leads / sdr lead ID|EMAIL see who came in, their score breakdown and transcript
      sdr eval                      simulated prospects measure the SDR (field accuracy, handoffs, grounding)
      sdr config                    every setting (environment variable), its value and where it came from
      sdr signin                    a one-time link that signs a teammate in to the team pages

    \b
    Settings come from environment variables (SDR_*, OPENAI_*, SLACK_*, CALCOM_API_KEY); a bad value
    stops the command, naming the variable. `sdr COMMAND --help` explains each command.
    """
    def given(name: str, value: str | None) -> str | None:
        # from the command line only: the environment is read by the settings themselves
        return value if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE else None

    ctx.obj = {"data_dir": given("data_dir", data_dir), "playbook": given("playbook", playbook)}
    for stream in (sys.stdout, sys.stderr):   # a bad character stored long ago never aborts a listing
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


from integrations.cli_db import db as _db  # noqa: E402 - `sdr db upgrade|current`: schema migrations

main.add_command(_db)


@main.command()
@click.option("--url", default=None, help="The server's address. [default: SDR_PUBLIC_URL, else http://127.0.0.1:8000]")
@click.pass_context
def signin(ctx: click.Context, url: str | None) -> None:
    """Print a one-time sign-in link to the team pages (/leads) of a running `sdr serve`.

    The link works once, within a day, on a server started with the same SDR_ADMIN_TOKEN (a server
    that generated its own token printed its own link at start). Send it to a teammate privately:
    whoever opens it first is signed in for 12 hours.
    """
    from bot.settings import Settings
    from integrations.web.access import session_key, signin_code

    settings = Settings.from_env()
    token = settings.admin_token
    if not token:
        raise click.ClickException("SDR_ADMIN_TOKEN is not set: the running server made its own token and printed "
                                   "its sign-in link at start. Set SDR_ADMIN_TOKEN for both to issue links here.")
    base = (url or settings.public_url or "http://127.0.0.1:8000").rstrip("/")
    click.echo(f"{base}/signin?code={signin_code(session_key(token))}")


@main.command()
@click.pass_context
def config(ctx: click.Context) -> None:
    """Print the effective settings: each environment variable, its value (secrets masked as sk-…1234
    or ********), where the value came from (default, environment, or override for --data-dir and
    --playbook) and what it does. A bad value stops here too, naming the variable and the fix."""
    settings = _settings(ctx)
    rows = describe(settings)
    width = max(len(r["variable"]) for r in rows)
    for r in rows:
        src = {"default": "default", "environment": "environment", "override": "command line"}[r["source"]]
        color = None if r["source"] == "default" else "cyan"
        click.secho(f"{r['variable']:<{width}}  {r['value']}", fg=color, bold=r["source"] != "default", nl=False)
        click.echo(f"   [{src}]")
        click.secho(f"{'':<{width}}  {r['description']}", dim=True)


def _server_flags(f: Any) -> Any:
    """--workers/--threads/--max-in-flight/--dev, shared by `serve` and `demo`."""
    from integrations.web.server import DEFAULT_THREADS, QUEUE_WAIT_S, cores

    f = click.option("--dev", is_flag=True,
                     help="Werkzeug's development server instead: one process, no overload protection.")(f)
    f = click.option("--max-in-flight", type=click.IntRange(1), default=None, metavar="N",
                     help=f"Requests one worker runs at once [default: --threads]; more wait up to "
                          f"{QUEUE_WAIT_S:g} s for a slot, then get 503 with Retry-After.")(f)
    f = click.option("--threads", type=click.IntRange(1), default=DEFAULT_THREADS, show_default=True,
                     help="Threads per worker: requests it works on at once (a turn mostly waits on the "
                          "database or a model, so a few per core).")(f)
    f = click.option("--workers", type=click.IntRange(1), default=None, metavar="N",
                     help=f"Worker processes, each with its own database connections, content store and "
                          f"embedding model [default: one per core, here {cores()}].")(f)
    return f


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port (the next free one is used if taken).")
@click.option("--no-serve", is_flag=True, help="Only ingest the sample content; don't start the server.")
@_server_flags
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, no_serve: bool, **_server: Any) -> None:
    """Ingest the bundled sample company's content and serve the chat page. Offline, no keys.

    Open the printed URL, chat as a prospect, and watch the panel beside the chat: the lead's
    stage and score change with a reason for every point. When --port is taken, the next free
    port is used (and the command says so). It serves as `sdr serve` does (gunicorn; --dev for
    Werkzeug).
    """
    if not no_serve:
        free = _free_port(host, port)
        if free != port:
            click.secho(f"Port {port} on {host} is taken; using port {free} instead.", fg="yellow")
        port = free
    sdr = _sdr(ctx)
    sdr.settings.demo_mode = True   # the demo page's panel shows the lead as it is built
    click.echo(f"Loading the sample content of '{sdr.playbook.company.name}' from {SAMPLE} ...")
    if _ingest(sdr, [str(SAMPLE)], prune=False):
        raise click.ClickException("the sample content did not load completely (see above)")
    if no_serve:
        return
    if not _port_free(host, port):
        port = _free_port(host, port)
        click.secho(f"That port was taken while loading; using port {port} instead.", fg="yellow")
    _serve(sdr, host, port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 for all).")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
@click.option("--no-worker", is_flag=True, help="Don't deliver the outbox in this process (run `sdr worker` instead).")
@_server_flags
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, no_worker: bool, dev: bool, **_server: Any) -> None:
    """Serve the chat API, the chat page (/), the team pages (/leads) and the embeddable widget
    (/widget.js). Fails at once, before anything is loaded, when PORT is taken: pass --port.

    \b
    API:  POST /api/chat    {"message": "...", "session_id"?: "...", "visitor"?: {...}}
          POST /api/events  servers (API token or X-SDR-Signature): {"email" | "lead_id" | "session_id",
                            "type": "webinar_attended"}; browsers: {"session_id", "type": "page_view"}
          GET  /api/leads/ID   the lead, its score events, messages and queued actions (API token)
          GET  /openapi.json, /healthz
    \b
    Server: gunicorn with --workers processes (default one per core) of --threads threads (default
    4). Each worker builds its own SDR after the fork and, unless --no-worker, runs an outbox worker
    (entries are claimed with leases: none is delivered twice). A worker runs at most
    --max-in-flight requests at once; a request that finds no slot within 2 s gets 503 with
    Retry-After: 1 and {"error": {"code": "overloaded", ...}}. Rate limits and the per-visitor turn
    lock are shared by all workers through SDR_REDIS_URL (or SDR_RATE_LIMIT_STORAGE=redis://...); without
    it rate limits are per process. --dev serves with Werkzeug in one process instead.
    \b
    Team pages (/leads) need sign-in: with SDR_ADMIN_TOKEN unset this command makes a token for
    the run (one for all workers) and prints a one-time sign-in link; `sdr signin` prints more links.
    \b
    Slack (buttons, /sdr) is served at /slack/events when SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET
    are set; the outbox is delivered in this process unless --no-worker.
    """
    if not _port_free(host, port):
        raise click.ClickException(f"port {port} on {host} is taken (another `sdr serve`?); "
                                   f"stop that process or pass another port, e.g. --port {_free_port(host, port + 1)}")
    sdr = _sdr(ctx, load_knowledge=dev)   # the workers load the content store, each after the fork
    if dev and sdr.kb.count() == 0:
        click.secho("The content store is empty: the SDR will say it doesn't know. Load content with "
                    "`sdr ingest PATH` (or `sdr demo` for the sample).", fg="yellow", err=True)
    if not dev:
        _check_calendar(sdr)
    _serve(sdr, host, port, worker=not no_worker)


def _check_calendar(sdr: Any) -> None:
    """A calendar the playbook names but the settings cannot reach fails here, not in every worker."""
    from integrations.calendar import CalendarConfigError, make_calendar

    if sdr.playbook.reps:
        try:
            make_calendar(sdr.playbook, sdr.store, settings=sdr.settings)
        except CalendarConfigError as e:
            raise click.ClickException(str(e)) from None


def _instant(value: str | None) -> Any:
    """--now: an ISO 8601 instant (2026-12-01T18:00:00Z; no zone means UTC) as naive UTC."""
    from datetime import datetime, timezone

    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 instant; write e.g. 2026-12-01T18:00:00Z",
                                 param_hint="--now") from None
    try:
        out = (at.astimezone(timezone.utc) if at.tzinfo else at.replace(tzinfo=timezone.utc)).replace(tzinfo=None)
    except OverflowError:
        out = None
    if out is None or not 2000 <= out.year <= 2199:
        raise click.BadParameter(f"{value!r} is too far from today; give an instant between 2000 and 2199",
                                 param_hint="--now")
    return out


@main.command()
@click.option("--poll", default=1.0, show_default=True, help="Seconds between looks at the outbox when idle.")
@click.option("--once", is_flag=True, help="Do everything due now (or at --now) once, then exit: for cron and tests.")
@click.option("--now", "now_text", default=None, metavar="ISO",
              help="With --once: do what is due as of this instant, e.g. 2026-12-01T18:00:00Z (UTC) — for real: "
                   "emails are sent. For a dry run use `sdr sequences simulate`.")
@click.pass_context
def worker(ctx: click.Context, poll: float, once: bool, now_text: str | None) -> None:
    """Deliver the outbox (Slack handoffs, invitations, emails) and run the nurture sequences'
    due steps, on their own — for deployments with several web processes started with
    `sdr serve --no-worker`. Any number of workers may run: each outbox entry and each sequence
    step is claimed with a lease, so none is done twice. Attempts before an entry is
    dead-lettered: SDR_OUTBOX_MAX_ATTEMPTS (default 8).

    \b
      sdr worker                                  run until Ctrl+C
      sdr worker --once                           everything due now, once; exit 0 (1 if anything failed)
      sdr worker --once --now 2026-12-08T14:00:00Z   what is due at that instant, done (and sent) now
    """
    from integrations.wiring import build_outbox_worker

    now = _instant(now_text)
    if now is not None and not once:
        raise click.UsageError("--now goes with --once (a running worker follows the real clock)")
    sdr = _sdr(ctx, **({"clock": lambda: now} if now is not None else {}))
    from integrations.web.observability import observe

    observe(sdr)   # form and email turns run here count in /metrics too (PROMETHEUS_MULTIPROC_DIR shared)
    w, notes = build_outbox_worker(sdr)
    for note in notes:
        click.secho(note, fg="yellow")
    jobs = " and the nurture sequences" if w.jobs else ""
    if once:
        totals: dict[str, int] = {}
        for _ in range(1000):   # deliver, run due steps, deliver the emails they queued, … until idle
            counts = w.run_once(limit=50)
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
            if not counts:
                break
        at = (now or sdr.clock()).strftime("%Y-%m-%d %H:%M:%S UTC")
        done = ", ".join(f"{v} {k}" for k, v in sorted(totals.items())) or "nothing was due"
        click.echo(f"as of {at}: {done}")
        failed = totals.get("failed", 0) + totals.get("dead", 0)
        if failed:
            click.secho(f"{failed} failed: see `sdr outbox` and the log", fg="red", err=True)
        ctx.exit(1 if failed else 0)
    click.echo(f"worker {w.worker_id} delivering: {', '.join(w.handlers) or 'nothing (see above)'}{jobs} · Ctrl+C stops")
    try:
        w.run_forever(poll)
    except KeyboardInterrupt:
        pass


@main.group()
def sequences() -> None:
    """Nurture sequences (the playbook's `sequences:`): what each sends and when, and a dry run
    for one lead.

    \b
      sdr sequences list
      sdr sequences show new_inbound
      sdr sequences simulate new_inbound --lead LEAD_ID --days 30 [--json]
    """


@sequences.command("list")
@click.pass_context
def sequences_list(ctx: click.Context) -> None:
    """Every sequence: its trigger, steps, and how many leads are in it, done or out."""
    from sqlalchemy import func, select

    from bot.store import Enrollment

    sdr = _sdr(ctx, load_knowledge=False)
    if not sdr.playbook.sequences:
        click.echo(f"The playbook ({sdr.playbook.source}) has no sequences: add `sequences:` (see the default playbook).")
        return
    with sdr.store.session() as s:
        counts = {(q, st): n for q, st, n in s.execute(select(Enrollment.sequence_id, Enrollment.status, func.count())
                                                        .group_by(Enrollment.sequence_id, Enrollment.status))}
    lim = sdr.playbook.limits
    for q in sdr.playbook.sequences:
        c = {st: counts.get((q.id, st), 0) for st in ("active", "completed", "exited")}
        click.secho(f"{q.id}", bold=True, nl=False)
        click.echo(f"  {q.name or ''}  · enrols on {', '.join(q.enroll.on)} at {', '.join(q.enroll.stage_in)} · "
                   f"{len(q.steps)} steps · {c['active']} active, {c['completed']} completed, {c['exited']} exited")
    click.echo(f"limits: {lim.emails_per_lead_per_week} emails per lead per week · quiet hours {lim.quiet_hours or 'none'}"
               f"{' · no weekends' if lim.skip_weekends else ''} · default time zone {lim.timezone}")


@sequences.command("show")
@click.argument("sequence_id")
@click.pass_context
def sequences_show(ctx: click.Context, sequence_id: str) -> None:
    """One sequence: who enters, each step, what ends it."""
    from bot.sequences import sequence_summary

    sdr = _sdr(ctx, load_knowledge=False)
    q = _sequence(sdr, sequence_id)
    click.secho(f"{q.id}" + (f" — {q.name}" if q.name else ""), bold=True)
    click.echo(f"  enrols: leads arriving by {', '.join(q.enroll.on)} at stage {', '.join(q.enroll.stage_in)}, with an email")
    for line in sequence_summary(sdr.playbook, q):
        click.echo(f"  {line}")
    click.echo(f"  exits at once on: {', '.join(q.exit.on)}"
               + (f"; stops after {q.exit.unengaged_after} emails with no open, click or reply"
                  if q.exit.unengaged_after else ""))


def _sequence(sdr: Any, sequence_id: str) -> Any:
    q = sdr.playbook.sequence(sequence_id)
    if q is None:
        known = ", ".join(x.id for x in sdr.playbook.sequences) or "none"
        raise click.ClickException(f"no sequence {sequence_id!r} in {sdr.playbook.source}; known: {known}")
    return q


@sequences.command("simulate")
@click.argument("sequence_id")
@click.option("--lead", "lead_ref", required=True, metavar="ID|EMAIL", help="The lead (from `sdr leads`).")
@click.option("--days", default=30.0, show_default=True, type=click.FloatRange(0, 366), help="How far ahead.")
@click.option("--now", "now_text", default=None, metavar="ISO", help="Start here instead of now (UTC).")
@click.option("--json", "as_json", is_flag=True, help='Print [{"at", "step", "url", "skipped"}, ...].')
@click.pass_context
def sequences_simulate(ctx: click.Context, sequence_id: str, lead_ref: str, days: float, now_text: str | None,
                       as_json: bool) -> None:
    """What the lead would receive from SEQUENCE_ID and when, if they stay quiet — without sending
    anything or changing the lead: the real scheduler (quiet hours and weekends in the lead's time
    zone, the weekly cap, content they already got, exits) on a copy of the lead's records. A lead
    not in the sequence yet is enrolled now in the copy. Steps that wait for an event (a pricing
    page view) are listed apart."""
    import json

    from bot.sequences import simulate

    sdr = _sdr(ctx)
    _sequence(sdr, sequence_id)
    lead_id = lead_ref
    if "@" in lead_ref:
        lead_id = _lead_by_email(sdr, lead_ref) or ""
    start = _instant(now_text) or sdr.clock()
    try:
        plan = simulate(sdr, sequence_id, lead_id, days, start)
    except LookupError:
        raise click.ClickException(f"no lead {lead_ref!r}; list leads with `sdr leads`") from None
    if as_json:
        click.echo(json.dumps(plan["events"], indent=2))
        return
    click.secho(f"{sequence_id} for lead {lead_id}, {days:g} days from {start:%Y-%m-%d %H:%M} UTC"
                + ("" if plan["enrolled"] else " (not enrolled yet: enrolled now in the dry run)"), bold=True)
    if not plan["events"]:
        click.echo("  nothing would be sent in that time")
    for e in plan["events"]:
        what = e["url"] or ("(template email)" if not e["skipped"] else "")
        line = f"  {e['at'][:16].replace('T', ' ')} UTC  {e['step'] or '-':<20} "
        click.echo(line + (what if not e["skipped"] else click.style(f"skipped: {e['skipped']}", fg="yellow")))
    for note in plan["not_simulated"]:
        click.secho(f"  (not simulated) {note}", dim=True)


@main.group(invoke_without_command=True)
@click.pass_context
def outbox(ctx: click.Context) -> None:
    """Side effects waiting or failed (handoffs, invitations): what, for whom, attempts, last error.
    `sdr outbox retry ID` makes one due again now."""
    if ctx.invoked_subcommand:
        return
    from bot.outbox import list_entries

    sdr = _sdr(ctx, load_knowledge=False)
    rows = list_entries(sdr.store)
    if not rows:
        click.echo("The outbox is empty: nothing waiting, nothing failed.")
        return
    click.echo(f"{'id':>5}  {'kind':<15} {'status':<8} {'lead':<22} {'tries':>5}  {'next try':<19}  last error")
    for r in rows:
        nxt = r.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S") if r.status == "pending" else "-"
        click.echo(f"{r.id:>5}  {r.kind:<15} {r.status:<8} {str(r.lead_id):<22} {r.attempts:>5}  {nxt:<19}  {(r.last_error or '')[:70]}")


@outbox.command("retry")
@click.argument("entry_id", type=int)
@click.pass_context
def outbox_retry(ctx: click.Context, entry_id: int) -> None:
    """Make outbox entry ENTRY_ID due now (after fixing what made it fail)."""
    from bot.outbox import retry_entry

    sdr = _sdr(ctx, load_knowledge=False)
    row = retry_entry(sdr.store, entry_id) if 0 < entry_id < 2**63 else None   # ids are 64-bit in every database
    if row is None:
        raise click.ClickException(f"no outbox entry {entry_id}; list them with `sdr outbox`")
    click.echo(f"entry {entry_id} ({row.kind}) is {row.status}" + (" — due now" if row.status == "pending" else ""))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--prune", is_flag=True, help="Remove pieces from the store that are not in PATHS any more.")
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[str, ...], prune: bool) -> None:
    """Load content into the store: folders or files of Markdown (.md with YAML front matter),
    HTML, plain text or PDF. Safe to run again: unchanged chunks are skipped, changed ones updated.
    Every file that fails is printed, and the command then exits with status 1 (the others are
    loaded); a folder without supported files gets a warning.

    \b
    Front matter the SDR uses to pick content for a lead:
      ---
      title: "How Acme cut forecast error by 38%"
      type: case_study     # case_study|guide|ebook|webinar|pricing|faq|integration|roi_calculator
      industries: [healthcare]
      personas: [sales_leader, revops]
      stage: decision      # awareness|consideration|decision
      url: https://example.com/customers/acme
      ---
    """
    sdr = _sdr(ctx)
    failed = _ingest(sdr, list(paths), prune=prune)
    if failed:
        click.secho(f"{failed} path(s) or file(s) failed (see above); fix them and run `sdr ingest` again.",
                    fg="red", err=True)
        ctx.exit(1)


def _fmt_points(p: float) -> str:
    return f"{p:+.1f}".replace(".0", "") if abs(p - round(p)) < 0.05 else f"{p:+.1f}"


@main.command()
@click.option("--session", default=None, help="Continue an earlier conversation by its session id.")
@click.pass_context
def chat(ctx: click.Context, session: str | None) -> None:
    """Chat with the SDR in the terminal; every score change is printed with its reason.

    Type a message and press Enter; an empty line or Ctrl+D ends the chat.
    """
    from bot.turn import Inbound, InputError

    sdr = _sdr(ctx)
    if sdr.kb.count() == 0:
        click.secho("(the content store is empty — run `sdr demo --no-serve` or `sdr ingest PATH` first)", fg="yellow")
    interactive = sys.stdin.isatty()
    click.secho(f"Chatting with {sdr.playbook.company.assistant_name} ({sdr.playbook.company.name}). "
                "Empty line to quit.", fg="cyan")
    while True:
        try:
            line = input("you> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            break
        if not line.strip():
            break
        if not interactive:
            click.echo(f"you> {line}")
        try:
            r = sdr.handle(Inbound(text=line, channel="cli", session_id=session))
        except InputError as e:
            click.secho(f"  ! {e}", fg="red")
            continue
        session = r.session_id
        click.secho(f"sdr> {r.reply}", fg="green")
        for c in r.score_changes:
            click.secho(f"     {_fmt_points(c['points']):>6}  {c['reason']}", fg="yellow" if c["points"] >= 0 else "red")
        lead = r.lead
        acts = ", ".join(a["type"] + (f"({a.get('field') or a.get('reason') or ''})" if a.get("field") or a.get("reason") else "")
                         for a in r.actions)
        click.secho(f"     score {lead['score']:g} (fit {lead['fit_score']:g} + engagement {lead['engagement_score']:g})"
                    f" · stage {lead['stage']}" + (f" · {acts}" if acts else ""), dim=True)
    if session:
        click.echo(f"session {session} — see the lead with `sdr lead {_lead_of(sdr, session)}`")


def _lead_of(sdr: Any, session: str) -> str:
    from bot.store import Conversation

    with sdr.store.session() as s:
        conv = s.get(Conversation, session)
        return conv.lead_id if conv else "?"


@main.command()
@click.option("--limit", default=30, show_default=True, help="How many leads, newest first.")
@click.pass_context
def leads(ctx: click.Context, limit: int) -> None:
    """A table of leads (id, stage, score, who they are, their last message), newest first, and the
    funnel over all leads as the team page (/leads) shows it: each stage counts the leads that
    reached it, so a lead at SQL counts for new, engaged, MQL and SQL."""
    from bot.reports import FUNNEL_STAGES, SIDE_STAGES, STAGE_LABELS, funnel

    sdr = _sdr(ctx, load_knowledge=False)
    rows = sdr.store.list_leads(limit=limit)
    if not rows:
        click.echo("No leads yet. Chat at `sdr demo` or `sdr chat` first.")
        return
    click.echo(f"{'lead':<22} {'stage':<15} {'score':>6}  {'who':<34} last message")
    for r in rows:
        lead = r["lead"]
        f = lead.fields or {}
        who = " · ".join(str(x) for x in (f.get("name"), f.get("role"), f.get("company")) if x) or (lead.email or "anonymous")
        last = (r["last_message"] or "").replace("\n", " ")
        click.echo(f"{lead.id:<22} {lead.stage:<15} {lead.score:>6.1f}  {who[:34]:<34} {last[:60]}")
    fun = funnel(sdr.store)
    click.echo(f"\nfunnel (all {fun.total} leads; each stage counts the leads that reached it): "
               + " · ".join(f"{STAGE_LABELS[st]} {fun.reached[st]}" for st in FUNNEL_STAGES))
    click.echo("left the funnel (now): " + " · ".join(f"{STAGE_LABELS[st]} {fun.at[st]}" for st in SIDE_STAGES))


def _lead_by_email(sdr: Any, email: str) -> str | None:
    from sqlalchemy import func, select

    from bot.store import Lead

    with sdr.store.session() as s:
        return s.scalars(select(Lead.id).where(func.lower(Lead.email) == email.strip().lower())).first()


def _bar(value: float, scale: float, width: int = 30, char: str = "█") -> str:
    n = max(0, min(width, int(round(width * value / scale)))) if scale > 0 else 0
    return char * n


@main.command()
@click.argument("words", nargs=-1, required=True,
                metavar="ID_OR_EMAIL | export EMAIL | forget EMAIL | pause ID_OR_EMAIL | resume ID_OR_EMAIL")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="With export: write the JSON to this file instead of the terminal.")
@click.option("--yes", is_flag=True, help="With forget: don't ask for confirmation.")
@click.pass_context
def lead(ctx: click.Context, words: tuple[str, ...], out: str | None, yes: bool) -> None:
    """One lead, by id (from `sdr leads`) or email: who they are, the score breakdown with every
    reason, the score over time, the queued actions (handoff) and the transcript.

    \b
      sdr lead export EMAIL [--out FILE]   everything held about the person, as JSON (GDPR/CCPA access)
      sdr lead forget EMAIL [--yes]        delete them from every table, the database file and the logs;
                                           keep only a keyed hash so they are never contacted again
      sdr lead pause ID_OR_EMAIL           stop their nurture sequences until resumed
      sdr lead resume ID_OR_EMAIL          let them go on (an overdue step is due now)
    """
    if words[0] in ("pause", "resume"):
        if len(words) != 2:
            raise click.UsageError(f"give one lead id or email: sdr lead {words[0]} ID_OR_EMAIL")
        _pause(ctx, words[0], words[1])
        return
    if words[0] in ("export", "forget"):
        if len(words) != 2 or "@" not in words[1]:
            raise click.UsageError(f"give one email: sdr lead {words[0]} EMAIL")
        (_export if words[0] == "export" else _forget)(ctx, words[1], out=out, yes=yes)
        return
    if len(words) != 1:
        raise click.UsageError("give one lead id or email (or: export EMAIL / forget EMAIL)")
    _show_lead(ctx, words[0])


def _show_lead(ctx: click.Context, lead_id: str) -> None:
    from bot.turn import NotFound

    sdr = _sdr(ctx, load_knowledge=False)
    if "@" in lead_id:
        found = _lead_by_email(sdr, lead_id)
        if found is None:
            raise click.ClickException(f"no lead with email {lead_id.strip()}. List leads with `sdr leads`.")
        lead_id = found
    try:
        d = sdr.lead_detail(lead_id)
    except NotFound as e:
        raise click.ClickException(f"{e}. List leads with `sdr leads`.") from None
    _print_score(d)
    _print_effects(d)
    _print_nurture(d)
    _print_transcript(d)


def _pause(ctx: click.Context, verb: str, ref: str) -> None:
    import getpass

    sdr = _sdr(ctx, load_knowledge=False)
    lead_id = (_lead_by_email(sdr, ref) or "") if "@" in ref else ref
    done = sdr.pause_nurture(lead_id, by=f"cli:{getpass.getuser()}") if verb == "pause" else sdr.resume_nurture(lead_id)
    if not done:
        raise click.ClickException(f"no lead {ref!r}; list leads with `sdr leads`")
    n = sdr.lead_detail(lead_id)["nurture"]
    active = [e["sequence"] for e in n["enrolments"] if e["status"] == "active"]
    click.echo(f"lead {lead_id}: nurture {'paused' if verb == 'pause' else 'resumed'}"
               + (f" ({', '.join(active)})" if active else " (in no active sequence)"))


def _export(ctx: click.Context, email: str, out: str | None, **_: Any) -> None:
    import json

    from bot.privacy import export_person

    data = export_person(_sdr(ctx, load_knowledge=False).store, email)
    if data is None:
        raise click.ClickException(f"no lead with email {email.strip()}: nothing is held about them")
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote everything held about {email.strip()} to {out}")
    else:
        click.echo(text)


def _forget(ctx: click.Context, email: str, yes: bool, **_: Any) -> None:
    from integrations.wiring import forget_person_everywhere

    if not yes:
        click.confirm(f"Delete everything held about {email.strip()}? This cannot be undone", abort=True)
    sdr = _sdr(ctx, load_knowledge=False)
    r = forget_person_everywhere(sdr, email)
    rows = sum(r["deleted"].values())
    click.echo(f"forgot {email.strip()}: {rows} rows deleted" + ("" if r["found"] else " (no lead had this email)")
               + f", {r['log_files_scrubbed']} log file(s) scrubbed; the address is suppressed (never contacted again)")
    gone = [m for m in r["slack_messages"] if m.get("deleted")]
    if gone:
        click.echo(f"  {len(gone)} Slack message(s) about them deleted")
    for m in r["slack_messages"]:
        if not m.get("deleted"):
            click.secho(f"  a Slack message about them remains ({m.get('error') or 'not deleted'}): {m.get('link')} "
                        "— delete it in Slack", fg="yellow")


def _print_score(d: dict[str, Any]) -> None:
    """Who the lead is, fit and engagement against the thresholds, every score event, the score over time."""
    th = d["thresholds"]
    click.secho(f"Lead {d['id']} · stage {d['stage']} · score {d['score']:g}", bold=True)
    for k, v in d["fields"].items():
        src = d["field_sources"].get(k, {}).get("extractor", "")
        click.echo(f"  {k:<13} {v}   ({src})")
    scale = max(th["sql"] * 1.3, d["score"], 1)
    click.echo(f"\n  fit        {_bar(d['fit_score'], scale):<30} {d['fit_score']:g}")
    click.echo(f"  engagement {_bar(d['engagement_score'], scale):<30} {d['engagement_score']:g}")
    click.echo(f"  {'':<10} {'·' * int(30 * th['mql'] / scale)}↑ MQL {th['mql']:g}   "
               f"{'·' * max(0, int(30 * (th['sql'] - th['mql']) / scale) - 8)}↑ SQL {th['sql']:g}")
    click.secho("\nScore events (they add up to the score):", bold=True)
    running = 0.0
    history = []
    for e in d["score_events"]:
        running += e["points"]
        history.append(running)
        click.echo(f"  {e['at'][:19]}  {_fmt_points(e['points']):>6}  = {running:6.1f}  {e['reason']}  [{e['rule']}]")
    if history:
        click.secho("\nScore over time:", bold=True)
        top = max(max(history), th["sql"], 1)
        for i, v in enumerate(history):
            mark = " ← SQL" if i and history[i - 1] < th["sql"] <= v else " ← MQL" if i and history[i - 1] < th["mql"] <= v else ""
            click.echo(f"  {v:6.1f} {_bar(v, top, 40, '▇')}{mark}")


def _print_effects(d: dict[str, Any]) -> None:
    """The lead's outbox entries and the content the SDR sent them."""
    if d["actions"]:
        click.secho("\nActions (outbox):", bold=True)
        for a in d["actions"]:
            click.echo(f"  #{a['id']} {a['type']} · {a['status']} · reason {a['payload'].get('reason')} · attempts {a['attempts']}")
    if d["content_sent"]:
        click.secho("\nContent sent:", bold=True)
        for c in d["content_sent"]:
            click.echo(f"  {c['title']} — {c['url']}")


def _print_nurture(d: dict[str, Any]) -> None:
    """The lead's sequences: status, next step and when, what each step sent or why not."""
    n = d.get("nurture") or {}
    if not n.get("enrolments") and not n.get("paused"):
        return
    click.secho("\nNurture" + (" (paused: `sdr lead resume ID` lets it go on)" if n.get("paused") else "") + ":", bold=True)
    for e in n["enrolments"]:
        state = e["status"] + (f": {e['end_reason']}" if e.get("end_reason") else "")
        nxt = f" · next {e['next_step']} at {e['next_due_at'][:16].replace('T', ' ')} UTC" if e.get("next_step") else ""
        click.echo(f"  {e['sequence']} · {state} · {e['emails_sent']} email(s){nxt}")
        for st in e["steps"]:
            when = (st["done_at"] or st["due_at"] or "")[:16].replace("T", " ")
            extra = st["url"] or st["reason"] or ""
            click.echo(f"    {st['step']:<20} {st['status']:<9} {when}  {extra}")


def _print_transcript(d: dict[str, Any]) -> None:
    """Every message, the SDR's with its model, latency, calls, tokens and fallbacks."""
    click.secho("\nTranscript:", bold=True)
    for m in d["messages"]:
        who = "visitor" if m["role"] == "visitor" else "sdr"
        extra = ""
        if m["role"] == "agent":
            extra = f"  [{m.get('model')} · {m.get('latency_ms')} ms"
            if m.get("model_calls"):
                extra += (f" · {m['model_calls']} model call(s), {m.get('prompt_tokens', 0)}+{m.get('completion_tokens', 0)}"
                          f" tokens, model {m.get('model_ms')} ms")
            if m.get("fallbacks"):
                extra += f" · fell back: {', '.join(m['fallbacks'])}"
            extra += "]"
        click.echo(f"  {m['at'][11:19]} {who:>7}: {m['text']}{extra}")


@main.command()
@click.argument("event_type")
@click.option("--email", default=None, help="Whose event (creates the lead if new).")
@click.option("--lead", "lead_id", default=None, help="Whose event, by lead id.")
@click.pass_context
def event(ctx: click.Context, event_type: str, email: str | None, lead_id: str | None) -> None:
    """Record a tracked event (e.g. pricing_page_view, webinar_attended) and show the score change."""
    from bot.turn import InputError, NotFound

    if not email and not lead_id:
        raise click.UsageError("give --email or --lead")
    sdr = _sdr(ctx, load_knowledge=False)
    try:
        r = sdr.record_event(event_type, lead_id=lead_id, email=email)
    except (InputError, NotFound) as e:
        raise click.ClickException(str(e)) from None
    for c in r["score_changes"]:
        click.echo(f"  {_fmt_points(c['points']):>6}  {c['reason']}")
    click.echo(f"lead {r['lead']['id']}: score {r['lead']['score']:g}, stage {r['lead']['stage']}")


EVAL_NOW = "2026-12-01T15:00:00Z"   # a Tuesday afternoon in Europe, morning in the Americas


class _BadCases(click.ClickException):
    exit_code = 2


@main.command(name="eval")
@click.argument("suites", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--k", "k", default=1, show_default=True, type=click.IntRange(1, 20),
              help="Runs per persona with seeds SEED..SEED+K-1; a persona passes when all K pass (pass^k).")
@click.option("--seed", default=0, show_default=True, help="Seed of the simulated prospects' phrasings.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the report as JSON here.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Write a self-contained HTML report here.")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False),
              help="A JSON report to compare with: exit 3 when a summary metric is worse by more than --max-drop.")
@click.option("--max-drop", default=0.02, show_default=True,
              help="Allowed drop of a rate (absolute) or rise of a count, turns or tokens (relative).")
@click.option("--gate-latency", is_flag=True, help="Compare latency_ms_p95 with the baseline too (wall time is noisy).")
@click.option("--channel", type=click.Choice(["chat", "form", "email"]), default=None,
              help="Run every persona through this channel instead of its own.")
@click.option("--model/--no-model", "model", default=None,
              help="Let a model play the prospects (SDR_SIM_MODEL, SDR_SIM_BASE_URL); default: when SDR_SIM_MODEL is set.")
@click.option("--no-fail", is_flag=True, help="Exit 0 even when personas fail (the baseline gate still applies).")
@click.option("--now", "now", default=EVAL_NOW, show_default=True,
              help="The instant the conversations start (UTC, ISO 8601): meeting times and working hours depend "
                   "on it, so a fixed one makes runs comparable. 'wall' for the real clock.")
@click.pass_context
def eval_(ctx: click.Context, suites: tuple[str, ...], k: int, seed: int, json_out: str | None, html_out: str | None,
          baseline: str | None, max_drop: float, gate_latency: bool, channel: str | None, model: bool | None,
          no_fail: bool, now: str) -> None:
    """Play simulated prospects through the SDR and measure its judgment.

    \b
    SUITES are YAML lists of personas; without them the shipped suite runs (evals/personas.yaml
    and evals/conversations.yaml). A persona (full schema: evals/suite.py, or issue 10):
      - name: hot healthcare VP
        opening: "Hi, we're looking at tools to fix our forecasting"
        truths: {role: VP of Sales, seniority: vp, company_size: 1200, industry: healthcare,
                 timeline: this_quarter, budget: 40000, email: dana@maple.example}
        volunteers: [company, role]        # said unasked; the rest only when asked
        asks: ["do you integrate with Salesforce?"]
        later: ["sorry, I meant 120 people, not 1,200"]
        style: plain                       # plain | terse | chatty | typos | evasive
        expect: {stage: sql, handoff: true, fields: {company_size: 1200},
                 recommended_any: [https://...], never_says: ["Pipedrive"]}
    Scripted cases (`messages: [...]` instead of opening/truths) still work.

    \b
    Prints a line per persona and the metrics (field accuracy, handoff precision/recall,
    disqualification, grounding violations, re-asked fields, questions per reply, turns to SQL,
    latency, model calls and tokens per turn). Exit codes: 0 all good; 1 a persona failed (unless
    --no-fail); 2 the suite has a mistake (file, persona and key named); 3 worse than --baseline.
    \b
    Regression gate as CI runs it:
      sdr eval --no-fail --baseline evals/baseline.json --json out.json --html report.html
    """
    report, worse = _run_eval(ctx, suites, k, seed, channel, model, baseline, max_drop, gate_latency, now)
    _print_eval(report)
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        click.echo(f"report: {json_out}")
    if html_out:
        from evals.report import write_html
        write_html(report, html_out)
        click.echo(f"html report: {html_out}")
    for line in worse:
        click.secho(f"worse than the baseline: {line}", fg="red", err=True)
    if worse:
        sys.exit(3)
    if not no_fail and report["meta"]["passed"] < report["meta"]["personas"] - report["meta"]["skipped"]:
        sys.exit(1)


def _run_eval(ctx: click.Context, suites: tuple[str, ...], k: int, seed: int, channel: str | None,
              model: bool | None, baseline: str | None, max_drop: float, gate_latency: bool,
              now: str) -> tuple[dict, list[str]]:
    from evals.metrics import compare
    from evals.run import CaseError, load_cases, run_suite, ticking_clock

    base = None
    if baseline:
        try:
            base = json.loads(Path(baseline).read_text(encoding="utf-8"))["summary"]
        except (ValueError, KeyError, TypeError) as e:
            raise _BadCases(f"{baseline}: not an `sdr eval --json` report ({e})") from None
    # The prospects are simulated: their leads, handoffs and outbox entries go to a scratch database,
    # never the real one (a running worker would post them to the sales channel). Content is shared.
    scratch = tempfile.TemporaryDirectory(prefix="sdr-eval-")
    sdr = _sdr(ctx, database_url=f"sqlite:///{scratch.name}/eval.db")
    try:
        personas = load_cases(list(suites) or None, sdr.playbook)
    except CaseError as e:
        raise _BadCases(str(e)) from None
    if channel:
        personas = [{**p, "channel": channel} for p in personas]
    if sdr.kb.count() == 0:
        _ingest(sdr, [str(SAMPLE)], prune=False)
    if now != "wall":
        try:
            sdr.clock = ticking_clock(now)
        except ValueError:
            raise click.BadParameter(f"{now!r} is not an ISO 8601 instant like {EVAL_NOW} (or 'wall')",
                                     param_hint="--now") from None
    report = run_suite(sdr, personas, k=k, seed=seed, model=model)
    worse = compare(report["summary"], base, max_drop, gate_latency) if base is not None else []
    if base is not None:
        report["baseline"] = {"summary": base, "path": baseline}
    return report, worse


def _print_eval(report: dict) -> None:
    for p in report["personas"]:
        if p["skipped"]:
            click.echo(f"  {click.style('skip', fg='yellow')}  {p['name']:<40} {p['skipped']}")
            continue
        mark = click.style("pass", fg="green") if p["passed"] else click.style("FAIL", fg="red")
        click.echo(f"  {mark}  {p['name']:<40} stage {p['stage']:<14} turns {p['turns']:>2}  " + "; ".join(p["failures"]))
    m = report["meta"]
    click.echo(f"\n{m['passed']}/{m['personas'] - m['skipped']} personas as expected"
               + (f", {m['skipped']} skipped" if m["skipped"] else "") + f" (brain: {m['brain']}, k={m['k']})\n")
    base = (report.get("baseline") or {}).get("summary") or {}
    for key, value in {**report["summary"], **report["metrics"]}.items():
        shown = "n/a" if value is None else (f"{value:.1%}" if isinstance(value, float) and key.endswith(
            ("accuracy", "precision", "recall", "right", "qualified", "fit")) else f"{value}")
        was = f"   (baseline {base[key]})" if key in base and base[key] != value else ""
        click.echo(f"  {key:<32} {shown}{was}")


if __name__ == "__main__":  # pragma: no cover
    main()
