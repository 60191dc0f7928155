"""No 500 on any input: generated requests against every route of the API (hypothesis). The suite
runs a CI-sized sample; `SDR_FUZZ_EXAMPLES=10000 pytest tests/test_web_fuzz.py` runs the long one."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("SDR_FUZZ_EXAMPLES", "150"))   # per test; 8 tests → ~1,200 requests in the suite

leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                 st.floats(allow_nan=False), st.text(max_size=60))
json_values = st.recursive(leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                         st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                           max_leaves=20)
chat_bodies = st.fixed_dictionaries({}, optional={
    "message": st.one_of(st.text(max_size=300), json_values), "session_id": st.one_of(st.text(max_size=90), json_values),
    "message_id": st.one_of(st.text(max_size=120), json_values),
    "visitor": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        k: st.one_of(st.text(max_size=80), json_values) for k in ("email", "name", "company", "page_url", "timezone")}))})
event_bodies = st.fixed_dictionaries({}, optional={
    "type": st.one_of(st.sampled_from(["pricing_page_view", "webinar_attended", "nope"]), json_values),
    "email": st.one_of(st.emails(), st.text(max_size=40), json_values), "lead_id": st.one_of(st.text(max_size=40), json_values),
    "properties": json_values})
raw_bodies = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    """One app for the module (hypothesis calls the test many times; a function fixture would be shared anyway)."""
    from bot.settings import Settings
    from bot.turn import SDR
    from integrations.web.app import create_app
    settings_ = Settings.from_env(data_dir=str(tmp_path_factory.mktemp("fuzz")), rate_per_ip=10**9, rate_per_session=10**9)
    sdr = SDR(settings_)
    sdr.kb.ingest([os.path.join(os.path.dirname(__file__), "..", "knowledge", "sample")], progress=False)
    sdr.settings.admin_token = "fuzz-token-123"
    return create_app(sdr).test_client()


def ok(r) -> None:
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])


@FUZZ
@given(body=chat_bodies)
def test_chat_json(app_client, body):
    for path in ("/api/chat", "/api/chat/stream"):
        r = app_client.post(path, json=body)
        ok(r)
        r.get_data()   # the stream runs to its end


@FUZZ
@given(body=event_bodies)
def test_events_json(app_client, body):
    ok(app_client.post("/api/events", json=body))


@FUZZ
@given(raw=raw_bodies, ctype=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
def test_raw_bodies(app_client, raw, ctype):
    for path in ("/api/chat", "/api/events", "/api/privacy/forget"):
        ok(app_client.post(path, data=raw, headers={"Content-Type": ctype} if ctype else {}))


@FUZZ
@given(depth=st.integers(min_value=1, max_value=3000))
def test_deep_nesting(app_client, depth):
    body = '{"message": ' + "[" * depth + "]" * depth + "}"
    ok(app_client.post("/api/chat", data=body, content_type="application/json"))


@FUZZ
@given(segment=st.text(max_size=60), query=st.text(max_size=60))
def test_paths_and_queries(app_client, segment, query):
    from urllib.parse import quote
    auth = {"Authorization": "Bearer fuzz-token-123"}
    for path in (f"/api/leads/{quote(segment, safe='')}", f"/leads/{quote(segment, safe='')}",
                 f"/api/leads?limit={quote(query)}", f"/api/privacy/export?email={quote(query)}",
                 f"/meetings/{quote(segment, safe='')}.ics?lead={quote(query)}"):
        ok(app_client.get(path, headers=auth))


@FUZZ
@given(number=st.integers(min_value=-(2**80), max_value=2**80))
def test_ids(app_client, number):
    ok(app_client.get(f"/meetings/{abs(number)}.ics?lead=x"))


@FUZZ
@given(method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       path=st.sampled_from(["/api/chat", "/api/events", "/api/leads", "/openapi.json", "/healthz", "/widget.js"]))
def test_methods(app_client, method, path):
    ok(app_client.open(path, method=method))


@FUZZ
@given(headers=st.dictionaries(st.sampled_from(["Origin", "Authorization", "Content-Type", "X-Forwarded-For"]),
                               st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)))
def test_headers(app_client, headers):
    ok(app_client.post("/api/chat", data=json.dumps({"message": "hi"}), headers=headers))
