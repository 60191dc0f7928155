"""Benchmarks: turn latency, retrieval at 10k chunks, ingest throughput. Prints percentiles.

    python bench/bench_sdr.py            # all three, ~3-5 minutes on 2 cores
    python bench/bench_sdr.py --turns 500 --chunks 10000
    python bench/bench_sdr.py --only retrieval --embedder after   # one embedder set-up (default: both)

Timings on a shared machine are noisy: compare numbers from the same run, not across runs.
No pass/fail: this prints, tests assert behaviour.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.settings import Settings  # noqa: E402
from bot.turn import SDR, Inbound  # noqa: E402
from knowledge.embeddings import get_embeddings  # noqa: E402
from knowledge.index import forget_clients, open_collection  # noqa: E402
from knowledge.retrieve import KnowledgeBase, LeadContext  # noqa: E402

SAMPLE = ROOT / "knowledge" / "sample"


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def line(name: str, values: list[float], unit: str = "ms") -> str:
    return (f"{name:<34} n={len(values):>5}  p50 {pct(values, 50):7.2f} {unit}  p95 {pct(values, 95):7.2f} {unit}  "
            f"p99 {pct(values, 99):7.2f} {unit}  mean {statistics.fmean(values):7.2f} {unit}")


from visitor_messages import FIRST, FOLLOW, fill  # noqa: E402 - the simulated visitors' words



def bench_turns(n_turns: int, data: Path) -> None:
    settings = Settings.from_env(data_dir=str(data / "turns"))
    sdr = SDR(settings)
    sdr.kb.ingest([SAMPLE], progress=False)
    rng = random.Random(7)
    convs = []
    while sum(len(c) for c in convs) < n_turns:
        convs.append([fill(rng.choice(FIRST), rng)] + [fill(rng.choice(FOLLOW), rng) for _ in range(rng.randint(3, 9))])
    # warm up the process (model load, first queries) the way a server is warm
    sdr.handle(Inbound(text="hello warm-up"))
    totals, understand, decide = [], [], []
    for conv in convs:
        sid = None
        for msg in conv:
            r = sdr.handle(Inbound(text=msg, session_id=sid))
            sid = r.session_id
            totals.append(r.timings_ms["total"])
            understand.append(r.timings_ms["understand"])
            decide.append(r.timings_ms["decide"] - r.timings_ms["understand"])
    print(f"\n== turns: {len(totals)} turns in {len(convs)} scripted conversations, deterministic brain, SQLite (WAL)")
    print(line("turn total", totals))
    print(line("  understand (rules)", understand))
    print(line("  score+decide (incl. retrieval)", decide))
    print(f"  guard fallbacks: {sdr.counters['guard_fallbacks']}")
    sdr.store.dispose()


QUERY_TEMPLATES = ["how much does it cost for {size} users", "do you integrate with {tool}", "case study for {industry}",
                   "how do {industry} teams forecast", "is my data secure", "onboarding time for a team of {size}",
                   "{role} wants better pipeline visibility"]

# How the query embedder is set up: "after" is the shipped default (knowledge/embeddings.py: one
# OpenMP thread per process on <= 7 cores, idle threads sleep, a warm-up at load); "before" is how it
# ran until issue 14 (OpenMP's defaults: a thread per core, idle threads spin; no warm-up).
EMBED_CONFIGS = ("before", "after")


def make_embedder(config: str) -> object:
    import os

    from knowledge.embeddings import LocalEmbeddings, _cores
    if config == "before":
        os.environ.pop("OMP_WAIT_POLICY", None)
        return LocalEmbeddings(threads=_cores(), warm=False, passive=False)
    return get_embeddings("local")


def base_chunks(data: Path) -> dict:
    """The sample content's chunks with their vectors (ingested once; the children reuse the file)."""
    import pickle

    f = data / "base.pkl"
    if not f.exists():
        settings = Settings.from_env(data_dir=str(data / "base"))
        kb = KnowledgeBase(settings, embedder=get_embeddings("local"))
        kb.ingest([SAMPLE], progress=False)
        got = kb.collection.get(include=["embeddings", "documents", "metadatas"])
        f.write_bytes(pickle.dumps({k: (list(got[k]) if k != "embeddings" else [list(v) for v in got[k]])
                                    for k in ("ids", "embeddings", "documents", "metadatas")}))
        forget_clients()
    return pickle.loads(f.read_bytes())


