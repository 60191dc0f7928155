"""The log file (SDR_DATA_DIR/logs/sdr.log), with every secret that is set kept out of it and
people's email addresses and phone numbers masked in every line.

Two formats: text (the default, `time LEVEL logger: message`) and, with `SDR_LOG_FORMAT=json`, one
JSON object per line — {"time", "level", "logger", "message", "request_id"} and "exc" (the traceback)
when there is one — for a log shipper. `REQUEST_ID` holds the id of the HTTP request being served
(the web app sets it: integrations/web/observability.py); every line logged while serving it, by any
module, carries it.

Masking, in both formats, after the secrets are redacted (RedactSecrets): `ana@example.com` →
`a***@example.com`; a run of 7 or more digits (spaces, dots, dashes, slashes and brackets between
them, an optional leading +) → `***` and its last two digits. ISO dates and times are left alone. A
digits rule rather than phonenumbers' matcher: the matcher needs a region and misses local formats
(a leak), while the rule over-masks long numbers (ids, counts), which is the safe direction.
"""
from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Iterator

from .guard import redact_secrets
from .settings import Settings
from .text import EMAIL_RE

REQUEST_ID: ContextVar[str | None] = ContextVar("sdr_request_id", default=None)
_HELD: ContextVar[list | None] = ContextVar("sdr_held_logs", default=None)   # see held_logs

_DATE_OR_PHONE = re.compile(
    r"(?P<date>\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?)"   # kept as it is
    r"|(?P<phone>(?<![\w+])\+?\d(?:[ ./()\-]{0,3}\d){6,}(?!\w))")


def _mask_email(m: re.Match[str]) -> str:
    local, _, domain = m.group(0).rpartition("@")
    return f"{local[:1]}***@{domain}"


def _mask_phone(m: re.Match[str]) -> str:
    if m.group("date") is not None:
        return m.group(0)
    digits = re.sub(r"\D", "", m.group(0))
    return f"***{digits[-2:]}"


def mask_personal(text: str) -> str:
    """`text` with email addresses and phone numbers (7+ digits) masked."""
    if "@" in text:
        text = EMAIL_RE.sub(_mask_email, text)
    return _DATE_OR_PHONE.sub(_mask_phone, text) if sum(c.isdigit() for c in text) >= 7 else text


class RedactSecrets(logging.Filter):
    """Keep keys and tokens out of the log, whatever a library decides to print."""

    def __init__(self, settings: Settings | None = None):
        super().__init__()
        self.settings = settings

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact_secrets(msg, self.settings)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class HeldBack(logging.Filter):
    """Inside `held_logs()`, a line is held instead of written (it is written if the block keeps it)."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        held = _HELD.get()
        if held is None:
            return True
        held.append((self.handler, record))
        return False


class HeldLogs:
    """What `held_logs()` yields: `keep()` writes the held lines when the block ends."""

    def __init__(self) -> None:
        self.lines: list[tuple[logging.Handler, logging.LogRecord]] = []
        self.kept = False

    def keep(self) -> None:
        self.kept = True


@contextmanager
def held_logs() -> Iterator[HeldLogs]:
    """Hold this thread's log lines (to the log file) for the block: written at its end if
    `keep()` was called, else dropped. A turn's rehearsal (bot/assess.py) is rolled back, and so are
    its lines ("handoff queued" would otherwise be logged twice: once rehearsed, once committed)."""
    held = HeldLogs()
    token = _HELD.set(held.lines)
    try:
        yield held
    finally:
        _HELD.reset(token)
        if held.kept:
            for handler, record in held.lines:
                handler.handle(record)


class WithRequestId(logging.Filter):
    """Puts the current request's id (REQUEST_ID, None outside a request) on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class MaskedText(logging.Formatter):
    """`time LEVEL logger: message`, the message and any traceback masked (mask_personal)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = mask_personal(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:  # type: ignore[no-untyped-def]
        return mask_personal(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return mask_personal(super().formatStack(stack_info))


class JsonLines(logging.Formatter):
    """One JSON object a line: time (ISO 8601 UTC), level, logger, message, request_id, and exc
    (the traceback) when there is one; every text masked (mask_personal)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "level": record.levelname, "logger": record.name, "message": mask_personal(record.getMessage()),
                "request_id": getattr(record, "request_id", None) or REQUEST_ID.get()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = mask_personal(record.exc_text)
        if record.stack_info:
            line["stack"] = mask_personal(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def log_format(settings: Settings) -> str:
    """"json" or "text": SDR_LOG_FORMAT (`settings.log_format`)."""
    return "json" if str(getattr(settings, "log_format", "text")).strip().lower() == "json" else "text"


def setup_logging(settings: Settings, verbose: bool = False) -> None:
    settings.ensure_dirs()
    root = logging.getLogger()
    target = str(settings.log_dir / "sdr.log")
    fmt = log_format(settings)
    for h in list(root.handlers):
        if getattr(h, "_sdr", False):
            if getattr(h, "baseFilename", None) == target and getattr(h, "_sdr_format", "text") == fmt:
                return
            root.removeHandler(h)
            h.close()
    fh = logging.FileHandler(settings.log_dir / "sdr.log", encoding="utf-8")
    fh.setFormatter(JsonLines() if fmt == "json" else MaskedText("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    fh.addFilter(HeldBack(fh))
    fh.addFilter(RedactSecrets(settings))
    fh.addFilter(WithRequestId())
    fh._sdr = True  # type: ignore[attr-defined]
    fh._sdr_format = fmt  # type: ignore[attr-defined]
    root.addHandler(fh)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("chromadb", "httpx", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
