"""The Chroma collection that holds the content chunks.

Always opened with our own embedding function: chromadb's default one downloads a model on first
use (it fails offline), and a collection reopened without an embedding function silently falls
back to it. We also pass vectors explicitly on every add and query, so Chroma never embeds.

chromadb is imported when a collection is first opened, not with this module: its import is ~1 s of
a server worker's start, and a worker opens the store in the background once it takes requests
(integrations/cli.py), so a first turn that needs no content does not wait for it.
"""
from __future__ import annotations

import re
import threading
from typing import Any

class ContentUnavailable(RuntimeError):
    """The content store cannot be opened or read (a Chroma server that does not answer, a store it
    cannot read); the message says what failed and what to check."""


_clients: dict[str, Any] = {}
_lock = threading.Lock()


def _client(settings: Any) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    key = settings.chroma_url or str(settings.chroma_dir)
    with _lock:
        if key not in _clients:
            chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
            if settings.chroma_url:
                m = re.match(r"^(https?)://([^:/]+)(?::(\d+))?", settings.chroma_url)
                if not m:
                    raise SystemExit(f"SDR_CHROMA_URL={settings.chroma_url!r} should look like http://host:8000")
                _clients[key] = chromadb.HttpClient(host=m.group(2), port=int(m.group(3) or 8000),
                                                    ssl=m.group(1) == "https", settings=chroma_settings)
            else:
                settings.chroma_dir.mkdir(parents=True, exist_ok=True)
                _clients[key] = chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)
        return _clients[key]


def collection_name(embedder: Any) -> str:
    """One collection per embedding model: vectors of different models never mix."""
    return "content_" + re.sub(r"[^a-zA-Z0-9_-]", "_", getattr(embedder, "name", "custom"))[:50]


def open_collection(settings: Any, embedder: Any) -> Any:
    """The content collection for `embedder` (created when missing), through the process's client:
    SDR_CHROMA_URL's server, else the persistent store in the data dir. Raises chromadb's errors (a
    server that does not answer, a store it cannot read)."""
    from .chroma_function import SDREmbeddingFunction

    client = _client(settings)
    return client.get_or_create_collection(
        name=collection_name(embedder),
        embedding_function=SDREmbeddingFunction(embedder),
        configuration={"hnsw": {"space": "cosine"}},
    )


def forget_clients() -> None:
    """Tests use a fresh data dir each; drop cached clients so nothing leaks between them."""
    with _lock:
        _clients.clear()
