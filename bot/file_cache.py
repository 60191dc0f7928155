"""Things a process builds at start-up once, kept in a file so the next process reads them instead
(the place index, the intent examples' vectors): a cold start pays milliseconds, not seconds.

A cached file is named by a key that covers everything it was built from (the data's version, the
code's own hash, the model's name): a change of any of them reads as a miss and builds afresh. Files
are written to a temporary name and renamed, so a reader never sees half a file and two processes
building at once both end with a whole one. Any error reading or writing falls back to building:
the cache can be deleted at any time (`rm -r <data dir>/cache`).

The cache lives in the data dir, which also holds the database: files there are trusted (they are
read with pickle/numpy), as the database is.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def cache_key(*parts: str | bytes) -> str:
    """A short hex name for what a file was built from (16 hex digits of SHA-256)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def source_hash(path: str | Path) -> str:
    """The key part for a module's own code: a cache built by other code is not this code's."""
    return cache_key(Path(path).read_bytes())


def load_or_build(path: Path | None, build: Callable[[], T], save: Callable[[T, Path], None],
                  load: Callable[[Path], T]) -> T:
    """`load(path)` when the file exists and reads; else `build()`, then `save(value, tmp)` and the
    rename to `path`. `path` None: build only (no cache dir given). Never raises for the cache's
    sake: an unreadable file is rebuilt and overwritten, an unwritable dir only logged."""
    if path is not None and path.is_file():
        try:
            return load(path)
        except Exception as e:   # noqa: BLE001 — a truncated or foreign file: build it again
            log.warning("cache file %s unreadable (%s); rebuilding it", path.name, type(e).__name__)
    value = build()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
            os.close(fd)
            try:
                save(value, Path(tmp))
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as e:
            log.warning("cache file %s not written (%s)", path.name, e)
    return value
