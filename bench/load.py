"""Load benchmark: N chat sessions against a running `sdr serve`, for a fixed time; prints the figures.

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
first reply to a chat message. Exit status 1 on any 5xx (503 included: it is counted, and
allowed by the goals only without think time — read the table) or a failed connection, else 0.

The server it starts gets its own data dir (a temp folder, SQLite unless SDR_DATABASE_URL is set),
the sample content ingested first (`sdr ingest knowledge/sample`, not timed), and rate limits
raised (SDR_RATE_PER_IP, SDR_RATE_PER_SESSION) so the run measures the turn, not the limiter. A
server given by --url keeps its own limits: expect 429 from one client address past
SDR_RATE_PER_IP a minute (default 60) — raise it on that server for a load run.

`--serve-args` are passed to `sdr serve` (split like a shell). Default: the server's own defaults
when `sdr serve --help` offers --workers (gunicorn), else `--dev`; a `--dev` the CLI does not know
is dropped (an older `sdr serve` is the development server anyway).

The client shares the machine with the server it measures: on 2 cores it takes a part of them.
Compare numbers from the same machine and load (`uptime` is printed before and after).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDR = str(Path(sys.executable).with_name("sdr"))

from visitor_messages import FIRST, fill  # noqa: E402 - the simulated visitors' words (shared with bench_sdr)
from visitor_messages import FOLLOW as _FOLLOW  # noqa: E402

FOLLOW = _FOLLOW + ["what does the Growth plan include?", "case study for {industry}?"]


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
        if args.think > 0:
            await asyncio.sleep(max(0.0, args.think - (time.monotonic() - sent)))


async def run_load(url: str, args) -> tuple[Stats, float]:  # noqa: ANN001
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


def wait_first_reply(url: str, proc: subprocess.Popen, timeout: float) -> float:
    """Seconds until a chat message gets a 200 (from `t0` = the launch, which the caller subtracts)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"`sdr serve` exited with {proc.returncode} before answering; see its log above")
        try:
            r = httpx.post(url + "/api/chat", json={"message": "hello"}, timeout=max(1.0, deadline - time.monotonic()))
            if r.status_code == 200:
                return time.monotonic()
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no reply from {url} within {timeout:.0f}s")


def start_server(args, data_dir: Path) -> tuple[subprocess.Popen, str, float, list[str]]:  # noqa: ANN001
    env = dict(os.environ, SDR_DATA_DIR=str(data_dir), SDR_RATE_PER_IP="1000000", SDR_RATE_PER_SESSION="1000000",
               SDR_ADMIN_TOKEN=os.environ.get("SDR_ADMIN_TOKEN", "bench-load-token"))
    print(f"ingesting the sample content into {data_dir} (not timed)…", flush=True)
    subprocess.run([SDR, "ingest", str(ROOT / "knowledge" / "sample")], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    extra = serve_args(args.serve_args)
    cmd = [SDR, "serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    log = open(data_dir / "serve.log", "w")   # noqa: SIM115 - closed with the process
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        cold = wait_first_reply(url, proc, args.start_timeout) - t0
    except BaseException:
        stop_server(proc)
        print((data_dir / "serve.log").read_text()[-3000:], file=sys.stderr)
        raise
    return proc, url, cold, cmd


def stop_server(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)   # its own process group: gunicorn's workers go too
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def report(stats: Stats, elapsed: float, args, cold: float | None, label: str) -> int:  # noqa: ANN001
    ok = stats.ok_ms
    total = sum(stats.status.values())
    print(f"\n== {label}")
    print(f"sessions {args.sessions}, think {args.think:g} s, duration {args.duration:g} s "
          f"(ran {elapsed:.1f} s with the replies in flight)")
    if cold is not None:
        print(f"cold start to first reply: {cold:.2f} s")
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (e.g. http://127.0.0.1:8000); default: start `sdr serve`")
    ap.add_argument("--serve-args", default=None, metavar="ARGS",
                    help="extra arguments for the `sdr serve` this starts; write them with =, e.g. --serve-args=--dev or --serve-args=\"--workers 4 --threads 4\"")
    ap.add_argument("--sessions", type=int, default=100, help="concurrent chat sessions [100]")
    ap.add_argument("--think", type=float, default=5.0,
                    help="seconds from one message of a session to its next; 0 = send on each reply [5]")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds to send messages [60]")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as a timeout [60]")
    ap.add_argument("--start-timeout", type=float, default=600.0, help="seconds the started server may take to answer")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # stop the server it started on `kill` too
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise SystemExit("bench/load.py needs httpx: .venv/bin/pip install httpx") from None
    print("load before:", os.getloadavg(), flush=True)
    if args.url:
        stats, elapsed = asyncio.run(run_load(args.url.rstrip("/"), args))
        code = report(stats, elapsed, args, None, f"{args.url}")
    else:
        with tempfile.TemporaryDirectory(prefix="sdr-load-") as d:
            proc, url, cold, cmd = start_server(args, Path(d))
            try:
                stats, elapsed = asyncio.run(run_load(url, args))
            finally:
                stop_server(proc)
            db = "PostgreSQL" if os.environ.get("SDR_DATABASE_URL", "").startswith("postgres") else "SQLite"
            code = report(stats, elapsed, args, cold, f"{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))} ({db})")
            if code:
                log = (Path(d) / "serve.log").read_text(errors="replace")
                tracebacks = [b for b in log.split("Traceback") if "Error" in b][:3]
                for tb in tracebacks:
                    print("server traceback:", ("Traceback" + tb)[-1500:], file=sys.stderr)
    print("load after:", os.getloadavg())
    return code


if __name__ == "__main__":
    sys.exit(main())
