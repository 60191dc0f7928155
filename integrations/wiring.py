"""The composition root: the one place that puts the core (`bot/`, `knowledge/`) together with the
integrations that are configured — the brain, the calendar, the web app with Slack, the outbox
handlers. The core never imports this package; the CLI (and anything else that runs the product)
calls these builders.

    sdr = build_sdr(Settings.from_env())
    app = build_web_app(sdr)                      # chat API, pages, widget; Slack when configured
    worker, notes = build_outbox_worker(sdr)      # a handler per configured integration

Errors a builder raises name what to fix: `PlaybookError` (the playbook file and key),
`CalendarConfigError` (the calendar setting), `SettingsError` (the environment variable).
"""
from __future__ import annotations

from typing import Any

from bot.outbox import OutboxWorker
from bot.settings import Settings

__all__ = ["build_sdr", "build_web_app", "build_outbox_worker", "slack_config"]


def build_sdr(settings: Settings, *, load_knowledge: bool = True, **kwargs: Any) -> Any:
    """The SDR with the brain (the model brain when a model is configured, else the rule brain) and,
    when the playbook names reps, their calendar. `load_knowledge=False` is for commands that only
    read the database (leads, outbox, worker): no knowledge base, brain or calendar to set up."""
    from bot.turn import SDR

    sdr = SDR(settings, load_knowledge=load_knowledge, **kwargs)
    if load_knowledge:
        from integrations.calendar import make_calendar
        from integrations.llm import make_brain

        sdr.brain = make_brain(sdr)
        if sdr.playbook.reps:
            sdr.calendar = make_calendar(sdr.playbook, sdr.store, settings=settings)
    return sdr


def slack_config(sdr: Any, settings: Settings | None = None) -> Any:
    """Slack's settings for this SDR, or None when Slack is not configured. Without `settings`, the
    environment as it is now (a worker or web app built later sees what is set then)."""
    from integrations.slack import SlackConfig

    return SlackConfig.from_settings(settings if settings is not None else Settings.from_env(), sdr.playbook)


def build_web_app(sdr: Any, settings: Settings | None = None) -> Any:
    """The Flask app (chat API, team pages, widget) with Slack's buttons and /sdr at /slack/* when
    SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set."""
    from integrations.web.app import create_app

    app = create_app(sdr)
    cfg = slack_config(sdr, settings)
    if cfg is not None and not any(r.rule == "/slack/events" for r in app.url_map.iter_rules()):
        from integrations.slack import mount

        mount(app, sdr, cfg)
    return app


def build_outbox_worker(sdr: Any, settings: Settings | None = None, **kwargs: Any) -> tuple[OutboxWorker, list[str]]:
    """The outbox worker with a handler per configured integration, and notes on what is not
    configured (handoffs then wait in the outbox, visible with `sdr outbox`). Keyword arguments go to
    `OutboxWorker` (worker_id, lease_s, max_attempts, ...); max_attempts defaults to
    SDR_OUTBOX_MAX_ATTEMPTS."""
    from integrations.slack import SlackHandoff, SlackMeetingInvite

    st = settings if settings is not None else Settings.from_env()
    handlers: dict[str, Any] = {}
    notes: list[str] = []
    cfg = slack_config(sdr, st)
    if cfg is not None:
        handlers["handoff"] = SlackHandoff(sdr, cfg)
        handlers["meeting_invite"] = SlackMeetingInvite(sdr, cfg)
    else:
        notes.append("Slack is not configured (set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET): handoffs wait in "
                     "the outbox — see them with `sdr outbox`.")
    kwargs.setdefault("max_attempts", st.outbox_max_attempts)
    kwargs.setdefault("clock", sdr.clock)
    return OutboxWorker(sdr.store, handlers, **kwargs), notes
