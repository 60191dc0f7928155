"""Slack: the handoff message a rep reads, its buttons, and the /sdr command (slack-bolt).

Handoffs leave through the outbox: `SlackHandoff` is the outbox handler that assigns a rep, posts
the Block Kit message and reports Slack's answer (429 → retry after Retry-After; a revoked token or
unknown channel → dead-lettered with the reason). The bolt app verifies every request's signature
(bad or older than 5 minutes → 401), acks within Slack's 3 seconds, and updates the lead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.handoff import assign_rep, claim, mark_booked, not_a_fit, stats_today, story
from bot.outbox import Delivery, PermanentError, RetryLater
from bot.store import Lead
from integrations.http import retry_after_s

log = logging.getLogger("sdr.slack")
PERMANENT = {"channel_not_found", "not_in_channel", "invalid_auth", "account_inactive", "token_revoked",
             "is_archived", "missing_scope", "not_authed", "invalid_blocks", "msg_too_long"}


@dataclass
class SlackConfig:
    token: str
    signing_secret: str
    api_url: str
    channel: str
    public_url: str | None = None
    timeout_s: float = 10.0          # how long a Web API call may take before its outcome is unknown

    @classmethod
    def from_settings(cls, settings: Any, playbook: Any = None) -> "SlackConfig | None":
        """The Slack app from SLACK_* settings; None when SLACK_BOT_TOKEN or SLACK_SIGNING_SECRET is unset."""
        token, secret = settings.secret("slack_bot_token"), settings.secret("slack_signing_secret")
        if not token or not secret:
            return None
        channel = settings.slack_handoff_channel or (playbook.handoff.channel if playbook else None) or "#sales"
        return cls(token=token, signing_secret=secret, api_url=settings.slack_api_url, channel=channel,
                   public_url=settings.public_url)

    @classmethod
    def from_env(cls, playbook: Any = None) -> "SlackConfig | None":
        """`from_settings` with the environment as it is now."""
        from bot.settings import Settings

        return cls.from_settings(Settings.from_env(), playbook)

    def client(self) -> WebClient:
        return WebClient(token=self.token, base_url=self.api_url, timeout=self.timeout_s, retry_handlers=[])


# ---------------------------------------------------------------------------------------------
# The message


def esc(text: Any) -> str:
    """Visitor text made inert in Slack mrkdwn: `&`, `<`, `>` escaped as Slack's formatting guide
    says (https://api.slack.com/reference/surfaces/formatting#escaping), so `<!channel>`,
    `<@U123>` and `<https://x|y>` are shown, never acted on."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _who(f: dict[str, Any]) -> str:
    """Who the lead is, as plain text (no markup is read in it)."""
    name = f.get("name") or f.get("email") or "A visitor"
    parts = [p for p in (f.get("role"), f.get("company")) if p]
    line = str(name) + (f" — {', '.join(str(p) for p in parts)}" if parts else "")
    facts = []
    if f.get("company_size"):
        facts.append(f"{f['company_size']:,} people" if isinstance(f["company_size"], int) else str(f["company_size"]))
    if f.get("industry"):
        facts.append(str(f["industry"]).replace("_", " "))
    if f.get("timeline"):
        facts.append("timeline: " + str(f["timeline"]).replace("_", " "))
    if f.get("budget") not in (None, ""):
        b = f["budget"]
        facts.append(f"budget: ${b:,.0f}" if isinstance(b, (int, float)) else f"budget: {b}")
    return (line + ("\n" + " · ".join(facts) if facts else ""))[:2900]


def _plain(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "plain_text", "text": text[:2900] or " ", "emoji": False}}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}


def _story_blocks(st: dict[str, Any]) -> list[dict[str, Any]]:
    """What they asked, their need, the content they got: visitor words as plain text, content
    titles and links escaped."""
    f, blocks = st["fields"], []
    if st["asked"]:
        blocks += [_mrkdwn("*They asked*"), _plain("\n".join(f"“{q[:200]}”" for q in st["asked"]))]
    if f.get("need"):
        blocks += [_mrkdwn("*Need*"), _plain(str(f["need"])[:300])]
    if st["content"]:
        blocks.append(_mrkdwn("*Content they received*\n" + "\n".join(
            f"• <{esc(c['url'])}|{esc(c['title']).replace('|', '¦')}>" for c in st["content"][:5])))
    return blocks


