"""POST /api/chat/stream: the turn as server-sent events, and the same limits as /api/chat."""
from __future__ import annotations

import json


def events_of(body: str) -> list[tuple[str, dict]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_the_stream_is_deltas_then_the_full_turn(client):
    client.application.extensions["sdr"].settings.allowed_origins = "https://customer.example"
    r = client.post("/api/chat/stream", json={"message": "How much does it cost?"}, headers={"Origin": "https://customer.example"})
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    assert r.headers["Cache-Control"] == "no-cache" and r.headers["Access-Control-Allow-Origin"] == "https://customer.example"
    events = events_of(r.get_data(as_text=True))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and set(kinds) <= {"delta", "reset", "done"} and "delta" in kinds
    done = events[-1][1]
    assert {"session_id", "reply", "lead", "sources", "actions", "score_changes"} <= set(done)
    shown = "".join(d["text"] for k, d in events if k == "delta")
    assert shown.strip() == done["reply"].strip()


def test_the_stream_and_the_json_route_share_a_session_limit(make_sdr):
    from integrations.web.app import create_app

    c = create_app(make_sdr(settings={"rate_per_session": 2, "rate_per_ip": 1000})).test_client()
    sid = c.post("/api/chat", json={"message": "hi"}).get_json()["session_id"]
    assert c.post("/api/chat/stream", json={"message": "hi", "session_id": sid}).status_code == 200
    assert c.post("/api/chat", json={"message": "hi", "session_id": sid}).status_code == 200
    r = c.post("/api/chat/stream", json={"message": "hi", "session_id": sid})
    assert r.status_code == 429 and r.mimetype == "application/json" and r.headers["Retry-After"]
