"""Slack: the handoff message a rep reads, its buttons, and the /sdr command (slack-bolt).

Handoffs leave through the outbox: `SlackHandoff` is the outbox handler that assigns a rep, posts
the Block Kit message and reports Slack's answer (429 → retry after Retry-After; a revoked token or
unknown channel → dead-lettered with the reason); `SlackMeetingInvite` tells the rep about a booked
meeting. Both post exactly once: the entry's idempotency key rides in the message metadata and, when
an earlier try may have reached Slack, the channel is searched for it before posting again (see
"Posting exactly once" below). The bolt app verifies every request's signature
(bad or older than 5 minutes → 401), acks within Slack's 3 seconds, and updates the lead.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.handoff import assign_rep, claim, mark_booked, not_a_fit, stats_today, story
from bot.outbox import Delivery, PermanentError, RetryLater
from bot.store import Lead, OutboxEntry
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
        if not settings.slack_configured:
            return None
        channel = settings.slack_handoff_channel or (playbook.handoff.channel if playbook else None) or "#sales"
        return cls(token=settings.secret("slack_bot_token"), signing_secret=settings.secret("slack_signing_secret"),
                   api_url=settings.slack_api_url, channel=channel,
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
        transcript += f" · {esc(f['email'])}" + ("" if st.get("email_verified") else " (unverified: typed by the visitor)")
    if st.get("email_matches_lead"):
        transcript += f" · the address is also on lead `{esc(st['email_matches_lead'])}` — check before you write"
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


def slack_error(e: SlackApiError) -> tuple[int, str]:
    """(HTTP status, Slack's `error` code) of a failed Web API call (Slack answers most errors 200)."""
    data = getattr(e.response, "data", None)
    return getattr(e.response, "status_code", 200), data.get("error") if isinstance(data, dict) else str(e)


def post(client: WebClient, **kwargs: Any) -> Any:
    """chat.postMessage, with Slack's answer translated for the outbox: 429 → retry after Retry-After,
    a configuration error → dead letter with the reason, anything else (5xx, network) → retry."""
    try:
        return client.chat_postMessage(unfurl_links=False, unfurl_media=False, **kwargs)
    except SlackApiError as e:
        status, error = slack_error(e)
        if status == 429 or error == "ratelimited":
            raise RetryLater("Slack rate limited us", retry_after_s(e.response.headers.get("Retry-After")) or 1.0,
                             not_done=True) from None
        if error in PERMANENT:
            raise PermanentError(f"Slack said {error}: check SLACK_BOT_TOKEN and the channel ({kwargs.get('channel')})") from None
        raise RetryLater(f"Slack error {status} {error}") from None
    except Exception as e:  # noqa: BLE001 - network: Slack is down or unreachable
        raise RetryLater(f"Slack unreachable: {type(e).__name__}") from None


# ---------------------------------------------------------------------------------------------
# Posting exactly once: write-ahead metadata and the "already posted?" look-up
#
# Every message an outbox entry posts carries its idempotency key in the message metadata
# (event_type + event_payload.key). When an earlier try may have reached Slack (a crash, timeout or
# reset before our bookkeeping: Delivery.maybe_done), the channel is searched for that key before
# posting again: conversations.history, newest first, page by page (cursor), back to `oldest` = the
# entry's creation minus LOOKUP_MARGIN_S. The margin is generous because `ts` is Slack's clock and
# created_at ours. After LOOKUP_MAX_PAGES pages without reaching `oldest` the answer is "unknown":
# we raise RetryLater rather than post blind (exactly once wins over speed; the entry is tried again
# with backoff and, if the channel is that busy for good, dead-lettered with the reason, visible in
# `sdr outbox`). A channel this busy between an entry's creation and its retry (4,000 messages) is
# far beyond a handoff channel's traffic, so in practice the look-up always answers and the entry
# is delivered.

LOOKUP_MARGIN_S = 3600.0
LOOKUP_PAGE = 200
LOOKUP_MAX_PAGES = 20
_CONVERSATION_ID = re.compile(r"[CDG][A-Z0-9]{2,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def _read(method: Callable[..., Any], **kwargs: Any) -> Any:
    """A read-only Web API call made for the look-up. 429 → RetryLater after Retry-After, 5xx or
    network → RetryLater (this try posted nothing: not_done), any other Slack error raised."""
    try:
        return method(**kwargs)
    except SlackApiError as e:
        status, error = slack_error(e)
        if status == 429 or error == "ratelimited":
            raise RetryLater("Slack rate limited the look-up", retry_after_s(e.response.headers.get("Retry-After")) or 1.0,
                             not_done=True) from None
        if status >= 500:
            raise RetryLater(f"Slack error {status} {error} during the look-up", not_done=True) from None
        raise
    except Exception as e:  # noqa: BLE001 - network: we cannot know, so we do not post
        raise RetryLater(f"Slack unreachable: {type(e).__name__}", not_done=True) from None


def is_ours(message: dict[str, Any], event_type: str, key: str) -> bool:
    """The message carries exactly this event type and idempotency key in its metadata."""
    meta = message.get("metadata") or {}
    payload = meta.get("event_payload") if isinstance(meta, dict) else None
    return meta.get("event_type") == event_type and isinstance(payload, dict) and payload.get("key") == key


def find_posted(client: WebClient, channel_id: str, event_type: str, key: str,
                oldest: float | None) -> dict[str, Any] | None:
    """The message in `channel_id` (a conversation ID) whose metadata carries `key`, searched newest
    first across pages back to `oldest` (epoch seconds, Slack's clock); None when it is not there.
    Not reaching `oldest` within LOOKUP_MAX_PAGES → RetryLater: unknown, so nothing is posted."""
    args: dict[str, Any] = {"channel": channel_id, "limit": LOOKUP_PAGE, "include_all_metadata": True}
    if oldest is not None:
        args["oldest"] = f"{max(oldest, 0.0):.6f}"
    for _ in range(LOOKUP_MAX_PAGES):
        resp = _read(client.conversations_history, **args)
        for m in resp.get("messages") or []:
            if is_ours(m, event_type, key):
                return {"channel": channel_id, "ts": m.get("ts")}
        cursor = (resp.get("response_metadata") or {}).get("next_cursor")
        if not resp.get("has_more"):
            return None
        if not cursor:
            break
        args["cursor"] = cursor
    raise RetryLater(f"could not tell whether {key} is already in Slack: more than {LOOKUP_MAX_PAGES} pages of "
                     f"{LOOKUP_PAGE} messages since the entry was created; not posting blind")


class _PostOnce:
    """An outbox handler that posts one message per entry, exactly once (see above)."""

    event_type = ""

    def __init__(self, sdr: Any, cfg: SlackConfig):
        self.sdr, self.cfg = sdr, cfg
        self.client = cfg.client()
        self._ids: dict[str, str] = {}     # channel name or user ID → conversation ID

    def _oldest(self, d: Delivery) -> float | None:
        """Where the look-up may stop: the entry's creation, minus the clock margin (epoch seconds)."""
        with self.sdr.store.session() as s:
            row = s.get(OutboxEntry, d.id)
            created = row.created_at if row is not None else None
        if created is None:
            return None
        created = created if created.tzinfo else created.replace(tzinfo=timezone.utc)
        return created.timestamp() - LOOKUP_MARGIN_S

    def _conversation_id(self, channel: str) -> str | None:
        """conversations.history takes a conversation ID only: a user ID becomes its DM
        (conversations.open, im:write), a #name is looked up (conversations.list, channels:read)."""
        ch = channel.strip()
        if _CONVERSATION_ID.fullmatch(ch):
            return ch
        if ch not in self._ids:
            try:
                if _USER_ID.fullmatch(ch):
                    self._ids[ch] = _read(self.client.conversations_open, users=ch)["channel"]["id"]
                else:
                    self._ids[ch] = self._channel_by_name(ch.lstrip("#"))
            except SlackApiError as e:
                log.warning("Slack: cannot resolve %s to a conversation ID (%s); using it as given", ch,
                            slack_error(e)[1])
                return ch
        return self._ids[ch]

    def _channel_by_name(self, name: str) -> str:
        args: dict[str, Any] = {"types": "public_channel,private_channel", "exclude_archived": True, "limit": 1000}
        for _ in range(LOOKUP_MAX_PAGES):
            resp = _read(self.client.conversations_list, **args)
            for c in resp.get("channels") or []:
                if c.get("name") == name:
                    return c["id"]
            args["cursor"] = (resp.get("response_metadata") or {}).get("next_cursor")
            if not args["cursor"]:
                break
        log.warning("Slack: no channel named #%s found; looking it up by name", name)
        return name

    def already_posted(self, d: Delivery, channel: str) -> dict[str, Any] | None:
        """The message an earlier try of this entry posted, or None. Slack refusing the look-up (a
        missing *:history scope: the README asks for it) → None, with a warning."""
        try:
            channel_id = self._conversation_id(channel)
            return find_posted(self.client, channel_id, self.event_type, d.idempotency_key, self._oldest(d))
        except SlackApiError as e:
            log.warning("Slack refused the look-up for %s (%s): posting without it", d.idempotency_key,
                        slack_error(e)[1])
            return None

    def post_once(self, d: Delivery, channel: str, **message: Any) -> dict[str, Any]:
        """Post `message` with the entry's idempotency key in its metadata; when an earlier try may
        have posted it (d.maybe_done), look first and answer with that message instead."""
        if d.maybe_done:
            found = self.already_posted(d, channel)
            if found:
                return {**found, "deduplicated": True}
        resp = post(self.client, channel=channel, metadata={
            "event_type": self.event_type, "event_payload": {"key": d.idempotency_key, "lead_id": d.lead_id}}, **message)
        if resp.get("channel") and channel != resp.get("channel"):
            self._ids.setdefault(channel, resp["channel"])
        return {"channel": resp.get("channel"), "ts": resp.get("ts")}


class SlackHandoff(_PostOnce):
    event_type = "sdr_handoff"

    def __call__(self, d: Delivery) -> dict[str, Any]:
        with self.sdr.store.session() as s:
            lead = s.get(Lead, d.lead_id)
            if lead is None:
                raise PermanentError(f"lead {d.lead_id} no longer exists")
            rep = assign_rep(s, self.sdr.playbook, lead, self.sdr.clock())
            st = story(s, self.sdr.playbook, lead, d.payload.get("reason", "sql"))
        result = self.post_once(d, self.cfg.channel, text=_fallback_text(st, rep),
                                blocks=handoff_blocks(st, rep, self.cfg.public_url))
        return {**result, "rep": rep.id if rep else None}


class SlackMeetingInvite(_PostOnce):
    """Tell the rep about a meeting the SDR booked for them (a DM, or the handoff channel), with the
    invitation link. The visitor got the same link in the chat. Exactly once, like the handoff."""

    event_type = "sdr_meeting_invite"

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
        return self.post_once(d, channel, text=text)


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

    def signed(body: bytes) -> bool:
        ts = request.headers.get("X-Slack-Request-Timestamp", "")
        if not (ts.isascii() and ts.isdigit() and len(ts) <= 12):   # "²".isdigit() is True; int("9"*400) overflows
            return False
        try:
            body.decode("utf-8")   # the verifier decodes it, and compares only ASCII signatures
            return request.headers.get("X-Slack-Signature", "").isascii() and \
                verifier.is_valid_request(body, dict(request.headers))
        except (UnicodeDecodeError, ValueError, TypeError, OverflowError):
            return False

    def slack_events() -> Any:
        body = request.get_data(cache=True)
        if not signed(body):
            return refuse(401, "bad_signature", "missing, stale or wrong Slack signature (X-Slack-Signature, "
                                                "X-Slack-Request-Timestamp)")
        try:
            resp = handler.handle(request)
        except Exception:  # noqa: BLE001 - a signed but unreadable body
            log.warning("a signed Slack request could not be read", exc_info=True)
            return refuse(400, "bad_slack_request", "the Slack request body could not be read")
        if resp.status_code >= 500:   # bolt answers its own failures (a middleware that could not read the body,
            log.warning("bolt answered %s to a signed Slack request", resp.status_code)   # Slack unreachable) as 500
            return refuse(503 if resp.get_data() else 400, "bad_slack_request" if not resp.get_data() else
                          "slack_unavailable", "the Slack request could not be handled" +
                          ("" if not resp.get_data() else "; Slack's API did not answer, try again"))
        return resp

    for path in ("/slack/events", "/slack/commands", "/slack/actions"):
        flask_app.add_url_rule(path, endpoint=f"slack_{path.rsplit('/', 1)[1]}", view_func=slack_events, methods=["POST"])
    return bolt
