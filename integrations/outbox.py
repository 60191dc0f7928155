"""Wire the outbox worker to the integrations that are configured (the composition root for effects)."""
from __future__ import annotations

from typing import Any

from bot.outbox import OutboxWorker


def make_outbox_worker(sdr: Any, **kwargs: Any) -> tuple[OutboxWorker, list[str]]:
    """The worker with a handler per configured integration, and notes on what is not configured."""
    import os

    from .slack import SlackConfig, SlackHandoff, SlackMeetingInvite

    handlers: dict[str, Any] = {}
    notes: list[str] = []
    cfg = SlackConfig.from_env(sdr.playbook)
    if cfg is not None:
        handlers["handoff"] = SlackHandoff(sdr, cfg)
        handlers["meeting_invite"] = SlackMeetingInvite(sdr, cfg)
    else:
        notes.append("Slack is not configured (set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET): handoffs wait in "
                     "the outbox — see them with `sdr outbox`.")
    raw = os.environ.get("SDR_OUTBOX_MAX_ATTEMPTS")
    if raw and "max_attempts" not in kwargs:
        if not raw.isdigit() or int(raw) < 1:
            raise SystemExit(f"SDR_OUTBOX_MAX_ATTEMPTS={raw!r}: give a whole number of attempts, e.g. 8")
        kwargs["max_attempts"] = int(raw)
    return OutboxWorker(sdr.store, handlers, **kwargs), notes
