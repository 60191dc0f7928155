"""Test setup: no connection leaves this machine, and every test gets a fresh data dir.

The network guard wraps socket connects and name lookups: anything but loopback (127.0.0.0/8,
::1, localhost) or a Unix socket raises. The bundled embedding model is loaded once per test
process, and the sample content ingested once (SampleStore); each test's SDR gets its own copy of
that store in its own data dir. A module whose tests each talk in sessions of their own may share
one SDR (`shared_sdr`).

Time: every SDR a test builds runs on the `clock` fixture (a FakeClock standing at CLOCK_DEFAULT,
Tue 13 Jan 2026 15:00 UTC, both reps at work) unless the test passes its own `clock=`; a test that
cares about the hour moves it with `clock.set(...)` and says why. To prove no test depends on the
wall clock, run the suite with the wall clock moved:

    SDR_TEST_FAKE_NOW=2026-12-05T03:30:00Z pytest ...

travels the whole session to that instant with time-machine (ticking from there); several
instants, comma-separated, run every test once under each (one process, so the sample content is
embedded once). tests/test_any_hour.py does that for the time-sensitive files.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
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
# Time: the injected clock, and the whole session moved in time on request

# Fixed instants lie before any time the suite runs at, real or faked: the outbox worker still
# claims entries on the wall clock (bot/outbox.py), so an entry stamped by a clock ahead of it
# would not be due yet.
CLOCK_DEFAULT = datetime(2026, 1, 13, 15, 0)   # Tue: 10:00 in New York, 15:00 in London: both reps at work
FAKE_NOW_ENV = "SDR_TEST_FAKE_NOW"


class FakeClock:
    """A clock for SDR(clock=...): naive UTC, starting at a fixed instant and ticking with real
    time from there (so a retry scheduled 5 s ahead comes due 5 s later, as in production), until
    set or advanced."""

    def __init__(self, now: datetime = CLOCK_DEFAULT) -> None:
        self.set(now)

    def __call__(self) -> datetime:
        return self.now + timedelta(seconds=time.monotonic() - self._since)

    def set(self, now: datetime) -> datetime:
        if now.tzinfo is not None:
            now = now.astimezone(timezone.utc).replace(tzinfo=None)
        self.now, self._since = now, time.monotonic()
        return now

    def advance(self, **delta: float) -> datetime:
        return self.set(self() + timedelta(**delta))


def parse_fake_now(raw: str) -> datetime:
    """An ISO instant ("2026-12-05T03:30:00Z"; no zone means UTC) as aware UTC."""
    at = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def fake_nows() -> list[datetime]:
    return [parse_fake_now(x) for x in os.environ.get(FAKE_NOW_ENV, "").split(",") if x.strip()]


_travel: Any = None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "any_hour: runs test files with the wall clock moved to other hours")
    nows = fake_nows()
    if len(nows) == 1:
        import time_machine

        global _travel
        _travel = time_machine.travel(nows[0], tick=True)
        _travel.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _travel
    if _travel is not None:
        _travel.stop()
        _travel = None


def pytest_report_header(config: pytest.Config) -> str | None:
    nows = fake_nows()
    return f"wall clock moved to {', '.join(n.isoformat() for n in nows)} ({FAKE_NOW_ENV})" if nows else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    nows = fake_nows()
    if len(nows) > 1 and "wall_clock" in metafunc.fixturenames:
        metafunc.parametrize("wall_clock", nows, indirect=True, ids=[f"at-{n:%a-%Y%m%dT%H%MZ}" for n in nows])


@pytest.fixture(autouse=True)
def wall_clock(request: pytest.FixtureRequest) -> Iterator[datetime | None]:
    """With several SDR_TEST_FAKE_NOW instants: this test's run with the wall clock moved to one."""
    at = getattr(request, "param", None)
    if at is None:
        yield None
        return
    import time_machine

    with time_machine.travel(at, tick=True):
        yield at


@pytest.fixture
def clock() -> FakeClock:
    """The clock every SDR of this test runs on (make_sdr); move it with clock.set()/advance()."""
    return FakeClock()


# ---------------------------------------------------------------------------------------------
# A fresh data dir and environment for every test

_ENV_PREFIXES = ("SDR_", "SLACK_", "OPENAI_", "CALCOM_")
_SDR_ENV = ("SDR_DATA_DIR", "SDR_DATABASE_URL", "SDR_PLAYBOOK", "SDR_EMBEDDINGS", "SDR_CHROMA_URL", "SDR_ADMIN_TOKEN",
            "SDR_RATE_PER_SESSION", "SDR_RATE_PER_IP", "OPENAI_API_KEY", "OPENAI_BASE_URL", "SDR_LLM_PROVIDER",
            "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")


