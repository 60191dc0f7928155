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

import re

from typing import Any

from bot.outbox import OutboxWorker, PermanentError
from bot.settings import Settings

__all__ = ["build_outbox_worker", "build_sdr", "build_web_app", "forget_person_everywhere", "slack_config"]


def build_sdr(settings: Settings, *, load_knowledge: bool = True, warm_content: bool = True, **kwargs: Any) -> Any:
    """The SDR with the brain (the model brain when a model is configured, else the rule brain) and,
    when the playbook names reps, their calendar. `load_knowledge=False` is for commands that only
    read the database (leads, outbox, worker): no knowledge base, brain or calendar to set up.
    What a first turn would wait for is loaded in a background thread (`SDR.warm`), `sdr.warming`:
    a server worker joins it before it takes requests. `warm_content=False` leaves the content store
    out of it (opened on first use: a server worker opens it after it is ready)."""
    from bot.turn import SDR

    sdr = SDR(settings, load_knowledge=load_knowledge, **kwargs)
    if load_knowledge:
        from integrations.calendar import make_calendar
        from integrations.llm import make_brain

        sdr.brain = make_brain(sdr)
        if sdr.playbook.reps:
            sdr.calendar = make_calendar(sdr.playbook, sdr.store, settings=settings)
        import threading

        # places, languages, intents and (unless warm_content=False) the index: off the first turn
        sdr.warming = threading.Thread(target=sdr.warm, kwargs={"content": warm_content}, name="sdr-warm", daemon=True)
        sdr.warming.start()
    return sdr


def slack_config(sdr: Any, settings: Settings | None = None) -> Any:
    """Slack's settings for this SDR, or None when Slack is not configured. Without `settings`, the
    environment as it is now (a worker or web app built later sees what is set then). Without Slack,
    slack_sdk is not imported at all."""
    settings = settings if settings is not None else Settings.from_env()
    if not settings.slack_configured:
        return None
    from integrations.slack import SlackConfig

    return SlackConfig.from_settings(settings, sdr.playbook)


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
    st = settings if settings is not None else Settings.from_env()
    handlers: dict[str, Any] = {}
    notes: list[str] = []
    cfg = slack_config(sdr, st)
    if cfg is not None:
        from integrations.slack import SlackHandoff, SlackMeetingInvite

        handlers["handoff"] = SlackHandoff(sdr, cfg)
        handlers["meeting_invite"] = SlackMeetingInvite(sdr, cfg)
    else:
        notes.append("Slack is not configured (set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET): handoffs wait in "
                     "the outbox — see them with `sdr outbox`.")
    if sdr.kb is not None:   # form fills and email replies run the turn (the content store answers)
        handlers["form_fill"] = sdr.work_form_fill
        handlers["email_in"] = sdr.work_email_in
    mail_settings = settings if settings is not None else sdr.settings   # the SDR's own: what `sdr demo` set
    handlers["email"] = EmailDelivery(sdr, mail_settings)
    if not mail_settings.public_url:
        notes.append("SDR_PUBLIC_URL is not set: links in emails (unsubscribe, tracked content, the open pixel) point "
                     "at http://127.0.0.1:8000 — set it to the address prospects reach this server at")
    if not mail_settings.smtp_url:
        notes.append("SDR_SMTP_URL is not set: emails (first touches to form fills, replies) are written as .eml "
                     f"files to {mail_settings.data_dir / 'outbox-mail'}")
    kwargs.setdefault("max_attempts", st.outbox_max_attempts)
    kwargs.setdefault("clock", sdr.clock)
    if sdr.playbook.sequences and sdr.kb is not None:   # nurture: due sequence steps, on the same loop
        from bot.sequences import SequenceRunner

        kwargs.setdefault("jobs", [SequenceRunner(sdr).run_once])
    elif sdr.playbook.sequences:
        notes.append("this worker has no content store loaded: nurture sequences are not run here")
    worker = OutboxWorker(sdr.store, handlers, **kwargs)
    sdr.on_queued = worker.wake   # a form fill's first touch does not wait for the next poll
    return worker, notes


class EmailDelivery:
    """Outbox handler for "email": the send-time gate (an unsubscribed, bounced or forgotten lead
    gets nothing — checked here, once, for every email from every caller), then the message built
    from the payload (integrations/email/mime_build.py) and sent by SMTP or written as .eml. A 5xx
    on the recipient marks the lead bounced (a negative engagement event) and is not retried."""

    def __init__(self, sdr: Any, settings: Settings):
        from integrations.email.smtp_out import transport_from_settings

        self.sdr, self.settings = sdr, settings
        self.transport = transport_from_settings(settings)

    def __call__(self, d: Any) -> dict[str, Any]:
        from integrations.email.mime_build import build_message
        from integrations.email.smtp_out import Bounced

        p, pb = d.payload, self.sdr.playbook
        reason = self.sdr.email_gate(d.lead_id, p.get("to"), p.get("enrollment_id"))
        if reason is not None:
            return {"skipped": reason}
        msg = build_message(p, sender=self.settings.email_from, footer_address=pb.company.postal_address,
                            company=pb.company.name, date=self.sdr.clock())
        try:
            return {**self.transport.send(msg), "message_id": p.get("message_id")}
        except Bounced as e:
            if re.search(r"\b5\.7\.\d+\b", e.smtp_message):   # refused as policy/spam (RFC 3463 X.7.X), not a dead address
                raise PermanentError(f"the receiving server refused the message by policy: {e.code} {e.smtp_message}"[:300])
            if d.lead_id:
                self.sdr.mark_bounced(d.lead_id, e.address, f"{e.code} {e.smtp_message}"[:300])
            return {"bounced": e.address, "code": e.code}


def forget_person_everywhere(sdr: Any, email: str, settings: Settings | None = None) -> dict[str, Any]:
    """Forget `email` (GDPR art. 17 / CCPA right to delete): every lead that carries it, from every table
    and file of the data dir (`bot.privacy.forget_person`), then — when Slack is configured — the
    messages posted about them, by chat.delete. The result is forget_person's with each of
    "slack_messages" as {"channel", "ts", "link", "deleted": bool, "error": str | None}: a message Slack
    would not delete (cant_delete_message, missing_scope, Slack unreachable, ...) stays listed, with its
    link, for the operator to remove by hand; without Slack every message is listed so, undeleted.
    Never raises for Slack."""
    from bot.privacy import forget_person

    result = forget_person(sdr.store, email, sdr.settings.data_dir, sdr.settings.log_dir)
    messages = result["slack_messages"]
    cfg = slack_config(sdr, settings)
    if cfg is None:
        from integrations.slack.delete import redirect_link

        result["slack_messages"] = [{**m, "link": redirect_link(str(m.get("channel") or ""), str(m.get("ts") or "")),
                                     "deleted": False, "error": "Slack is not configured"} for m in messages]
        return result
    from integrations.slack.delete import delete_messages, unrecorded_handoffs

    client = cfg.client()
    messages = messages + unrecorded_handoffs(client, cfg.channel, result.get("lead_ids") or [], messages)
    result["slack_messages"] = delete_messages(client, messages)
    return result
