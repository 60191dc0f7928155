"""Ingest (idempotent, prune, errors, formats) and retrieval ranked for the lead."""
from pathlib import Path

import pytest
import yaml

from knowledge.ingest import IngestError, load_document
from knowledge.retrieve import KnowledgeBase, LeadContext

ROOT = Path(__file__).resolve().parent.parent
CASES = yaml.safe_load((ROOT / "tests" / "data" / "retrieval_cases.yaml").read_text())

GOOD = """---
title: "How Tallpine cut churn"
type: case_study
industries: [saas]
personas: [revops]
stage: decision
url: https://example.test/tallpine
---
## Problem
Tallpine lost 12% of revenue to churn every year.

## Result
Churn fell to 7% in two quarters.
"""


def minimal_pdf(text: str) -> bytes:
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


@pytest.fixture
def kb(settings):
    return KnowledgeBase(settings)


def test_ingest_is_idempotent_updates_and_prunes(kb, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "tallpine.md").write_text(GOOD)
    (content / "notes.txt").write_text("Our support desk answers within one business day.\n\nWe never sell your data.")
    (content / "page.html").write_text("<html><head><title>Security at Example</title><meta name='type' content='faq'>"
                                       "<script>var x = 'not content';</script></head><body><h2>Encryption</h2>"
                                       "<p>Data is encrypted with AES-256 &amp; TLS 1.3.</p></body></html>")
    (content / "brochure.pdf").write_bytes(minimal_pdf("Pipelark brochure: forecasting for field sales teams"))
    r1 = kb.ingest([content], progress=False)
    assert r1.errors == [] and r1.documents == 4 and r1.chunks_embedded >= 4
    n = kb.count()
    r2 = kb.ingest([content], progress=False)
    assert kb.count() == n and r2.chunks_embedded == 0 and r2.chunks_unchanged == n
    # an edit re-embeds only what changed
    (content / "tallpine.md").write_text(GOOD.replace("7%", "6%"))
    r3 = kb.ingest([content], progress=False)
    assert r3.chunks_embedded == 1 and kb.count() == n
    assert any("6%" in h.text for h in kb.search("churn result", k=3))
    # prune removes what is gone
    (content / "notes.txt").unlink()
    r4 = kb.ingest([content], prune=True, progress=False)
    assert r4.documents_pruned == 1 and kb.count() == n - 1
    html_hit = kb.search("is data encrypted", k=1)[0]
    assert html_hit.title == "Security at Example" and html_hit.type == "faq" and "not content" not in html_hit.text
    assert "brochure" in kb.search("field sales brochure", k=1)[0].text.lower()


@pytest.mark.parametrize("front,problem", [
    ("title: [unclosed\n", "not valid YAML"),
    ("title: X\ntype: blogpost\n", "type: blogpost"),
    ("title: X\nstage: later\n", "stage: later"),
    ("title: X\nindustries: {a: 1}\n", "industries"),
    ("title: X\nurl: ftp://x\n", "url"),
    ("title: X\ncolour: red\n", "colour"),
])
def test_malformed_front_matter_names_the_file_and_the_problem(tmp_path, front, problem):
    p = tmp_path / "bad.md"
    p.write_text(f"---\n{front}---\nBody text here.\n")
    with pytest.raises(IngestError) as e:
        load_document(p)
    assert str(p) in str(e.value) and problem in str(e.value)


def test_one_bad_file_does_not_stop_the_rest(kb, tmp_path):
    (tmp_path / "good.md").write_text(GOOD)
    (tmp_path / "bad.md").write_text("---\ntitle: [oops\n---\nbody\n")
    (tmp_path / "unclosed.md").write_text("---\ntitle: x\nbody with no closing line\n")
    r = kb.ingest([tmp_path, tmp_path / "missing.md"], progress=False)
    assert r.documents == 1 and kb.count() >= 1
    msgs = " | ".join(m for _, m in r.errors)
    assert "bad.md" in msgs and "unclosed.md" in msgs and "missing.md" in msgs and "no closing" in msgs