def default_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """No setting of ours in the environment but the data dir: every setting at its default."""
    for name in list(os.environ):   # every setting of ours, whatever its name: a test starts from the defaults
        if (name.startswith(_ENV_PREFIXES) or name in _SDR_ENV) and not name.startswith("SDR_TEST_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SDR_DATA_DIR", str(data_dir))


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "sdr-data"
    default_env(monkeypatch, d)
    yield d
    from knowledge.index import forget_clients
    forget_clients()


@pytest.fixture
def settings(data_dir: Path) -> Any:
    from bot.settings import Settings
    return Settings.from_env(data_dir=str(data_dir))


EMBEDDINGS_ENV = "SDR_TEST_EMBEDDINGS"


def save_embeddings(embedder: Any, path: Path) -> int:
    """Write what the bundled embedder has embedded so far (its cache: key of the text -> vector) to
    `path`, for a pytest process this one starts (SDR_TEST_EMBEDDINGS=path) to start from instead of
    embedding the same texts again with the same model. Returns how many; 0 if it keeps no cache."""
    import numpy as np

    cache = getattr(embedder, "_cache", None)
    if not isinstance(cache, dict) or not cache:
        return 0
    keys = list(cache)
    np.savez(path, model=np.array(getattr(embedder, "name", "")), keys=np.array(keys),
             vectors=np.stack([np.asarray(cache[k], dtype=np.float32) for k in keys]))
    return len(keys)


def load_embeddings(embedder: Any) -> int:
    """Into the bundled embedder's cache: the vectors the parent process saved (save_embeddings) for
    the same model, when SDR_TEST_EMBEDDINGS names them. Returns how many."""
    import numpy as np

    path, remember = os.environ.get(EMBEDDINGS_ENV), getattr(embedder, "_remember", None)
    if not path or remember is None or not Path(path).is_file():
        return 0
    with np.load(path, allow_pickle=False) as saved:
        if str(saved["model"]) != getattr(embedder, "name", None):
            return 0
        for key, vector in zip(saved["keys"].tolist(), saved["vectors"]):
            remember(key, vector)
        return len(saved["keys"])


class SampleStore:
    """The sample content ingested once per test process, into a store of its own (the real
    KnowledgeBase.ingest, run once); a test's fresh data dir gets a copy of that store's files
    instead of ingesting again (copying takes milliseconds, ingesting ~0.5 s per SDR). The copy is
    the same collection (same chunks, vectors and metadata) in the test's own files: what a test
    writes into it stays in that test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._chroma: Path | None = None
        self._lock = threading.Lock()

    @staticmethod
    def applies(settings: Any, overrides: dict[str, Any]) -> bool:
        """Only where make_sdr would ingest the sample into a new local store: the bundled embedder,
        no Chroma server, nothing in this data dir's store yet, the SDR opening its own."""
        return (settings.embedding_provider == "local" and not settings.chroma_url
                and "knowledge" not in overrides and overrides.get("load_knowledge", True)
                and not Path(settings.chroma_dir).exists())

    def chroma(self, settings: Any) -> Path:
        """The ingested store's Chroma dir, made on first use with `settings` (a test's, which
        `applies` accepted) moved to a data dir of the store's own."""
        with self._lock:
            if self._chroma is None:
                from knowledge.retrieve import KnowledgeBase

                s = settings.model_copy(update={"data_dir": self.root / "sdr-data"})
                s.ensure_dirs()
                kb = KnowledgeBase(s)
                load_embeddings(kb.embedder)   # in a process a test started: what its parent embedded
                kb.ingest([SAMPLE], progress=False)
                assert kb.count() > 0, "the sample content ingested nothing"
                self._chroma = Path(s.chroma_dir)
            return self._chroma

    def copy_into(self, settings: Any) -> None:
        import shutil

        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.chroma(settings), settings.chroma_dir)


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> SampleStore:
    return SampleStore(tmp_path_factory.mktemp("sample-store"))


def build_sdr(settings: Any, sample_store: SampleStore, **overrides: Any) -> Any:
    """An SDR on `settings` with the sample content in its store (unless it has content already)."""
    from bot.turn import SDR

    if SampleStore.applies(settings, overrides):
        sample_store.copy_into(settings)   # the sample content, already ingested (see SampleStore)
    sdr = SDR(settings, **overrides)
    if sdr.kb is not None and sdr.kb.count() == 0:
        sdr.kb.ingest([SAMPLE], progress=False)
    return sdr