def handoff_blocks(st: dict[str, Any], rep: Any, public_url: str | None, status: str | None = None) -> list[dict[str, Any]]:
    """The Block Kit handoff. Every string that came from a visitor is plain text or escaped."""
    f = st["fields"]
    mention = f"<@{rep.slack_user_id}>" if rep is not None and rep.slack_user_id else esc(rep.name if rep else "team")
    why = "\n".join(f"• {r['points']:+g} {esc(r['reason'])}" for r in st["top_reasons"]) or "• (no score reasons)"
    reason = {"sql": "crossed the SQL threshold", "asked_for_human": "asked to talk to a person",
              "meeting_requested": "asked for a meeting"}.get(st["reason"], st["reason"])
    link = f"{public_url.rstrip('/')}/leads/{st['lead_id']}" if public_url else None
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"New lead: {reason}"[:150]}},
        _mrkdwn(f"{mention}, this lead is yours:"), _plain(_who(f)),
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Score* {st['score']:g} (SQL at {st['thresholds']['sql']:g})"},
            {"type": "mrkdwn", "text": f"*Fit* {st['fit_score']:g} · *Engagement* {st['engagement_score']:g}"}]},
        _mrkdwn(f"*Why they qualified*\n{why}"),
        *_story_blocks(st),
        _mrkdwn(f"*Next step* {esc(st['next_step'])}"),
    ]
    transcript = f"<{link}|Full transcript>" if link else f"Transcript: `sdr lead {st['lead_id']}`"
    if f.get("email"):
        transcript += f" · {esc(f['email'])}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": transcript}]})
    if status:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": status}]})
    blocks.append({"type": "actions", "block_id": "sdr_lead_actions", "elements": [
        {"type": "button", "action_id": "sdr_claim", "text": {"type": "plain_text", "text": "Claim"}, "style": "primary", "value": st["lead_id"]},
        {"type": "button", "action_id": "sdr_book", "text": {"type": "plain_text", "text": "Book meeting"}, "value": st["lead_id"]},
        {"type": "button", "action_id": "sdr_not_fit", "text": {"type": "plain_text", "text": "Not a fit"}, "style": "danger", "value": st["lead_id"]},
    ]})
    return blocks


def _fallback_text(st: dict[str, Any], rep: Any) -> str:
    f = st["fields"]
    who = esc(f.get("name") or f.get("email") or "a visitor")
    tag = f"<@{rep.slack_user_id}> " if rep is not None and rep.slack_user_id else ""
    return f"{tag}New lead: {who} (score {st['score']:g})"


# ---------------------------------------------------------------------------------------------
# Delivering a handoff (the outbox handler)


def post(client: WebClient, **kwargs: Any) -> Any:
    """chat.postMessage, with Slack's answer translated for the outbox: 429 → retry after Retry-After,
    a configuration error → dead letter with the reason, anything else (5xx, network) → retry."""
    try:
        return client.chat_postMessage(unfurl_links=False, unfurl_media=False, **kwargs)
    except SlackApiError as e:
        status = getattr(e.response, "status_code", 200)
        data = getattr(e.response, "data", None)
        error = data.get("error") if isinstance(data, dict) else str(e)
        if status == 429 or error == "ratelimited":
            raise RetryLater("Slack rate limited us", retry_after_s(e.response.headers.get("Retry-After")) or 1.0,
                             not_done=True) from None
        if error in PERMANENT:
            raise PermanentError(f"Slack said {error}: check SLACK_BOT_TOKEN and the channel ({kwargs.get('channel')})") from None
        raise RetryLater(f"Slack error {status} {error}") from None
    except Exception as e:  # noqa: BLE001 - network: Slack is down or unreachable
        raise RetryLater(f"Slack unreachable: {type(e).__name__}") from None


