"""Load benchmark: N chat sessions against a running `sdr serve`, for a fixed time; prints the figures.

    python bench/load.py --matrix                         # issue 14's table in one run (≈ 7 min, see below):
                                                          # 1 and 4 workers on SQLite and on PostgreSQL + Redis,
                                                          # each with and without think time, then PASS/FAIL lines
    python bench/load.py                                  # start `sdr serve` on a free port, 100 sessions,
                                                          # one message every 5 s each, 60 s
    python bench/load.py --think 0 --duration 30          # no think time: as fast as the server answers
    python bench/load.py --serve-args=--dev               # Werkzeug's development server
    python bench/load.py --serve-args="--workers 4"       # gunicorn, 4 worker processes
    python bench/load.py --url http://127.0.0.1:8000      # a server you started yourself
    SDR_DATABASE_URL=postgresql+psycopg://... python bench/load.py   # the server it starts uses PostgreSQL

Each session is one visitor of the chat widget: it posts to /api/chat (as a browser: no token),
keeps the session_id the server returns, and sends its next message `--think` seconds after the
previous one was sent (at once if the reply took longer); sessions start spread over the first
think period. After `--duration` seconds no new message is sent; replies in flight are awaited
(up to --timeout) and counted.

Printed: turns/s (2xx replies over the duration), latency p50/p95/p99/max of the 2xx replies,
errors by status (timeouts and refused connections by name), 503s with and without Retry-After,
and — when this script starts the server — the cold start: from launching `sdr serve` to the
first reply to a chat message ("hello"), and to the first reply to a question answered from the
content (the price, asked right after: a worker opens the content store just after it takes requests). Exit status 1 on any 5xx (503 included: it is counted, and
allowed by the goals only without think time — read the table) or a failed connection, else 0.

The server it starts gets its own data dir (a temp folder, SQLite unless SDR_DATABASE_URL is set),
the sample content ingested first (`sdr ingest knowledge/sample`, not timed; on PostgreSQL
`sdr db upgrade` runs before it, as an operator would — safe to run again), and rate limits
raised (SDR_RATE_PER_IP, SDR_RATE_PER_SESSION) so the run measures the turn, not the limiter. A
server given by --url keeps its own limits: expect 429 from one client address past
SDR_RATE_PER_IP a minute (default 60) — raise it on that server for a load run.

`--serve-args` are passed to `sdr serve` (split like a shell). Default: the server's own defaults
when `sdr serve --help` offers --workers (gunicorn), else `--dev`; a `--dev` the CLI does not know
is dropped (an older `sdr serve` is the development server anyway).

--matrix (issue 14): four servers, one after another, each started fresh (own data dir, content
ingested, cold start measured):
    1 worker SQLite | 4 workers SQLite | 1 worker PostgreSQL+Redis | 4 workers PostgreSQL+Redis
(`sdr serve --workers N` plus any --serve-args; SDR_DATABASE_URL, SDR_REDIS_URL and
SDR_RATE_LIMIT_STORAGE of this shell are not passed to the SQLite servers). Each PostgreSQL server
gets a throwaway database on the --postgres server (sdr_load_<pid>_<n>, created with CREATE
DATABASE, schema by `sdr db upgrade`, dropped WITH (FORCE) afterwards — also on Ctrl+C or a
failure), and SDR_REDIS_URL=--redis, which holds the per-visitor turn lock and the rate limits.
Redis is not flushed (others may share it): the turn-lock keys (sdr:turn:<session id>) and the
limiter's windows expire by themselves within a minute. The brain is the deterministic rule brain
(SDR_LLM_PROVIDER=none) unless SDR_LLM_PROVIDER is set. Against each server two phases of
--duration seconds (30 in matrix mode unless given): --sessions (100) with --think (5) s, then
--sessions-nothink (20) with no think time, after --settle (10) s from the first reply (the
other workers finish loading; the cold start is measured to the first reply as in a single run).
A full run takes about 4 × (2 × duration + ~45 s to ingest, start, settle and stop) ≈ 7 min with
the defaults on 2 cores.
At the end: one Markdown table (a row per server and phase: turns/s, p50/p95/p99 ms, errors by
status with 503 with and without Retry-After apart, cold start), then the goals with PASS/FAIL:
    think phase: 0 errors and p95 ≤ 300 ms (each server; 4 workers PostgreSQL+Redis is the goal's row)
    no think: 0 errors other than 503 with Retry-After (each server)
    turns/s without think time, 4 workers PostgreSQL+Redis ÷ 1 worker SQLite ≥ 2.0
    cold start to first reply ≤ 2 s (each server)
Exit status in matrix mode: 1 on a 5xx other than 503 with Retry-After, a failed connection, a
phase without a single 2xx or a server that did not start; else 0. Goals that fail are printed
and do not change it unless --strict. --json PATH writes the rows, goals and loads as JSON.

The client shares the machine with the server it measures: on 2 cores it takes a part of them.
Compare numbers from the same machine and load (`uptime` is printed before and after).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
SDR = str(Path(sys.executable).with_name("sdr"))

from visitor_messages import FIRST, fill  # noqa: E402 - the simulated visitors' words (shared with bench_sdr)
from visitor_messages import FOLLOW as _FOLLOW  # noqa: E402

FOLLOW = _FOLLOW + ["what does the Growth plan include?", "case study for {industry}?"]

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
MATRIX = [(1, "sqlite"), (4, "sqlite"), (1, "postgresql"), (4, "postgresql")]   # (workers, database)
GOAL_P95_MS, GOAL_RATIO, GOAL_COLD_S = 300.0, 2.0, 2.0
SHARED_VARS = ("SDR_DATABASE_URL", "SDR_REDIS_URL", "SDR_RATE_LIMIT_STORAGE")   # set per server in matrix mode


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Stats:
    def __init__(self) -> None:
        self.ok_ms: list[float] = []
        self.status: collections.Counter[str] = collections.Counter()
        self.retry_after_503 = 0
        self.first_error: dict[str, str] = {}

    def record(self, key: str, ms: float, detail: str = "") -> None:
        self.status[key] += 1
        if key == "200":
            self.ok_ms.append(ms)
        elif key not in self.first_error:
            self.first_error[key] = detail[:300]


async def session(client, url: str, idx: int, args, stats: Stats, stop_at: float) -> None:  # noqa: ANN001
    import httpx

    rng = random.Random(args.seed * 100_003 + idx)
    sid: str | None = None
    script = [fill(rng.choice(FIRST), rng)]
    if args.think > 0:
        await asyncio.sleep(rng.uniform(0, args.think))   # spread the sessions' first messages
    n = 0
    while time.monotonic() < stop_at:
        if n >= len(script):   # a visitor writes a few messages, then a new visitor takes the seat
            sid, n = None, 0
            script = [fill(rng.choice(FIRST), rng)] + [fill(rng.choice(FOLLOW), rng) for _ in range(rng.randint(3, 9))]
        body: dict = {"message": script[n], "message_id": f"load-{args.seed}-{idx}-{time.monotonic_ns()}"}
        if sid:
            body["session_id"] = sid
        n += 1
        sent = time.monotonic()
        try:
            r = await client.post(url + "/api/chat", json=body, timeout=args.timeout)
            ms = (time.monotonic() - sent) * 1000
            key = str(r.status_code)
            if r.status_code == 200:
                sid = r.json().get("session_id") or sid
            elif r.status_code == 503 and r.headers.get("Retry-After"):
                stats.retry_after_503 += 1
            stats.record(key, ms, r.text)
            if r.status_code in (429, 503):
                await asyncio.sleep(min(float(r.headers.get("Retry-After") or 1), 5.0))
        except httpx.TimeoutException as e:
            stats.record("timeout", 0, repr(e))
        except httpx.TransportError as e:
            stats.record("connection error", 0, repr(e))
            await asyncio.sleep(0.5)
        if args.think > 0:   # (not past the end: the last wait would only delay the count)
            await asyncio.sleep(max(0.0, min(args.think - (time.monotonic() - sent), stop_at - time.monotonic())))


async def run_load(url: str, args) -> tuple[Stats, float]:  # noqa: ANN001
    """`args`: sessions, think, duration, timeout, seed (the command line's, or a phase's copy)."""
    import httpx

    stats = Stats()
    limits = httpx.Limits(max_connections=args.sessions, max_keepalive_connections=args.sessions)
    async with httpx.AsyncClient(limits=limits, headers={"User-Agent": "sdr-bench-load"}) as client:
        t0 = time.monotonic()
        stop_at = t0 + args.duration
        await asyncio.gather(*(session(client, url, i, args, stats, stop_at) for i in range(args.sessions)))
        elapsed = time.monotonic() - t0
    return stats, elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_args(requested: str | None) -> list[str]:
    help_text = subprocess.run([SDR, "serve", "--help"], capture_output=True, text=True).stdout
    if requested is None:
        return [] if "--workers" in help_text else ["--dev"]
    args = shlex.split(requested)
    if "--dev" in args and "--dev" not in help_text:
        args.remove("--dev")
    if "--workers" in args and "--workers" not in help_text:
        print("note: this `sdr serve` has no --workers; using the development server (--dev)", file=sys.stderr)
        args = [a for a in args if a != "--dev"] + (["--dev"] if "--dev" in help_text else [])
        args = _drop_options(args, ("--workers", "--threads", "--max-in-flight"))
    return args


def _drop_options(args: list[str], names: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in names:
            skip = True
            continue
        if a.split("=", 1)[0] in names:
            continue
        out.append(a)
    return out


CONTENT_QUESTION = "How much does it cost per user?"


def wait_first_reply(url: str, proc: subprocess.Popen, timeout: float) -> tuple[float, float]:
    """When ("hello") got its first 200, then when a question answered from the content, sent right
    after in a new session, got its reply (time.monotonic(); the caller subtracts the launch)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"`sdr serve` exited with {proc.returncode} before answering; see its log above")
        try:
            r = httpx.post(url + "/api/chat", json={"message": "hello"}, timeout=max(1.0, deadline - time.monotonic()))
            if r.status_code == 200:
                greeted = time.monotonic()
                r = httpx.post(url + "/api/chat", json={"message": CONTENT_QUESTION}, timeout=max(1.0, deadline - greeted))
                if r.status_code != 200:
                    raise SystemExit(f"the first content question got {r.status_code}: {r.text[:300]}")
                return greeted, time.monotonic()
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no reply from {url} within {timeout:.0f}s")


