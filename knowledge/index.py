"""The Chroma collection that holds the content chunks.

Always opened with our own embedding function: chromadb's default one downloads a model on first
use (it fails offline), and a collection reopened without an embedding function silently falls
back to it. We also pass vectors explicitly on every add and query, so Chroma never embeds.
"""
from __future__ import annotations

import re
import threading
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

_clients: dict[str, Any] = {}
_lock = threading.Lock()


class SDREmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma-facing wrapper around our embedder (LangChain `Embeddings` with numpy helpers)."""

    def __init__(self, embedder: Any):
        self._embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - chroma's signature
        return list(self._embedder.embed_documents_np(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:  # noqa: A002
        return [self._embedder.embed_query_np(t) for t in input]

    @staticmethod
    def name() -> str:
        return "sdr-embeddings"

    def get_config(self) -> dict[str, Any]:
        return {"embedder": getattr(self._embedder, "name", "custom")}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "SDREmbeddingFunction":
        raise ValueError("open the SDR collection through knowledge.index.open_collection, which passes the embedder")

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine"]


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
