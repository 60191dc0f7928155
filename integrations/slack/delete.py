"""Remove the Slack messages posted about a forgotten person (GDPR art. 17 / CCPA right to delete).

`delete_messages` calls chat.delete for each message the SDR posted (the handoff, each meeting
invitation — every outbox delivery that kept a ts) and reports per message {"channel", "ts", "link",
"deleted", "error"}. The link comes from chat.getPermalink, asked first because a deleted message has
none. Slack's answers:

- ok, or `message_not_found` (already gone) → deleted.
- `cant_delete_message` (a bot token deletes only the bot's own messages), `missing_scope` (no
  chat:write), `channel_not_found`, `compliance_exports_prevent_deletion`, ... → not deleted; the
  message stays in the list with the error so the operator removes it by hand.
- 429 → one more try after Retry-After (at most RATE_WAIT_S); a network failure or timeout → not
  deleted, and the rest are not tried (each would wait for the same timeout) but still listed.

Nothing here raises: the person is already forgotten by the time Slack is asked.

`unrecorded_handoffs` finds handoffs posted but never recorded (a crash or timeout between Slack's
answer and the outbox's bookkeeping): the channel's recent history, by the `sdr_handoff` metadata
that names the lead.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from integrations.http import retry_after_s

log = logging.getLogger("sdr.slack")
ALREADY_GONE = {"message_not_found"}
RATE_WAIT_S = 5.0
HISTORY_LIMIT = 200


def _error(e: SlackApiError) -> tuple[str, float | None]:
    """Slack's error code (with the scope it needs, for missing_scope) and, on 429, the wait asked."""
    resp = e.response
    data = getattr(resp, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    status = getattr(resp, "status_code", 200)
    if status == 429 or error == "ratelimited":
        wait = retry_after_s((resp.headers or {}).get("Retry-After"))
        return "ratelimited", min(1.0 if wait is None else wait, RATE_WAIT_S)
    if error == "missing_scope" and isinstance(data, dict) and data.get("needed"):
        return f"missing_scope (needs {data['needed']})", None
    return error or f"HTTP {status}", None


def redirect_link(channel: str, ts: str) -> str:
    """A link that opens the message's channel in Slack, for when Slack cannot give the permalink."""
    return f"https://slack.com/app_redirect?channel={quote(channel)}&message_ts={quote(ts)}"


def permalink(client: WebClient, channel: str, ts: str) -> str:
    """The message's permalink; when Slack cannot say, a link that opens the channel in Slack."""
    try:
        link = client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
    except Exception as e:  # noqa: BLE001 - a link is a convenience: fall back, never fail
        log.info("no permalink for Slack message %s/%s: %s", channel, ts, type(e).__name__)
        link = None
    return link if isinstance(link, str) and link else redirect_link(channel, ts)


def delete_one(client: WebClient, channel: str, ts: str) -> tuple[bool, str | None, bool]:
    """chat.delete → (deleted, error, reachable)."""
    for attempt in range(2):
        try:
            client.chat_delete(channel=channel, ts=ts)
            return True, None, True
        except SlackApiError as e:
            error, wait = _error(e)
            if error in ALREADY_GONE:
                return True, None, True
            if wait is None or attempt:
                return False, error, True
            time.sleep(wait)
        except Exception as e:  # noqa: BLE001 - network: timeout, refused, reset
            return False, f"Slack unreachable: {type(e).__name__}", False
    return False, "ratelimited", True


def delete_messages(client: WebClient, messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Delete each {"channel", "ts"} the SDR posted; every one comes back with link, deleted, error."""
    out: list[dict[str, Any]] = []
    down: str | None = None
    for m in messages:
        channel, ts = str(m.get("channel") or ""), str(m.get("ts") or "")
        if down:
            out.append({**m, "channel": channel, "ts": ts, "link": redirect_link(channel, ts), "deleted": False,
                        "error": down})
            continue
        link = permalink(client, channel, ts)
        deleted, error, reachable = delete_one(client, channel, ts)
        if not reachable:
            down = f"not tried: {error}"
        if error:
            log.warning("could not delete Slack message %s/%s: %s — delete it in Slack", channel, ts, error)
        out.append({**m, "channel": channel, "ts": ts, "link": link, "deleted": deleted, "error": error})
    return out


def unrecorded_handoffs(client: WebClient, channel: str, lead_ids: Iterable[str],
                        known: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Handoffs about these leads in the channel's recent history that the outbox never recorded.
    Slack refusing (no channels:history scope) or unreachable → none found."""
    ids, seen = set(lead_ids), {str(m.get("ts")) for m in known}   # by ts: the channel may be a name or an ID
    if not ids:
        return []
    try:
        resp = client.conversations_history(channel=channel, limit=HISTORY_LIMIT, include_all_metadata=True)
    except Exception:  # noqa: BLE001 - best effort: the recorded messages are handled anyway
        return []
    found = []
    for m in resp.get("messages") or []:
        meta = m.get("metadata") or {}
        ts = str(m.get("ts") or "")
        if (meta.get("event_type") == "sdr_handoff" and (meta.get("event_payload") or {}).get("lead_id") in ids
                and ts and ts not in seen):
            found.append({"channel": resp.get("channel") or channel, "ts": ts})
            seen.add(ts)
    return found
