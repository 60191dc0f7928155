"""Hostile and odd request bodies get a 4xx JSON error that says what to fix — never a 500 — and
the team pages count the funnel as `bot.reports.funnel` does."""
from __future__ import annotations

import json
import re

import pytest
from conftest import api_client

NESTED_TOO_DEEP_FOR_THE_PARSER = b'{"message": "hi", "visitor": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
NESTED_33 = b'{"message": "hi", "x": ' + b"[" * 33 + b"]" * 33 + b"}"

ODD_CHAT = [
    ("nested past the parser", NESTED_TOO_DEEP_FOR_THE_PARSER, 400, "malformed_json"),
    ("nested past 32 levels", NESTED_33, 400, "bad_request"),
    ("NaN", b'{"message": NaN}', 400, "malformed_json"),
    ("Infinity in an ignored key", b'{"message": "hi", "x": -Infinity}', 400, "malformed_json"),
    ("a float too large", b'{"message": "hi", "x": 1e999}', 400, "malformed_json"),
    ("an integer of 5000 digits", b'{"message": "hi", "x": ' + b"9" * 5000 + b"}", 400, "malformed_json"),
    ("bad UTF-8", b'{"message": "hi \xff\xfe"}', 400, "malformed_json"),
    ("only whitespace", b" \n\t ", 400, "empty_body"),
    ("a string", b'"hi"', 400, "bad_request"),
    ("null", b"null", 400, "bad_request"),
    ("message an object", b'{"message": {"text": "hi"}}', 400, "bad_message"),
    ("message a boolean", b'{"message": true}', 400, "bad_message"),
    ("session id too short", b'{"message": "hi", "session_id": "abc"}', 400, "bad_session_id"),
    ("session id with a surrogate", b'{"message": "hi", "session_id": "abcdefgh\\ud800"}', 400, "bad_session_id"),
    ("message id too long", json.dumps({"message": "hi", "message_id": "m" * 101}).encode(), 400, "bad_message_id"),
    ("message id a number", b'{"message": "hi", "message_id": 7}', 400, "bad_message_id"),
    ("visitor a list", b'{"message": "hi", "visitor": [1]}', 400, "bad_visitor"),
    ("visitor name too long", json.dumps({"message": "hi", "visitor": {"name": "n" * 201}}).encode(), 400, "bad_visitor"),
    ("visitor email with two @", b'{"message": "hi", "visitor": {"email": "a@@b.example"}}', 400, "bad_visitor"),
]


@pytest.mark.parametrize("name,body,status,code", ODD_CHAT, ids=[c[0] for c in ODD_CHAT])
def test_odd_chat_bodies(client, name, body, status, code):
    client.application.extensions["sdr"].settings.allowed_origins = "https://customer.example"
    for path in ("/api/chat", "/api/chat/stream"):
        r = client.post(path, data=body, content_type="application/json", headers={"Origin": "https://customer.example"})
        data = r.get_json()
        assert r.status_code == status and data["error"]["code"] == code, (path, data)
        assert len(data["error"]["message"]) > 10
        assert r.headers["Access-Control-Allow-Origin"] == "https://customer.example"   # errors readable by the widget
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_messages_say_what_to_fix(client):
    def error(body):
        return client.post("/api/chat", json=body).get_json()["error"]["message"]

    assert "'message'" in error({"session_id": "abcdefgh1"})
    assert "got number" in error({"message": 42})
    assert "8-80 letters" in error({"message": "hi", "session_id": "x"})
    assert "visitor.email" in error({"message": "hi", "visitor": {"email": "not-an-email"}})
    assert "@-sign" in error({"message": "hi", "visitor": {"email": "not-an-email"}})   # email-validator's reason
    assert "4000" in error({"message": "x" * 4001})


def test_odd_text_is_stored_cleaned(client):
    body = (b'{"message": "hi \\ud800 pricing?", "message_id": "m-\\udfff-1", '
            b'"visitor": {"name": "Kim \\u0000\\ud800 Lee", "company": "  Acme  ", "email": " ", "shoe": 44}}')
    r = client.post("/api/chat", data=body, content_type="application/json")
    assert r.status_code == 200, r.get_json()
    lead = r.get_json()["lead"]
    assert "\x00" not in json.dumps(lead) and "\\ud800" not in json.dumps(lead)
    assert "shoe" not in lead["fields"]


def test_visitor_emails_are_checked_by_email_validator(client):
    ok = client.post("/api/chat", json={"message": "hi", "visitor": {"email": "  kim@acme.example "}})
    assert ok.status_code == 200
    for bad in ("kim@localhost", "kim@acme", "kim@acme..example", "@acme.example"):
        r = client.post("/api/chat", json={"message": "hi", "visitor": {"email": bad}})
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "bad_visitor", bad


