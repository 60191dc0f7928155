"""Email transports: `send(msg: EmailMessage) -> dict` for the outbox handler.

- `SmtpTransport(url)` from SDR_SMTP_URL: `smtp://host:port` (plain), `smtp+starttls://user:pass@host:587`
  (STARTTLS, RFC 3207, then AUTH) or `smtps://user:pass@host:465` (implicit TLS, RFC 8314 3.3).
  User and password are percent-decoded. Every connection has a 10 s timeout.
- `EmlDirTransport(directory)`: the embedded default when SDR_SMTP_URL is unset — each message is an
  `.eml` file (`<UTC yyyymmdd-HHMMSS>-<message-id>.eml`), written atomically, once per Message-ID.
- `transport_from_settings(settings)` picks one.

Failures, classified for bot/outbox.py (SMTP reply codes: RFC 5321 4.2.1):
- connection refused, unreachable, timeout, a dropped connection, any 4xx -> `RetryLater`; `not_done`
  is True when the server certainly did not take the message (nothing reached DATA, or it answered 4xx);
  a timeout or drop after DATA began may have delivered it (`not_done=False`).
- 5xx on the recipient (RCPT, or DATA for a single-recipient message) -> `Bounced(address, code, message)`,
  a PermanentError: the core marks the address bounced.
- 535 (and other 5xx) on AUTH, a missing STARTTLS/AUTH, a refused certificate, a 5xx on MAIL FROM ->
  `PermanentError` naming the setting to fix. The password is never logged or put in a message.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from bot.outbox import PermanentError, RetryLater
from bot.settings import SettingsError, hide_url_password

log = logging.getLogger("sdr.email")

TIMEOUT_S = 10.0
SCHEMES = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
ACCEPTED_FORMS = "smtp://host:port, smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465"


class Bounced(PermanentError):
    """The receiving server refused the recipient for good (an SMTP 5xx): mark `address` bounced."""

    def __init__(self, address: str, code: int, message: str):
        super().__init__(f"{address} was refused with {code}: {message}")
        self.address, self.code, self.smtp_message = address, code, message


@dataclass(frozen=True)
class SmtpConfig:
    security: str            # plain | starttls | tls
    host: str
    port: int
    username: str | None
    password: str | None
    shown: str               # the URL with the password hidden, for messages and logs


def parse_smtp_url(url: str) -> SmtpConfig:
    """SDR_SMTP_URL as an SmtpConfig. Raises SettingsError naming the variable and the accepted forms."""
    def bad(why: str) -> SettingsError:
        return SettingsError(f"SDR_SMTP_URL {why}; use {ACCEPTED_FORMS}")
    try:
        parts = urlsplit((url or "").strip())
        port = parts.port
    except ValueError:
        raise bad(f"is not a valid URL ({hide_url_password(url or '')!r})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise bad(f"has the scheme {scheme + '://' if scheme else '(none)'!r}, which is not one of "
                  f"{', '.join(s + '://' for s in SCHEMES)}")
    if not parts.hostname:
        raise bad("names no host")
    security, default_port = SCHEMES[scheme]
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and user is None:
        raise bad("has a password but no user")
    return SmtpConfig(security, parts.hostname, port or default_port, user, password, hide_url_password(url.strip()))


class _Tracked:
    """An SMTP client that notes whether DATA began (after that a lost connection may have delivered)
    and keeps the server's final answer (e.g. `250 2.0.0 Ok: queued as ...`)."""
    data_started = False
    final: tuple[int, bytes] | None = None

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        self.final = super().data(msg)  # type: ignore[misc]
        return self.final


class _SMTP(_Tracked, smtplib.SMTP):
    pass


class _SMTPS(_Tracked, smtplib.SMTP_SSL):
    pass


def _decode(raw: Any) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:300]


