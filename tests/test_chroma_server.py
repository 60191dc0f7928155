"""Chroma server mode: the content store behind SDR_CHROMA_URL, a real `chroma run` on a free port.

Ingest and retrieval of the sample content through the server give the same top hits as the
embedded PersistentClient; ingesting again through the server re-embeds nothing. The server runs
from the chroma CLI that ships with chromadb and is stopped at the end; without the CLI the test
skips and says why.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from bot.settings import Settings
from knowledge.index import forget_clients
from knowledge.ingest import SAMPLE_DIR
from knowledge.retrieve import KnowledgeBase, LeadContext

ROOT = Path(__file__).resolve().parent.parent
CASES = yaml.safe_load((ROOT / "tests" / "data" / "retrieval_cases.yaml").read_text())


def chroma_cli() -> str | None:
    beside = Path(sys.executable).with_name("chroma")
    return str(beside) if beside.exists() else shutil.which("chroma")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`chroma run` exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"`chroma run` did not answer within {timeout:.0f}s:\n{log.read_text(errors='replace')[-2000:]}")


@contextmanager
def running_chroma(tmp_path: Path, port: int | None = None) -> Iterator[tuple[str, Path]]:
    """(url, the server's persistence dir) of a `chroma run` on `port` (default: a free one),
    stopped at the end; skips the test without the chroma CLI."""
    cli = chroma_cli()
    if cli is None:
        pytest.skip("the chroma CLI (installed with chromadb: .venv/bin/chroma) is not on this machine")
    port, log, path = port or free_port(), tmp_path / "chroma.log", tmp_path / "chroma-server"
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    with open(log, "w") as out:
        proc = subprocess.Popen([cli, "run", "--path", str(path), "--port", str(port),
                                 "--host", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, log)
        yield url, path
    finally:
        forget_clients()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        assert proc.returncode is not None, "the chroma server is still running"


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(url, the server's persistence dir) of a `chroma run` on a free port, stopped at the end."""
    with running_chroma(tmp_path) as server:
        yield server


def top_urls(kb: KnowledgeBase, case: dict) -> list[str]:
    lead = LeadContext(industry=case.get("industry"), persona=case.get("persona"))
    return [h.url for h in kb.search(case["query"], lead, k=3)]


def test_ingest_and_retrieval_through_a_chroma_server(chroma_server, settings, sample_store, monkeypatch):
    sample_store.copy_into(settings)   # the embedded store: the sample ingested once per test process
    local = KnowledgeBase(settings)
    assert local.count() > 0

    url, server_dir = chroma_server
    monkeypatch.setenv("SDR_CHROMA_URL", url)
    served = Settings.from_env()
    assert served.chroma_url == url
    remote = KnowledgeBase(served)
    report = remote.ingest([SAMPLE_DIR], progress=False)
    assert not report.errors, report.errors
    assert report.chunks_embedded == local.count() == remote.count()
    again = remote.ingest([SAMPLE_DIR], progress=False)
    assert (again.chunks_embedded, again.chunks_unchanged) == (0, local.count())
    assert any(server_dir.iterdir()), "the chunks went to the server's folder"

    forget_clients()   # a new client (another process would be one) finds the content on the server
    reopened = KnowledgeBase(Settings.from_env())
    assert reopened.count() == local.count()
    for case in CASES[:5]:
        urls = top_urls(reopened, case)
        assert urls == top_urls(local, case), case["query"]
        assert case["expected_url"] in urls, (case["query"], urls)
    assert reopened.mentions("Salesforce") and len(reopened.corpus()) == local.count()


def test_turns_answer_while_the_chroma_server_is_down_and_use_it_once_it_is_up(settings, tmp_path, monkeypatch, caplog):
    """A content store that cannot be reached does not fail a turn: a greeting is answered, a content
    question gets an honest "I don't have that" (never "X is not in our materials"), /healthz says
    why; once the server is up, the next turn opens it and answers from it."""
    from bot.turn import SDR
    from integrations.web.app import create_app
    from knowledge import retrieve

    port = free_port()
    monkeypatch.setenv("SDR_CHROMA_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(retrieve, "RETRY_OPEN_S", 0.0)   # try the server again on every use (default: 10 s)
    sdr = SDR(Settings.from_env())
    client = create_app(sdr).test_client()
    replies = {}
    for message in ("hello", "How much does it cost per user?", "Do you integrate with Salesforce?"):
        r = client.post("/api/chat", json={"message": message})
        assert r.status_code == 200, (message, r.get_json())
        replies[message] = r.get_json()["reply"]
    assert "Lark" in replies["hello"]
    for message in ("How much does it cost per user?", "Do you integrate with Salesforce?"):
        assert "don't have that" in replies[message] and "connect you" in replies[message], replies[message]
        assert "$" not in replies[message] and "isn't one of the integrations" not in replies[message]
    health = client.get("/healthz").get_json()
    assert health["content"] == "unavailable" and f"SDR_CHROMA_URL=http://127.0.0.1:{port}" in health["content_error"]
    assert any("could not be opened" in r.getMessage() for r in caplog.records)

    with running_chroma(tmp_path, port):
        sdr.kb.ingest([SAMPLE_DIR], progress=False)
        r = client.post("/api/chat", json={"message": "How much does it cost per user?"})
        assert r.status_code == 200 and "$" in r.get_json()["reply"], r.get_json()
        assert client.get("/healthz").get_json()["content"] == "ready"
