"""The turn: one inbound message in, one reply out, the lead updated — for every channel.

    understand → update profile → score → decide → compose → guard → persist

`SDR` holds what a process loads once (playbook, content store, brain, database) and runs turns
and tracked events. It imports no web framework, Slack or SMTP code: channels call it.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import Any, Callable, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .booking import CalendarUnavailable, Slot, SlotTaken, choose_offer, format_offer, parse_pick
from .brain import Brain, LeadView, Reply, RuleBrain
from .handoff import assign_rep
from .config import Settings
from .extract import Fact, Understanding
from .guard import evidence_text, redact_secrets, ungrounded_claims
from .playbook import Playbook, load_playbook
from .policy import Decision, decide
from .scoring import ScoreChange, decay_change, engagement_change, fit_changes, stage_for
from .store import Activity, ContentSent, Conversation, Lead, Message, OutboxEntry, ScoreEvent, Store, new_id, utcnow

log = logging.getLogger("sdr.turn")


def _valid_tz(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        ZoneInfo(name)
        return name
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def _sentences(text: str) -> list[str]:
    """Split into sentences, keeping the spaces, so the pieces join back to the text."""
    return [p for p in re.split(r"(?<=[.!?…])(?=\s)", text) if p]

CHANNELS = ("web", "form", "email", "event", "cli", "slack")


class InputError(ValueError):
    """The inbound message is unusable; `code` and the message say what to fix."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


class NotFound(LookupError):
    pass


@dataclass
class Inbound:
    """One message from any channel: web chat, form fill, email reply, CLI."""
    text: str
    channel: str = "web"
    session_id: str | None = None
    visitor: dict[str, Any] = field(default_factory=dict)   # email, name, company, page_url, timezone
    message_id: str | None = None                            # the sender's id, for safe retries
    at: datetime | None = None


@dataclass
class TurnResult:
    session_id: str
    reply: str
    lead: dict[str, Any]
    sources: list[dict[str, str]]
    actions: list[dict[str, Any]]
    score_changes: list[dict[str, Any]]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "reply": self.reply, "lead": self.lead, "sources": self.sources,
                "actions": self.actions, "score_changes": self.score_changes}


def clean_text(text: str) -> str:
    """Text a database can store: no NUL bytes, no lone surrogates (valid in JSON, not in UTF-8)."""
    text = text.replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8") if any("\ud800" <= ch <= "\udfff" for ch in text) else text


def lead_view(lead: Lead, playbook: Playbook) -> dict[str, Any]:
    return {
        "id": lead.id, "score": round(lead.score, 1), "fit_score": round(lead.fit_score, 1),
        "engagement_score": round(lead.engagement_score, 1), "stage": lead.stage, "fields": dict(lead.fields or {}),
        "thresholds": {"mql": playbook.thresholds.mql, "sql": playbook.thresholds.sql},
        "owner": lead.owner, "handed_off": lead.handed_off_at is not None,
        "disqualified_reason": lead.disqualified_reason,
    }