class SlackHandoff:
    def __init__(self, sdr: Any, cfg: SlackConfig):
        self.sdr, self.cfg = sdr, cfg
        self.client = cfg.client()

    def _already_posted(self, key: str) -> dict[str, Any] | None:
        """After a crash, timeout or reset between Slack's answer and our bookkeeping: find the message
        we posted (its metadata carries the idempotency key). Slack unreachable → RetryLater: never
        post blind when it may already be there."""
        try:
            resp = self.client.conversations_history(channel=self.cfg.channel, limit=100, include_all_metadata=True)
        except SlackApiError:
            return None   # e.g. no channels:history scope: the README asks for it
        except Exception as e:  # noqa: BLE001 - network: we cannot know, so we do not post
            raise RetryLater(f"Slack unreachable: {type(e).__name__}") from None
        for m in resp.get("messages", []):
            meta = m.get("metadata") or {}
            if meta.get("event_type") == "sdr_handoff" and (meta.get("event_payload") or {}).get("key") == key:
                return {"channel": resp.get("channel") or self.cfg.channel, "ts": m.get("ts")}
        return None

    def __call__(self, d: Delivery) -> dict[str, Any]:
        with self.sdr.store.session() as s:
            lead = s.get(Lead, d.lead_id)
            if lead is None:
                raise PermanentError(f"lead {d.lead_id} no longer exists")
            rep = assign_rep(s, self.sdr.playbook, lead, self.sdr.clock())
            st = story(s, self.sdr.playbook, lead, d.payload.get("reason", "sql"))
        if d.maybe_done:   # a crash, timeout or reset may have posted it: look before posting again
            found = self._already_posted(d.idempotency_key)
            if found:
                return {**found, "rep": rep.id if rep else None, "deduplicated": True}
        resp = post(self.client, channel=self.cfg.channel, text=_fallback_text(st, rep),
                    blocks=handoff_blocks(st, rep, self.cfg.public_url),
                    metadata={"event_type": "sdr_handoff", "event_payload": {"key": d.idempotency_key, "lead_id": d.lead_id}})
        return {"channel": resp.get("channel"), "ts": resp.get("ts"), "rep": rep.id if rep else None}


class SlackMeetingInvite:
    """Tell the rep about a meeting the SDR booked for them (a DM, or the handoff channel), with the
    invitation link. The visitor got the same link in the chat."""

    def __init__(self, sdr: Any, cfg: SlackConfig):
        self.sdr, self.cfg = sdr, cfg
        self.client = cfg.client()

    def __call__(self, d: Delivery) -> dict[str, Any]:
        from bot.store import Meeting
        p = d.payload
        with self.sdr.store.session() as s:
            m = s.get(Meeting, p.get("meeting_id"))
            lead = s.get(Lead, d.lead_id)
            if m is None or lead is None:
                raise PermanentError("the meeting or lead no longer exists")
            start, tz = m.start, m.timezone
            who = esc((lead.fields or {}).get("name") or (lead.fields or {}).get("email") or "a lead")
        rep = self.sdr.playbook.rep(p.get("rep"))
        base = self.cfg.public_url or self.sdr.settings.public_url or ""
        link = f"{base}/meetings/{p.get('meeting_id')}.ics?lead={d.lead_id}"
        mention = f"<@{rep.slack_user_id}> " if rep and rep.slack_user_id else ""
        text = (f"{mention}:calendar: Meeting {'requested' if p.get('status') == 'pending' else 'booked'} with {who}: "
                f"{start:%a %d %b %H:%M} UTC (their time zone: {tz}). Invitation: {link}")
        channel = rep.slack_user_id if rep and rep.slack_user_id else self.cfg.channel
        resp = post(self.client, channel=channel, text=text)
        return {"channel": resp.get("channel"), "ts": resp.get("ts")}


# ---------------------------------------------------------------------------------------------
# The bolt app: buttons and /sdr


