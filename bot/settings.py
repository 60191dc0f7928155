"""Every setting the product reads from the environment, in one place, each with its default.

    settings = Settings.from_env()          # or Settings.from_env(data_dir=..., playbook_path=...)
    sdr config                              # prints them: value, where it came from, what it does

A bad value fails at start, naming the variable and how to fix it (`SettingsError`, a SystemExit:
a process that cannot read its settings stops with that one line). Secrets are `SecretStr`: they
print as `**********`; `secret_values()` lists the ones set, for redaction in replies and logs.
No other module reads `os.environ` for a setting of ours.
"""
from __future__ import annotations

import math
import os
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "secret_values", "mask", "describe"]


class SettingsError(SystemExit):
    """A setting has a value the product cannot use. The message names the variable and the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _env(name: str, default: Any, description: str, **kw: Any) -> Any:
    """A setting read from the environment variable `name` (exact case)."""
    return Field(default, validation_alias=name, description=description, **kw)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore", env_file=None)

    # -- where things live ---------------------------------------------------------------------
    data_dir: Path = _env("SDR_DATA_DIR", Path(".sdr"),
                          "Where the database, the vector store and the logs live (made absolute at start).")
    database_url: str = _env("SDR_DATABASE_URL", "",
                             "SQLAlchemy URL of the database; empty means SQLite in the data dir "
                             "(e.g. postgresql+psycopg://user@host/db, install .[postgres]).",
                             examples=["postgresql+psycopg://sdr@127.0.0.1/sdr"])
    playbook_path: str | None = _env("SDR_PLAYBOOK", None,
                                     "Playbook YAML (questions, scoring, thresholds, reps); none means the bundled one.",
                                     examples=["./my-playbook.yaml"])
    public_url: str | None = _env("SDR_PUBLIC_URL", None,
                                  "Where this SDR is reachable, for links to transcripts and invitations; "
                                  "`sdr serve` uses its own address when unset.",
                                  examples=["https://sdr.example.com"])

    # -- knowledge -----------------------------------------------------------------------------
    embedding_provider: Literal["local", "openai"] = _env(
        "SDR_EMBEDDINGS", "local", "Embeddings: 'local' (the bundled offline model) or 'openai' (needs OPENAI_API_KEY "
        "or OPENAI_BASE_URL).", examples=["openai"])
    embedding_model: str = _env("SDR_EMBEDDING_MODEL", "text-embedding-3-small",
                                "The OpenAI embedding model when SDR_EMBEDDINGS=openai.")
    embed_threads: int | None = _env("SDR_EMBED_THREADS", None,
                                     "Threads per process for the local embedding model; ingest batches use every "
                                     "core unless this is set. Default: a quarter of the cores, 1-4 (1 on up to 7).",
                                     gt=0, examples=[4])
    chroma_url: str | None = _env("SDR_CHROMA_URL", None,
                                  "A Chroma server (http://host:8000) instead of the folder in the data dir.",
                                  examples=["http://127.0.0.1:8000"])

    # -- the chat API --------------------------------------------------------------------------
    admin_token_secret: SecretStr | None = _env(
        "SDR_ADMIN_TOKEN", None, "The API token: 'Authorization: Bearer <token>' reads leads (/api/leads), sends "
        "events from servers and signs operators in to the team pages; unset: `sdr serve` generates one at start "
        "and prints a one-time sign-in link.")
    identity_secret: SecretStr | None = _env(
        "SDR_IDENTITY_SECRET", None, "Verifies who a signed-in visitor is: your site sends visitor.email and "
        "visitor.user_hash = hex HMAC-SHA256(this secret, email) (Intercom's scheme); only then do that visitor's "
        "sessions join one lead. Unset: every email typed or sent by a browser is unverified.")
    events_secret: SecretStr | None = _env(
        "SDR_EVENTS_SECRET", None, "Servers may sign POST /api/events instead of sending the API token: header "
        "X-SDR-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(this secret, '<t>.<raw body>')>.")
    demo_mode: bool = _env("SDR_DEMO", False, "Return the lead's score, stage and fields to the browser after every "
                           "message (the demo page's panel); `sdr demo` turns it on. Never in production.")
    allowed_origins: str = _env("SDR_ALLOWED_ORIGINS", "",
                                "Sites whose pages may call the chat API from the browser (the widget), comma-separated "
                                "origins like https://www.example.com; empty: only this server's own pages; * lets "
                                "any site (write it only if you mean it).", examples=["https://www.example.com"])
    rate_per_session: int = _env("SDR_RATE_PER_SESSION", 20, "Messages per minute per chat session.", ge=1)
    rate_per_ip: int = _env("SDR_RATE_PER_IP", 60, "Requests per minute per client IP.", ge=1)
    rate_limit_storage: str = _env("SDR_RATE_LIMIT_STORAGE", "memory://",
                                   "Where rate limits are counted: memory:// (this process) or redis://host:6379 "
                                   "(shared by every process).", examples=["redis://127.0.0.1:6379"])
    redis_url: str | None = _env("SDR_REDIS_URL", None,
                                 "Redis for what several processes share: the per-visitor turn lock and (unless "
                                 "SDR_RATE_LIMIT_STORAGE says otherwise) the rate limits. Unset: the lock is PostgreSQL's "
                                 "advisory lock, or on SQLite a file lock in the data dir (every process on this host).",
                                 examples=["redis://127.0.0.1:6379/0"])
    log_format: Literal["text", "json"] = _env("SDR_LOG_FORMAT", "text",
                                                "The log file's lines: text, or json (one object per line with the "
                                                "request id; emails and phone numbers masked in both).")
    metrics_public: bool = _env("SDR_METRICS_PUBLIC", False,
                                "Serve /metrics without the API token (only where the network keeps strangers out).")
    max_message_chars: int = _env("SDR_MAX_MESSAGE_CHARS", 4000, "The longest message a visitor may send.", ge=1)
    max_body_bytes: int = _env("SDR_MAX_BODY_BYTES", 64 * 1024, "The largest request body the API accepts.", ge=1)
    turn_deadline_s: float = _env("SDR_TURN_DEADLINE_S", 8.0,
                                  "Seconds a visitor waits at most for a reply (a slow model falls back).", gt=0)

    # -- the model brain -----------------------------------------------------------------------
    llm_provider: Literal["openai", "none"] | None = _env(
        "SDR_LLM_PROVIDER", None, "'openai' (any OpenAI-compatible endpoint) or 'none' (the rule brain); unset: "
        "openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else the playbook's llm.provider.", examples=["none"])
    llm_model: str | None = _env("SDR_LLM_MODEL", None,
                                 "The chat model; unset: the playbook's llm.model, else gpt-4o-mini.",
                                 examples=["gpt-4o-mini"])
    openai_api_key: SecretStr | None = _env("OPENAI_API_KEY", None, "API key for OpenAI (model brain and embeddings).")
    openai_base_url: str | None = _env("OPENAI_BASE_URL", None,
                                       "An OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp, Azure); "
                                       "unset: the playbook's llm.base_url, else OpenAI.",
                                       examples=["http://127.0.0.1:11434/v1"])

    # -- Slack and the outbox ------------------------------------------------------------------
    slack_bot_token: SecretStr | None = _env("SLACK_BOT_TOKEN", None,
                                             "The Slack app's bot token; with SLACK_SIGNING_SECRET, turns on handoffs to Slack.")
    slack_signing_secret: SecretStr | None = _env("SLACK_SIGNING_SECRET", None,
                                                  "The Slack app's signing secret (verifies button clicks and /sdr).")
    slack_handoff_channel: str | None = _env("SLACK_HANDOFF_CHANNEL", None,
                                             "Channel for handoffs; unset: the playbook's handoff.channel, else #sales.",
                                             examples=["#sales"])
    slack_api_url: str = _env("SLACK_API_URL", "https://slack.com/api/",
                              "Slack's Web API base URL (tests point it at a local server).")
    outbox_max_attempts: int = _env("SDR_OUTBOX_MAX_ATTEMPTS", 8,
                                    "Delivery attempts before an outbox entry is dead-lettered.", ge=1)

    # -- form fills (POST /webhooks/forms/<source>; a source without its secret answers 404) -----
    form_secret: SecretStr | None = _env(
        "SDR_FORM_SECRET", None, "Turns on POST /webhooks/forms/generic: header X-SDR-Signature: t=<unix s>,"
        "v1=<hex HMAC-SHA256(secret, '<t>.<raw body>')> (Stripe's scheme, 5 minutes' tolerance).")
    typeform_secret: SecretStr | None = _env(
        "SDR_TYPEFORM_SECRET", None, "Turns on POST /webhooks/forms/typeform: the secret set on the Typeform "
        "webhook (header Typeform-Signature: sha256=<base64 HMAC-SHA256>).")
    webflow_secret: SecretStr | None = _env(
        "SDR_WEBFLOW_SECRET", None, "Turns on POST /webhooks/forms/webflow: the webhook's signing secret "
        "(headers x-webflow-timestamp, x-webflow-signature).")
    hubspot_client_secret: SecretStr | None = _env(
        "SDR_HUBSPOT_CLIENT_SECRET", None, "Turns on POST /webhooks/forms/hubspot: the HubSpot app's client secret "
        "(header X-HubSpot-Signature-v3, v3 request validation).")

    # -- email ---------------------------------------------------------------------------------
    smtp_url: str | None = _env(
        "SDR_SMTP_URL", None, "Where email goes out: smtp://host:port, smtp+starttls://user:pass@host:587 or "
        "smtps://user:pass@host:465; unset: each email is written as an .eml file under the data dir's outbox-mail/.",
        examples=["smtp+starttls://ava:secret@smtp.example.com:587"])
    email_from: str = _env("SDR_EMAIL_FROM", "Lark at Pipelark <lark@pipelark.example>",
                           "The From of every email the SDR sends.",
                           examples=["Ava at Northwind <ava@northwind.example>"])
    email_reply_to: str | None = _env(
        "SDR_EMAIL_REPLY_TO", None, "The per-lead reply address, with {token} where the lead's reply token goes "
        "(replies come back through an inbound-email webhook); unset: the From address with +{token}.",
        examples=["reply+{token}@northwind.example"])
    inbound_email_auth: SecretStr | None = _env(
        "SDR_INBOUND_EMAIL_AUTH", None, "user:password of HTTP Basic auth on POST /webhooks/email/postmark, "
        "/sendgrid and /raw (how Postmark and SendGrid secure inbound webhooks); unset: those answer 404.")
    mailgun_signing_key: SecretStr | None = _env(
        "SDR_MAILGUN_SIGNING_KEY", None, "Mailgun's HTTP webhook signing key: turns on POST /webhooks/email/mailgun.")

    # -- calendars -----------------------------------------------------------------------------
    caldav_username: str | None = _env("SDR_CALDAV_USERNAME", None,
                                       "The CalDAV account, when the playbook's calendar.backend is caldav.")
    caldav_password: SecretStr | None = _env("SDR_CALDAV_PASSWORD", None,
                                             "The CalDAV password (may be empty for a server without one).")
    calcom_api_key: SecretStr | None = _env("CALCOM_API_KEY", None,
                                            "A Cal.com API key, when the playbook's calendar.backend is calcom.")

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        fields = type(self).model_fields
        # Keyword arguments by attribute name (data_dir=...), passed on under the variable's name:
        # the environment is read by variable name only, never by attribute name.
        by_alias = {(_alias(k) if k in fields else k): v for k, v in values.items()}
        try:
            super().__init__(**by_alias)
        except ValidationError as e:
            raise SettingsError(_explain(e, values)) from None
        self._sources = {}
        for name in fields:
            raw = _env_value(_alias(name))
            from_env = raw is not None and (raw != "" or name == "caldav_password")
            self._sources[name] = "override" if name in values else "environment" if from_env else "default"

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """The environment's settings; keyword arguments (by attribute name) win over it. `None` means
        "not given" (a CLI option left out), so the environment or the default applies."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(k for k in given if k not in cls.model_fields and k != "admin_token")
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
        if "admin_token" in given:
            given["admin_token_secret"] = given.pop("admin_token")
        return cls(**given)

    # -- normalising ---------------------------------------------------------------------------

    @field_validator("embedding_provider", "llm_provider", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("admin_token_secret", mode="after")
    @classmethod
    def _long_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters: a long random string, e.g. the output of "
                             "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return v

    @field_validator("email_from", mode="after")
    @classmethod
    def _one_sender(cls, v: str) -> str:
        from email.utils import getaddresses
        pairs = getaddresses([v])
        if len(pairs) != 1 or "@" not in pairs[0][1] or any(c in v for c in "\r\n"):
            raise ValueError("must be one sender address, e.g. 'Ava at Northwind <ava@northwind.example>'")
        return v

    @field_validator("email_reply_to", mode="after")
    @classmethod
    def _reply_template(cls, v: str | None) -> str | None:
        if v is not None and (v.count("{token}") != 1 or "@" not in v):
            raise ValueError("must be one address with {token} in it once, e.g. reply+{token}@northwind.example")
        return v

    @field_validator("inbound_email_auth", mode="after")
    @classmethod
    def _user_password(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and ":" not in v.get_secret_value():
            raise ValueError("must be user:password (the HTTP Basic credentials your email provider sends)")
        return v

    @field_validator("public_url", mode="before")
    @classmethod
    def _no_trailing_slash(cls, v: Any) -> Any:
        return (v.rstrip("/") or None) if isinstance(v, str) else v

    @field_validator("turn_deadline_s", mode="after")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number of seconds (a visitor never waits forever)")
        return v

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis(cls, v: str | None) -> str | None:
        if v and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use a redis://host:port/db URL (or rediss:// for TLS)")
        return v or None

    @field_validator("rate_limit_storage", mode="after")
    @classmethod
    def _storage(cls, v: str) -> str:
        if not v.startswith(("memory://", "redis://", "rediss://", "redis+unix://", "redis+sentinel://", "redis+cluster://")):
            raise ValueError("use memory:// or a redis://host:port URL")
        return v

    @field_validator("public_url", "chroma_url", "openai_base_url", "slack_api_url", mode="after")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith(("http://", "https://")) and urlsplit(v).hostname):
            raise ValueError("must be an http:// or https:// URL with a host")
        return v

    @field_validator("database_url", mode="after")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if v:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError
            try:
                make_url(v)
            except ArgumentError:
                raise ValueError("is not a database URL, e.g. postgresql+psycopg://user@host/db (empty: SQLite in the data dir)") from None
        return v

    @field_validator("slack_api_url", mode="after")
    @classmethod
    def _trailing_slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"

    @model_validator(mode="after")
    def _derived(self) -> "Settings":
        self.data_dir = Path(self.data_dir).resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'sdr.db'}"
        if self.redis_url and self.rate_limit_storage == "memory://" and _env_value("SDR_RATE_LIMIT_STORAGE") is None:
            self.rate_limit_storage = self.redis_url   # one Redis for everything shared, unless told otherwise
        if self.caldav_password is None and _env_value("SDR_CALDAV_PASSWORD") == "":
            self.caldav_password = SecretStr("")      # an empty password is a password (a server without one)
        return self

    # -- what callers use ----------------------------------------------------------------------

    @property
    def admin_token(self) -> str | None:
        return self.admin_token_secret.get_secret_value() if self.admin_token_secret else None

    @admin_token.setter
    def admin_token(self, value: str | None) -> None:
        self.admin_token_secret = SecretStr(value) if value else None

    @property
    def origins(self) -> frozenset[str]:
        """SDR_ALLOWED_ORIGINS as a set of origins (scheme://host[:port], no trailing slash)."""
        return frozenset(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    @property
    def slack_configured(self) -> bool:
        """Slack is on when SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are both set."""
        return bool(self.secret("slack_bot_token") and self.secret("slack_signing_secret"))

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def cache_dir(self) -> Path:
        """What a process builds at start and the next one reads (place index, intent vectors:
        bot/file_cache.py); safe to delete."""
        return self.data_dir / "cache"

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def source(self, name: str) -> str:
        """Where a setting's value came from: default, environment or override."""
        return self._sources.get(name, "default")

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting (None when unset)."""
        v = getattr(self, name)
        return v.get_secret_value() if isinstance(v, SecretStr) else v


# ---------------------------------------------------------------------------------------------
# Helpers


def _alias(name: str) -> str:
    return Settings.model_fields[name].validation_alias  # type: ignore[return-value]


def _env_value(name: str) -> str | None:
    return os.environ.get(name)


SECRET_FIELDS = tuple(n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation))
SECRET_VARS = tuple(_alias(n) for n in SECRET_FIELDS)


def url_password(value: str | None) -> str | None:
    """The password inside a URL (postgresql://user:PASS@host/db, redis://:PASS@host), if any."""
    if not value or "://" not in value or "@" not in value:
        return None
    try:
        return urlsplit(value).password or None
    except ValueError:
        return None


def hide_url_password(value: str) -> str:
    """The URL with its password shown as ****, for display (`sdr config`)."""
    pw = url_password(value)
    return value.replace(f":{pw}@", ":****@", 1) if pw else value


def secret_values(settings: Settings | None = None) -> list[str]:
    """The secrets set now (environment, plus `settings`' own when given), at least 6 characters long:
    what must never appear in a reply or a log line. Longest first, so a secret containing another is
    replaced whole."""
    found = {v for v in (_env_value(n) for n in SECRET_VARS) if v and len(v) >= 6}
    found |= {p for p in (url_password(_env_value(_alias(n))) for n in Settings.model_fields) if p and len(p) >= 6}
    if settings is not None:
        found |= {v for v in (settings.secret(n) for n in SECRET_FIELDS) if v and len(v) >= 6}
    return sorted(found, key=len, reverse=True)


def mask(value: str | None) -> str:
    """A secret for display: its prefix and last four characters when long enough (sk-…a1b2), else stars."""
    if value is None:
        return "(not set)"
    if len(value) < 16:
        return "********"
    head = value.split("-", 1)[0] + "-" if "-" in value[:6] else ""
    return f"{head}…{value[-4:]}"


def describe(settings: Settings) -> list[dict[str, str]]:
    """Each setting: variable, value (secrets masked), source, description — for `sdr config`."""
    rows = []
    for name, f in Settings.model_fields.items():
        v = getattr(settings, name)
        shown = (mask(v.get_secret_value()) if isinstance(v, SecretStr) else "(not set)" if v is None
                 else hide_url_password(str(v)))
        rows.append({"name": name, "variable": _alias(name), "value": shown, "source": settings.source(name),
                     "description": f.description or ""})
    return rows


_NUMBER_WORDS = {"int_parsing": "is not a whole number", "int_from_float": "is not a whole number",
                 "float_parsing": "is not a number"}


def _example(name: str, f: Any) -> str:
    if f.examples:
        return str(f.examples[0])
    if f.default not in (None, "") and not isinstance(f.default, Path):
        d = f.default
        return f"{d:g}" if isinstance(d, float) else str(d)
    return "..."


def _explain(e: ValidationError, given: dict[str, Any]) -> str:
    """One line per bad setting: the variable, its value, what is wrong, and how to fix it."""
    by_alias = {_alias(n): n for n in Settings.model_fields}
    lines = []
    for err in e.errors():
        key = str(err["loc"][0]) if err["loc"] else "?"
        name = by_alias.get(key, key)
        f = Settings.model_fields.get(name)
        var = _alias(name) if f else key
        raw = err.get("input")
        if name in SECRET_FIELDS:
            raw = "**********"   # a secret never reaches a terminal or a log, even a wrong one
        where = f"{var}={raw!r}" if name not in given else f"{name}={raw!r}"
        msg = err["msg"].removeprefix("Value error, ")
        what = _NUMBER_WORDS.get(err["type"]) or msg[0].lower() + msg[1:]
        if err["type"] == "literal_error" and f is not None:
            what = "is not one of " + err["msg"].split("Input should be ", 1)[-1]
        elif err["type"] not in _NUMBER_WORDS and not what.startswith(("is ", "must ", "use ")):
            what = "is not valid: " + what
        elif what.startswith("use "):
            what = "is not valid: " + what
        fix = f"unset it or give e.g. {var}={_example(name, f)}" if f is not None else "unset it"
        lines.append(f"{where} {what}; {fix}")
    return "\n".join(lines)
