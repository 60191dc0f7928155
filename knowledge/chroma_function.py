"""The embedding function a Chroma collection is opened with: our embedder behind Chroma's
interface (imported with chromadb, when knowledge/index.py first opens a collection)."""
from __future__ import annotations

from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings


class SDREmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma-facing wrapper around our embedder (embed_documents_np / embed_query_np)."""

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