class SDR:
    """The AI SDR for one process: load once, then handle turns and events from any thread."""

    def __init__(self, settings: Settings | None = None, *, playbook: Playbook | None = None,
                 knowledge: Any = None, brain: Brain | None = None, store: Store | None = None,
                 load_knowledge: bool = True, clock: "Callable[[], datetime] | None" = None):
        self.settings = settings or Settings.from_env()
        self.settings.ensure_dirs()
        self.playbook = playbook or load_playbook(self.settings.playbook_path)
        self.store = store or Store(self.settings.database_url)
        if knowledge is None and load_knowledge:
            from knowledge.retrieve import KnowledgeBase
            knowledge = KnowledgeBase(self.settings)
        self.kb = knowledge
        self.brain: Brain = brain or RuleBrain(self.playbook)
        self.fallback_brain = RuleBrain(self.playbook)
        self.clock = clock or utcnow   # naive UTC now; tests and simulations inject their own
        self.calendar: Any = None   # a CalendarBackend (integrations/calendar), set by the composition root
        self._locks = [threading.Lock() for _ in range(64)]
        self.counters: dict[str, int] = {"turns": 0, "guard_fallbacks": 0}

    # ------------------------------------------------------------------------------------------
    # The turn

    def handle(self, inbound: Inbound) -> TurnResult:
        text, session_id = self._validate(inbound)
        lock = self._locks[zlib.crc32(session_id.encode()) % len(self._locks)]
        with lock:
            return self._handle(inbound, text, session_id)

    def handle_stream(self, inbound: Inbound) -> Iterator[dict[str, Any]]:
        """The same turn, with the reply streamed: {"type": "delta", "text"} events as sentences pass
        the guard, a {"type": "reset"} if a later sentence fails it (the safe reply follows), and a
        final {"type": "done", "result": {...}} with exactly what POST /api/chat returns."""
        text, session_id = self._validate(inbound)
        lock = self._locks[zlib.crc32(session_id.encode()) % len(self._locks)]
        with lock:
            yield from self._run(inbound, text, session_id, stream=True)

    def _validate(self, inbound: Inbound) -> tuple[str, str]:
        text = inbound.text
        if not isinstance(text, str) or not text.strip():
            raise InputError("empty_message", "message must be a non-empty string")
        if len(text) > self.settings.max_message_chars:
            raise InputError("message_too_long", f"message is {len(text)} characters; the limit is "
                             f"{self.settings.max_message_chars}", status=413)
        if inbound.channel not in CHANNELS:
            raise InputError("bad_channel", f"channel must be one of {', '.join(CHANNELS)}")
        text = clean_text(text).strip()
        if not text:
            raise InputError("empty_message", "message has no readable text")
        return text, inbound.session_id or new_id("s")

    def _handle(self, inbound: Inbound, text: str, session_id: str) -> TurnResult:
        result = None
        for event in self._run(inbound, text, session_id, stream=False):
            if event["type"] == "done":
                result = event["turn"]
        assert result is not None
        return result

    def _run(self, inbound: Inbound, text: str, session_id: str, stream: bool) -> Iterator[dict[str, Any]]:
        """One turn in three short transactions; the model (if any) is called between them, so a
        slow model never holds a database lock."""
        t0 = time.perf_counter()
        now = inbound.at or self.clock()
        deadline = time.monotonic() + self.settings.turn_deadline_s
        timings: dict[str, float] = {}
        usage: dict[str, Any] = {"model_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "model_ms": 0.0,
                                 "fallbacks": []}

        # 0. the conversation, the lead as it is, and what was said before (read; create if new)
        with self.store.session() as s:
            conv, lead, first_turn = self._conversation(s, session_id, inbound, now)
            state = dict(conv.state or {})
            if inbound.message_id and state.get("last_message_id") == inbound.message_id and state.get("last_result"):
                cached = dict(state["last_result"])   # a retry of the same message: the same answer, once
                result = TurnResult(session_id=session_id, **cached)
                yield {"type": "done", "turn": result, "result": result.as_dict()}
                return
            history = self._history(s, conv.id)
            view = LeadView(id=lead.id, fields=dict(lead.fields or {}), stage=lead.stage, score=lead.score,
                            asking=state.get("asking"), today=now.date(), message=text, deadline=deadline, usage=usage)

        # 1. understand (no transaction open: a model may take seconds)
        u = self.brain.understand(text, view, history)
        timings["understand"] = (time.perf_counter() - t0) * 1000
        injection = "injection" in u.intents

        # 2-5. update the profile, score, stage and handoff, decide — one transaction
        with self.store.session() as s:
            conv = s.get(Conversation, session_id)
            lead = s.get(Lead, conv.lead_id)
            state = dict(conv.state or {})
            turn = int(state.get("turn", 0)) + 1
            s.add(Message(conversation_id=conv.id, lead_id=lead.id, role="visitor", text=text, at=now,
                          meta={"channel": inbound.channel, "page_url": (inbound.visitor or {}).get("page_url")}))
            learned: list[str] = []
            if not injection:
                lead, learned = self._merge_fields(s, lead, u, inbound.visitor or {}, now)
                conv.lead_id = lead.id
            if u.skipped:
                state["skipped"] = {**state.get("skipped", {}), u.skipped: turn}
            asking = state.get("asking")
            if asking and asking not in learned and not u.skipped and not injection:
                if dict(state.get("ask_counts", {})).get(asking, 0) >= 2:
                    state["skipped"] = {**state.get("skipped", {}), asking: turn}

            changes: list[ScoreChange] = []
            if not injection:
                changes += self._message_engagement(s, lead, u, now)
            changes += self._rescore(s, lead, now)

            prev_stage = lead.stage
            if "job_seeker" in u.intents and not lead.disqualified_reason:
                lead.disqualified_reason = "job_seeker"
            if "competitor" in u.intents:
                lead.disqualified_reason = "competitor"
            if "unsubscribe" in u.intents:
                lead.unsubscribed = 1
            if "human" in u.intents and lead.human_requested_at is None:
                lead.human_requested_at = now
            self._restage(lead, engaged=True)
            crossed_sql = lead.stage == "sql" and prev_stage not in ("sql", "meeting_booked")
            actions: list[dict[str, Any]] = []
            handoff_reason = None
            if lead.stage != "disqualified":
                if crossed_sql:
                    handoff_reason = "sql"
                elif "human" in u.intents:
                    handoff_reason = "asked_for_human"
                elif "book" in u.intents:
                    handoff_reason = "meeting_requested"

            sent = set(s.scalars(select(ContentSent.url).where(ContentSent.lead_id == lead.id)).all())
            decision = decide(playbook=self.playbook, kb=self.kb, u=u, fields=dict(lead.fields or {}), learned=learned,
                              stage=lead.stage, crossed_sql=crossed_sql, handed_off=lead.handed_off_at is not None,
                              state=state, turn=turn, first_turn=first_turn, sent_urls=sent, text=text,
                              disqualified_reason=lead.disqualified_reason)
            timings["decide"] = (time.perf_counter() - t0) * 1000
            if decision.meeting_accepted and not handoff_reason:
                handoff_reason = "meeting_requested"
            if handoff_reason and lead.stage != "disqualified":
                entry = self._queue_handoff(s, lead, handoff_reason, now)
                if entry is not None:
                    actions.append({"type": "handoff", "status": entry.status, "reason": handoff_reason,
                                    "outbox_id": entry.id})
            sources = decision.sources()
            for hit in sources:
                if hit.url and hit.url not in sent:
                    s.add(ContentSent(lead_id=lead.id, url=hit.url, title=hit.title, type=hit.type, at=now))
                    sent.add(hit.url)
            tz = _valid_tz((inbound.visitor or {}).get("timezone")) or state.get("visitor_tz") or "UTC"
            state["visitor_tz"] = tz
            pick, rep, want_slots = None, None, False
            if self.calendar is not None and self.playbook.reps and lead.stage != "disqualified" and not injection:
                offered = state.get("offered_slots") or []
                if offered and turn - int(state.get("offered_turn", 0)) <= 4:
                    pick = parse_pick(text, [Slot.from_dict(x) for x in offered], tz, _aware(now))
                want_slots = pick is None and (decision.offer_meeting or decision.book) and not lead.unsubscribed
                if pick is not None or want_slots:
                    rep = assign_rep(s, self.playbook, lead, now)
                    decision.meeting_rep = rep.name if rep else None
                    if pick is not None:
                        decision.ask_field = decision.ask_question = None   # booking is this reply's business
            attendee = {"name": (lead.fields or {}).get("name") or "", "email": (lead.fields or {}).get("email") or "",
                        "timezone": tz}
            self._note_decision(state, decision, actions, lead, turn)
            lead.updated_at = now
            conv.updated_at = now
            conv.state = state
            lead_after = lead_view(lead, self.playbook)
            view = LeadView(id=lead.id, fields=dict(lead.fields or {}), stage=lead.stage, score=lead.score,
                            asking=decision.ask_field, today=now.date(), message=text, deadline=deadline, usage=usage)
            conv_id, lead_id = conv.id, lead.id

        # 5b. meetings: book the time they picked, or offer concrete times (calendar calls outside transactions)
        if pick is not None or want_slots:
            lead_after = self._meetings(decision, actions, rep, pick, want_slots, attendee, tz, lead_id, conv_id, turn, now)

        # 6-7. compose and guard (no transaction open)
        gone = False   # the visitor closed the stream: finish the reply anyway, so nothing is lost
        if stream:
            reply = None
            for event in self._compose_streamed(decision, view, sources, history, text):
                if event["type"] == "reply":
                    reply = event["reply"]
                elif not gone:
                    try:
                        yield event
                    except GeneratorExit:
                        gone = True
            assert reply is not None
        else:
            reply = self._compose_guarded(decision, view, sources, history, text)
        timings["compose"] = (time.perf_counter() - t0) * 1000
        reply_text = redact_secrets(reply.text)

        # 8. persist the reply
        result = TurnResult(session_id=session_id, reply=reply_text, lead=lead_after,
                            sources=[h.source() for h in sources], actions=actions,
                            score_changes=[c.as_dict() for c in changes])
        total_ms = (time.perf_counter() - t0) * 1000
        with self.store.session() as s:
            s.add(Message(conversation_id=conv_id, lead_id=lead_id, role="agent", text=reply_text, at=now,
                          meta={"prompt": reply.prompt, "prompt_version": reply.prompt_version, "model": reply.model,
                                "sources": result.sources, "actions": actions, "score_changes": result.score_changes,
                                "intents": sorted(u.intents), "latency_ms": round(total_ms, 2),
                                "model_calls": usage["model_calls"], "prompt_tokens": usage["prompt_tokens"],
                                "completion_tokens": usage["completion_tokens"],
                                "model_ms": round(usage["model_ms"], 1), "fallbacks": usage["fallbacks"]}))
            if inbound.message_id:
                conv = s.get(Conversation, conv_id)
                cached = result.as_dict()
                cached.pop("session_id")
                conv.state = {**dict(conv.state or {}), "last_message_id": inbound.message_id, "last_result": cached}
        self.counters["turns"] += 1
        for cause in usage["fallbacks"]:
            self.counters[f"fallback_{cause}"] = self.counters.get(f"fallback_{cause}", 0) + 1
        result.timings_ms = {**timings, "total": (time.perf_counter() - t0) * 1000}
        if not gone:
            yield {"type": "done", "turn": result, "result": result.as_dict()}

    def _meetings(self, decision: Decision, actions: list[dict[str, Any]], rep: Any, pick: Any, want_slots: bool,
                  attendee: dict[str, Any], tz: str, lead_id: str, conv_id: str, turn: int, now: datetime) -> dict[str, Any]:
        booking = None
        offer: list[Any] = []
        if pick is not None:
            try:
                booking = self.calendar.book(rep, pick, attendee, title=f"{self.playbook.company.name} intro call",
                                             description=f"Booked by the {self.playbook.company.name} website assistant.",
                                             lead_id=lead_id)
            except SlotTaken:
                decision.slot_taken, want_slots = True, True
            except CalendarUnavailable:
                decision.calendar_down = True
        if want_slots:
            try:
                offer = choose_offer(self.calendar.free_slots(rep, _aware(now)), tz)
            except CalendarUnavailable:
                decision.calendar_down = True
            if offer:
                decision.slots_text = format_offer(offer, tz)
                decision.ask_field = decision.ask_question = None   # "which suits you?" is the question
        with self.store.session() as s:
            conv = s.get(Conversation, conv_id)
            lead = s.get(Lead, lead_id)
            state = dict(conv.state or {})
            if offer:
                state["offered_slots"] = [x.to_dict() for x in offer]
                state["offered_turn"] = turn
                actions.append({"type": "offer_slots", "rep": rep.name, "timezone": tz,
                                "slots": [{"start": x.to_dict()["start"], "label": x.label(tz)} for x in offer]})
            if booking is not None:
                state.pop("offered_slots", None)
                base = self.settings.public_url or ""
                decision.ics_url = f"{base}/meetings/{booking.meeting_id}.ics?lead={lead_id}"
                decision.booked_text = f"{pick.label(tz)} ({tz})"
                decision.booked_pending = booking.status == "pending"
                if lead.stage != "meeting_booked":
                    if "meeting_booked" in self.playbook.engagement:
                        self._engage(s, lead, "meeting_booked", {"meeting_id": booking.meeting_id, "rep": rep.id}, now)
                    self._rescore(s, lead, now)
                    lead.stage = "meeting_booked"
                s.add(OutboxEntry(lead_id=lead_id, kind="meeting_invite", idempotency_key=f"invite:{booking.meeting_id}",
                                  payload={"meeting_id": booking.meeting_id, "rep": rep.id, "rep_email": rep.email,
                                           "attendee": attendee, "status": booking.status},
                                  created_at=now, next_attempt_at=now))
                if lead.handed_off_at is None:
                    self._queue_handoff(s, lead, "meeting_requested", now)
                actions.append({"type": "meeting", "status": booking.status, "rep": rep.name,
                                "start": pick.to_dict()["start"], "label": decision.booked_text, "ics_url": decision.ics_url})
            conv.state = state
            return lead_view(lead, self.playbook)

    def _note_decision(self, state: dict[str, Any], decision: Decision, actions: list[dict[str, Any]], lead: Lead,
                       turn: int) -> None:
        """Record in the conversation state and the actions what this reply will do."""
        if decision.recommend is not None:
            state["last_recommend_turn"] = turn
            state["recommendations"] = int(state.get("recommendations", 0)) + 1
            if (lead.fields or {}).get("industry") in decision.recommend.industries:
                state["recommended_for_industry"] = lead.fields.get("industry")
            actions.append({"type": "recommend", "title": decision.recommend.title, "url": decision.recommend.url,
                            "content_type": decision.recommend.type})
        if decision.ask_field:
            counts = dict(state.get("ask_counts", {}))
            counts[decision.ask_field] = counts.get(decision.ask_field, 0) + 1
            state["ask_counts"] = counts
            actions.append({"type": "ask", "field": decision.ask_field})
        if decision.offer_meeting:
            state["offered_meeting_turn"] = turn
        if decision.offer_meeting or decision.book:
            act: dict[str, Any] = {"type": "offer_meeting", "minutes": self.playbook.meeting.length_minutes}
            if self.playbook.meeting.url:
                act["url"] = self.playbook.meeting.url
            actions.append(act)
        if decision.human:
            actions.append({"type": "human"})
        if decision.mode in ("close", "unsubscribe"):
            actions.append({"type": "close", "reason": decision.close_reason or decision.mode})
        if decision.mode == "refuse":
            actions.append({"type": "refuse", "reason": "prompt_injection"})
        state["asking"] = decision.ask_field
        state["turn"] = turn

    # ------------------------------------------------------------------------------------------
    # Tracked events (page views, webinars, email opens...) from any source

    def record_event(self, event_type: str, *, lead_id: str | None = None, email: str | None = None,
                     properties: dict[str, Any] | None = None, at: datetime | None = None) -> dict[str, Any]:
        if event_type not in self.playbook.engagement:
            known = ", ".join(sorted(self.playbook.engagement))
            raise InputError("unknown_event_type", f"event type {event_type!r} is not in the playbook; known types: {known}")
        now = at or self.clock()
        with self.store.session() as s:
            if lead_id:
                lead = s.get(Lead, lead_id)
                if lead is None:
                    raise NotFound(f"no lead with id {lead_id!r}")
            elif email:
                email = email.strip().lower()
                lead = s.scalars(select(Lead).where(Lead.email == email)).first()
                if lead is None:
                    lead = Lead(id=new_id("lead"), email=email, fields={"email": email},
                                field_sources={"email": {"extractor": "event", "at": now.isoformat()}},
                                created_at=now, updated_at=now)
                    s.add(lead)
                    s.flush()
            else:
                raise InputError("missing_lead", "give lead_id or email")
            prev_stage = lead.stage
            change = self._engage(s, lead, event_type, properties or {}, now)
            changes = ([change] if change else []) + self._rescore(s, lead, now)
            if event_type == "unsubscribe":
                lead.unsubscribed = 1
            self._restage(lead, engaged=True)
            actions = []
            if lead.stage == "sql" and prev_stage not in ("sql", "meeting_booked"):
                entry = self._queue_handoff(s, lead, "sql", now)
                if entry is not None:
                    actions.append({"type": "handoff", "status": entry.status, "reason": "sql", "outbox_id": entry.id})
            lead.updated_at = now
            return {"lead": lead_view(lead, self.playbook), "score_changes": [c.as_dict() for c in changes],
                    "actions": actions}

    def rescore(self, lead_id: str, at: datetime | None = None) -> dict[str, Any]:
        """Apply decay (and playbook changes) to one lead now."""
        now = at or self.clock()
        with self.store.session() as s:
            lead = s.get(Lead, lead_id)
            if lead is None:
                raise NotFound(f"no lead with id {lead_id!r}")
            changes = self._rescore(s, lead, now)
            self._restage(lead, engaged=lead.stage != "new")
            return {"lead": lead_view(lead, self.playbook), "score_changes": [c.as_dict() for c in changes]}

    # ------------------------------------------------------------------------------------------
    # Reads

    def lead_detail(self, lead_id: str) -> dict[str, Any]:
        with self.store.session() as s:
            lead = s.get(Lead, lead_id)
            if lead is None:
                raise NotFound(f"no lead with id {lead_id!r}")
            out = lead_view(lead, self.playbook)
            out["field_sources"] = dict(lead.field_sources or {})
            out["created_at"] = lead.created_at.isoformat() + "Z"
            out["score_events"] = [
                {"kind": e.kind, "rule": e.rule, "points": round(e.points, 2), "reason": e.reason, "at": e.at.isoformat() + "Z"}
                for e in s.scalars(select(ScoreEvent).where(ScoreEvent.lead_id == lead_id).order_by(ScoreEvent.id))]
            out["messages"] = [
                {"role": m.role, "text": m.text, "at": m.at.isoformat() + "Z",
                 **({k: m.meta.get(k) for k in ("prompt", "prompt_version", "model", "latency_ms", "model_calls",
                                                 "prompt_tokens", "completion_tokens", "model_ms", "fallbacks")}
                    if m.role == "agent" and m.meta else {})}
                for m in s.scalars(select(Message).where(Message.lead_id == lead_id).order_by(Message.id))]
            out["actions"] = [
                {"id": o.id, "type": o.kind, "status": o.status, "attempts": o.attempts, "last_error": o.last_error,
                 "payload": o.payload, "created_at": o.created_at.isoformat() + "Z"}
                for o in s.scalars(select(OutboxEntry).where(OutboxEntry.lead_id == lead_id).order_by(OutboxEntry.id))]
            out["content_sent"] = [
                {"title": c.title, "url": c.url, "type": c.type, "at": c.at.isoformat() + "Z"}
                for c in s.scalars(select(ContentSent).where(ContentSent.lead_id == lead_id).order_by(ContentSent.id))]
            return out

    # ------------------------------------------------------------------------------------------
    # Steps

    def _conversation(self, s: Session, session_id: str, inbound: Inbound, now: datetime) -> tuple[Conversation, Lead, bool]:
        conv = s.get(Conversation, session_id)
        if conv is not None:
            lead = s.get(Lead, conv.lead_id)
            assert lead is not None
            return conv, lead, False
        email = str((inbound.visitor or {}).get("email") or "").strip().lower() or None
        lead = s.scalars(select(Lead).where(Lead.email == email)).first() if email else None
        if lead is None:
            lead = Lead(id=new_id("lead"), fields={}, field_sources={}, fit_rules={}, created_at=now, updated_at=now)
            s.add(lead)
            s.flush()
        conv = Conversation(id=session_id, lead_id=lead.id, channel=inbound.channel, state={}, created_at=now, updated_at=now)
        s.add(conv)
        s.flush()
        return conv, lead, True

    def _history(self, s: Session, conversation_id: str, limit: int = 12) -> list[dict[str, str]]:
        rows = s.scalars(select(Message).where(Message.conversation_id == conversation_id)
                         .order_by(Message.id.desc()).limit(limit)).all()
        return [{"role": m.role, "text": m.text} for m in reversed(rows)]

    def _merge_fields(self, s: Session, lead: Lead, u: Understanding, visitor: dict[str, Any],
                      now: datetime) -> tuple[Lead, list[str]]:
        """Merge new facts into the profile; return the lead (merged by email) and the fields learned."""
        facts: dict[str, Fact] = {}
        for key in ("email", "name", "company"):
            v = visitor.get(key)
            if isinstance(v, str) and v.strip() and not (lead.fields or {}).get(key):
                facts[key] = Fact(v.strip().lower() if key == "email" else v.strip(), extractor="visitor", evidence="widget")
        facts.update(u.fields)
        fields = dict(lead.fields or {})
        sources = dict(lead.field_sources or {})
        learned = []
        for name, fact in facts.items():
            old = fields.get(name)
            if old == fact.value:
                continue
            if old not in (None, "") and not fact.certain:
                continue  # a guess never overwrites what we know
            if old not in (None, "") and name in ("company",) and sources.get(name, {}).get("certain") and fact.extractor == "rules" and not fact.certain:
                continue
            if name == "email":
                other = s.scalars(select(Lead).where(Lead.email == fact.value, Lead.id != lead.id)).first()
                if other is not None:
                    self._absorb(s, keep=other, gone=lead)
                    fields = {**dict(other.fields or {}), **{k: v for k, v in fields.items() if v not in (None, "")}}
                    sources = {**dict(other.field_sources or {}), **sources}
                    lead = other
                lead.email = fact.value
            fields[name] = fact.value
            sources[name] = {"extractor": fact.extractor, "certain": fact.certain, "evidence": fact.evidence[:120],
                             "at": now.isoformat()}
            learned.append(name)
        lead.fields = fields
        lead.field_sources = sources
        return lead, learned

    def _absorb(self, s: Session, keep: Lead, gone: Lead) -> None:
        """Two records turned out to be one person (same email): move everything onto `keep`."""
        for model in (Conversation, Message, ScoreEvent, Activity, OutboxEntry):
            for row in s.scalars(select(model).where(model.lead_id == gone.id)):
                row.lead_id = keep.id
        keep_urls = set(s.scalars(select(ContentSent.url).where(ContentSent.lead_id == keep.id)))
        for row in s.scalars(select(ContentSent).where(ContentSent.lead_id == gone.id)):
            if row.url in keep_urls:
                s.delete(row)
            else:
                row.lead_id = keep.id
        applied = dict(keep.fit_rules or {})
        for rule, pts in (gone.fit_rules or {}).items():
            if rule in applied:
                s.add(ScoreEvent(lead_id=keep.id, kind="fit", rule=rule, points=-pts,
                                 reason="counted once: two conversations turned out to be the same lead", at=utcnow()))
            else:
                applied[rule] = pts
        keep.fit_rules = applied
        if gone.handed_off_at and not keep.handed_off_at:
            keep.handed_off_at = gone.handed_off_at
        s.flush()
        s.delete(gone)
        s.flush()

    def _message_engagement(self, s: Session, lead: Lead, u: Understanding, now: datetime) -> list[ScoreChange]:
        out = []
        events = ["chat_message"]
        if "pricing" in u.topics:
            events.append("pricing_question")
        if "book" in u.intents:
            already = s.scalar(select(func.count()).select_from(Activity).where(
                Activity.lead_id == lead.id, Activity.type == "demo_requested"))
            if not already:
                events.append("demo_requested")
        if "unsubscribe" in u.intents:
            events.append("unsubscribe")
        for ev in events:
            if ev in self.playbook.engagement:
                change = self._engage(s, lead, ev, {"source": "chat"}, now)
                if change:
                    out.append(change)
        return out

    def _engage(self, s: Session, lead: Lead, event_type: str, properties: dict[str, Any], now: datetime) -> ScoreChange | None:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        awarded = float(s.scalar(select(func.coalesce(func.sum(ScoreEvent.points), 0.0)).where(
            ScoreEvent.lead_id == lead.id, ScoreEvent.rule == f"engagement.{event_type}",
            ScoreEvent.at >= day_start, ScoreEvent.at < day_start + timedelta(days=1))) or 0.0)
        change = engagement_change(self.playbook, event_type, awarded, properties)
        s.add(Activity(lead_id=lead.id, type=event_type, properties=properties,
                       points_awarded=change.points if change else 0.0, at=now))
        if change:
            s.add(ScoreEvent(lead_id=lead.id, kind=change.kind, rule=change.rule, points=change.points,
                             reason=change.reason, at=now))
            s.flush()
        return change

    def _rescore(self, s: Session, lead: Lead, now: datetime) -> list[ScoreChange]:
        """Fit deltas and decay as score events; then the lead's scores are the sums of its events."""
        changes, applied = fit_changes(self.playbook, dict(lead.fields or {}), dict(lead.fit_rules or {}))
        lead.fit_rules = applied
        for c in changes:
            s.add(ScoreEvent(lead_id=lead.id, kind=c.kind, rule=c.rule, points=c.points, reason=c.reason, at=now))
        s.flush()
        rows = s.execute(select(ScoreEvent.kind, ScoreEvent.points, ScoreEvent.at).where(ScoreEvent.lead_id == lead.id)).all()
        eng = [(p, at) for kind, p, at in rows if kind == "engagement"]
        current = sum(p for kind, p, _ in rows if kind in ("engagement", "decay"))
        d = decay_change(self.playbook, eng, current, now)
        if d:
            s.add(ScoreEvent(lead_id=lead.id, kind=d.kind, rule=d.rule, points=d.points, reason=d.reason, at=now))
            changes.append(d)
            current += d.points
        lead.fit_score = sum(p for kind, p, _ in rows if kind == "fit")
        lead.engagement_score = current
        other = sum(p for kind, p, _ in rows if kind not in ("fit", "engagement", "decay"))   # e.g. a rep's verdict
        lead.score = lead.fit_score + lead.engagement_score + other
        return changes

    def _restage(self, lead: Lead, engaged: bool) -> None:
        disq = None
        seniority = (lead.fields or {}).get("seniority")
        if seniority in self.playbook.disqualify.seniority:
            disq = "student"
        elif lead.disqualified_reason == "not_a_fit":
            disq = "not_a_fit"
        elif lead.disqualified_reason in ("job_seeker", "competitor"):
            disq = lead.disqualified_reason if (lead.disqualified_reason != "job_seeker" or self.playbook.disqualify.job_seekers) else None
        lead.disqualified_reason = disq
        lead.stage = stage_for(self.playbook, lead.score, lead.stage, engaged=engaged, disqualified=disq is not None,
                               human=lead.human_requested_at is not None)

    def _queue_handoff(self, s: Session, lead: Lead, reason: str, now: datetime) -> OutboxEntry | None:
        """Exactly one handoff per lead, written in the same transaction as the change that caused it."""
        key = f"handoff:{lead.id}"
        existing = s.scalars(select(OutboxEntry).where(OutboxEntry.idempotency_key == key)).first()
        if existing is not None:
            return None
        if lead.disqualified_reason:
            return None
        events = s.scalars(select(ScoreEvent).where(ScoreEvent.lead_id == lead.id).order_by(ScoreEvent.points.desc())).all()
        top = [{"points": round(e.points, 1), "reason": e.reason} for e in events if e.points > 0][:5]
        entry = OutboxEntry(lead_id=lead.id, kind="handoff", idempotency_key=key, created_at=now, next_attempt_at=now,
                            payload={"reason": reason, "score": round(lead.score, 1), "fit_score": round(lead.fit_score, 1),
                                     "engagement_score": round(lead.engagement_score, 1), "fields": dict(lead.fields or {}),
                                     "top_reasons": top, "channel": self.playbook.handoff.channel})
        s.add(entry)
        lead.handed_off_at = now
        s.flush()
        log.info("handoff queued for lead %s (%s, score %.1f)", lead.id, reason, lead.score)
        return entry

    def _compose_streamed(self, decision: Decision, view: LeadView, sources: list[Any], history: list[dict[str, str]],
                          visitor_text: str) -> Iterator[dict[str, Any]]:
        """Stream the reply sentence by sentence; a sentence is shown only once the reply so far
        passes the guard. If one fails, the visitor sees a reset and then the safe reply."""
        stream = getattr(self.brain, "compose_stream", None)
        if stream is None:   # a brain that can't stream: compose, guard, then send it in sentences
            reply = self._compose_guarded(decision, view, sources, history, visitor_text)
            for piece in _sentences(reply.text):
                yield {"type": "delta", "text": piece}
            yield {"type": "reply", "reply": reply}
            return
        evidence = self._evidence(view, sources, visitor_text, [])
        shown, buffer = "", ""
        final: Reply | None = None
        for item in stream(decision, view, sources, history):
            if isinstance(item, Reply):
                final = item
                break
            buffer += item
            pieces = _sentences(buffer)
            complete, buffer = (pieces[:-1], pieces[-1]) if pieces and not re.search(r"[.!?…]\s*$", buffer) else (pieces, "")
            for piece in complete:
                if ungrounded_claims(shown + piece, evidence):
                    yield from self._reset_to_safe(decision, view, history, shown, view.usage)
                    return
                shown += piece
                yield {"type": "delta", "text": piece}
        if final is None:
            final = Reply(text=shown + buffer, prompt="reply", prompt_version=None, model=getattr(self.brain, "name", "model"))
        if ungrounded_claims(final.text, evidence + "\n" + "\n".join(final.evidence)) or not final.text.strip():
            yield from self._reset_to_safe(decision, view, history, shown, view.usage)
            return
        if final.text.startswith(shown) and len(final.text) > len(shown):
            yield {"type": "delta", "text": final.text[len(shown):]}
        elif not final.text.startswith(shown):
            yield {"type": "reset"}
            yield {"type": "delta", "text": final.text}
        yield {"type": "reply", "reply": final}

    def _reset_to_safe(self, decision: Decision, view: LeadView, history: list[dict[str, str]], shown: str,
                       usage: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.counters["guard_fallbacks"] += 1
        usage.setdefault("fallbacks", []).append("grounding")
        safe = self._rule_reply(decision, view, history)
        if shown:
            yield {"type": "reset"}
        yield {"type": "delta", "text": safe.text}
        yield {"type": "reply", "reply": safe}

    def _rule_reply(self, decision: Decision, view: LeadView, history: list[dict[str, str]],
                    sources: list[Any] | None = None, visitor_text: str = "") -> Reply:
        """The deterministic reply: quotes from the content, so grounded by construction; if even that
        fails the check (a bad template edit), the reply without any sourced answer."""
        reply = self.fallback_brain.compose(decision, view, decision.sources(), history)
        if ungrounded_claims(reply.text, self._evidence(view, decision.sources(), visitor_text or view.message, reply.evidence)):
            reply = self.fallback_brain.compose(self._safe_decision(decision), view, [], history)
        return reply

    @staticmethod
    def _safe_decision(decision: Decision) -> Decision:
        """The same decision without anything quoted from content (answers, recommendation)."""
        return dataclasses.replace(decision, answers=[a for a in decision.answers if a.hit is None], recommend=None)

    def _evidence(self, view: LeadView, sources: list[Any], visitor_text: str, extra: list[str]) -> str:
        return evidence_text(self.playbook, visitor_text, view.fields, sources, extra)

    def _compose_guarded(self, decision: Decision, view: LeadView, sources: list[Any], history: list[dict[str, str]],
                         visitor_text: str) -> Reply:
        reply = self.brain.compose(decision, view, sources, history)
        problems = ungrounded_claims(reply.text, self._evidence(view, sources, visitor_text, reply.evidence))
        if problems:
            self.counters["guard_fallbacks"] += 1
            view.usage.setdefault("fallbacks", []).append("grounding")
            log.warning("reply failed the grounding check (%s); using the safe reply", "; ".join(problems))
            reply = self._rule_reply(decision, view, history, sources, visitor_text)
        return reply
