"""The log file (SDR_DATA_DIR/logs/sdr.log), with every secret that is set kept out of it."""
from __future__ import annotations

import logging

from .guard import redact_secrets
from .settings import Settings


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


def setup_logging(settings: Settings, verbose: bool = False) -> None:
    settings.ensure_dirs()
    root = logging.getLogger()
    target = str(settings.log_dir / "sdr.log")
    for h in list(root.handlers):
        if getattr(h, "_sdr", False):
            if getattr(h, "baseFilename", None) == target:
                return
            root.removeHandler(h)
            h.close()
    fh = logging.FileHandler(settings.log_dir / "sdr.log", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    fh.addFilter(RedactSecrets(settings))
    fh._sdr = True  # type: ignore[attr-defined]
    root.addHandler(fh)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("chromadb", "httpx", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