class SmtpTransport:
    """Sends through an SMTP server (see the module docstring for URLs and failures)."""
    name = "smtp"

    def __init__(self, url: str, *, timeout: float = TIMEOUT_S, ssl_context: ssl.SSLContext | None = None):
        self.config = parse_smtp_url(url)
        self.timeout = timeout
        self.ssl_context = ssl_context or ssl.create_default_context()

    def __repr__(self) -> str:
        return f"SmtpTransport({self.config.shown!r})"

    def _open(self) -> smtplib.SMTP:
        c = self.config
        if c.security == "tls":
            return _SMTPS(c.host, c.port, timeout=self.timeout, context=self.ssl_context)
        return _SMTP(c.host, c.port, timeout=self.timeout)

    def _session(self, smtp: smtplib.SMTP, msg: EmailMessage) -> dict[str, Any]:
        c = self.config
        smtp.ehlo()
        if c.security == "starttls":
            smtp.starttls(context=self.ssl_context)
            smtp.ehlo()
        if c.username is not None:
            smtp.login(c.username, c.password or "")
        # not send_message: its generator escapes body lines starting "From " as ">From" (mbox style)
        sender = msg["From"].addresses[0].addr_spec if getattr(msg["From"], "addresses", None) else str(msg["From"])
        rcpts = [a.addr_spec for h in ("To", "Cc", "Bcc") for a in (getattr(msg[h], "addresses", None) or ())]
        smtputf8 = any(not x.isascii() for x in [sender, *rcpts])
        refused = smtp.sendmail(sender, rcpts, msg.as_bytes(policy=policy.SMTPUTF8 if smtputf8 else policy.SMTP),
                                mail_options=["SMTPUTF8"] if smtputf8 and smtp.has_extn("smtputf8") else [])
        return {"refused": {a: [code, _decode(m)] for a, (code, m) in (refused or {}).items()}}

    def send(self, msg: EmailMessage) -> dict[str, Any]:
        """Send `msg` to its To/Cc/Bcc. Returns {"transport": "smtp", "server": <URL, password hidden>,
        "accepted": [addresses], "refused": {address: [code, text]}, "response": "250 ..."}.
        Raises RetryLater, Bounced or PermanentError (module docstring)."""
        recipients = [a for _, a in getaddresses(msg.get_all("To", []) + msg.get_all("Cc", []) + msg.get_all("Bcc", []))]
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._open()
            result = self._session(smtp, msg)
        except Exception as e:
            raise self._classify(e, smtp, recipients) from None
        finally:
            if smtp is not None:
                try:
                    smtp.quit()
                except Exception:
                    smtp.close()
        final = getattr(smtp, "final", None)
        accepted = [a for a in recipients if a not in result["refused"]]
        log.info("email %s accepted by %s", msg.get("Message-ID", "?"), self.config.shown)
        return {"transport": self.name, "server": self.config.shown, "accepted": accepted, **result,
                "response": f"{final[0]} {_decode(final[1])}" if final else ""}

    def _classify(self, e: Exception, smtp: Any, recipients: list[str]) -> Exception:
        """The outbox exception for a failed send (see module docstring)."""
        shown, began = self.config.shown, bool(getattr(smtp, "data_started", False))
        log.warning("email via %s failed: %s", shown, type(e).__name__)
        if isinstance(e, smtplib.SMTPRecipientsRefused):
            return self._refused(e.recipients)
        if isinstance(e, smtplib.SMTPAuthenticationError):
            if 400 <= e.smtp_code < 500:
                return RetryLater(f"{shown} could not check the login now ({e.smtp_code})", not_done=True)
            return PermanentError(f"the SMTP server {shown} refused the login ({e.smtp_code} {_decode(e.smtp_error)}): "
                                  "fix the user and password in SDR_SMTP_URL")
        if isinstance(e, smtplib.SMTPNotSupportedError):
            return PermanentError(f"the SMTP server {shown} does not support what SDR_SMTP_URL asks for ({e}); "
                                  f"use {ACCEPTED_FORMS}")
        if isinstance(e, ssl.SSLCertVerificationError):
            return PermanentError(f"the certificate of {shown} was refused ({e.verify_message}); check the host "
                                  "name in SDR_SMTP_URL")
        if isinstance(e, smtplib.SMTPResponseException):
            return self._response(e, recipients, began)
        if isinstance(e, smtplib.SMTPException) and not isinstance(e, smtplib.SMTPServerDisconnected):
            return PermanentError(f"sending through {shown} failed: {e}")
        if isinstance(e, OSError):   # refused, unreachable, timed out, reset, dropped, TLS handshake
            nothing_sent = not began or isinstance(e, (ConnectionRefusedError, smtplib.SMTPConnectError))
            return RetryLater(f"{shown} could not be reached or dropped the connection ({type(e).__name__})",
                              not_done=nothing_sent)
        return PermanentError(f"sending through {shown} failed: {type(e).__name__}: {e}")

    def _refused(self, refused: dict[str, tuple[int, bytes]]) -> Exception:
        address, (code, text) = next(iter(refused.items()))
        if all(c >= 500 for c, _ in refused.values()):
            return Bounced(address, code, _decode(text))
        return RetryLater(f"{self.config.shown} answered {code} for a recipient: {_decode(text)}", not_done=True)

    def _response(self, e: smtplib.SMTPResponseException, recipients: list[str], began: bool) -> Exception:
        code, text = e.smtp_code, _decode(e.smtp_error)
        if 400 <= code < 500:
            return RetryLater(f"{self.config.shown} answered {code}: {text}", not_done=True)
        if isinstance(e, smtplib.SMTPSenderRefused):
            return PermanentError(f"{self.config.shown} refused the sender ({code} {text}): check SDR_EMAIL_FROM")
        if isinstance(e, smtplib.SMTPDataError) and len(recipients) == 1:
            return Bounced(recipients[0], code, text)
        if code >= 500:
            return PermanentError(f"{self.config.shown} answered {code}: {text}")
        return RetryLater(f"{self.config.shown} answered {code}: {text}", not_done=not began)


