"""The CLI a marketer types, the PostgreSQL path, and the network guard itself."""
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(*args, input=None):
    r = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return r


def test_help_teaches():
    r = run("--help")
    assert r.exit_code == 0 and "sdr demo" in r.output and "SDR_DATA_DIR" in r.output
    for cmd in ("demo", "serve", "chat", "ingest", "leads", "lead", "event"):
        sub = run(cmd, "--help")
        assert sub.exit_code == 0 and len(sub.output) > 150, cmd


def test_ingest_chat_leads_lead(data_dir, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "pricing.md").write_text((ROOT / "knowledge" / "sample" / "pricing.md").read_text())
    (content / "broken.md").write_text("---\ntype: case_study\nindustries: {x: 1}\n---\nbody\n")
    r = run("ingest", str(content))
    assert r.exit_code == 0 and "1 documents" in r.output and "broken.md" in r.output
    r = run("chat", input="Hi, I'm Dana, VP of Sales at a 450 person company\nhow much does it cost?\n\n")
    assert r.exit_code == 0
    assert "+20" in r.output and "seniority is vp" in r.output and "$39" in r.output
    lead_id = r.output.strip().split("sdr lead ")[-1].rstrip("`").strip()
    r = run("leads")
    assert lead_id in r.output and "funnel:" in r.output
    r = run("lead", lead_id)
    assert r.exit_code == 0 and "Score events" in r.output and "Transcript" in r.output and "Score over time" in r.output
    assert (data_dir / "sdr.db").exists() and (data_dir / "chroma").is_dir() and (data_dir / "logs" / "sdr.log").exists()


def test_bad_playbook_fails_at_start_with_key_and_file(tmp_path):
    pb = tmp_path / "pb.yaml"
    pb.write_text("thresholds: {mql: 25, sql: lots}\n")
    r = CliRunner().invoke(main, ["--playbook", str(pb), "leads"])
    assert r.exit_code != 0 and str(pb) in r.output and "thresholds.sql" in r.output


def test_unknown_lead_says_how_to_find_one():
    r = CliRunner().invoke(main, ["lead", "lead_nope"])
    assert r.exit_code != 0 and "sdr leads" in r.output


def test_event_command():
    r = run("event", "webinar_attended", "--email", "kay@x.example")
    assert r.exit_code == 0 and "+10" in r.output


def test_network_guard_blocks_anything_but_loopback():
    with pytest.raises(RuntimeError, match="only loopback"):
        socket.create_connection(("10.255.255.1", 80), timeout=1)
    with pytest.raises(RuntimeError, match="only loopback"):
        socket.getaddrinfo("api.openai.com", 443)


PG = os.environ.get("SDR_TEST_DATABASE_URL")


@pytest.mark.skipif(not PG, reason="set SDR_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) "
                                   "to test the PostgreSQL path; .ci/run does")
def test_postgres_path_same_code(make_sdr):
    from sqlalchemy import create_engine

    from bot.store import Base
    from conftest import chat
    from integrations.web.app import create_app

    eng = create_engine(PG)
    Base.metadata.drop_all(eng)
    eng.dispose()
    sdr = make_sdr(settings={"database_url": PG})
    assert sdr.store.engine.dialect.name == "postgresql"
    c = create_app(sdr).test_client()
    d = chat(c, "Hi, I'm Dana, VP of Sales at a 450 person company; we need better forecasting this quarter")
    assert d["lead"]["stage"] == "sql"
    d = chat(c, "dana@acme.example \x00", d["session_id"])
    detail = c.get(f"/api/leads/{d['lead']['id']}").get_json()
    assert [a["type"] for a in detail["actions"]] == ["handoff"]
    assert abs(sum(e["points"] for e in detail["score_events"]) - detail["score"]) < 0.1
    sdr.store.dispose()
