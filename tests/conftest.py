"""Test setup: no connection leaves this machine, and every test gets a fresh data dir.

The network guard wraps socket connects and name lookups: anything but loopback (127.0.0.0/8,
::1, localhost) or a Unix socket raises. The bundled embedding model is loaded once per test
process; each test ingests the sample content into its own empty store (vectors come from the
process's embedding cache, so that costs milliseconds).
"""
from __future__ import annotations

import ipaddress
import os
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "knowledge" / "sample"


# ---------------------------------------------------------------------------------------------
# The network guard


class NetworkAccessDenied(RuntimeError):
    pass


def _is_local(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host in ("localhost", "", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return
    host = address[0] if isinstance(address, tuple) else address
    if not _is_local(host):
        raise NetworkAccessDenied(f"tests may not connect to {address!r}: only loopback is allowed")


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    _check(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_local(host):
        raise NetworkAccessDenied(f"tests may not resolve {host!r}: only loopback is allowed")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]

# Libraries that phone home get told not to, belt and braces.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ---------------------------------------------------------------------------------------------
# A fresh data dir and environment for every test

_ENV_PREFIXES = ("SDR_", "SLACK_", "OPENAI_", "CALCOM_")
_SDR_ENV = ("SDR_DATA_DIR", "SDR_DATABASE_URL", "SDR_PLAYBOOK", "SDR_EMBEDDINGS", "SDR_CHROMA_URL", "SDR_ADMIN_TOKEN",
            "SDR_RATE_PER_SESSION", "SDR_RATE_PER_IP", "OPENAI_API_KEY", "OPENAI_BASE_URL", "SDR_LLM_PROVIDER",
            "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):   # every setting of ours, whatever its name: a test starts from the defaults
        if (name.startswith(_ENV_PREFIXES) or name in _SDR_ENV) and not name.startswith("SDR_TEST_"):
            monkeypatch.delenv(name, raising=False)
    d = tmp_path / "sdr-data"
    monkeypatch.setenv("SDR_DATA_DIR", str(d))
    yield d
    from knowledge.index import forget_clients
    forget_clients()


@pytest.fixture
def settings(data_dir: Path) -> Any:
    from bot.config import Settings
    return Settings.from_env(data_dir=str(data_dir))


@pytest.fixture
def make_sdr(settings: Any) -> Iterator[Any]:
    """Build an SDR on this test's data dir with the sample content ingested."""
    from bot.turn import SDR

    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        for k, v in overrides.pop("settings", {}).items():
            setattr(settings, k, v)
        sdr = SDR(settings, **overrides)
        if sdr.kb is not None and sdr.kb.count() == 0:
            sdr.kb.ingest([SAMPLE], progress=False)
        made.append(sdr)
        return sdr

    yield make
    for sdr in made:
        sdr.store.dispose()


@pytest.fixture
def sdr(make_sdr: Any) -> Any:
    return make_sdr()


@pytest.fixture
def client(sdr: Any) -> Any:
    from integrations.web.app import create_app
    app = create_app(sdr)
    app.testing = True
    return app.test_client()


class LiveServer:
    def __init__(self, app: Any):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def live_server(sdr: Any) -> Iterator[str]:
    """The real Flask app over real HTTP on 127.0.0.1, fresh data dir, sample content ingested."""
    from integrations.web.app import create_app

    srv = LiveServer(create_app(sdr))
    try:
        yield srv.url
    finally:
        srv.stop()


def chat(client: Any, message: str, session_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """POST one chat message through the HTTP API and return the JSON (asserting 200)."""
    body: dict[str, Any] = {"message": message, **extra}
    if session_id:
        body["session_id"] = session_id
    r = client.post("/api/chat", json=body)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


from fake_openai import fake_openai  # noqa: E402,F401  (the local OpenAI-compatible server fixture)
from fake_slack import fake_slack  # noqa: E402,F401  (the local Slack-compatible Web API server fixture)