_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")


def _file_id(msg: EmailMessage) -> str:
    mid = str(msg.get("Message-ID") or "").strip().strip("<>")
    if not mid:
        return "sha-" + hashlib.sha256(msg.as_bytes(policy=policy.SMTP)).hexdigest()[:32]
    safe = _UNSAFE.sub("_", mid).strip("._") or "id"
    if len(safe) > 120 or safe != mid:
        safe = f"{safe[:100]}-{hashlib.sha256(mid.encode()).hexdigest()[:12]}"
    return safe


class EmlDirTransport:
    """Writes each message as `<directory>/<UTC yyyymmdd-HHMMSS>-<message-id>.eml` (the bytes an SMTP
    server would get, CRLF). Atomic (a temporary file, fsync, then rename) and idempotent: a message
    whose Message-ID already has a file is not written again."""
    name = "eml"

    def __init__(self, directory: str | os.PathLike[str], *, clock: Callable[[], datetime] | None = None):
        self.directory = Path(directory)
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    def __repr__(self) -> str:
        return f"EmlDirTransport({str(self.directory)!r})"

    def send(self, msg: EmailMessage) -> dict[str, Any]:
        """Returns {"transport": "eml", "path": <file>, "accepted": [addresses], "duplicate": bool}.
        Raises RetryLater when the directory cannot be written (disk full, permissions)."""
        accepted = [a for _, a in getaddresses(msg.get_all("To", []) + msg.get_all("Cc", []))]
        fid = _file_id(msg)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            existing = sorted(self.directory.glob(f"*-{fid}.eml"))
            if existing:
                return {"transport": self.name, "path": str(existing[0]), "accepted": accepted, "duplicate": True}
            now = self.clock()
            now = now.astimezone(timezone.utc) if now.tzinfo else now
            path = self.directory / f"{now:%Y%m%d-%H%M%S}-{fid}.eml"
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(msg.as_bytes(policy=policy.SMTP))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise RetryLater(f"could not write the email under {self.directory}: {e.strerror or e}") from None
        log.info("email %s written to %s", msg.get("Message-ID", "?"), path)
        return {"transport": self.name, "path": str(path), "accepted": accepted, "duplicate": False}


def transport_from_settings(settings: Any) -> SmtpTransport | EmlDirTransport:
    """SmtpTransport(settings.smtp_url) when set, else EmlDirTransport(<data dir>/outbox-mail).
    Raises SettingsError for a bad SDR_SMTP_URL."""
    if getattr(settings, "smtp_url", None):
        return SmtpTransport(settings.smtp_url)
    return EmlDirTransport(Path(settings.data_dir) / "outbox-mail")