ODD_EVENTS = [
    (b'{"type": "pricing_page_view", "lead_id": "lead_\\ud800"}', 404, "lead_not_found"),
    (b'{"type": "pricing_page_view", "email": "\\ud800"}', 400, "bad_email"),
    (b'{"type": "pricing_page_view", "email": ""}', 400, "bad_email"),
    (b'{"type": "pricing_page_view", "email": 5}', 400, "bad_email"),
    (b'{"type": "", "email": "a@b.example"}', 400, "missing_type"),
    (b'{"type": 5, "email": "a@b.example"}', 400, "missing_type"),
    (b'{"type": "pricing_page_view", "lead_id": 5}', 400, "bad_lead_id"),
    (b'{"type": "pricing_page_view", "lead_id": ""}', 400, "missing_lead"),
    (b'{"type": "pricing_page_view", "properties": [1]}', 400, "missing_lead"),   # whose, before what
    (b'{"type": "pricing_page_view", "email": "a@b.example", "properties": "x"}', 400, "bad_properties"),
    (b'{"type": "pricing_page_view", "email": "a@b.example", "properties": ' + b'{"a": ' * 40 + b"1"
     + b"}" * 40 + b"}", 400, "bad_request"),
    (b'{"type": "\\ud800", "email": "a@b.example"}', 400, "unknown_event_type"),
]


@pytest.mark.parametrize("body,status,code", ODD_EVENTS)
def test_odd_event_bodies(client, body, status, code):
    r = client.post("/api/events", data=body, content_type="application/json")
    assert r.status_code == status and r.get_json()["error"]["code"] == code, r.get_json()


def test_event_properties_with_odd_text_are_stored(client):
    body = (b'{"type": "pricing_page_view", "email": "kim@acme.example", '
            b'"properties": {"url\\u0000": "https://x.example/\\ud800", "n": 12345678901234567890}}')
    r = client.post("/api/events", data=body, content_type="application/json")
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize("limit,status", [("abc", 400), ("-1", 400), ("²", 400), ("1.5", 400),
                                          ("0", 200), ("9" * 5000, 200), ("0000000000007", 200)])
def test_leads_limit(client, limit, status):
    r = client.get("/api/leads", query_string={"limit": limit})
    assert r.status_code == status, r.get_json()
    if status == 400:
        assert r.get_json()["error"]["code"] == "bad_limit"


def test_json_errors_for_routes_methods_and_meetings(client):
    r = client.delete("/api/leads")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
    r = client.get("/meetings/1.ics?lead=lead_x")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "meeting_not_found"
    r = client.get("/leads/lead_nope")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "lead_not_found"


def test_the_team_page_funnel_counts_as_the_report_does(sdr, client):
    from bot.reports import FUNNEL_STAGES, SIDE_STAGES, STAGE_LABELS, funnel

    client.post("/api/chat", json={"message": "I'm the CRO of a 600 person company, we need forecasting now"})
    client.post("/api/chat", json={"message": "hi"})
    client.post("/api/chat", json={"message": "I'd like to talk to a human please"})
    f = funnel(sdr.store)
    page = client.get("/leads").get_data(as_text=True)
    shown = dict(re.findall(r'<td class="v">([^<]+)</td>\s*<td[^>]*>(?:<div[^>]*>)?(\d+)', page))
    assert shown == {STAGE_LABELS[st]: str(f.reached[st]) for st in FUNNEL_STAGES} | {
        STAGE_LABELS[st]: str(f.at[st]) for st in SIDE_STAGES}
    assert f.reached["new"] == 3


def test_create_app_mounts_no_other_channel(sdr, monkeypatch):
    """Slack is mounted by the composition root (integrations/wiring.py), not by the web app."""
    from integrations.web.app import create_app

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cret")
    rules = {r.rule for r in create_app(sdr).url_map.iter_rules()}
    assert not any(rule.startswith("/slack") for rule in rules)
    assert {"/api/chat", "/api/chat/stream", "/api/events", "/api/leads", "/leads", "/widget.js"} <= rules


def test_a_bad_character_already_in_the_store_never_breaks_a_page(sdr):
    """Data stored before the boundary cleaned it (a lone surrogate in a JSON column) still renders."""
    from bot.store import Lead
    from integrations.web.app import create_app
    with sdr.store.session() as s:
        s.add(Lead(id="lead_bad", fields={"name": "Eve\ud800", "company": "X\udfff"}, field_sources={}, fit_rules={}))
    c = api_client(create_app(sdr), sdr)
    for path in ("/leads", "/leads/lead_bad", "/api/leads", "/api/leads/lead_bad"):
        r = c.get(path)
        assert r.status_code == 200, path
        assert "Eve" in r.get_data(as_text=True)


def test_openapi_describes_every_api_route_from_the_request_models(client):
    """/openapi.json is generated from the pydantic models that validate requests, and lists every
    /api route the app serves (a route added without a description fails here)."""
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    chat = doc["components"]["schemas"]["ChatRequest"]
    assert "message" in chat["required"] and chat["properties"]["visitor"]
    assert doc["paths"]["/api/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"] \
        == "#/components/schemas/ChatRequest"
    served = {r.rule.replace("<", "{").replace(">", "}") for r in client.application.url_map.iter_rules()
              if r.rule.startswith("/api/")}
    assert served <= set(doc["paths"]), served - set(doc["paths"])


def test_a_null_email_is_left_out_not_a_500(client):
    """Found by the fuzz run: `"email": null` crashed the email check."""
    assert client.post("/api/chat", json={"message": "hi", "visitor": {"email": None}}).status_code == 200
    r = client.post("/api/events", json={"type": "pricing_page_view", "email": None})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "missing_lead"
