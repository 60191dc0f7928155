"""Leads and conversations: find or open the conversation of a message, read its history, and
show a lead (the view every channel returns, the full detail for the team)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .inbound import Inbound, NotFound
from .playbook import Playbook
from .store import ContentSent, Conversation, EmailStatus, Lead, Message, OutboxEntry, ScoreEvent, Store, new_id


def open_conversation(s: Session, session_id: str, inbound: Inbound, now: datetime,
                      lead_id: str | None = None) -> tuple[Conversation, Lead, bool]:
    """The conversation for `session_id` and its lead, created when new (a new lead gets `lead_id`
    when given, else a new id). A new session joins an existing lead only for a verified email
    (`inbound.verified`) that lead holds verified too: an email anyone can type never opens another
    person's lead. Returns (conversation, lead, first_turn)."""
    conv = s.get(Conversation, session_id)
    if conv is not None:
        lead = s.get(Lead, conv.lead_id)
        assert lead is not None
        return conv, lead, False
    lead = known_lead(s, inbound)
    if lead is None:
        lead = Lead(id=lead_id or new_id("lead"), fields={}, field_sources={}, fit_rules={}, created_at=now,
                    updated_at=now)
        s.add(lead)
        s.flush()
    conv = Conversation(id=session_id, lead_id=lead.id, channel=inbound.channel, state={}, created_at=now, updated_at=now)
    s.add(conv)
    s.flush()
    return conv, lead, True


def known_lead(s: Session, inbound: Inbound) -> Lead | None:
    """The lead a new session joins: the one holding the inbound's verified email, verified too."""
    email = str((inbound.visitor or {}).get("email") or "").strip().lower() or None
    if not (email and inbound.verified):
        return None
    lead = s.scalars(select(Lead).where(Lead.email == email)).first()
    return lead if lead is not None and email_verified(lead) else None


def email_verified(lead: Lead) -> bool:
    """True when the lead's email came from a channel that vouches for it (see Inbound.verified)."""
    return bool((lead.field_sources or {}).get("email", {}).get("verified"))


def session_exists(s: Session, session_id: str) -> bool:
    """True when `session_id` names a conversation this SDR opened."""
    return s.get(Conversation, session_id) is not None


ANSWERED_KEPT = 20   # message ids of a conversation whose answers a late retry can still get


def retry_of(s: Session, state: dict[str, Any], message_id: str | None, lead: Lead | None,
             playbook: Any) -> dict[str, Any] | None:
    """The stored answer to a message id seen before (send it again), or None: a new message, or
    one whose turn never committed (a crash: nothing of it was kept, so it runs afresh). The last
    message's answer is kept whole; an earlier one of the last ANSWERED_KEPT (a late retry, after
    the visitor sent more) is rebuilt from its stored agent message, with the lead as it is now."""
    if not message_id:
        return None
    if state.get("last_message_id") == message_id and state.get("last_result"):
        return dict(state["last_result"])
    agent_id = (state.get("answered") or {}).get(message_id)
    msg = s.get(Message, agent_id) if isinstance(agent_id, int) else None
    if msg is None or lead is None or msg.role != "agent":
        return None
    meta = msg.meta or {}
    return {"reply": msg.text, "lead": lead_view(lead, playbook), "sources": meta.get("sources") or [],
            "actions": meta.get("actions") or [], "score_changes": meta.get("score_changes") or []}


def remember_answer(state: dict[str, Any], message_id: str, agent_message_id: int) -> None:
    """Note in the conversation's state which agent message answered `message_id` (the last
    ANSWERED_KEPT), so that a late retry of it is answered, not run again."""
    answered = dict(state.get("answered") or {})
    answered.pop(message_id, None)
    answered[message_id] = agent_message_id
    state["answered"] = dict(list(answered.items())[-ANSWERED_KEPT:])


def add_visitor_message(s: Session, conv: Conversation, lead: Lead, inbound: Inbound, text: str, now: datetime) -> None:
    s.add(Message(conversation_id=conv.id, lead_id=lead.id, role="visitor", text=text, at=now,
                  meta={"channel": inbound.channel, "page_url": (inbound.visitor or {}).get("page_url")}))


