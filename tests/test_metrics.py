"""Observability (issue 14, item 6): Prometheus metrics at /metrics behind the API token, fed by
the SDR's turn observer, the rate limiter and the outbox; JSON logs with the request id; emails
and phone numbers masked in the log file."""
from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import pytest
from conftest import API_TOKEN
from prometheus_client.parser import text_string_to_metric_families

from bot.logs import REQUEST_ID, mask_personal, setup_logging
from bot.store import OutboxEntry
from integrations.web.app import create_app

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def scraped(client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.get_data(as_text=True)) for s in fam.samples}


def app_for(sdr, **config):
    sdr.settings.admin_token = API_TOKEN
    return create_app(sdr, config=config or None)


def test_a_chat_turn_shows_in_the_metrics_behind_the_token(sdr):
    app = app_for(sdr)
    create_app(sdr)                                   # a second app on the same SDR: still one observer
    c = app.test_client()
    r = c.post("/api/chat", json={"message": "Hi, what does it cost?"})
    assert r.status_code == 200
    c.post("/api/chat", json={"message": "we are 40 people", "session_id": r.get_json()["session_id"]})
    m = scraped(c)
    for step in ("understand", "decide", "compose", "persist", "total"):
        assert m[("sdr_turn_step_seconds_count", (("step", step),))] == 2, step
    assert m[("sdr_speed_to_lead_seconds_count", (("channel", "web"),))] == 1   # the first turn only
    assert m[("sdr_turns_total", (("channel", "web"),))] == 2
    assert m[("sdr_model_calls_total", ())] == 0                                   # the deterministic brain
    assert m[("sdr_model_tokens_total", (("kind", "prompt"),))] == 0
    assert m[("sdr_outbox_dead", ())] == 0 and m[("sdr_outbox_lag_seconds", ())] == 0
    assert c.get("/metrics").status_code == 401                                    # no token
    r = c.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"


def test_metrics_may_be_made_public(sdr, monkeypatch):
    c = app_for(sdr).test_client()
    sdr.settings.metrics_public = True                 # SDR_METRICS_PUBLIC=1
    assert c.get("/metrics").status_code == 200


