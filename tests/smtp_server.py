"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 and a free port, in a thread, keeping every
message it accepts::

    from smtp_server import smtp_server, make_smtp_server   # fixtures

    def test_send(smtp_server):
        SmtpTransport(smtp_server.url).send(msg)           # smtp://127.0.0.1:<port>
        got = smtp_server.wait_for(1)[0]                   # Received: .message (stdlib EmailMessage,
                                                           # policy default), .mail_from, .rcpt_tos, .raw
        smtp_server.answer("busy@acme.example", 450)       # RCPT answers, by address or by local part
        smtp_server.answer_data(554, "5.7.1 spam")         # the answer to DATA (None: 250 again)

Out of the box `busy@<any domain>` gets 450 (4.2.1 mailbox busy) and `nobody@<any domain>` 550
(5.1.1 no such user), so tests can bounce and defer without scripting.

`make_smtp_server(security="starttls"|"tls", users={"ava": "s3cret"})` starts one with a self-signed
certificate for 127.0.0.1/localhost (made with the `openssl` command, once per session; tests that
need it are skipped when there is no openssl), STARTTLS required before AUTH (`starttls`) or TLS from
the first byte (`tls`), and AUTH PLAIN/LOGIN required for mail when `users` is given.
`.client_context()` is an SSL context that trusts that certificate; `.url` carries the scheme, and
`.url_with("user", "pass")` the credentials. `.stop()` makes the port refuse connections.
"""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

DEFAULT_ANSWERS = {"busy": (450, "4.2.1 Mailbox busy, try again later"), "nobody": (550, "5.1.1 No such user here")}


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    user: str | None = None         # who authenticated, if anyone
    tls: bool = False


@dataclass
class _Certificate:
    cert: Path
    key: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, server: "SmtpServer"):
        self.server = server

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        code_text = self.server.answer_for(address)
        if code_text:
            return f"{code_text[0]} {code_text[1]}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.server.data_answer:
            code, text = self.server.data_answer
            return f"{code} {text}"
        raw = envelope.original_content or envelope.content
        login = getattr(session, "auth_data", None)
        user = login.login.decode() if isinstance(login, LoginPassword) else None
        got = Received(envelope.mail_from, list(envelope.rcpt_tos), raw,
                       message_from_bytes(raw, policy=policy.default),  # type: ignore[arg-type]
                       user, session.ssl is not None or self.server.security == "tls")
        with self.server.lock:
            self.server.messages.append(got)
            n = len(self.server.messages)
        return f"250 2.0.0 Ok: queued as TEST{n:04d}"


class _Controller(Controller):
    def factory(self) -> Any:
        with warnings.catch_warnings():   # AUTH over implicit TLS is safe; aiosmtpd only counts STARTTLS as TLS
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return super().factory()


class SmtpServer:
    def __init__(self, *, security: str = "plain", users: dict[str, str] | None = None,
                 certificate: _Certificate | None = None):
        self.security, self.users, self.certificate = security, users, certificate
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.answers: dict[str, tuple[int, str]] = dict(DEFAULT_ANSWERS)
        self.data_answer: tuple[int, str] | None = None
        self.host, self.port = "127.0.0.1", 0
        self.controller: Controller | None = None

    # -- scripting -------------------------------------------------------------------------------

    def answer(self, address_or_local_part: str, code: int, text: str | None = None) -> None:
        """RCPT TO for this address (or any address with this local part) answers `code`."""
        self.answers[address_or_local_part.lower()] = (code, text or ("4.0.0 Try later" if code < 500 else "5.0.0 No"))

    def answer_for(self, address: str) -> tuple[int, str] | None:
        a = address.strip("<>").lower()
        return self.answers.get(a) or self.answers.get(a.rpartition("@")[0])

    def answer_data(self, code: int | None, text: str = "") -> None:
        self.data_answer = (code, text or ("4.3.0 Try later" if code < 500 else "5.7.1 Rejected")) if code else None

    # -- running ---------------------------------------------------------------------------------

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.users is not None
              and self.users.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def _server_context(self) -> ssl.SSLContext:
        assert self.certificate is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.certificate.cert, self.certificate.key)
        return ctx

    def start(self) -> "SmtpServer":
        kw: dict[str, Any] = {}
        if self.security == "starttls":
            kw.update(tls_context=self._server_context(), require_starttls=True, auth_require_tls=True)
        elif self.security == "tls":
            kw.update(ssl_context=self._server_context())
        if self.users is not None:
            kw.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=self.security == "starttls")   # implicit TLS: aiosmtpd only counts STARTTLS
        for _ in range(5):   # a free port may be taken between finding it and binding it
            self.port = self.port or _free_port()
            self.controller = _Controller(_Handler(self), hostname=self.host, port=self.port,
                                         server_hostname="localhost", ready_timeout=5, **kw)
            try:
                self.controller.start()
                return self
            except (OSError, RuntimeError):
                self.port = 0
        raise RuntimeError("could not start the test SMTP server")

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        scheme = {"plain": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}[self.security]
        return f"{scheme}://{self.host}:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"

    def client_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts this server's self-signed certificate."""
        assert self.certificate is not None
        return ssl.create_default_context(cafile=str(self.certificate.cert))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.01)
        raise AssertionError(f"the SMTP server got {len(self.messages)} messages, expected {count}")


def _make_certificate(directory: Path) -> _Certificate:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return _Certificate(cert, key)


@pytest.fixture(scope="session")
def smtp_certificate(tmp_path_factory: pytest.TempPathFactory) -> _Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost (skips the test without openssl)."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is needed to make a test certificate")
    return _make_certificate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server (no TLS, no AUTH) on 127.0.0.1; `.url` is smtp://127.0.0.1:<port>."""
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_smtp_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """make(security="plain"|"starttls"|"tls", users={"user": "password"} or None) -> a started SmtpServer."""
    servers: list[SmtpServer] = []

    def make(security: str = "plain", users: dict[str, str] | None = None) -> SmtpServer:
        cert = request.getfixturevalue("smtp_certificate") if security != "plain" else None
        server = SmtpServer(security=security, users=users, certificate=cert).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()
