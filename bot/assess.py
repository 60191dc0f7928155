"""The turn's decision and its one commit: profile → score → stage → decide (→ handoff, sequence
exits, content sent, meeting request), then the reply stored with all of it.

A turn writes once, and never while a model call is in flight. With the deterministic brain and no
calendar call, the reply takes milliseconds: `assess`, the reply and `record_turn` share one write
transaction (bot/turn.py). Otherwise the decision is needed before the reply is worded (the model
call) or the calendar answers, so the turn *rehearses* it: `assess` runs in a write transaction that
is rolled back — the decision, the score changes and the meeting request are kept in the
`TurnContext`, no row is. The reply is composed outside any transaction. `commit_turn` then runs
`assess` again in the turn's one transaction, reusing the rehearsal's decision and meeting request
(not decided twice: the same retrieval, the same rep the calendar was asked for), and stores the
reply, the meeting and the answer to a retry with it (`record_turn`).

Crashes: before the commit nothing of the turn exists, so the visitor's retry (same `message_id`)
runs it afresh — nothing is scored or queued twice; after it, the retry gets the stored answer
(`retry_of`). A calendar booking is made before the commit (the calendar is outside the database):
a crash in between leaves the meeting held for the lead, and the retry of that message gets it back
from the calendar (`held_by`: the same lead, rep and slot) — booked once, its invite queued once.
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .context import TurnContext, TurnResult
from .extract import Understanding
from .guard import redact_secrets
from .handoff import queue_handoff
from .language import DEFAULT
from .leads import add_agent_message, add_visitor_message, lead_view, open_conversation, remember_answer
from .meetings import MeetingOutcome, record_meeting, request_meeting
from .policy import Situation, decide, note_answer, note_decision
from .profile import note_intents, update_profile
from .scoring import restage, score_message
from .sequences import end_sequences
from .store import ContentSent, Conversation, Lead

PENDING_FACTS = "pending_facts"   # conversation state: facts the reply call read, for the next turn's understanding


def assess(sdr: Any, s: Session, ctx: TurnContext, u: Understanding, *, final: bool = False) -> tuple[Conversation, Lead]:
    """Profile, score, stage and decide for this message, in the caller's transaction; fills
    `ctx` (decision, changes, actions, meeting request, lead_after, view). `final`: the commit's run,
    with the rehearsal's decision and meeting request. Returns the (conversation, lead) rows."""
    conv, lead, _ = open_conversation(s, ctx.session_id, ctx.inbound, ctx.now, lead_id=ctx.lead_id)
    rep = ctx.meeting.rep if final and ctx.meeting is not None else None
    if rep is not None and lead.owner is None:   # the rep the calendar was asked for owns the lead
        lead.owner, lead.owner_assigned_at = rep.id, ctx.now
    state = dict(conv.state or {})
    state.pop(PENDING_FACTS, None)   # this turn's understanding has read them
    lead, learned, prev_stage = _learn(sdr, s, ctx, u, conv, lead, state)
    sent = frozenset(s.scalars(select(ContentSent.url).where(ContentSent.lead_id == lead.id)))
    fields = dict(lead.fields or {})
    sit = Situation(fields, tuple(learned), lead.stage, lead.stage == "sql" and prev_stage not in ("sql", "meeting_booked"),
                    lead.handed_off_at is not None, state, ctx.turn, ctx.first_turn, sent, ctx.text,
                    lead.disqualified_reason, ctx.inbound.channel)
    d = ctx.decision = ctx.decision if final and ctx.decision is not None else decide(sdr.playbook, sdr.kb, u, sit)
    _act(sdr, s, ctx, lead, sent)
    if not final:
        ctx.meeting = request_meeting(s, sdr.playbook, sdr.calendar, lead, d, u.pick, ctx.now)
    picked = ctx.meeting is not None and ctx.meeting.pick is not None
    unasked = picked or (ctx.view.language != DEFAULT and sdr.brain is sdr.rules)   # no question said
    ctx.actions += note_decision(state, d, sdr.playbook, fields, ctx.turn, None if unasked else d.ask_field)
    state["visitor_tz"], state["language"] = ctx.tz, ctx.view.language
    lead.updated_at = conv.updated_at = ctx.now
    conv.state = state
    ctx.lead_after = lead_view(lead, sdr.playbook)
    ctx.attendee = {"name": fields.get("name") or "", "email": fields.get("email") or "", "timezone": ctx.tz}
    ctx.view.fields, ctx.view.stage, ctx.view.score = fields, lead.stage, lead.score
    ctx.conv_id, ctx.lead_id = conv.id, lead.id
    return conv, lead


