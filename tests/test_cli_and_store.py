"""The CLI a marketer types, the PostgreSQL path, and the network guard itself."""
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from integrations.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(*args, input=None):
    r = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return r


def test_help_teaches():
    r = run("--help")
    assert r.exit_code == 0 and "sdr demo" in r.output and "SDR_DATA_DIR" in r.output and "sdr config" in r.output
    for cmd in ("demo", "serve", "chat", "ingest", "leads", "lead", "event", "eval", "config", "worker", "outbox"):
        sub = run(cmd, "--help")
        assert sub.exit_code == 0 and len(sub.output) > 150, cmd


def test_ingest_chat_leads_lead(data_dir, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "pricing.md").write_text((ROOT / "knowledge" / "sample" / "pricing.md").read_text())
    (content / "broken.md").write_text("---\ntype: case_study\nindustries: {x: 1}\n---\nbody\n")
    r = run("ingest", str(content))
    assert r.exit_code == 1 and "1 documents" in r.output and "broken.md" in r.output   # loaded the rest, said what failed
    r = run("chat", input="Hi, I'm Dana, VP of Sales at a 450 person company\nhow much does it cost?\n\n")
    assert r.exit_code == 0
    assert "+20" in r.output and "seniority is vp" in r.output and "$39" in r.output
    lead_id = r.output.strip().split("sdr lead ")[-1].rstrip("`").strip()
    r = run("leads")
    assert lead_id in r.output and "funnel (all 1 leads; each stage counts the leads that reached it)" in r.output
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


# -- a CLI that tells the truth ----------------------------------------------------------------------


def test_ingest_fails_loudly_and_warns_on_an_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.docx").write_text("not a supported type")
    r = CliRunner().invoke(main, ["ingest", str(empty)])
    assert r.exit_code == 0 and "warning" in r.output and str(empty) in r.output and "nothing" in r.output
    r = CliRunner().invoke(main, ["ingest", str(empty), str(tmp_path / "missing")])
    assert r.exit_code == 1 and "missing: no such file or folder" in r.output and "1 path(s) or file(s) failed" in r.output
    good = tmp_path / "good"
    good.mkdir()
    (good / "pricing.md").write_text((ROOT / "knowledge" / "sample" / "pricing.md").read_text())
    r = CliRunner().invoke(main, ["ingest", str(good)])
    assert r.exit_code == 0 and "warning" not in r.output and "failed" not in r.output


def test_lead_by_id_or_email():
    assert run("event", "webinar_attended", "--email", "Kay@X.example").exit_code == 0
    by_email = run("lead", "kay@x.example")
    assert by_email.exit_code == 0 and "Score events" in by_email.output
    lead_id = by_email.output.split()[1]
    by_id = run("lead", lead_id)
    assert by_id.exit_code == 0 and by_id.output == by_email.output
    r = CliRunner().invoke(main, ["lead", "nobody@x.example"])
    assert r.exit_code != 0 and "no lead with email nobody@x.example" in r.output and "sdr leads" in r.output


def test_leads_funnel_is_labelled_like_the_team_page(make_sdr):
    sdr = make_sdr(load_knowledge=False)
    sdr.record_event("webinar_attended", email="a@x.example")
    sdr.record_event("pricing_page_view", email="b@x.example")
    sdr.store.dispose()
    from bot.reports import funnel
    fun = funnel(sdr.store)
    out = run("leads").output
    line = next(x for x in out.splitlines() if x.startswith("funnel"))
    assert line.startswith(f"funnel (all {fun.total} leads; each stage counts the leads that reached it): ")
    assert f"new {fun.reached['new']} · engaged {fun.reached['engaged']} · MQL {fun.reached['mql']} · " \
           f"SQL {fun.reached['sql']} · meeting booked {fun.reached['meeting_booked']}" in line
    assert "left the funnel (now): asked for a person 0 · disqualified 0" in out


def _taken_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


def test_serve_on_a_taken_port_says_so_before_any_url():
    s, port = _taken_port()
    with s:
        r = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert r.exit_code == 1
    assert f"port {port} on 127.0.0.1 is taken" in r.output and "--port" in r.output
    assert "http://" not in r.output