def make_bolt_app(sdr: Any, cfg: SlackConfig) -> Any:
    """The bolt app: the handoff's buttons (Claim, Book meeting, Not a fit) and /sdr."""
    from slack_bolt import App

    app = App(token=cfg.token, signing_secret=cfg.signing_secret, client=cfg.client(),
              token_verification_enabled=False, raise_error_for_unhandled_request=False)

    def _restatus(body: dict[str, Any], client: Any, status: str) -> None:
        lead_id = body["actions"][0]["value"]
        with sdr.store.session() as s:
            lead = s.get(Lead, lead_id)
            if lead is None:
                return
            rep = sdr.playbook.rep(lead.owner)
            st = story(s, sdr.playbook, lead)
        channel = (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id")
        ts = (body.get("message") or {}).get("ts") or body.get("container", {}).get("message_ts")
        client.chat_update(channel=channel, ts=ts, text=status, blocks=handoff_blocks(st, rep, cfg.public_url, status=status))

    def _already(body: dict[str, Any], client: Any, user: str, text: str) -> None:
        """A second click of a one-time button: only the clicker is told; the lead is unchanged."""
        client.chat_postEphemeral(channel=(body.get("channel") or {}).get("id"), user=user, text=text)

    @app.action("sdr_claim")
    def on_claim(ack: Any, body: dict[str, Any], client: Any) -> None:
        ack()
        user = body["user"]["id"]
        lead_id = body["actions"][0]["value"]
        ok, holder = claim(sdr.store, lead_id, user, sdr.clock())
        if not ok:
            channel = (body.get("channel") or {}).get("id")
            client.chat_postEphemeral(channel=channel, user=user, text=f"<@{holder}> already claimed this lead.")
            return
        _restatus(body, client, f":white_check_mark: Claimed by <@{user}> at {sdr.clock():%H:%M} UTC")

    @app.action("sdr_book")
    def on_book(ack: Any, body: dict[str, Any], client: Any) -> None:
        ack()
        user = body["user"]["id"]
        lead_id = body["actions"][0]["value"]
        if not mark_booked(sdr.store, sdr.playbook, lead_id, user, sdr.clock()):
            _already(body, client, user, "This lead's meeting is already booked; nothing changed.")
            return
        _restatus(body, client, f":calendar: <@{user}> is booking the meeting")

    @app.action("sdr_not_fit")
    def on_not_fit(ack: Any, body: dict[str, Any], client: Any) -> None:
        ack()
        user = body["user"]["id"]
        if not_a_fit(sdr.store, body["actions"][0]["value"], f"<@{user}>", sdr.clock()) is None:
            _already(body, client, user, "This lead is already marked not a fit; nothing changed.")
            return
        _restatus(body, client, f":no_entry_sign: <@{user}> marked this lead not a fit")

    _register_sdr_command(app, sdr, cfg)
    return app


def _register_sdr_command(app: Any, sdr: Any, cfg: SlackConfig) -> None:
    """/sdr lead <email> shows a lead's card; /sdr stats today's numbers."""

    @app.command("/sdr")
    def on_command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        ack()
        words = (command.get("text") or "").split()
        if words[:1] == ["stats"]:
            st = stats_today(sdr.store, sdr.clock())
            respond(f"Today: {st['leads']} new leads, {st['handoffs']} handed off, {st['meetings']} meetings booked.")
            return
        if len(words) == 2 and words[0] == "lead":
            email = words[1].strip("<>").split("|")[-1].replace("mailto:", "").lower()
            with sdr.store.session() as s:
                lead = s.scalars(select(Lead).where(Lead.email == email)).first()
                if lead is None:
                    respond(f"No lead with email {esc(email)}.")
                    return
                rep = sdr.playbook.rep(lead.owner)
                st = story(s, sdr.playbook, lead)
            respond(blocks=handoff_blocks(st, rep, cfg.public_url, status=f"Stage: {st['stage']}"), text=f"Lead {email}")
            return
        respond("Usage: `/sdr lead <email>` shows a lead's card · `/sdr stats` today's leads, handoffs and meetings.")


def mount(flask_app: Any, sdr: Any, cfg: SlackConfig) -> Any:
    """Mount the bolt app at /slack/events (and /slack/commands, /slack/actions). The signature is
    checked first, as middleware (Slack's "Verifying requests" guide): a missing, non-numeric,
    stale (> 5 min) or wrong signature is a 401 before any byte of the body is parsed; a signed body
    bolt cannot read is a 400. Never a 500."""
    from flask import jsonify, request
    from slack_bolt.adapter.flask import SlackRequestHandler
    from slack_sdk.signature import SignatureVerifier

    bolt = make_bolt_app(sdr, cfg)
    handler = SlackRequestHandler(bolt)
    verifier = SignatureVerifier(cfg.signing_secret)

    def refuse(status: int, code: str, message: str) -> Any:
        resp = jsonify({"error": {"code": code, "message": message}})
        resp.status_code = status
        return resp

    def slack_events() -> Any:
        body = request.get_data(cache=True)
        ts = request.headers.get("X-Slack-Request-Timestamp", "")
        if not ts.isdigit() or not verifier.is_valid_request(body, dict(request.headers)):
            return refuse(401, "bad_signature", "missing, stale or wrong Slack signature (X-Slack-Signature, "
                                                "X-Slack-Request-Timestamp)")
        try:
            return handler.handle(request)
        except Exception:  # noqa: BLE001 - a signed but unreadable body
            log.warning("a signed Slack request could not be read", exc_info=True)
            return refuse(400, "bad_slack_request", "the Slack request body could not be read")

    for path in ("/slack/events", "/slack/commands", "/slack/actions"):
        flask_app.add_url_rule(path, endpoint=f"slack_{path.rsplit('/', 1)[1]}", view_func=slack_events, methods=["POST"])
    return bolt