def _learn(sdr: Any, s: Session, ctx: TurnContext, u: Understanding, conv: Conversation, lead: Lead,
           state: dict[str, Any]) -> tuple[Lead, list[str], str]:
    """The message stored, what it taught about the lead, its score events; (lead, fields learned,
    stage before)."""
    injection, learned = "injection" in u.intents, []
    add_visitor_message(s, conv, lead, ctx.inbound, ctx.text, ctx.now)
    if not injection:
        lead, learned = update_profile(s, lead, u, ctx.inbound.visitor or {}, ctx.now, verified=ctx.inbound.verified)
        conv.lead_id = lead.id
    if ctx.view.language != (lead.fields or {}).get("language", DEFAULT):   # sales sees it
        lead.fields = {**(lead.fields or {}), "language": ctx.view.language}
    note_answer(state, u, learned, ctx.turn)
    ctx.changes = score_message(s, sdr.playbook, lead, u.intents, u.topics, ctx.now, injection, ctx.inbound.channel,
                                ctx.inbound.events)
    prev_stage = lead.stage
    note_intents(lead, u, ctx.now)
    restage(sdr.playbook, lead, engaged=True)
    return lead, learned, prev_stage


def _act(sdr: Any, s: Session, ctx: TurnContext, lead: Lead, sent: frozenset[str]) -> None:
    """What the decision sets going in this transaction: the handoff (outbox), the end of nurture
    sequences (a reply ends them), the content it shares (never twice)."""
    d, ctx.actions = ctx.decision, []
    assert d is not None
    if d.handoff_reason and lead.stage != "disqualified":
        entry = queue_handoff(s, sdr.playbook, lead, d.handoff_reason, ctx.now)
        if entry is not None:
            ctx.actions.append({"type": "handoff", "status": entry.status, "reason": d.handoff_reason,
                                "outbox_id": entry.id})
    end_sequences(s, sdr.playbook, lead, ctx.now, replied=ctx.inbound.channel in ("web", "email"))
    for hit in d.sources():
        if hit.url and hit.url not in sent:
            s.add(ContentSent(lead_id=lead.id, url=hit.url, title=hit.title, type=hit.type, at=ctx.now))


def commit_turn(sdr: Any, ctx: TurnContext, u: Understanding, outcome: MeetingOutcome) -> TurnResult:
    """After a rehearsal: the turn's one transaction — `assess` for real, then `record_turn`."""
    with sdr.store.session() as s:
        assess(sdr, s, ctx, u, final=True)
        return record_turn(sdr, s, ctx, u, outcome)


def record_turn(sdr: Any, s: Session, ctx: TurnContext, u: Understanding, outcome: MeetingOutcome) -> TurnResult:
    """In the caller's transaction, after `assess`: the meeting's outcome, the reply (`ctx.reply`,
    secrets redacted) with what produced it, the facts the reply call read (for the next turn) and
    the answer a retry of this message_id gets. Returns the TurnResult (timings and usage are the
    caller's to fill)."""
    reply, decision = ctx.reply, ctx.decision
    assert reply is not None and decision is not None
    conv, lead = s.get(Conversation, ctx.conv_id), s.get(Lead, ctx.lead_id)
    assert conv is not None and lead is not None
    if ctx.meeting is not None:
        ctx.actions += record_meeting(s, sdr.playbook, outcome, ctx.meeting.rep, conv, lead, ctx.attendee, ctx.tz,
                                      ctx.turn, ctx.now)
        ctx.lead_after = lead_view(lead, sdr.playbook)
    text = redact_secrets(reply.text)
    result = TurnResult(session_id=ctx.session_id, reply=text, lead=ctx.lead_after,
                        sources=[h.source() for h in decision.sources()], actions=ctx.actions,
                        score_changes=[c.as_dict() for c in ctx.changes])
    msg = add_agent_message(s, conv.id, lead.id, text, ctx.now, reply, result.as_dict(), u.intents, ctx.view.usage,
                            (time.perf_counter() - ctx.started) * 1000)
    state = dict(conv.state or {})
    if reply.facts:
        state[PENDING_FACTS] = reply.facts
    if ctx.inbound.message_id:
        state["last_message_id"] = ctx.inbound.message_id
        state["last_result"] = {k: v for k, v in result.as_dict().items() if k != "session_id"}
        s.flush()   # the agent message's id, for a late retry of this message (remember_answer)
        remember_answer(state, ctx.inbound.message_id, msg.id)
    conv.state = state
    return result
