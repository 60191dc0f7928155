"""Intents by meaning, in any language: the nearest labelled examples in the bundled multilingual
embedding model (multilingual-e5-small, the one the content store uses).

    model = IntentModel(playbook.vocabulary.intents, embed)      # once per process (lazily built)
    model.classify("Bitte schreiben Sie mir nicht mehr")           # -> ("opt_out", 0.93)
    recognise(u, text, model)                                      # the turn's step: adds what the rules missed

The labelled examples live in the playbook (`vocabulary.intents.examples`, several languages), with
ordinary messages under `none`, so a message that is merely near an intent stays ordinary. The rule
patterns of bot/extract.py are the fast path: this step runs only when they found no request, and an
intent counts only when its best example is at least `min_similarity` close and `margin` closer than
the best ordinary one. The examples are embedded once per process; a message costs one query
embedding (cached by the embedder), ~10-20 ms on the 2-core reference machine.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .extract import Fact, Understanding
from .file_cache import cache_key, load_or_build

log = logging.getLogger("sdr.intents")

# What each intent means for the turn: the Understanding intent it adds, and the action it requests.
EFFECTS: dict[str, tuple[str, str | None]] = {
    "opt_out": ("unsubscribe", "unsubscribe"),
    "human": ("human", "human"),
    "meeting": ("book", "book"),
    "identity": ("identity_question", None),
    "job_seeker": ("job_seeker", None),
    "student": ("student", None),
    "competitor": ("competitor", None),
    "pricing": ("question", None),
    "support": ("support", None),
}
# The intents the rule patterns already found: the meaning step is not needed then.
_RULE_FOUND = {"unsubscribe", "human", "book", "identity_question", "job_seeker", "competitor", "injection"}
# Topics of the playbook an intent implies (pricing by meaning asks about the `pricing` topic).
TOPICS = {"pricing": "pricing", "support": "onboarding"}


class IntentModel:
    """Labelled examples embedded once; `classify` finds the nearest label for a message."""

    def __init__(self, examples: dict[str, list[str]], embed: Callable[[list[str]], np.ndarray], *,
                 min_similarity: float, margin: float, vectors: np.ndarray | None = None):
        """`embed(texts)` → one row per text; `vectors`: the examples' rows when already embedded."""
        self.min_similarity, self.margin = min_similarity, margin
        self.labels: list[str] = [label for label, texts in examples.items() for _ in texts]
        texts = [t for ts in examples.values() for t in ts]
        self._embed = embed
        if vectors is None:
            vectors = embed(texts) if texts else np.zeros((0, 1), dtype=np.float32)
        self._vectors = _normalise(vectors) if texts else vectors

    def scores(self, text: str) -> dict[str, float]:
        """The best cosine similarity of `text` to each label's examples."""
        if not self.labels:
            return {}
        sims = self._vectors @ _normalise(self._embed([text]))[0]
        out: dict[str, float] = {}
        for label, sim in zip(self.labels, sims.tolist()):
            out[label] = max(out.get(label, -1.0), float(sim))
        return out

    def classify(self, text: str) -> tuple[str | None, float]:
        """(label, similarity) of the nearest intent, or (None, best similarity) when the message is
        ordinary: below `min_similarity`, or not `margin` closer than the nearest `none` example."""
        scores = self.scores(text)
        ordinary = scores.pop("none", -1.0)
        if not scores:
            return None, ordinary
        label, sim = max(scores.items(), key=lambda kv: kv[1])
        if sim < self.min_similarity or sim < ordinary + self.margin:
            return None, sim
        return label, sim


def _save_npy(path: Path, vectors: np.ndarray) -> None:
    with open(path, "wb") as f:   # a file object: np.save would add ".npy" to the temporary name
        np.save(f, vectors, allow_pickle=False)


def _checked(vectors: np.ndarray, rows: int, dim: int | None) -> np.ndarray:
    """The cached vectors if they are `rows` × `dim` (dim None: any); else ValueError (rebuilt)."""
    if vectors.ndim != 2 or len(vectors) != rows or (dim is not None and vectors.shape[1] != dim):
        raise ValueError(f"expected {rows} vectors of {dim}, found shape {vectors.shape}")
    return vectors


