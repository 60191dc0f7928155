"""Two workers never deliver the same entry; failures back off and dead-letter with a reason."""
import os
import threading
from collections import Counter

import pytest
from sqlalchemy import create_engine, select

from bot.outbox import OutboxWorker, PermanentError, RetryLater, retry_entry
from bot.store import Base, OutboxEntry, Store

PG = os.environ.get("SDR_TEST_DATABASE_URL")
URLS = ["sqlite"] + (["postgresql"] if PG else [])


@pytest.fixture(params=URLS)
def store(request, data_dir):
    if request.param == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
        st = Store(f"sqlite:///{data_dir / 'outbox.db'}")
    else:
        eng = create_engine(PG)
        Base.metadata.drop_all(eng)
        eng.dispose()
        st = Store(PG)
    yield st
    st.dispose()


def add(store, n, kind="ping"):
    with store.session() as s:
        for i in range(n):
            s.add(OutboxEntry(kind=kind, idempotency_key=f"{kind}:{i}", payload={"i": i}))


def test_two_workers_deliver_each_entry_exactly_once(store):
    add(store, 60)
    seen = Counter()
    lock = threading.Lock()

    def handler(d):
        with lock:
            seen[d.payload["i"]] += 1
        return {"ok": True}

    workers = [OutboxWorker(store, {"ping": handler}, worker_id=f"w{i}") for i in range(2)]

    def drain(w):
        while w.run_once(limit=5):
            pass

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(seen) == list(range(60)) and set(seen.values()) == {1}
    with store.session() as s:
        assert {r.status for r in s.scalars(select(OutboxEntry))} == {"delivered"}


def test_backoff_then_dead_letter_with_reason(store):
    add(store, 1)
    calls = []

    def flaky(d):
        calls.append(d.attempts)
        raise RetryLater("remote said 503", after_s=0)

    w = OutboxWorker(store, {"ping": flaky}, max_attempts=2, quick_tries=1)
    assert w.run_once() == {"pending": 1}
    with store.session() as s:
        row = s.scalars(select(OutboxEntry)).one()
        assert row.attempts == 1 and "503" in row.last_error and row.next_attempt_at is not None
    assert w.run_once() == {}                       # not due yet: backing off
    retry_entry(store, row.id)
    assert w.run_once() == {"dead": 1}
    with store.session() as s:
        row = s.scalars(select(OutboxEntry)).one()
        assert row.status == "dead" and "gave up after 2 attempts" in row.last_error
    retry_entry(store, row.id)                     # a human fixed it and retries
    w.handlers["ping"] = lambda d: {"ok": True}
    assert w.run_once() == {"delivered": 1}


def test_permanent_errors_dead_letter_at_once(store):
    add(store, 1)

    def broken(d):
        raise PermanentError("token revoked")

    assert OutboxWorker(store, {"ping": broken}).run_once() == {"dead": 1}


def test_unknown_kinds_are_left_for_a_worker_that_knows_them(store):
    add(store, 1, kind="email")
    assert OutboxWorker(store, {"ping": lambda d: {}}).run_once() == {}
    with store.session() as s:
        assert s.scalars(select(OutboxEntry)).one().status == "pending"
