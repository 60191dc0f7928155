"""Many processes, one database (issue 14, item 2): 4 worker processes answer chat turns at once on
the same SQLite file (and on the real PostgreSQL, and with Redis for the lock when it answers) —
no "database is locked", every message answered exactly once, and the messages of one visitor
never race: the turns of a session run one after another whatever process takes them.

The processes run the real turn (the deterministic brain; no content store, which this test does
not need), started with multiprocessing's spawn as gunicorn workers would be.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from bot.store import Base, Message

PG = os.environ.get("SDR_TEST_DATABASE_URL")
SHARED_SESSIONS = 3          # sessions every process writes into at once
MESSAGES = 6                 # per process per shared session, plus one own session each


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def _worker(data_dir: str, database_url: str, redis_url: str | None, sessions: list[str], n: int, errors: Any) -> None:
    """One worker process: its own SDR (store, locks), `n` messages into each session, in turn."""
    from bot.inbound import Inbound
    from bot.settings import Settings
    from bot.turn import SDR

    settings = Settings.from_env(data_dir=data_dir, database_url=database_url, redis_url=redis_url)
    sdr = SDR(settings, load_knowledge=False)
    try:
        for i in range(n):
            for sid in sessions:
                try:
                    sdr.handle(Inbound(text=f"We have {40 + i} people in sales ops, message {i} from {os.getpid()}",
                                       session_id=sid, message_id=f"{sid}:{os.getpid()}:{i}"))
                except Exception as e:  # noqa: BLE001 - the test reports every failure
                    errors.put(f"{type(e).__name__}: {e}"[:300])
    finally:
        sdr.store.dispose()


def run_workers(data_dir: Path, url: str, redis_url: str | None, processes: int = 4) -> tuple[list[str], list[str]]:
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    shared = [f"s_{uuid.uuid4().hex}" for _ in range(SHARED_SESSIONS)]
    own = [[f"s_{uuid.uuid4().hex}"] for _ in range(processes)]
    procs = [ctx.Process(target=_worker, args=(str(data_dir), url, redis_url, shared + own[i], MESSAGES, errors))
             for i in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0, f"a worker process died ({p.exitcode})"
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found, shared + [s for o in own for s in o]


def check(url: str, sessions: list[str], processes: int) -> None:
    eng = create_engine(url)
    with eng.connect() as conn:
        for sid in sessions:
            roles = [r for (r,) in conn.execute(select(Message.role).where(Message.conversation_id == sid)
                                                .order_by(Message.id))]
            expected = MESSAGES * (processes if sid in sessions[:SHARED_SESSIONS] else 1)
            assert roles.count("visitor") == expected and roles.count("agent") == expected, (sid, len(roles))
            # one turn at a time: every visitor message is followed by its answer before the next message
            assert roles == ["visitor", "agent"] * expected, f"turns of {sid} interleaved"
        total = conn.execute(select(func.count()).select_from(Message)).scalar()
    eng.dispose()
    assert total == 2 * MESSAGES * (SHARED_SESSIONS * processes + processes)


@pytest.mark.parametrize("lock", ["file", "redis"])
def test_four_processes_on_one_sqlite_file(tmp_path, lock):
    if lock == "redis" and not _redis_up():
        pytest.skip("no Redis at 127.0.0.1:6379")
    url = f"sqlite:///{tmp_path / 'sdr.db'}"
    errors, sessions = run_workers(tmp_path, url, "redis://127.0.0.1:6379/0" if lock == "redis" else None)
    assert errors == []                                      # no "database is locked", nothing else either
    check(url, sessions, 4)


@pytest.mark.skipif(not PG, reason="set SDR_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) "
                    "to run this on PostgreSQL; .ci/run does")
def test_four_processes_on_postgresql(tmp_path):
    schema = f"conc_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = PG + ("&" if "?" in PG else "?") + f"options=-csearch_path%3D{schema}"
    try:
        eng = create_engine(url)
        Base.metadata.create_all(eng)
        eng.dispose()
        errors, sessions = run_workers(tmp_path, url, None)   # the lock: PostgreSQL advisory locks
        assert errors == []
        check(url, sessions, 4)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_a_message_while_the_sessions_turn_runs_too_long_is_429_with_retry_after(make_sdr):
    """The lock waits a bounded time: past it, the visitor is told to send again (never a race,
    never a 500)."""
    import threading

    from integrations.wiring import build_web_app

    sdr = make_sdr()
    app = build_web_app(sdr, sdr.settings)
    client = app.test_client()
    sid = client.post("/api/chat", json={"message": "hi"}).get_json()["session_id"]
    sdr.locks.wait_s = 0.3
    held, release = threading.Event(), threading.Event()

    def long_turn() -> None:
        with sdr.locks.hold(sid):
            held.set()
            release.wait(10)

    t = threading.Thread(target=long_turn)
    t.start()
    held.wait(5)
    try:
        r = client.post("/api/chat", json={"message": "are you there?", "session_id": sid})
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert r.get_json()["error"]["code"] == "turn_in_progress"
        sdr.settings.metrics_public = True
        assert 'sdr_rate_limited_total{scope="turn_in_progress"} 1.0' in client.get("/metrics").get_data(as_text=True)
    finally:
        release.set()
        t.join()
    assert client.post("/api/chat", json={"message": "are you there?", "session_id": sid}).status_code == 200


def test_a_visitor_never_waits_for_another_visitors_turn_in_the_same_process(tmp_path):
    """The in-process lock is per session (it was one of 64 buckets: two visitors in one bucket
    queued behind each other — and behind a stale Redis lock of the other one)."""
    import threading

    from bot.locks import TurnLocks, _bucket

    locks = TurnLocks(redis_url=None, engine=None, lock_dir=tmp_path, wait_s=0.5)
    a = "sess-a"
    b = next(f"sess-{i}" for i in range(100_000) if _bucket(f"sess-{i}") % 64 == _bucket(a) % 64
             and _bucket(f"sess-{i}") != _bucket(a))   # the old local bucket, another shared one
    held, release = threading.Event(), threading.Event()

    def long_turn() -> None:
        with locks.hold(a):
            held.set()
            release.wait(10)
    t = threading.Thread(target=long_turn)
    t.start()
    assert held.wait(5)
    try:
        with locks.hold(b):    # not Busy
            pass
    finally:
        release.set()
        t.join()
    assert locks._local == {}  # nothing kept once no turn holds or waits