def _normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32).reshape(len(m), -1)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)


class LazyIntentModel:
    """Builds the IntentModel on first use — `warm()` does it at start in a background thread.
    The examples' vectors are embedded in one batch (~1 s for 175 examples on 2 cores) and kept in
    `cache_dir` (bot/file_cache.py, named by the embedder and the examples), so the next process
    reads them in milliseconds. Without an embedder: no meaning step."""

    def __init__(self, playbook: Any, embedder: Any | None, cache_dir: Path | None = None):
        self._playbook, self._embedder, self._cache_dir = playbook, embedder, cache_dir
        self._model: IntentModel | None = None
        self._lock = threading.Lock()

    def get(self) -> IntentModel | None:
        if self._embedder is None:
            return None
        if self._model is None:
            with self._lock:
                if self._model is None:
                    cfg = self._playbook.vocabulary.intents
                    self._model = IntentModel(cfg.examples, self._embed_one, min_similarity=cfg.min_similarity,
                                              margin=cfg.margin, vectors=self._example_vectors(cfg.examples))
        return self._model

    def _embed_one(self, texts: list[str]) -> np.ndarray:
        one = getattr(self._embedder, "embed_query_np", None) or self._embedder.embed_query
        return np.asarray([one(t) for t in texts], dtype=np.float32)

    def _example_vectors(self, examples: dict[str, list[str]]) -> np.ndarray | None:
        """The examples' vectors, one batch or the cache file; None without examples."""
        texts = [t for ts in examples.values() for t in ts]
        many = getattr(self._embedder, "embed_queries_np", None) or self._embed_one
        if not texts:
            return None
        path = None
        if self._cache_dir is not None:
            key = cache_key(str(getattr(self._embedder, "name", type(self._embedder).__name__)),
                            str(getattr(self._embedder, "version", "")), json.dumps(texts))   # other weights: a miss
            path = Path(self._cache_dir) / f"intents-{key}.npy"
        return load_or_build(path, lambda: np.asarray(many(texts), dtype=np.float32),
                             lambda v, p: _save_npy(p, v),
                             lambda p: _checked(np.load(p, allow_pickle=False), len(texts), getattr(self._embedder, "dim", None)))

    def warm(self) -> None:
        try:
            self.get()
        except Exception:   # noqa: BLE001 — the rules still work; say why the meaning step is off
            log.exception("intent examples could not be embedded; intents by meaning are off")


def recognise(u: Understanding, text: str, model: IntentModel | None, topics: set[str] | None = None) -> str | None:
    """The turn's step after understanding: when the rules found no request, the intent the message
    means (added to `u`: its intent, requested action and implied topic). Returns the label added,
    or None. `topics` are the playbook's topic names (an implied topic is added only if it exists)."""
    if model is None or u.intents & _RULE_FOUND or len(text) > 600 or len(text.strip()) < 5:
        return None
    if u.fields and not u.questions and u.intents <= {"answer", "greeting", "affirm"}:
        return None   # an answer stating facts ("wir sind 150 Mitarbeiter"): no embedding needed this turn
    label = None
    for candidate in [text] + [q for q in u.questions if q != text][:3]:   # the whole message, then each question
        label, _sim = model.classify(candidate)
        if label is not None:
            break
    if label is None:
        return None
    if label in ("opt_out", "job_seeker", "competitor"):   # not an answer to the question asked
        u.fields = {k: f for k, f in u.fields.items() if k == "email"}
        u.intents.discard("answer")
    intent, action = EFFECTS.get(label, (label, None))
    u.intents.add(intent)
    u.intents.discard("small_talk")
    if action and u.requested_action == "continue":
        u.requested_action = action
    if label == "student" and "seniority" not in u.fields:
        u.fields["seniority"] = Fact("student", extractor="meaning", certain=False, evidence=text[:200])
    topic = TOPICS.get(label)
    if topic and (topics is None or topic in topics):
        if label == "pricing" and topic not in u.topics:   # asked by meaning only (料金はいくらですか): the prices
            u.intents.add("price_ask")
            u.questions = u.questions or [text]
        u.topics.add(topic)
    return label
