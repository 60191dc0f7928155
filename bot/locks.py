"""The per-visitor turn lock: two messages of one chat session never run their turns at once,
whatever process or thread receives them (a double click, a retry racing the original, two web
workers behind a load balancer).

Where the lock lives, by what is configured:
- Redis (`SDR_REDIS_URL`): a `redis-py` Lock per session (SET NX with an expiry, so a process that
  dies holding it frees it after `ttl_s`);
- PostgreSQL: `pg_advisory_xact_lock` on a dedicated connection, held in an open transaction for
  the turn (released on commit, or by the server when the connection dies);
- SQLite: a file lock per session bucket in the data dir (`filelock`; SQLite lives on one host, so
  every process sharing its file shares these locks too).
In every case a threading lock per session comes first (made on demand, dropped when no thread
holds or waits for it), so threads of one process queue cheaply and never behind another visitor.
Waiting is bounded (`wait_s`): a lock not obtained in time raises `Busy`, which the API answers
with 429 and Retry-After rather than a turn that races.
"""
from __future__ import annotations

import threading
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

BUCKETS = 1024   # sessions hash into this many locks (a collision only makes two visitors wait for each other)


class Busy(Exception):
    """The session's lock was not obtained within the wait: another turn of it is still running."""


def _bucket(session_id: str) -> int:
    return zlib.crc32(session_id.encode("utf-8", "replace")) % BUCKETS


class TurnLocks:
    """`with locks.hold(session_id):` around a turn. Built once per SDR from its settings and store."""

    def __init__(self, *, redis_url: str | None, engine: Any, lock_dir: Path, wait_s: float = 30.0, ttl_s: float = 60.0):
        self.wait_s, self.ttl_s = wait_s, ttl_s
        self._mutex = threading.Lock()
        self._local: dict[str, list[Any]] = {}   # session id -> [its threading lock, threads holding or waiting]
        self._redis = None
        self._engine = None
        self._dir = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
            self.kind = "redis"
        elif engine is not None and engine.dialect.name == "postgresql":
            self._engine, self.kind = engine, "postgresql"
        else:
            self._dir, self.kind = lock_dir, "file"
            lock_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def hold(self, session_id: str) -> Iterator[None]:
        """Hold the session's lock for the block. Raises Busy after `wait_s` seconds of waiting."""
        with self._mutex:
            entry = self._local.setdefault(session_id, [threading.Lock(), 0])
            entry[1] += 1
        try:
            if not entry[0].acquire(timeout=self.wait_s):
                raise Busy(session_id)
            try:
                with self._shared(session_id, _bucket(session_id)):
                    yield
            finally:
                entry[0].release()
        finally:
            with self._mutex:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._local[session_id]

    @contextmanager
    def _shared(self, session_id: str, bucket: int) -> Iterator[None]:
        if self._redis is not None:
            import redis

            lock = self._redis.lock(f"sdr:turn:{session_id}", timeout=self.ttl_s, blocking_timeout=self.wait_s)
            try:
                got = lock.acquire()
            except redis.RedisError as e:
                raise Busy(f"{session_id}: Redis is unreachable ({type(e).__name__})") from None
            if not got:
                raise Busy(session_id)
            try:
                yield
            finally:
                try:
                    lock.release()
                except redis.RedisError:   # expired (a turn longer than ttl_s) or Redis gone: nothing to release
                    pass
        elif self._engine is not None:
            from sqlalchemy import text

            with self._engine.connect() as conn:
                conn.execute(text(f"SET LOCAL lock_timeout = '{int(self.wait_s * 1000)}ms'"))
                try:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k1, :k2)"), {"k1": 0x5D2, "k2": bucket})
                except Exception as e:  # noqa: BLE001 - lock_timeout: another turn of this session runs long
                    if "lock timeout" in str(e).lower() or "LockNotAvailable" in type(getattr(e, "orig", e)).__name__:
                        raise Busy(session_id) from None
                    raise
                try:
                    yield
                finally:
                    conn.rollback()   # ends the transaction: the advisory lock goes with it
        else:
            from filelock import FileLock, Timeout

            lock = FileLock(str(self._dir / f"turn-{bucket:04d}.lock"), timeout=self.wait_s)
            try:
                lock.acquire()
            except Timeout:
                raise Busy(session_id) from None
            try:
                yield
            finally:
                lock.release()
