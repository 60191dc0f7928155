"""HTTP details the adapters share."""
from __future__ import annotations

from datetime import datetime, timezone

from werkzeug.http import parse_date


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP-date (RFC 9110
    §10.2.3). None when absent or unreadable; never negative."""
    if value is None or not str(value).strip():
        return None
    raw = str(value).strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    when = parse_date(raw)
    if when is None:
        return None
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())