def add_agent_message(s: Session, conv_id: str, lead_id: str, text: str, now: datetime, reply: Any,
                      result: dict[str, Any], intents: Any, usage: dict[str, Any], total_ms: float) -> Message:
    """The reply as stored, with what produced it (prompt, model, sources, actions, score changes,
    latency in ms, model calls and tokens, fallbacks) for the team's transcript. Returns the row
    (its id once flushed)."""
    msg = Message(conversation_id=conv_id, lead_id=lead_id, role="agent", text=text, at=now,
                  meta={"prompt": reply.prompt, "prompt_version": reply.prompt_version, "model": reply.model,
                        "sources": result["sources"], "actions": result["actions"],
                        "score_changes": result["score_changes"], "intents": sorted(intents),
                        "latency_ms": round(total_ms, 2), "model_calls": usage["model_calls"],
                        "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                        "model_ms": round(usage["model_ms"], 1), "fallbacks": usage["fallbacks"]})
    s.add(msg)
    return msg


def history(s: Session, conversation_id: str, limit: int = 12) -> list[dict[str, str]]:
    """The last `limit` messages, oldest first, as {"role": visitor|agent, "text"}."""
    rows = s.scalars(select(Message).where(Message.conversation_id == conversation_id)
                     .order_by(Message.id.desc()).limit(limit)).all()
    return [{"role": m.role, "text": m.text} for m in reversed(rows)]


def lead_view(lead: Lead, playbook: Playbook) -> dict[str, Any]:
    """The lead as a channel reports it: scores (rounded to 0.1), stage, fields, thresholds."""
    return {
        "id": lead.id, "score": round(lead.score, 1), "fit_score": round(lead.fit_score, 1),
        "engagement_score": round(lead.engagement_score, 1), "stage": lead.stage, "fields": dict(lead.fields or {}),
        "thresholds": {"mql": playbook.thresholds.mql, "sql": playbook.thresholds.sql},
        "owner": lead.owner, "handed_off": lead.handed_off_at is not None,
        "disqualified_reason": lead.disqualified_reason,
    }


_AGENT_META = ("prompt", "prompt_version", "model", "latency_ms", "model_calls", "prompt_tokens", "completion_tokens",
               "model_ms", "fallbacks")


def _iso(dt: datetime) -> str:
    return dt.isoformat() + "Z"


def lead_detail(store: Store, playbook: Playbook, lead_id: str) -> dict[str, Any]:
    """Everything about one lead for the team: the view plus field sources, every score event,
    the transcript (agent messages with model, latency and cost), outbox actions, content sent.
    Raises NotFound."""
    with store.session(readonly=True) as s:
        lead = s.get(Lead, lead_id)
        if lead is None:
            raise NotFound(f"no lead with id {lead_id!r}")
        out = lead_view(lead, playbook)
        out["field_sources"] = dict(lead.field_sources or {})
        out["created_at"] = _iso(lead.created_at)
        out["score_events"] = [
            {"kind": e.kind, "rule": e.rule, "points": round(e.points, 2), "reason": e.reason, "at": _iso(e.at)}
            for e in s.scalars(select(ScoreEvent).where(ScoreEvent.lead_id == lead_id).order_by(ScoreEvent.id))]
        channels = dict(s.execute(select(Conversation.id, Conversation.channel).where(Conversation.lead_id == lead_id)).all())
        out["messages"], last = [], {}
        for m in s.scalars(select(Message).where(Message.lead_id == lead_id).order_by(Message.id)):
            # the channel it came by (a reply by email may continue a form's conversation); a reply, the one it answers
            channel = (m.meta or {}).get("channel") or (last.get(m.conversation_id) if m.role == "agent" else None) \
                or channels.get(m.conversation_id, "web")
            last[m.conversation_id] = channel
            out["messages"].append(
                {"role": m.role, "text": m.text, "at": _iso(m.at), "channel": channel,
                 **({k: m.meta.get(k) for k in _AGENT_META} if m.role == "agent" and m.meta else {}),
                 **({"auto_reply": True} if (m.meta or {}).get("auto_reply") else {})})
        st = s.get(EmailStatus, lead_id)
        out["unsubscribed"] = bool(lead.unsubscribed or (st is not None and st.unsubscribed_at is not None))
        out["bounced"] = st is not None and st.bounced_at is not None
        out["email_consent"] = st.consent if st is not None else None
        out["email_status"] = None if st is None else {
            "unsubscribed_at": _iso(st.unsubscribed_at) if st.unsubscribed_at else None,
            "unsubscribe_source": st.unsubscribe_source, "bounce_reason": st.bounce_reason,
            "bounced_at": _iso(st.bounced_at) if st.bounced_at else None}
        out["actions"] = [
            {"id": o.id, "type": o.kind, "status": o.status, "attempts": o.attempts, "last_error": o.last_error,
             "payload": o.payload, "created_at": _iso(o.created_at)}
            for o in s.scalars(select(OutboxEntry).where(OutboxEntry.lead_id == lead_id).order_by(OutboxEntry.id))]
        from .sequences import enrolments_view
        out["nurture"] = enrolments_view(s, playbook, lead_id)   # sequences: enrolments, next step, why skipped or ended
        out["content_sent"] = [
            {"title": c.title, "url": c.url, "type": c.type, "at": _iso(c.at)}
            for c in s.scalars(select(ContentSent).where(ContentSent.lead_id == lead_id).order_by(ContentSent.id))]
        return out