def test_sample_content_meets_the_brief():
    docs = [load_document(p) for p in sorted((ROOT / "knowledge" / "sample").glob("*.md"))]
    assert len(docs) >= 12
    types = {d.type for d in docs}
    assert {"case_study", "pricing", "integration", "faq"} <= types
    industries = {i for d in docs if d.type == "case_study" for i in d.industries}
    assert len(industries) >= 5
    assert all(d.url.startswith("https://") for d in docs)


def test_retrieval_returns_the_industry_matched_piece(sdr):
    hits, misses = 0, []
    for case in CASES:
        got = sdr.kb.search(case["query"], LeadContext(industry=case.get("industry"), persona=case.get("persona")), k=3)
        if got and got[0].url == case["expected_url"]:
            hits += 1
        else:
            misses.append((case["query"], got[0].url if got else None))
    assert len(CASES) >= 8
    assert hits >= len(CASES) - 2, misses
    assert all(k in got[0].source() for k in ("title", "url", "type")) and got[0].snippet


def test_industry_boost_and_never_the_same_piece_twice(sdr):
    ctx = LeadContext(industry="healthcare", persona="sales_leader", stage="mql")
    first = sdr.kb.recommend(ctx, "forecasting is unreliable")
    assert first.url == "https://pipelark.example/customers/maplecrest-health"
    second = sdr.kb.recommend(ctx, "forecasting is unreliable", exclude_urls={first.url})
    assert second is not None and second.url != first.url


def test_reopening_uses_our_embedding_function_offline(settings):
    """Reopening the collection never falls back to chromadb's downloading default."""
    from knowledge.index import forget_clients
    kb1 = KnowledgeBase(settings)
    kb1.ingest([ROOT / "knowledge" / "sample" / "pricing.md"], progress=False)
    forget_clients()
    kb2 = KnowledgeBase(settings)
    assert kb2.count() == kb1.count()
    assert kb2.search("how much per user", k=1)[0].type == "pricing"
    assert kb2.collection._embedding_function.name() == "sdr-embeddings"


def test_prune_never_runs_when_a_path_or_file_failed(kb, tmp_path):
    """`sdr ingest ./contnet --prune` (a typo) must not wipe the store it meant to refresh."""
    content = tmp_path / "content"
    content.mkdir()
    (content / "tallpine.md").write_text(GOOD)
    kb.ingest([content], progress=False)
    n = kb.count()
    r = kb.ingest([tmp_path / "contnet"], prune=True, progress=False)
    assert r.errors and r.prune_skipped and r.chunks_removed == 0 and kb.count() == n
    assert "nothing pruned" in r.summary()
    (content / "broken.md").write_text("---\ntitle: [unclosed\n---\nbody")
    r = kb.ingest([content], prune=True, progress=False)
    assert r.errors and r.prune_skipped and kb.count() == n


def test_embedder_threads_order_and_query_cache():
    import numpy as np

    from knowledge.embeddings import default_threads, get_embeddings
    emb = get_embeddings("local")
    assert 1 <= default_threads() <= 4 and emb.threads >= 1 and emb.batch_threads >= emb.threads
    q = emb.embed_query_np("how long does onboarding take for a team of 40?")
    assert emb.embed_query_np("how long does onboarding take for a team of 40?") is q   # the LRU answers
    texts = ["a much longer passage about forecasting accuracy for field sales teams " * 4, "short", "mid length text"]
    docs = emb.embed_documents_np(texts)   # embedded shortest first, returned in the order given
    assert docs.shape == (3, emb.dim)
    for text, row in zip(texts, docs):
        alone = np.asarray(emb._model.passage([text]), dtype=np.float32).reshape(-1)
        assert float(alone @ row) > 0.999, text


def test_the_content_store_is_a_langchain_vector_store_too(sdr):
    """LangChain's Chroma over the same collection, with our embedder behind LangChain's interface."""
    from langchain_core.embeddings import Embeddings

    store = sdr.kb.as_langchain_vectorstore()
    assert isinstance(store.embeddings, Embeddings)
    docs = store.similarity_search("how much does it cost per user?", k=3)
    assert any(d.metadata.get("type") == "pricing" for d in docs), [d.metadata for d in docs]


def test_warm_loads_what_the_first_search_needs(sdr):
    sdr.kb._forget_corpus()
    sdr.kb.warm()
    assert sdr.kb._corpus and sdr.kb.search("how much does it cost?")
