"""`sdr serve` runs gunicorn (threaded workers, each building its own SDR after the fork) with a
bound on the requests in flight; `--dev` runs Werkzeug.

The module starts the real `sdr serve --workers 2 --threads 2` once, as a subprocess on a data dir
holding the sample content (copied from the suite's ingested store), and talks HTTP to it: chat
turns (one session across both workers), the SSE stream, the printed sign-in link, overload (slow
request bodies hold every slot: the rest get 503 + Retry-After + the JSON error, never a 500) and,
last, Ctrl+C stopping the master and every worker. The middleware and the option handling are
also tested in-process.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from conftest import ROOT, default_env

BOOT_S = 300          # two workers each load the model and warm up; the shared CI machine is slow
TURN_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Served:
    def __init__(self, proc: subprocess.Popen, port: int, out: Path) -> None:
        self.proc, self.port, self.out = proc, port, out
        self.base = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None,
                timeout: float = TURN_S) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sample_store: Any) -> Iterator[Served]:
    from bot.settings import Settings

    root = tmp_path_factory.mktemp("served")
    d = root / "sdr-data"
    with pytest.MonkeyPatch.context() as mp:   # module fixtures start before `data_dir` cleans the environment
        default_env(mp, d)
        sample_store.copy_into(Settings.from_env(data_dir=str(d)))   # the sample content, ingested once per run
        env = dict(os.environ, SDR_RATE_PER_IP="10000", SDR_RATE_PER_SESSION="10000", PYTHONPATH=str(ROOT),
                   PYTHONUNBUFFERED="1")
    port = _free_port()
    out = root / "serve.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "integrations.cli", "serve", "--workers", "2", "--threads", "2",
                                 "--port", str(port)], cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    s = Served(proc, port, out)
    try:
        deadline = time.monotonic() + BOOT_S
        while True:
            assert proc.poll() is None, f"sdr serve exited with {proc.returncode}:\n{s.output()}"
            try:
                if s.request("GET", "/healthz", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"/healthz did not answer within {BOOT_S} s:\n{s.output()}"
            time.sleep(0.25)
        yield s
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_it_is_gunicorn_with_two_workers_and_says_so(served):
    out = served.output()
    assert f"Chat with the SDR at {served.base}" in out and "gunicorn, 2 worker process(es)" in out
    assert "Traceback" not in out
    workers = _children(served.proc.pid)
    assert len(workers) == 2, workers


def test_a_session_continues_whichever_worker_answers(served):
    status, _, body = served.request("POST", "/api/chat", {"message": "How much does it cost?"})
    assert status == 200, body
    first = json.loads(body)
    assert first["reply"] and first["session_id"].startswith("s_")
    for text in ("We are about 300 people in healthcare", "I'm the VP of Sales", "What about security?"):
        status, _, body = served.request("POST", "/api/chat", {"message": text, "session_id": first["session_id"]})
        assert status == 200, body
        turn = json.loads(body)
        assert turn["session_id"] == first["session_id"] and turn["reply"]


def test_the_chat_streams_as_server_sent_events(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=TURN_S)
    try:
        conn.request("POST", "/api/chat/stream", body=json.dumps({"message": "Do you integrate with Salesforce?"}),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
        raw = r.read().decode()
    finally:
        conn.close()
    events = [dict(line.split(": ", 1) for line in block.splitlines()) for block in raw.strip().split("\n\n")]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done" and "delta" in kinds
    done = json.loads(events[-1]["data"])
    shown = "".join(json.loads(e["data"])["text"] for e in events if e["event"] == "delta")
    assert shown.strip() == done["reply"].strip()


def test_the_printed_signin_link_works_on_every_worker(served):
    link = re.search(r"sign in once at (\S+/signin\?code=\S+)", served.output()).group(1)
    assert link.startswith(served.base)
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(link, timeout=TURN_S) as r:   # redeemed once, then /leads with the session cookie
        assert r.status == 200 and r.url.endswith("/leads")
    for _ in range(8):   # new connections: both workers answer some; each knows the cookie's key
        with opener.open(served.base + "/leads", timeout=TURN_S) as r:
            assert r.status == 200 and r.url.endswith("/leads")
    with pytest.raises(urllib.error.HTTPError) as e:   # one-time: any worker refuses it again
        urllib.request.urlopen(link, timeout=TURN_S)
    assert e.value.code == 401


def _slow_chat(port: int, results: list, release: threading.Event) -> None:
    """A chat request whose body arrives slowly: it holds a slot from the moment it is let in."""
    body = json.dumps({"message": "What does the Growth plan cost?"}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=TURN_S)
    started = time.monotonic()
    try:
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
        s.settimeout(0.2)
        raw = b""
        while not release.is_set():   # an answer before the body is complete: turned away
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            raw += chunk
            if not chunk:
                break
        waited = time.monotonic() - started
        if not raw:
            s.sendall(body[10:])
            s.settimeout(TURN_S)
            while chunk := s.recv(65536):
                raw += chunk
        results.append((raw, waited))
    finally:
        s.close()


def test_overload_answers_503_with_retry_after_never_500(served):
    # 2 workers x 2 slots: ten slow requests at once hold every slot; the rest wait <= 2 s, then 503
    results: list = []
    release = threading.Event()
    threads = [threading.Thread(target=_slow_chat, args=(served.port, results, release)) for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(8)   # every turned-away request has its answer by now (2 s wait, a busy machine)
    release.set()
    for t in threads:
        t.join(TURN_S)
    assert len(results) == 10
    statuses = []
    for raw, waited in results:
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        statuses.append(status)
        if status == 503:
            assert b"\r\nRetry-After: 1\r\n" in head and waited < 8
            assert json.loads(body)["error"]["code"] == "overloaded"
    assert 500 not in statuses and set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 6 and statuses.count(200) >= 1, statuses
    status, _, body = served.request("POST", "/api/chat", {"message": "hello again"})   # the slots came back
    assert status == 200, body


def test_ctrl_c_stops_the_master_and_every_worker(served):
    workers = _children(served.proc.pid)
    assert workers
    started = time.monotonic()
    served.proc.send_signal(signal.SIGINT)
    served.proc.wait(20)
    took = time.monotonic() - started
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)], "a worker outlived the master"
    assert took < 10, f"Ctrl+C took {took:.1f} s"
    assert "Traceback" not in served.output()


# -- in-process: the middleware and the options ------------------------------------------------------


def _blocking_app(gate: threading.Event, entered: threading.Event):
    def app(environ, start_response):
        if environ["PATH_INFO"] != "/healthz":
            entered.set()
            gate.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]
    return app


def _call(app, path="/api/chat"):
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)
    body = app({"PATH_INFO": path, "REQUEST_METHOD": "POST"}, start_response)
    return seen, body


def test_the_in_flight_limit_answers_503_json_after_a_short_wait():
    from integrations.web.server import InFlightLimit

    gate, entered = threading.Event(), threading.Event()
    limited = InFlightLimit(_blocking_app(gate, entered), limit=1, wait_s=0.2)
    held: dict = {}
    t = threading.Thread(target=lambda: held.update(zip(("seen", "body"), _call(limited))))
    t.start()
    assert entered.wait(5)
    started = time.monotonic()
    seen, body = _call(limited)
    assert 0.15 < time.monotonic() - started < 2
    assert seen["status"].startswith("503") and seen["headers"]["Retry-After"] == "1"
    assert re.fullmatch(r"[0-9a-f]{32}", seen["headers"]["X-Request-ID"])   # an id, as every answer has
    error = json.loads(b"".join(body))["error"]
    assert error["code"] == "overloaded" and "retry in 1 s" in error["message"]
    assert limited.rejected == 1 and limited.in_flight == 1
    assert _call(limited, "/healthz")[0]["status"].startswith("200")   # a health probe is never turned away
    gate.set()
    t.join(5)
    held["body"].close()   # the server closes the response: the slot is free again
    assert limited.in_flight == 0
    seen, body = _call(limited)
    assert seen["status"].startswith("200")
    body.close()


def test_a_failing_app_gives_its_slot_back():
    from integrations.web.server import InFlightLimit

    def broken(environ, start_response):
        raise RuntimeError("boom")
    limited = InFlightLimit(broken, limit=1, wait_s=0.05)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            _call(limited)
    assert limited.in_flight == 0


def test_serve_defaults_come_from_the_cores_and_dev_is_werkzeug(monkeypatch):
    import integrations.web.server as server
    from integrations.cli import main

    ran: list = []
    monkeypatch.setattr(server, "serve", lambda factory, options, **kw: ran.append((factory, options)))
    r = CliRunner().invoke(main, ["serve", "--port", str(_free_port())])
    assert r.exit_code == 0, r.output
    factory, options = ran[0]
    assert callable(factory) and options.workers == server.cores() and options.threads == 4
    assert options.max_in_flight == 4 and options.pool_threads > options.max_in_flight
    cfg = options.gunicorn_config()
    assert cfg["worker_class"] == "gthread" and cfg["preload_app"] is False and cfg["backlog"] <= 2048
    assert "gunicorn" in r.output and "signin?code=" in r.output

    import werkzeug.serving
    simple: list = []
    monkeypatch.setattr(werkzeug.serving, "run_simple", lambda host, port, app, **kw: simple.append((port, kw)))
    port = _free_port()
    r = CliRunner().invoke(main, ["serve", "--dev", "--port", str(port)])
    assert r.exit_code == 0, r.output
    assert simple == [(port, {"threaded": True, "use_reloader": False, "use_debugger": False})]
    assert "Werkzeug" in r.output and len(ran) == 1


def test_demo_serves_from_a_fresh_process(monkeypatch):
    """`sdr demo` ingests in its own process, then becomes `sdr serve` (exec) with SDR_DEMO=1, so the
    forked workers never inherit the embedding model or the Chroma client."""
    from integrations.cli import main

    class Exec(Exception):
        pass

    def fake_execve(path, args, env):
        raise Exec(args, env)
    monkeypatch.setattr(os, "execve", fake_execve)
    port = _free_port()
    r = CliRunner().invoke(main, ["demo", "--port", str(port), "--workers", "1", "--threads", "3"])
    assert isinstance(r.exception, Exec), r.output
    args, env = r.exception.args
    assert args[args.index("serve"):] == ["serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "3",
                                          "--workers", "1"]
    assert env["SDR_DEMO"] == "1"


def test_a_worker_killed_while_booting_does_not_hold_up_the_next(tmp_path):
    # (were the turn not released by the death, acquiring it would time out and leave _lock None)
    """Workers build one at a time (a file lock): one killed mid-build (kill -9, the OOM killer)
    releases its turn with its death — the next does not wait out the 30-s timeout."""
    from integrations.web.server import _BootTurn

    path = str(tmp_path / "boot.lock")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from integrations.web.server import _BootTurn\n"
        f"t = _BootTurn({path!r}, 5)\n"
        "t.__enter__(); print('held', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        turn = _BootTurn(path, 20)
        holder.kill()
        holder.wait(10)
        with turn:
            assert turn._lock is not None            # taken when the holder died (a timeout leaves it None)
    finally:
        holder.kill()