def bench_retrieval(n_chunks: int, data: Path, queries: int = 300, config: str = "after") -> None:
    settings = Settings.from_env(data_dir=str(data / f"retrieval-{config}"))
    base = base_chunks(data)
    t_load = time.perf_counter()
    emb = make_embedder(config)
    load_s = time.perf_counter() - t_load
    kb = KnowledgeBase(settings, embedder=emb)
    coll = kb.collection
    coll.add(ids=base["ids"], embeddings=base["embeddings"], documents=base["documents"], metadatas=base["metadatas"])
    vecs = np.asarray(base["embeddings"], dtype=np.float32)
    rng = np.random.default_rng(3)
    added = 0
    t0 = time.perf_counter()
    while coll.count() < n_chunks:
        batch = min(1000, n_chunks - coll.count())
        idx = rng.integers(0, len(vecs), size=batch)
        noisy = vecs[idx] + rng.normal(0, 0.04, size=(batch, vecs.shape[1])).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        metas = []
        for j, i in enumerate(idx):
            m = dict(base["metadatas"][i])
            m["doc_id"] = f"synthetic-{added + j // 8}"
            m["url"] = f"https://bench.example/doc/{added + j // 8}"
            metas.append(m)
        coll.add(ids=[f"syn-{added + j}" for j in range(batch)], embeddings=list(noisy),
                 documents=[base["documents"][i] for i in idx], metadatas=metas)
        added += batch
    print(f"\n== retrieval, embedder {config!r} (threads {getattr(emb, 'threads', '?')}; model load + warm-up "
          f"{load_s:.2f}s): {coll.count()} chunks ({len(vecs)} real + {added} synthetic: real vectors plus noise; "
          f"loading them took {time.perf_counter() - t0:.1f}s); load average {os.getloadavg()[0]:.1f}")
    qs = [fill(rng_q, random.Random(i)) for i, rng_q in enumerate(QUERY_TEMPLATES * (queries // 7 + 1))][:queries]
    emb._cache.clear()
    embed_ms, search_ms, first_ms = [], [], []
    ctx = LeadContext(industry="healthcare", persona="revops", stage="mql")
    t = time.perf_counter()
    kb.search("first query after load", ctx)   # what the first visitor waits for (the warm-up pays it at load)
    first_ms.append((time.perf_counter() - t) * 1000)
    for i, q in enumerate(qs):
        q = f"{q} #{i}"  # unique text: no query-cache hits
        t = time.perf_counter()
        emb.embed_query_np(q)
        t1 = time.perf_counter()
        kb.search(q, ctx, k=3)   # the embedding is cached now: this is index + ranking
        t2 = time.perf_counter()
        embed_ms.append((t1 - t) * 1000)
        search_ms.append((t2 - t1) * 1000)
    total = [a + b for a, b in zip(embed_ms, search_ms)]
    print(f"first search after load: {first_ms[0]:.0f} ms")
    print(line("query embedding (local e5, 4-bit)", embed_ms))
    print(line("search + rank (Chroma HNSW)", search_ms))
    print(line("retrieval total", total))


def bench_retrieval_compare(n_chunks: int, data: Path) -> None:
    base_chunks(data)
    compare("retrieval", data, "--chunks", str(n_chunks))


def bench_ingest(data: Path, config: str = "after") -> None:
    """Cold ingest of the sample (a fresh embedder: every chunk is embedded). "before" also ingests
    as before issue 14: one piece at a time, its chunks in one batch."""
    settings = Settings.from_env(data_dir=str(data / f"ingest-{config}"))
    from knowledge.embeddings import LocalEmbeddings, _cores
    if config == "before":
        os.environ.pop("OMP_WAIT_POLICY", None)
        fresh = LocalEmbeddings(threads=_cores(), warm=False, passive=False)
    else:
        fresh = LocalEmbeddings()  # no cache: every chunk is embedded
    coll = open_collection(settings, fresh)
    from knowledge.ingest import ingest, iter_files
    t = time.perf_counter()
    cpu = time.process_time()
    if config == "before":
        files, _ = iter_files([SAMPLE])
        reports = [ingest([f], coll, fresh, progress=False) for f in files]
        embedded, documents = sum(r.chunks_embedded for r in reports), sum(r.documents for r in reports)
    else:
        r = ingest([SAMPLE], coll, fresh, progress=False)
        embedded, documents = r.chunks_embedded, r.documents
    s = time.perf_counter() - t
    cpu = time.process_time() - cpu
    chars = sum(len(d or "") for d in coll.get(include=["documents"])["documents"])
    print(f"\n== ingest, {config!r} (batch threads {getattr(fresh, 'batch_threads', '?')}; load average "
          f"{os.getloadavg()[0]:.1f}): {documents} documents, {embedded} chunks, {chars / 1000:.0f}k characters in "
          f"{s:.1f}s (CPU {cpu:.1f}s) = {embedded / s:.1f} chunks/s, {chars / s / 1000:.1f}k chars/s (cold, no embedding cache)")
    t = time.perf_counter()
    r2 = ingest([SAMPLE], coll, fresh, progress=False)
    print(f"   re-ingest unchanged: {time.perf_counter() - t:.2f}s ({r2.chunks_unchanged} chunks unchanged, 0 embedded)")


def compare(only: str, data: Path, *extra: str) -> None:
    """Run `--only <only>` once per embedder configuration, each in a process of its own (OpenMP
    reads its settings once per process)."""
    import subprocess

    for config in EMBED_CONFIGS:
        subprocess.run([sys.executable, __file__, "--only", only, "--embedder", config, "--data", str(data), *extra],
                       check=True)


def bench_model(n_turns: int, data: Path) -> None:
    """Model calls and tokens per turn, against the local OpenAI-compatible test server."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_openai import FakeOpenAI

    from integrations.llm import LLMConfig, build_chat_model
    from integrations.llm.model_brain import ModelBrain

    def answer(req: dict) -> dict:
        if req.get("tools"):
            return {"tool_call": {"name": "Extraction", "arguments": {"intent": "answer"}}}
        return {"content": "Thanks — noted. Tell me more about your team."}

    with FakeOpenAI(default=answer) as server:
        settings = Settings.from_env(data_dir=str(data / "model"))
        sdr = SDR(settings)
        sdr.kb.ingest([SAMPLE], progress=False)
        cfg = LLMConfig(provider="openai", model="local", base_url=server.base_url, api_key="bench")
        sdr.brain = ModelBrain(sdr.playbook, build_chat_model(cfg, 8.0), model_name="local")
        rng = random.Random(11)
        calls, ptok, ctok, model_ms, total_ms = [], [], [], [], []
        done = 0
        while done < n_turns:
            sid = None
            for msg in [fill(rng.choice(FIRST), rng)] + [fill(rng.choice(FOLLOW), rng) for _ in range(5)]:
                usage_before = len(server.requests)
                r = sdr.handle(Inbound(text=msg, session_id=sid))
                sid = r.session_id
                detail_msg = sdr.lead_detail(r.lead["id"])["messages"][-1]
                calls.append(detail_msg["model_calls"] or 0)
                ptok.append(detail_msg["prompt_tokens"] or 0)
                ctok.append(detail_msg["completion_tokens"] or 0)
                model_ms.append(detail_msg["model_ms"] or 0.0)
                total_ms.append(r.timings_ms["total"])
                assert len(server.requests) - usage_before == calls[-1]
                done += 1
        print(f"\n== model brain: {done} turns against the local OpenAI-compatible server (instant answers; "
              f"tokens counted by the server as words, so ratios matter more than absolutes)")
        print(f"model calls per turn: mean {statistics.fmean(calls):.2f} (max {max(calls)}; 0 for refusals/closes)")
        print(f"prompt tokens per turn: mean {statistics.fmean(ptok):.0f}; completion tokens per turn: mean {statistics.fmean(ctok):.0f}")
        print(line("turn total with model (local)", total_ms))
        print(f"fallbacks: { {k: v for k, v in sdr.counters.items() if k.startswith('fallback_')} }")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=500)
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--only", choices=["turns", "retrieval", "ingest", "model"])
    ap.add_argument("--embedder", choices=EMBED_CONFIGS + ("compare",), default="compare",
                    help="ingest and retrieval with the embedder set up as before issue 14, after, or both, "
                         "each in its own process [compare]")
    ap.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)   # the compare run's shared folder
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        data = a.data or Path(d)
        if a.only in (None, "ingest"):
            if a.embedder == "compare":
                compare("ingest", data)
            else:
                bench_ingest(data, a.embedder)
            forget_clients()
        if a.only in (None, "turns"):
            bench_turns(a.turns, data)
            forget_clients()
        if a.only in (None, "model"):
            bench_model(min(a.turns, 200), data)
            forget_clients()
        if a.only in (None, "retrieval"):
            if a.embedder == "compare":
                bench_retrieval_compare(a.chunks, data)
            else:
                bench_retrieval(a.chunks, data, config=a.embedder)


if __name__ == "__main__":
    main()
