"""Rate limits through flask-limiter: in memory per app by default, shared through Redis when
SDR_RATE_LIMIT_STORAGE points at one (two apps here stand for two processes)."""
from __future__ import annotations

import os
import uuid

import pytest
from conftest import api_client

REDIS_URL = os.environ.get("SDR_TEST_REDIS_URL", "redis://127.0.0.1:6379")
EVENT = {"type": "pricing_page_view", "email": "kim@acme.example"}


def redis_or_skip():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"Redis is not reachable at {REDIS_URL} ({e.__class__.__name__}); "
                    "start one or set SDR_TEST_REDIS_URL to run this test")
    return client


def apps_on(make_sdr, settings, monkeypatch, storage, prefix, **limits):
    """Two apps (two processes' worth: each its own limiter) counting in `storage` under `prefix`."""
    from integrations.web.app import create_app

    monkeypatch.setenv("SDR_RATE_LIMIT_STORAGE", storage)
    if hasattr(settings, "rate_limit_storage"):
        limits["rate_limit_storage"] = storage
    sdr = make_sdr(settings=limits)
    return [api_client(create_app(sdr, config={"RATELIMIT_KEY_PREFIX": prefix}), sdr) for _ in range(2)]


def test_two_apps_share_one_limit_through_redis(make_sdr, settings, monkeypatch):
    client = redis_or_skip()
    prefix = f"sdr-test-{uuid.uuid4().hex}"
    try:
        a, b = apps_on(make_sdr, settings, monkeypatch, REDIS_URL, prefix, rate_per_ip=3, rate_per_session=2)
        codes = [c.post("/api/events", json=EVENT).status_code for c in (a, b, a, b)]
        assert codes == [200, 200, 200, 429]
        r = a.post("/api/events", json=EVENT)
        assert r.status_code == 429 and r.get_json()["error"]["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert client.keys(f"*{prefix}*"), "the limits were not counted in Redis"
    finally:
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)


def test_a_chat_session_is_limited_across_apps_through_redis(make_sdr, settings, monkeypatch):
    client = redis_or_skip()
    prefix = f"sdr-test-{uuid.uuid4().hex}"
    try:
        a, b = apps_on(make_sdr, settings, monkeypatch, REDIS_URL, prefix, rate_per_ip=1000, rate_per_session=2)
        sid = "redis-session-" + uuid.uuid4().hex[:8]
        codes = [c.post("/api/chat", json={"message": "hi", "session_id": sid}).status_code for c in (a, b, a)]
        assert codes == [200, 200, 429]
        assert b.post("/api/chat", json={"message": "hi"}).status_code == 200   # another session is fine
    finally:
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)


def test_memory_limits_are_per_app_and_by_default(make_sdr):
    from integrations.web.app import create_app

    sdr = make_sdr(settings={"rate_per_ip": 2})
    assert (getattr(sdr.settings, "rate_limit_storage", None) or "memory://") == "memory://"
    a, b = api_client(create_app(sdr), sdr), api_client(create_app(sdr), sdr)
    assert [a.post("/api/events", json=EVENT).status_code for _ in range(3)] == [200, 200, 429]
    assert b.post("/api/events", json=EVENT).status_code == 200     # another process counts its own


def test_preflight_and_pages_are_not_limited(make_sdr):
    from integrations.web.app import create_app

    c = create_app(make_sdr(settings={"rate_per_ip": 1})).test_client()
    assert [c.options("/api/chat").status_code for _ in range(3)] == [204, 204, 204]
    assert [c.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]
    assert c.post("/api/chat", json={"message": "hi"}).status_code == 200
    c.application.extensions["sdr"].settings.allowed_origins = "https://customer.example"
    r = c.post("/api/chat/stream", json={"message": "hi"}, headers={"Origin": "https://customer.example"})
    assert r.status_code == 429 and r.headers["Access-Control-Allow-Origin"] == "https://customer.example"


def test_an_unreachable_rate_limit_storage_is_said_at_start(sdr):
    from integrations.web.app import create_app
    sdr.settings.rate_limit_storage = "redis://127.0.0.1:1"     # nothing listens there
    app = create_app(sdr)
    [warning] = app.extensions["sdr.warnings"]
    assert "rate limits are OFF" in warning and "127.0.0.1:1" in warning
    assert app.test_client().post("/api/chat", json={"message": "hi"}).status_code == 200   # not a 500