@pytest.fixture
def make_sdr(settings: Any, clock: FakeClock, sample_store: SampleStore) -> Iterator[Any]:
    """Build an SDR on this test's data dir with the sample content ingested, on the test's clock."""
    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        for k, v in overrides.pop("settings", {}).items():
            setattr(settings, k, v)
        overrides.setdefault("clock", clock)
        sdr = build_sdr(settings, sample_store, **overrides)
        made.append(sdr)
        return sdr

    yield make
    for sdr in made:
        sdr.store.dispose()


@pytest.fixture
def sdr(make_sdr: Any) -> Any:
    return make_sdr()


@pytest.fixture
def model_sdr(make_sdr: Any, fake_openai: Any) -> Any:
    """`model_sdr(deadline=6.0)`: an SDR whose brain is the model brain talking to the local
    OpenAI-compatible server (tests/fake_openai.py), with the turn's deadline in seconds."""
    from integrations.llm import LLMConfig, build_chat_model
    from integrations.llm.model_brain import ModelBrain

    def make(deadline: float = 6.0) -> Any:
        sdr = make_sdr(settings={"turn_deadline_s": deadline})
        cfg = LLMConfig(provider="openai", model="local", base_url=fake_openai.base_url, api_key="test")
        sdr.brain = ModelBrain(sdr.playbook, build_chat_model(cfg, deadline), model_name="local")
        return sdr
    return make


@pytest.fixture(scope="module")
def module_sdr(tmp_path_factory: pytest.TempPathFactory, sample_store: SampleStore) -> Iterator[Any]:
    """One SDR for a whole test module, built as `make_sdr()` builds one (default settings, the
    sample content) on a data dir of its own. Use it through `shared_sdr`."""
    from bot.settings import Settings

    d = tmp_path_factory.mktemp("module-sdr") / "sdr-data"
    with pytest.MonkeyPatch.context() as mp:   # module fixtures start before `data_dir` cleans the environment
        default_env(mp, d)
        sdr = build_sdr(Settings.from_env(data_dir=str(d)), sample_store, clock=FakeClock())
    yield sdr
    sdr.store.dispose()


@pytest.fixture
def shared_sdr(module_sdr: Any, clock: FakeClock) -> Any:
    """The module's one SDR, running on this test's `clock` (so every test starts at CLOCK_DEFAULT, as
    with `sdr`). For tests that each talk to it in sessions of their own and read only what those
    sessions answer: a module overrides `sdr` with it where one SDR for all its tests changes no
    answer. It is not on this test's `settings` or `data_dir`."""
    module_sdr.clock = clock
    return module_sdr


API_TOKEN = "test-api-token-0123456789abcdef"
SLACK_SECRET = "test-signing-secret"


@pytest.fixture
def slack_env(monkeypatch: Any, fake_slack: Any) -> Any:
    """Slack configured through the environment, pointing at the local fake Slack server."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", fake_slack.token)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SLACK_SECRET)
    monkeypatch.setenv("SLACK_API_URL", fake_slack.base_url)
    monkeypatch.setenv("SLACK_HANDOFF_CHANNEL", "#sales-handoffs")
    monkeypatch.setenv("SDR_PUBLIC_URL", "https://sdr.example")
    return fake_slack


def api_client(app: Any, sdr: Any) -> Any:
    """A test client that sends the API token on every request, as a server-side integration or
    an eval does (it sees the lead in chat answers and may read /api/leads)."""
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {sdr.settings.admin_token}"
    return c


@pytest.fixture
def client(sdr: Any) -> Any:
    """The web app as a server-side API client sees it (Bearer API token)."""
    from integrations.web.app import create_app
    sdr.settings.admin_token = sdr.settings.admin_token or API_TOKEN
    app = create_app(sdr)
    app.testing = True
    return api_client(app, sdr)


@pytest.fixture
def browser_client(sdr: Any) -> Any:
    """The web app as a stranger's browser sees it: no token, no cookie."""
    from integrations.web.app import create_app
    sdr.settings.admin_token = sdr.settings.admin_token or API_TOKEN
    app = create_app(sdr)
    app.testing = True
    return app.test_client()


class LiveServer:
    def __init__(self, app: Any):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # polled every 50 ms (socketserver's default is 0.5 s): stop() returns within that, not half a second later
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def live_server(sdr: Any) -> Iterator[str]:
    """The real Flask app over real HTTP on 127.0.0.1, fresh data dir, sample content ingested."""
    from integrations.web.app import create_app

    sdr.settings.admin_token = sdr.settings.admin_token or API_TOKEN
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
from smtp_server import make_smtp_server, smtp_certificate, smtp_server  # noqa: E402,F401  (the local SMTP server fixtures)