def test_demo_on_a_taken_port_moves_to_the_next_and_says_so(monkeypatch):
    import integrations.cli as cli
    served = []
    monkeypatch.setattr(cli, "_run_server", lambda host, port, app: served.append(port))
    monkeypatch.setattr(cli, "_serve", lambda sdr, host, port, worker=True: (
        cli.click.echo(f"Chat with the SDR at http://{host}:{port}"), served.append(port)))
    s, port = _taken_port()
    with s:
        r = CliRunner().invoke(main, ["demo", "--port", str(port)])
    assert r.exit_code == 0, r.output
    new = served[0]
    assert new != port
    said = r.output.index(f"Port {port} on 127.0.0.1 is taken; using port {new} instead")
    assert said < r.output.index("http://") and f"http://127.0.0.1:{new}" in r.output


def test_config_shows_every_setting_masked_with_its_source(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-abcdefghijklmnop1234")
    monkeypatch.setenv("SDR_ADMIN_TOKEN", "short-tok-0123456789")
    monkeypatch.setenv("SDR_TURN_DEADLINE_S", "5")
    r = run("config")
    assert r.exit_code == 0
    out = r.output
    assert "sk-test-abcdefghijklmnop1234" not in out and "short-tok-0123456789" not in out
    assert "sk-…1234" in out and "short-…6789" in out
    line = next(x for x in out.splitlines() if x.startswith("SDR_TURN_DEADLINE_S"))
    assert "5.0" in line and "[environment]" in line
    line = next(x for x in out.splitlines() if x.startswith("SDR_RATE_PER_IP"))
    assert "60" in line and "[default]" in line
    assert "SDR_RATE_LIMIT_STORAGE" in out and "memory://" in out and "Requests per minute per client IP" in out
    r = run("--data-dir", "/tmp/elsewhere", "config")
    assert "/tmp/elsewhere" in r.output and "[command line]" in r.output


def test_passwords_inside_urls_are_masked_and_never_logged(monkeypatch):
    from bot.guard import redact_secrets
    monkeypatch.setenv("SDR_DATABASE_URL", "postgresql+psycopg://sdr:dbpass-9931@127.0.0.1/sdr")
    monkeypatch.setenv("SDR_RATE_LIMIT_STORAGE", "redis://:redispass-77@127.0.0.1:6379")
    out = run("config").output
    assert "dbpass-9931" not in out and "redispass-77" not in out
    assert "postgresql+psycopg://sdr:****@127.0.0.1/sdr" in out and "redis://:****@127.0.0.1:6379" in out
    assert redact_secrets("connecting with dbpass-9931") == "connecting with [redacted]"


@pytest.mark.parametrize("variable, value, says", [
    ("SDR_RATE_LIMIT_STORAGE", "bogus://", "use memory:// or a redis://host:port URL"),
    ("SDR_DATABASE_URL", "nonsense", "is not a database URL"),
    ("SDR_TURN_DEADLINE_S", "inf", "must be a finite number of seconds"),
    ("SDR_PUBLIC_URL", "notaurl", "must be an http:// or https:// URL"),
    ("SDR_CHROMA_URL", "ftp://x", "must be an http:// or https:// URL"),
])
def test_a_setting_that_would_break_serve_fails_at_start(monkeypatch, variable, value, says):
    monkeypatch.setenv(variable, value)
    r = CliRunner().invoke(main, ["config"])
    assert r.exit_code == 1 and f"{variable}={value!r}" in r.output and says in r.output
    assert "Traceback" not in r.output


def test_a_bad_setting_fails_at_start_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SDR_TURN_DEADLINE_S", "abc")
    r = CliRunner().invoke(main, ["leads"])
    assert r.exit_code == 1
    assert "SDR_TURN_DEADLINE_S='abc' is not a number; unset it or give e.g. SDR_TURN_DEADLINE_S=8" in r.output
    assert "Traceback" not in r.output
    monkeypatch.setenv("SDR_TURN_DEADLINE_S", "8")
    monkeypatch.setenv("SDR_RATE_PER_IP", "lots")
    monkeypatch.setenv("SDR_EMBEDDINGS", "cohere")
    r = CliRunner().invoke(main, ["config"])
    assert r.exit_code == 1 and "SDR_RATE_PER_IP='lots' is not a whole number" in r.output
    assert "SDR_EMBEDDINGS='cohere'" in r.output and "'local'" in r.output and "'openai'" in r.output


def test_settings_keep_secrets_secret_and_accept_overrides(monkeypatch, tmp_path):
    from bot.settings import Settings, SettingsError, secret_values
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1234567890-abcdefgh")
    monkeypatch.setenv("SDR_CALDAV_PASSWORD", "")           # an empty password is a password
    s = Settings.from_env(data_dir=str(tmp_path / "d"), playbook_path=None, admin_token="adm1n-token-0123456789")
    assert s.data_dir == (tmp_path / "d").resolve() and s.database_url == f"sqlite:///{s.data_dir / 'sdr.db'}"
    assert s.admin_token == "adm1n-token-0123456789" and "adm1n-token" not in repr(s) and "xoxb" not in repr(s)
    assert s.secret("caldav_password") == "" and s.source("data_dir") == "override"
    assert s.source("slack_bot_token") == "environment" and s.source("rate_per_ip") == "default"
    assert set(secret_values(s)) == {"xoxb-1234567890-abcdefgh", "adm1n-token-0123456789"}
    s.admin_token = None
    assert s.admin_token is None
    monkeypatch.setenv("SDR_ADMIN_TOKEN", "abc")                 # a guessable token stops the start
    with pytest.raises(SettingsError, match="SDR_ADMIN_TOKEN.*at least 16 characters"):
        Settings.from_env()
    monkeypatch.delenv("SDR_ADMIN_TOKEN")
    with pytest.raises(SettingsError, match="SDR_RATE_PER_SESSION='0'"):
        monkeypatch.setenv("SDR_RATE_PER_SESSION", "0")
        Settings.from_env()


def test_eval_case_file_with_a_typo_names_the_case_and_the_key(tmp_path):
    cases = tmp_path / "cases.yaml"
    cases.write_text("- name: hot lead\n  messages: [hi]\n  expect: {stage: sql}\n"
                     "- name: typo\n  messages: [hi]\n  expect: {stge: sql}\n")
    r = CliRunner().invoke(main, ["eval", str(cases)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "persona #2 'typo'" in r.output and "unknown key 'expect.stge'" in r.output
    cases.write_text("- name: nothing said\n  expect: {handoff: true}\n")
    r = CliRunner().invoke(main, ["eval", str(cases)])
    assert r.exit_code == 2 and "'nothing said'" in r.output and "missing key 'opening'" in r.output
    cases.write_text("- name: unsure\n  messages: [hi]\n  expect: {handoff: maybe}\n")
    r = CliRunner().invoke(main, ["eval", str(cases)])
    assert r.exit_code == 2 and "'unsure'" in r.output and "expect.handoff" in r.output
    cases.write_text("name: [unclosed\n")
    r = CliRunner().invoke(main, ["eval", str(cases)])
    assert r.exit_code == 2 and "not valid YAML" in r.output


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
    from conftest import api_client, chat
    from integrations.web.app import create_app

    eng = create_engine(PG)
    Base.metadata.drop_all(eng)
    eng.dispose()
    sdr = make_sdr(settings={"database_url": PG})
    assert sdr.store.engine.dialect.name == "postgresql"
    c = api_client(create_app(sdr), sdr)
    d = chat(c, "Hi, I'm Dana, VP of Sales at a 450 person company; we need better forecasting this quarter")
    assert d["lead"]["stage"] == "sql"
    d = chat(c, "dana@acme.example \x00", d["session_id"])
    detail = c.get(f"/api/leads/{d['lead']['id']}").get_json()
    assert [a["type"] for a in detail["actions"]] == ["handoff"]
    assert abs(sum(e["points"] for e in detail["score_events"]) - detail["score"]) < 0.1
    sdr.store.dispose()


def test_a_bad_character_already_stored_never_aborts_a_listing(data_dir):
    """Run as a real process (a terminal's stdout is strict UTF-8): the lead is listed, the character replaced."""
    import subprocess
    import sys

    from bot.settings import Settings
    from bot.store import Lead, Store
    st = Settings.from_env()
    st.ensure_dirs()
    store = Store(st.database_url)
    with store.session() as s:
        s.add(Lead(id="lead_bad", fields={"name": "Eve\ud800"}, field_sources={}, fit_rules={}))
    store.dispose()
    for args in (["leads"], ["lead", "lead_bad"]):
        r = subprocess.run([sys.executable, "-m", "integrations.cli", *args], capture_output=True, text=True,
                           encoding="utf-8", errors="strict", timeout=120)
        assert r.returncode == 0 and "Eve?" in r.stdout, r.stderr[-500:]
