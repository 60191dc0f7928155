"""Bad input over real HTTP: a JSON error with the right status, and the server stays up."""
import json
import urllib.error
import urllib.request

import pytest
from conftest import API_TOKEN

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}   # a server-side integration (the live_server's API token)

def call(base, path, body=None, *, method="POST", ctype="application/json", headers=None):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={**({"Content-Type": ctype} if ctype else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, e.headers, json.loads(raw) if raw else None


BAD = [
    ("malformed json", b'{"message": "hi"', "application/json", 400, "malformed_json"),
    ("empty body", b"", "application/json", 400, "empty_body"),
    ("json array", b'["hi"]', "application/json", 400, "bad_request"),
    ("missing message", {"session_id": "abcdefgh1"}, "application/json", 400, "missing_message"),
    ("empty message", {"message": "   "}, "application/json", 400, "empty_message"),
    ("number message", {"message": 42}, "application/json", 400, "bad_message"),
    ("null message", {"message": None}, "application/json", 400, "bad_message"),
    ("list message", {"message": ["hi"]}, "application/json", 400, "bad_message"),
    ("bad session id type", {"message": "hi", "session_id": 123}, "application/json", 400, "bad_session_id"),
    ("bad session id chars", {"message": "hi", "session_id": "../../etc/passwd"}, "application/json", 400, "bad_session_id"),
    ("visitor not object", {"message": "hi", "visitor": "me"}, "application/json", 400, "bad_visitor"),
    ("visitor email not string", {"message": "hi", "visitor": {"email": 5}}, "application/json", 400, "bad_visitor"),
    ("visitor email invalid", {"message": "hi", "visitor": {"email": "not-an-email"}}, "application/json", 400, "bad_visitor"),
    ("message over 4000 chars", {"message": "x" * 4001}, "application/json", 413, "message_too_long"),
    ("body over 64 KB", {"message": "hi", "pad": "y" * 70_000}, "application/json", 413, "body_too_large"),
    ("form encoded", b"message=hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("text plain", b'{"message": "hi"}', "text/plain", 415, "unsupported_media_type"),
    ("no content type", b'{"message": "hi"}', None, 415, "unsupported_media_type"),
]


@pytest.mark.parametrize("name,body,ctype,status,code", BAD, ids=[b[0] for b in BAD])
def test_bad_chat_input(live_server, name, body, ctype, status, code):
    st, headers, data = call(live_server, "/api/chat", body, ctype=ctype)
    assert st == status, data
    assert headers["Content-Type"].startswith("application/json")
    assert data["error"]["code"] == code and data["error"]["message"]
    # the server is still up and answering
    st, _, ok = call(live_server, "/api/chat", {"message": "hello"})
    assert st == 200 and ok["reply"]


def test_4000_characters_is_fine(live_server):
    st, _, data = call(live_server, "/api/chat", {"message": "a" * 3990 + " pricing?"})
    assert st == 200


def test_not_found_and_method_not_allowed_are_json(live_server):
    st, _, data = call(live_server, "/api/leads/lead_doesnotexist", method="GET", ctype=None, headers=AUTH)
    assert st == 404 and data["error"]["code"] == "lead_not_found"
    st, _, data = call(live_server, "/no/such/route", method="GET", ctype=None)
    assert st == 404 and data["error"]["code"] == "not_found"
    st, _, data = call(live_server, "/api/chat", method="GET", ctype=None)
    assert st == 405 and data["error"]["code"] == "method_not_allowed"
    st, _, data = call(live_server, "/api/leads?limit=abc", method="GET", ctype=None, headers=AUTH)
    assert st == 400


EVENTS_BAD = [
    ({"email": "a@b.example", "type": "tiktok_like"}, 400, "unknown_event_type"),
    ({"email": "a@b.example"}, 400, "missing_type"),
    ({"type": "pricing_page_view"}, 400, "missing_lead"),
    ({"lead_id": "lead_nope", "type": "pricing_page_view"}, 404, "lead_not_found"),
    ({"email": "nope", "type": "pricing_page_view"}, 400, "bad_email"),
    ({"email": "a@b.example", "type": "pricing_page_view", "properties": [1]}, 400, "bad_properties"),
]


@pytest.mark.parametrize("body,status,code", EVENTS_BAD)
def test_bad_events(live_server, body, status, code):
    st, _, data = call(live_server, "/api/events", body, headers=AUTH)
    assert st == status and data["error"]["code"] == code


def test_events_score_a_lead(live_server):
    st, _, d = call(live_server, "/api/chat", {"message": "hi", "visitor": {"email": "kim@acme.example"}}, headers=AUTH)
    lead_id = d["lead"]["id"]
    st, _, r = call(live_server, "/api/events", {"email": "kim@acme.example", "type": "pricing_page_view",
                                                 "properties": {"url": "https://pipelark.example/pricing"}}, headers=AUTH)
    assert st == 200 and r["lead"]["id"] == lead_id and r["lead"]["engagement_score"] > d["lead"]["engagement_score"]
    st, _, detail = call(live_server, f"/api/leads/{lead_id}", method="GET", ctype=None, headers=AUTH)
    assert any(e["rule"] == "engagement.pricing_page_view" for e in detail["score_events"])


def test_healthz_and_pages(live_server):
    st, _, h = call(live_server, "/healthz", method="GET", ctype=None)
    assert st == 200 and h["status"] == "ok" and h["content_chunks"] > 0
    with urllib.request.urlopen(live_server + "/widget.js") as r:
        assert r.headers["Content-Type"].startswith("application/javascript")
        assert "Access-Control-Allow-Origin" not in r.headers      # a <script> tag needs no CORS
    with urllib.request.urlopen(live_server + "/") as r:
        assert r.headers["Content-Type"].startswith("text/html") and b"/widget.js" in r.read()


def test_cors_preflight(sdr, live_server):
    """Only the sites in SDR_ALLOWED_ORIGINS may call the chat API from their pages; by default none
    but this server's own (same-origin pages need no CORS)."""
    def preflight(origin):
        req = urllib.request.Request(live_server + "/api/chat", method="OPTIONS",
                                     headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers
    status, h = preflight("https://customer.example")
    assert status == 204 and "Access-Control-Allow-Origin" not in h and "Origin" in h["Vary"]
    sdr.settings.allowed_origins = "https://customer.example, https://www.other.example/"
    status, h = preflight("https://customer.example")
    assert status == 204 and h["Access-Control-Allow-Origin"] == "https://customer.example"
    assert "POST" in h["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Origin" not in preflight("https://evil.example")[1]
    sdr.settings.allowed_origins = "*"                       # only when the operator writes it
    assert preflight("https://anyone.example")[1]["Access-Control-Allow-Origin"] == "*"


def test_rate_limits(make_sdr):
    from integrations.web.app import create_app
    sdr = make_sdr(settings={"rate_per_session": 3, "rate_per_ip": 1000})
    c = create_app(sdr).test_client()
    sid = c.post("/api/chat", json={"message": "hi"}).get_json()["session_id"]
    codes = [c.post("/api/chat", json={"message": "hi", "session_id": sid}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = c.post("/api/chat", json={"message": "hi", "session_id": sid})
    assert r.get_json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    assert c.post("/api/chat", json={"message": "hi"}).status_code == 200     # other sessions are fine
    sdr2 = make_sdr(settings={"rate_per_session": 100, "rate_per_ip": 2})
    c2 = create_app(sdr2).test_client()
    assert [c2.post("/api/chat", json={"message": "hi"}).status_code for _ in range(3)] == [200, 200, 429]


def test_admin_token_protects_lead_reads(make_sdr):
    from integrations.web.app import create_app
    sdr = make_sdr(settings={"admin_token": "s3cret-token-0123456"})
    c = create_app(sdr).test_client()
    auth = {"Authorization": "Bearer s3cret-token-0123456"}
    lead_id = c.post("/api/chat", json={"message": "hi"}, headers=auth).get_json()["lead"]["id"]
    assert c.get(f"/api/leads/{lead_id}").status_code == 401
    assert c.get(f"/api/leads/{lead_id}", headers={"Authorization": "Bearer s3cret-tokeN"}).status_code == 401
    assert c.get(f"/api/leads/{lead_id}", headers=auth).status_code == 200


def test_hostile_input_is_stored_as_text_and_nothing_breaks(client):
    nasty = "<script>alert(1)</script> '; DROP TABLE leads; -- 😀 " + "é" * 50
    r = client.post("/api/chat", json={"message": nasty})
    assert r.status_code == 200
    lead = client.get(f"/api/leads/{r.get_json()['lead']['id']}").get_json()
    assert lead["messages"][0]["text"] == nasty.strip()
    # a NUL byte and a lone surrogate (valid JSON escapes, invalid text for a database)
    r = client.post("/api/chat", data=b'{"message": "hi \\u0000 there \\ud800 pricing?"}', content_type="application/json")
    assert r.status_code == 200, r.get_json()
    assert "\x00" not in r.get_json()["reply"]


def test_concurrent_visitors_lose_and_double_nothing(live_server):
    """Eight visitors at once, each also sending two messages at the same moment in one session."""
    from concurrent.futures import ThreadPoolExecutor

    def visitor(i):
        st, _, d = call(live_server, "/api/chat", {"message": f"Hi, I'm Visitor{i}, VP of Sales at a 500 person company"},
                        headers=AUTH)
        assert st == 200
        sid = d["session_id"]
        with ThreadPoolExecutor(2) as pool:
            res = list(pool.map(lambda m: call(live_server, "/api/chat", {"message": m, "session_id": sid}, headers=AUTH),
                                ["we need forecasting this quarter", "budget is approved"]))
        assert all(r[0] == 200 for r in res)
        return d["lead"]["id"]

    with ThreadPoolExecutor(8) as pool:
        lead_ids = list(pool.map(visitor, range(8)))
    assert len(set(lead_ids)) == 8
    for lead_id in lead_ids:
        _, _, detail = call(live_server, f"/api/leads/{lead_id}", method="GET", ctype=None, headers=AUTH)
        assert [m["role"] for m in detail["messages"]] == ["visitor", "agent"] * 3
        assert len([a for a in detail["actions"] if a["type"] == "handoff"]) == 1
        assert abs(sum(e["points"] for e in detail["score_events"]) - detail["score"]) < 0.1


def test_team_pages_show_the_funnel_and_the_score_history_as_text(client):
    d = client.post("/api/chat", json={"message": "I'm the CRO of a 600 person company, we need forecasting now"}).get_json()
    client.post("/api/chat", json={"message": "<script>alert(1)</script>"})
    page = client.get("/leads").get_data(as_text=True)
    assert "Funnel" in page and d["lead"]["id"] in page and "<script>alert(1)</script>" not in page
    lead = client.get(f"/leads/{d['lead']['id']}").get_data(as_text=True)
    assert "<polyline" in lead and "SQL" in lead and "decision-maker seniority" in lead


def test_a_meeting_id_beyond_any_database_integer_is_a_404(client):
    r = client.get("/meetings/99999999999999999999999999.ics?lead=x")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "meeting_not_found"