def db_label(env: dict[str, str]) -> str:
    return "PostgreSQL" if env.get("SDR_DATABASE_URL", "").startswith("postgres") else "SQLite"


def start_server(args, data_dir: Path, env: dict[str, str] | None = None,  # noqa: ANN001
                 requested_args: str | None = None) -> tuple[subprocess.Popen, str, tuple[float, float], list[str]]:
    """Ingest the sample content into `data_dir` and start `sdr serve` there with `env` (default:
    this process's environment) and `requested_args` (default: --serve-args); returns the process,
    its URL, the cold start in seconds (to the first reply, to the first content reply) and the command."""
    base = dict(os.environ if env is None else env)
    env = dict(base, SDR_DATA_DIR=str(data_dir), SDR_RATE_PER_IP="1000000", SDR_RATE_PER_SESSION="1000000",
               SDR_ADMIN_TOKEN=base.get("SDR_ADMIN_TOKEN", "bench-load-token"))
    if db_label(env) == "PostgreSQL":   # PostgreSQL's schema is an operator step; SQLite upgrades itself at start
        print("bringing the database to this version's schema (`sdr db upgrade`, not timed)…", flush=True)
        _run_quiet([SDR, "db", "upgrade"], env, data_dir / "upgrade.log")
    print(f"ingesting the sample content into {data_dir} (not timed)…", flush=True)
    _run_quiet([SDR, "ingest", str(ROOT / "knowledge" / "sample")], env, data_dir / "ingest.log")
    port = free_port()
    extra = serve_args(args.serve_args if requested_args is None else requested_args)
    cmd = [SDR, "serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    log = open(data_dir / "serve.log", "w")   # noqa: SIM115 - closed with the process
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        cold = tuple(t - t0 for t in wait_first_reply(url, proc, args.start_timeout))
    except BaseException:
        stop_server(proc)
        print((data_dir / "serve.log").read_text()[-3000:], file=sys.stderr)
        raise
    return proc, url, cold, cmd


def _run_quiet(cmd: list[str], env: dict[str, str], log_path: Path) -> None:
    """Run a setup command; its output goes to `log_path` and is shown only when it fails."""
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc:
        print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise SystemExit(f"`{' '.join([Path(cmd[0]).name, *cmd[1:]])}` exited with {rc}")


def stop_server(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)   # its own process group: gunicorn's workers go too
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def show_cmd(cmd: list[str]) -> str:
    return " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))


def report(stats: Stats, elapsed: float, args, cold: tuple[float, float] | None, label: str) -> int:  # noqa: ANN001
    """Print one run's figures under `label`; 1 when it had a 5xx (503 included), a failed
    connection or no 2xx at all, else 0."""
    ok = stats.ok_ms
    total = sum(stats.status.values())
    print(f"\n== {label}")
    print(f"sessions {args.sessions}, think {args.think:g} s, duration {args.duration:g} s "
          f"(ran {elapsed:.1f} s with the replies in flight)")
    if cold is not None:
        print(f"cold start to first reply: {cold[0]:.2f} s; to the first reply from the content: {cold[1]:.2f} s")
    print(f"requests {total}, 2xx {len(ok)}: {len(ok) / args.duration:.1f} turns/s")
    if ok:
        print(f"latency of 2xx: p50 {pct(ok, 50):.0f} ms  p95 {pct(ok, 95):.0f} ms  p99 {pct(ok, 99):.0f} ms  "
              f"max {max(ok):.0f} ms")
    errors = {k: v for k, v in stats.status.items() if k != "200"}
    print("errors by status: " + (", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none"))
    if stats.status.get("503"):
        print(f"  503 with Retry-After: {stats.retry_after_503} of {stats.status['503']}")
    for k, detail in stats.first_error.items():
        print(f"  first {k}: {detail}")
    bad = any(k.startswith("5") for k in errors) or "connection error" in errors or not ok
    return 1 if bad else 0


def print_server_tracebacks(data_dir: Path) -> None:
    try:
        log = (data_dir / "serve.log").read_text(errors="replace")
    except OSError:
        return
    for tb in [b for b in log.split("Traceback") if "Error" in b][:3]:
        print("server traceback:", ("Traceback" + tb)[-1500:], file=sys.stderr)


def uptime() -> str:
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# -- --matrix ----------------------------------------------------------------------------------------

def phase_args(args, *, sessions: int, think: float):  # noqa: ANN001, ANN201
    return argparse.Namespace(**dict(vars(args), sessions=sessions, think=think))


def row_of(server: str, phase: str, stats: Stats | None, elapsed: float, pargs, cold: tuple[float, float] | None,  # noqa: ANN001
           failed: str | None = None) -> dict:
    """One line of the matrix table (and of --json)."""
    row: dict = {"server": server, "phase": phase, "sessions": pargs.sessions, "think_s": pargs.think,
                 "duration_s": pargs.duration, "ran_s": round(elapsed, 1), "cold_start_s": None if cold is None else round(cold[0], 2),
                 "cold_start_content_s": None if cold is None else round(cold[1], 2),
                 "requests": 0, "ok": 0, "turns_per_s": 0.0, "p50_ms": None, "p95_ms": None, "p99_ms": None,
                 "max_ms": None, "errors": {}, "503_retry_after": 0, "503_no_retry_after": 0, "failed": failed,
                 "first_errors": {}}
    if stats is None:
        return row
    ok = stats.ok_ms
    row.update(requests=sum(stats.status.values()), ok=len(ok), turns_per_s=round(len(ok) / pargs.duration, 2),
               errors={k: v for k, v in sorted(stats.status.items()) if k != "200"},
               first_errors=dict(stats.first_error))
    if ok:
        row.update(p50_ms=round(pct(ok, 50), 1), p95_ms=round(pct(ok, 95), 1), p99_ms=round(pct(ok, 99), 1),
                   max_ms=round(max(ok), 1))
    n503 = stats.status.get("503", 0)
    row.update({"503_retry_after": stats.retry_after_503, "503_no_retry_after": n503 - stats.retry_after_503})
    return row


def row_bad(row: dict) -> bool:
    """What sets the exit status in matrix mode: a 5xx other than 503 with Retry-After, a failed
    connection, no 2xx at all, or a server that did not start."""
    errors = row["errors"]
    return bool(row["failed"] or not row["ok"] or "connection error" in errors or row["503_no_retry_after"]
                or any(k.startswith("5") and k != "503" for k in errors))


def errors_besides_503_ra(row: dict) -> int:
    return sum(row["errors"].values()) - row["503_retry_after"]


@contextmanager
def throwaway_postgres(url: str, name: str) -> Iterator[str]:
    """A new database `name` on the server of `url` (SQLAlchemy form); yields its URL and drops it
    (WITH (FORCE): the server's connections go too) when the block ends, however it ends."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    admin = [u.set(drivername="postgresql").render_as_string(hide_password=False)]
    if u.database != "postgres":
        admin.append(u.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False))

    def execute(statement) -> None:  # noqa: ANN001
        err: Exception | None = None
        for conninfo in admin:
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(statement)
                return
            except psycopg.OperationalError as e:   # cannot connect to that database: try the next
                err = e
        assert err is not None
        raise err

    execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    print(f"created database {name}", flush=True)
    try:
        yield u.set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            print(f"dropped database {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - say so, and let the run's own outcome stand
            print(f"could not drop database {name}: {e!r} — drop it by hand: "
                  f"psql -c 'DROP DATABASE {name} WITH (FORCE)'", file=sys.stderr)


def check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as e:
        raise SystemExit(f"Redis at {url} does not answer: {e!r}") from None


def matrix_env(db: str, db_url: str | None, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SHARED_VARS}
    env.setdefault("SDR_LLM_PROVIDER", "none")   # the goals are for the deterministic brain
    if db == "postgresql":
        assert db_url
        env.update(SDR_DATABASE_URL=db_url, SDR_REDIS_URL=redis_url)
    return env


def run_server(args, workers: int, db: str, n: int) -> list[dict]:  # noqa: ANN001
    """Start one server of the matrix, run both phases against it, stop it; the two rows."""
    label = f"{workers} worker{'s' if workers > 1 else ''} {'PostgreSQL+Redis' if db == 'postgresql' else 'SQLite'}"
    phases = [(f"think {args.think:g} s", phase_args(args, sessions=args.sessions, think=args.think)),
              ("no think", phase_args(args, sessions=args.sessions_nothink, think=0.0))]
    requested = f"--workers {workers} " + " ".join(shlex.quote(a) for a in _drop_options(
        shlex.split(args.serve_args or ""), ("--workers", "--dev")))
    print(f"\n#### {label}   ({uptime()})", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sdr-load-") as d:
        try:
            with (throwaway_postgres(args.postgres, f"sdr_load_{os.getpid()}_{n}") if db == "postgresql"
                  else _no_database()) as db_url:
                if db == "postgresql":
                    check_redis(args.redis)
                env = matrix_env(db, db_url, args.redis)
                proc, url, cold, cmd = start_server(args, Path(d), env, requested)
                print(f"started: {show_cmd(cmd)} ({db_label(env)}{' + Redis' if db == 'postgresql' else ''}, "
                      f"brain {env['SDR_LLM_PROVIDER']}): first reply after {cold[0]:.2f} s, first content reply "
                      f"after {cold[1]:.2f} s", flush=True)
                try:
                    if args.settle > 0:   # the other workers may still be loading: not the steady state measured
                        print(f"settling {args.settle:g} s…", flush=True)
                        time.sleep(args.settle)
                    for i, (phase, pargs) in enumerate(phases):
                        stats, elapsed = asyncio.run(run_load(url, pargs))
                        code = report(stats, elapsed, pargs, cold if i == 0 else None, f"{label}, {phase}")
                        rows.append(row_of(label, phase, stats, elapsed, pargs, cold if i == 0 else None))
                        if code:
                            print_server_tracebacks(Path(d))
                finally:
                    stop_server(proc)
        except (Exception, SystemExit) as e:   # noqa: BLE001 - a server that does not start: its rows say so, the others run
            if isinstance(e, SystemExit) and not isinstance(e.code, str):
                raise   # sys.exit(143) on SIGTERM: stop the whole run (the database is dropped on the way out)
            msg = str(e) if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"
            print(f"{label}: FAILED: {msg}", file=sys.stderr)
            done = {r["phase"] for r in rows}
            rows += [row_of(label, phase, None, 0.0, pargs, None, failed=msg[:300])
                     for phase, pargs in phases if phase not in done]
    return rows


@contextmanager
def _no_database() -> Iterator[None]:
    yield None


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def table(rows: list[dict]) -> str:
    head = ["server", "phase", "sessions", "turns/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "requests",
            "errors (besides 503)", "503 + Retry-After", "503 no Retry-After", "cold start s",
            "first content reply s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        server = f"**{r['server']}**" if r["server"] == "4 workers PostgreSQL+Redis" else r["server"]
        if r["failed"]:
            cells = [server, r["phase"], str(r["sessions"]), f"did not run: {r['failed'][:120]}"] + [""] * (len(head) - 4)
        else:
            errs = ", ".join(f"{k}: {v}" for k, v in r["errors"].items() if k != "503") or "0"
            cold = "" if r["cold_start_s"] is None else f"{r['cold_start_s']:.2f}"
            content = "" if r.get("cold_start_content_s") is None else f"{r['cold_start_content_s']:.2f}"
            cells = [server, r["phase"], str(r["sessions"]), f"{r['turns_per_s']:.1f}", _ms(r["p50_ms"]),
                     _ms(r["p95_ms"]), _ms(r["p99_ms"]), _ms(r["max_ms"]), str(r["requests"]), errs,
                     str(r["503_retry_after"]), str(r["503_no_retry_after"]), cold, content]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def goals(rows: list[dict], args) -> list[dict]:  # noqa: ANN001
    out: list[dict] = []
    target = "4 workers PostgreSQL+Redis"

    def add(ok: bool | None, text: str, server: str = "") -> None:
        mark = "  ◀ issue 14's goal" if server == target else ""
        out.append({"pass": ok, "server": server, "goal": text,
                    "line": f"{'PASS' if ok else 'FAIL' if ok is False else 'n/a '}  {text}{mark}"})

    servers = list(dict.fromkeys(r["server"] for r in rows))
    for s in servers:
        think, nothink = [r for r in rows if r["server"] == s]
        if think["failed"]:
            add(False, f"{s}, think {args.think:g} s: did not run", s)
        else:
            n_err = sum(think["errors"].values())
            p95 = think["p95_ms"]
            add(n_err == 0 and p95 is not None and p95 <= GOAL_P95_MS,
                f"{s}, {think['sessions']} sessions, think {args.think:g} s: 0 errors (got {n_err}) and "
                f"p95 ≤ {GOAL_P95_MS:.0f} ms (got {_ms(p95)} ms)", s)
    for s in servers:
        nothink = [r for r in rows if r["server"] == s][1]
        if nothink["failed"]:
            add(False, f"{s}, no think: did not run", s)
        else:
            n_err = errors_besides_503_ra(nothink)
            add(n_err == 0 and nothink["ok"] > 0,
                f"{s}, {nothink['sessions']} sessions, no think: 0 errors besides 503 with Retry-After "
                f"(got {n_err}; 503 with Retry-After: {nothink['503_retry_after']})", s)
    by = {(r["server"], r["phase"]): r for r in rows}
    top, base = by.get((target, "no think")), by.get(("1 worker SQLite", "no think"))
    if top and base and not top["failed"] and not base["failed"] and base["turns_per_s"] > 0:
        ratio = top["turns_per_s"] / base["turns_per_s"]
        add(ratio >= GOAL_RATIO, f"turns/s without think time, 4 workers PostgreSQL+Redis ÷ 1 worker SQLite: "
            f"{top['turns_per_s']:.1f} ÷ {base['turns_per_s']:.1f} = {ratio:.2f} ≥ {GOAL_RATIO:.1f}")
    else:
        add(False, "turns/s without think time, 4 workers PostgreSQL+Redis ÷ 1 worker SQLite ≥ 2.0: not measured")
    for s in servers:
        first = [r for r in rows if r["server"] == s][0]
        cold, content = first["cold_start_s"], first.get("cold_start_content_s")
        add(cold is not None and cold <= GOAL_COLD_S,
            f"{s}: cold start to first reply ≤ {GOAL_COLD_S:.0f} s (got {'–' if cold is None else f'{cold:.2f} s'}; "
            f"to the first reply from the content {'–' if content is None else f'{content:.2f} s'})", s)
    return out


def run_matrix(args) -> int:  # noqa: ANN001
    if args.url:
        raise SystemExit("--matrix starts its own servers: leave out --url")
    if args.duration is None:
        args.duration = 30.0
    before = uptime()
    t0 = time.monotonic()
    print(f"matrix: {len(MATRIX)} servers × 2 phases of {args.duration:g} s; {os.cpu_count()} cores, "
          f"the client on the same machine; {before}", flush=True)
    rows: list[dict] = []
    for n, (workers, db) in enumerate(MATRIX, 1):
        rows += run_server(args, workers, db, n)
    after = uptime()
    wall = time.monotonic() - t0
    gl = goals(rows, args)
    print(f"\n## Load matrix — {os.cpu_count()} cores, client on the same machine, brain "
          f"{os.environ.get('SDR_LLM_PROVIDER', 'none')}, {args.duration:g} s a phase, run took {wall / 60:.1f} min\n")
    print(table(rows))
    print("\nGoals (issue 14; printed, they change the exit status only with --strict):")
    for g in gl:
        print("  " + g["line"])
    print(f"\nbefore: {before}\nafter:  {after}")
    bad = any(row_bad(r) for r in rows)
    code = 1 if bad or (args.strict and any(g["pass"] is not True for g in gl)) else 0
    if args.json:
        Path(args.json).write_text(json.dumps({
            "cores": os.cpu_count(), "duration_s": args.duration, "wall_s": round(wall, 1), "uptime_before": before,
            "uptime_after": after, "postgres": _hide_password(args.postgres), "redis": _hide_password(args.redis),
            "rows": rows, "goals": [{k: v for k, v in g.items() if k != "line"} for g in gl], "exit_status": code,
        }, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    return code


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads (a redis:// one reads fine)
        return url


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (e.g. http://127.0.0.1:8000); default: start `sdr serve`")
    ap.add_argument("--serve-args", default=None, metavar="ARGS",
                    help="extra arguments for the `sdr serve` this starts; write them with =, e.g. --serve-args=--dev or --serve-args=\"--workers 4 --threads 4\" "
                         "(with --matrix: added to its --workers N; --workers and --dev in them are dropped)")
    ap.add_argument("--sessions", type=int, default=100, help="concurrent chat sessions [100]")
    ap.add_argument("--think", type=float, default=5.0,
                    help="seconds from one message of a session to its next; 0 = send on each reply [5]")
    ap.add_argument("--duration", type=float, default=None, help="seconds to send messages [60; with --matrix 30 a phase]")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as a timeout [60]")
    ap.add_argument("--start-timeout", type=float, default=600.0, help="seconds the started server may take to answer")
    ap.add_argument("--seed", type=int, default=1)
    m = ap.add_argument_group("--matrix (issue 14: 1 and 4 workers on SQLite and on PostgreSQL + Redis, "
                              "with and without think time; ≈ 7 min on 2 cores with the defaults)")
    m.add_argument("--matrix", action="store_true",
                   help="run the four servers one after another, two phases each, and print one table with PASS/FAIL goals")
    m.add_argument("--sessions-nothink", type=int, default=20, metavar="N",
                   help="sessions in the phase without think time [20]")
    m.add_argument("--postgres", default=DEFAULT_POSTGRES, metavar="URL",
                   help=f"PostgreSQL server for the throwaway databases (SQLAlchemy URL; its database or `postgres` "
                        f"is where they are created and dropped) [{DEFAULT_POSTGRES}]")
    m.add_argument("--redis", default=DEFAULT_REDIS, metavar="URL",
                   help=f"SDR_REDIS_URL of the PostgreSQL servers (turn lock, rate limits; not flushed) [{DEFAULT_REDIS}]")
    m.add_argument("--settle", type=float, default=10.0, metavar="S",
                   help="seconds to wait after a server's first reply before its phases (its other workers finish "
                        "loading; not measured) [10]")
    m.add_argument("--json", metavar="PATH", help="also write the rows, goals and loads as JSON")
    m.add_argument("--strict", action="store_true", help="exit 1 when a goal fails too (default: goals are only printed)")
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # stop the server it started on `kill` too
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise SystemExit("bench/load.py needs httpx: .venv/bin/pip install httpx") from None
    if args.matrix:
        return run_matrix(args)
    if args.duration is None:
        args.duration = 60.0
    print("load before:", os.getloadavg(), flush=True)
    if args.url:
        stats, elapsed = asyncio.run(run_load(args.url.rstrip("/"), args))
        code = report(stats, elapsed, args, None, f"{args.url}")
    else:
        env = dict(os.environ)
        with tempfile.TemporaryDirectory(prefix="sdr-load-") as d:
            proc, url, cold, cmd = start_server(args, Path(d), env)
            try:
                stats, elapsed = asyncio.run(run_load(url, args))
            finally:
                stop_server(proc)
            code = report(stats, elapsed, args, cold, f"{show_cmd(cmd)} ({db_label(env)})")
            if code:
                print_server_tracebacks(Path(d))
    print("load after:", os.getloadavg())
    return code


if __name__ == "__main__":
    sys.exit(main())