def test_a_429_from_the_rate_limiter_is_counted(make_sdr):
    sdr = make_sdr(settings={"rate_per_ip": 2})
    c = app_for(sdr).test_client()
    event = {"type": "pricing_page_view", "email": "kim@acme.example"}
    codes = [c.post("/api/events", json=event, headers=AUTH).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert scraped(c)[("sdr_rate_limited_total", (("scope", "ip"),))] == 1


def test_the_outbox_gauges_read_the_database(sdr, clock):
    c = app_for(sdr).test_client()
    now = clock()
    with sdr.store.session() as s:
        s.add(OutboxEntry(kind="handoff", idempotency_key="dead-1", payload={}, status="dead", created_at=now,
                          next_attempt_at=now))
        s.add(OutboxEntry(kind="email", idempotency_key="due-1", payload={}, status="pending",
                          created_at=now - timedelta(minutes=5), next_attempt_at=now - timedelta(seconds=90)))
        s.add(OutboxEntry(kind="email", idempotency_key="later-1", payload={}, status="pending", created_at=now,
                          next_attempt_at=now + timedelta(hours=1)))   # not due: no lag
    m = scraped(c)
    assert m[("sdr_outbox_dead", ())] == 1 and m[("sdr_outbox_due", ())] == 1
    assert m[("sdr_outbox_lag_seconds", ())] == pytest.approx(90, abs=1)


def test_a_form_fill_is_timed_from_its_arrival(sdr, clock):
    from bot.outbox import OutboxWorker
    from integrations.forms.form_fill import FormFill

    c = app_for(sdr).test_client()
    fields = {"email": "ana@acme-health.example", "first_name": "Ana", "company": "Acme Health",
              "message": "Do you integrate with Salesforce?"}
    assert sdr.receive_form(FormFill(source="generic", event_id="evt_m1", fields=fields, form_name="Demo"))["duplicate"] is False
    clock.advance(seconds=42)
    OutboxWorker(sdr.store, {"form_fill": sdr.work_form_fill}, clock=sdr.clock).run_once()
    m = scraped(c)
    assert m[("sdr_speed_to_lead_seconds_count", (("channel", "form"),))] == 1
    assert 42 <= m[("sdr_speed_to_lead_seconds_sum", (("channel", "form"),))] < 42 + 60   # waited, then the turn


def test_masking():
    assert mask_personal("mail ana.lopez@example.com now") == "mail a***@example.com now"
    assert mask_personal("call +1 (415) 555-0178 or 06 12 34 56 78") == "call ***78 or ***78"
    assert mask_personal("at 2026-11-30 08:11:52,123 lead l_1234567 took 1234 ms") == \
        "at 2026-11-30 08:11:52,123 lead l_1234567 took 1234 ms"


class ChattyBrain:
    """The deterministic brain, logging what it reads (as a library's debug output might)."""

    def __init__(self, rules):
        self.rules = rules

    def understand(self, message, view, history):
        logging.getLogger("sdr.test.brain").warning("understanding %r", message)
        return self.rules.understand(message, view, history)

    def __getattr__(self, name):
        return getattr(self.rules, name)


EMAIL, PHONE = "ana.lopez@example.com", "+1 415 555 0178"


@pytest.fixture
def log_file(sdr):
    yield lambda: (sdr.settings.log_dir / "sdr.log").read_text(encoding="utf-8")
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_sdr", False)]:
        root.removeHandler(h)
        h.close()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_lines_carry_the_request_id_and_mask_people(sdr, log_file, monkeypatch, fmt):
    sdr.settings.log_format = fmt                      # SDR_LOG_FORMAT
    setup_logging(sdr.settings)
    sdr.brain = ChattyBrain(sdr.rules)
    c = app_for(sdr).test_client()
    r = c.post("/api/chat", json={"message": f"I'm Ana, {EMAIL}, call me on {PHONE}"},
               headers={"X-Request-ID": "req-test-0001"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "req-test-0001"
    assert REQUEST_ID.get() is None                                   # not left behind for the next request
    other = c.post("/api/chat", json={"message": "hi"}, headers={"X-Request-ID": "bad id <x>"})
    assert re.fullmatch(r"[0-9a-f]{32}", other.headers["X-Request-ID"])   # an insane one is replaced
    text = log_file()
    assert EMAIL not in text and "555 0178" not in text and "5550178" not in text
    assert "a***@example.com" in text and "***78" in text
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        mine = [ln for ln in lines if ln["logger"] == "sdr.test.brain"]
        assert [ln["request_id"] for ln in mine] == ["req-test-0001", other.headers["X-Request-ID"]]
        assert set(mine[0]) >= {"time", "level", "logger", "message", "request_id"}
        logging.getLogger("sdr.test").error("failed for %s", EMAIL, exc_info=ValueError(f"bad {PHONE}"))
        last = json.loads(log_file().splitlines()[-1])
        assert last["request_id"] is None and "ValueError: bad ***78" in last["exc"]
        assert EMAIL not in last["message"]


WORKER = """
from types import SimpleNamespace
from integrations.web.observability import observe
class Stub: pass
sdr = Stub(); sdr.observers = []
observe(sdr); observe(sdr)   # registered once
turn = SimpleNamespace(channel="web", first_turn=True, session_id="s", actions=[{"type": "handoff"}],
                       timings_ms={"understand": 10, "decide": 25, "compose": 60, "total": 70},
                       usage={"model_calls": 1, "prompt_tokens": 800, "completion_tokens": 90, "model_ms": 500,
                              "fallbacks": ["timeout"]})
for f in sdr.observers: f(turn)
"""


def test_several_processes_add_up_in_multiprocess_mode(sdr, tmp_path, monkeypatch):
    """Two worker processes with PROMETHEUS_MULTIPROC_DIR write their counts to files; the scrape
    (any process) adds them up and adds the outbox gauges from the database."""
    import os
    import subprocess
    import sys

    from integrations.web.observability import scrape

    mp = tmp_path / "prom"
    mp.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER], env=env, cwd=str(tmp_path.parent)) for _ in range(2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(mp))
    text = scrape(sdr).decode()
    m = {(s.name, tuple(sorted(s.labels.items()))): s.value
         for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert m[("sdr_turns_total", (("channel", "web"),))] == 2 and m[("sdr_model_calls_total", ())] == 2
    assert m[("sdr_model_tokens_total", (("kind", "prompt"),))] == 1600
    assert m[("sdr_fallbacks_total", (("cause", "timeout"),))] == 2 and m[("sdr_handoffs_total", (("channel", "web"),))] == 2
    assert m[("sdr_speed_to_lead_seconds_count", (("channel", "web"),))] == 2
    assert m[("sdr_turn_step_seconds_count", (("step", "decide"),))] == 2
    assert m[("sdr_turn_step_seconds_sum", (("step", "decide"),))] == pytest.approx(0.030)   # 25 - 10 ms, twice
    assert ("sdr_outbox_dead", ()) in m


def test_a_streamed_turn_logs_with_its_request_id_to_the_end(sdr, log_file, monkeypatch):
    """The end of a streamed turn (persist, observers) runs after the view returned: it still
    carries the request's id, and the id is cleared once the stream is closed."""
    sdr.settings.log_format = "json"                   # SDR_LOG_FORMAT=json
    setup_logging(sdr.settings)
    sdr.observers.append(lambda r: logging.getLogger("sdr.test.end").warning("turn ended for %s", EMAIL))
    c = app_for(sdr).test_client()
    r = c.post("/api/chat/stream", json={"message": "What does it cost?"}, headers={"X-Request-ID": "req-stream-1"})
    assert r.status_code == 200 and "event: done" in r.get_data(as_text=True)
    r.close()
    assert r.headers["X-Request-ID"] == "req-stream-1" and REQUEST_ID.get() is None
    ends = [json.loads(ln) for ln in log_file().splitlines() if '"sdr.test.end"' in ln]
    assert [e["request_id"] for e in ends] == ["req-stream-1"] and ends[0]["message"] == "turn ended for a***@example.com"
