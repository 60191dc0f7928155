"""The turn: one inbound message in, one reply out, the lead updated — for every channel.

    validate → load lead & conversation → understand → update profile → score → decide (a reply ends
    nurture sequences) → meetings → compose → guard → persist (effects queued in the outbox with the change)

Each step is a function in the module of its name (bot/inbound.py, leads.py, the brain's understand, profile.py,
scoring.py, policy.py, sequences.py, meetings.py, compose.py, guard.py); this file only runs them in order, in three
short transactions with the brain and the calendar called between them: a slow model never holds a lock."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Iterator

from sqlalchemy import select

from .answers import ContentStore
from .booking import CalendarBackend, as_utc
from .brain import Brain, FallbackBrain, LeadView, Reply
from .compose import Composer, build_plan
from .extract import Understanding
from .form_fills import with_channel
from .guard import redact_secrets
from .handoff import queue_handoff
from .context import TurnContext, TurnResult, count_turn
from .inbound import Inbound, InputError, NotFound, validate
from .intake import Intake
from .intents import LazyIntentModel, recognise
from .language import DEFAULT, conversation_language, warm as language_warm
from .locks import TurnLocks
from .leads import add_agent_message, add_visitor_message, history, lead_view, open_conversation, retry_of
from .meetings import (MeetingOutcome, offered_slots, record_meeting, request_meeting, run_meeting,
                       visitor_timezone)
from .places import warm as places_warm
from .playbook import Playbook, load_playbook
from .policy import Situation, decide, note_answer, note_decision
from .profile import note_intents, update_profile
from .rule_brain import RuleBrain
from .scoring import restage, score_message
from .sequences import end_sequences
from .settings import Settings
from .store import ContentSent, Conversation, Lead, Store, utcnow

__all__ = ["SDR", "Inbound", "InputError", "NotFound", "TurnResult", "lead_view"]


class SDR(Intake):
    """The AI SDR for one process: load once, then handle turns and events from any thread."""

    def __init__(self, settings: Settings | None = None, *, playbook: Playbook | None = None, knowledge: Any = None,
                 brain: Brain | None = None, store: Store | None = None, load_knowledge: bool = True,
                 clock: Callable[[], datetime] | None = None):
        self.settings = settings or Settings.from_env()
        self.settings.ensure_dirs()
        self.playbook = playbook or load_playbook(self.settings.playbook_path)
        self.store = store or Store(self.settings.database_url)
        if knowledge is None and load_knowledge:
            from knowledge.retrieve import KnowledgeBase
            knowledge = KnowledgeBase(self.settings)
        self.kb: ContentStore | None = knowledge
        self.rules = RuleBrain(self.playbook)
        self.intent_model = LazyIntentModel(self.playbook, getattr(knowledge, "embedder", None), self.settings.cache_dir)
        self.brain = brain or self.rules
        self.clock = clock or utcnow   # naive UTC now; tests and simulations inject their own
        self.calendar: CalendarBackend | None = None   # set by the composition root
        self.counters: dict[str, int] = {"turns": 0, "guard_fallbacks": 0}
        self.observers: list[Callable[[TurnResult], None]] = [lambda r: count_turn(self.counters, r)]   # must not raise
        self.locks = TurnLocks(redis_url=self.settings.redis_url, engine=self.store.engine, lock_dir=self.settings.data_dir / "locks")

    def warm(self) -> None:
        """Load now what a first turn would wait for (places ~1 s, languages, intent examples ~1-2 s, the
        content store's chunks and index ~2.5 s at 10k chunks)."""
        places_warm(self.settings.cache_dir), language_warm(), self.intent_model.warm(), getattr(self.kb, "warm", lambda: None)()

    @property
    def brain(self) -> Brain:
        return self._brain

    @brain.setter
    def brain(self, brain: Brain) -> None:
        """Any brain but the deterministic one runs with the deterministic one as its fallback."""
        self._brain = brain if brain is self.rules or isinstance(brain, FallbackBrain) else FallbackBrain(brain, self.rules)

    # -- the turn -------------------------------------------------------------------------------

    def handle(self, inbound: Inbound) -> TurnResult:
        """One message in, the reply and the updated lead out. Raises InputError."""
        return next(e["turn"] for e in self._locked(inbound, stream=False) if e["type"] == "done")

    def handle_stream(self, inbound: Inbound) -> Iterator[dict[str, Any]]:
        """The same turn, the reply streamed: {"type": "delta", "text"} as sentences pass the guard,
        {"type": "reset"} if a later one fails it (the safe reply follows), and finally
        {"type": "done", "result": {...}} with exactly what `handle` returns as a dict."""
        return self._locked(inbound, stream=True)

    def _locked(self, inbound: Inbound, stream: bool) -> Iterator[dict[str, Any]]:
        text, session_id = validate(inbound, self.settings.max_message_chars)   # raises before the first event

        def run() -> Iterator[dict[str, Any]]:
            with self.locks.hold(session_id):   # two messages of one visitor never race, in any process
                yield from self._run(inbound, text, session_id, stream)
        return run()

    def _run(self, inbound: Inbound, text: str, session_id: str, stream: bool) -> Iterator[dict[str, Any]]:
        ctx = self._load(inbound, text, session_id)                      # load lead & conversation
        if ctx.replay is not None:
            yield {"type": "done", "turn": ctx.replay, "result": ctx.replay.as_dict()}
            return
        u = Understanding() if inbound.note else self.brain.understand(text, ctx.view, ctx.history)   # understand …
        if not inbound.note:
            recognise(u, text, self.intent_model.get(), set(self.playbook.vocabulary.topics))   # … by meaning
        with_channel(u, inbound)                                           # … and what the form stated
        ctx.mark("understand")
        self._assess(ctx, u)                                               # profile, score, decide
        ctx.mark("decide")
        outcome = self._meet(ctx)                                          # meetings
        plan = build_plan(ctx.decision, outcome, self.playbook, ctx.view.fields)   # compose …
        reply: Reply | None = None
        gone = False   # the visitor closed the stream: finish the reply anyway, so nothing is lost
        composer = Composer(self.brain, self.rules, self.playbook, self.counters)
        events = composer.stream(plan, ctx.view, ctx.history) if stream else \
            iter([{"type": "reply", "reply": composer.compose(plan, ctx.view, ctx.history)}])
        for event in events:                                               # … and guard
            if event["type"] == "reply":
                reply = event["reply"]
            elif not gone:
                try:
                    yield event
                except GeneratorExit:
                    gone = True
        ctx.mark("compose")
        result = self._persist(ctx, u, reply)                              # persist
        if not gone:
            yield {"type": "done", "turn": result, "result": result.as_dict()}

    # -- the steps that touch the store ------------------------------------------------------------

    def _load(self, inbound: Inbound, text: str, session_id: str) -> TurnContext:
        started, now = time.perf_counter(), inbound.at or self.clock()
        deadline = time.monotonic() + self.settings.turn_deadline_s   # the visitor's wait starts now
        usage: dict[str, Any] = {"model_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "model_ms": 0.0,
                                 "fallbacks": []}
        with self.store.session() as s:
            conv, lead, first = open_conversation(s, session_id, inbound, now)
            state = dict(conv.state or {})
            turn = int(state.get("turn", 0)) + 1
            tz = visitor_timezone(inbound.visitor or {}, state, text)   # widget, then words, then before
            language = conversation_language(state, text)
            view = LeadView(id=lead.id, fields=dict(lead.fields or {}), stage=lead.stage, score=lead.score,
                            asking=state.get("asking"), today=now.date(), message=text, usage=usage,
                            deadline=deadline,
                            offered_slots=offered_slots(state, turn), timezone=tz, now=as_utc(now),
                            language=language)
            view.asking = None if language != DEFAULT and self.brain is self.rules else view.asking   # none asked
            ctx = TurnContext(inbound, text, session_id, now, view, history(s, conv.id), turn, first, tz,
                              conv.id, lead.id, started=started)
            retry = retry_of(state, inbound.message_id)
            if retry == "answered":
                ctx.replay = TurnResult(session_id=session_id, **state["last_result"])   # a retry: the same answer, once
            ctx.resumed = retry == "scored"   # stored and scored before a crash took the answer: only answer it now
            return ctx

    def _assess(self, ctx: TurnContext, u: Understanding) -> None:
        """Update the profile, score, stage, decide, queue the handoff — one transaction."""
        pb, now, injection = self.playbook, ctx.now, "injection" in u.intents
        with self.store.session() as s:
            conv = s.get(Conversation, ctx.session_id)
            lead = s.get(Lead, conv.lead_id)
            state = dict(conv.state or {})
            learned: list[str] = []
            if not ctx.resumed:
                add_visitor_message(s, conv, lead, ctx.inbound, ctx.text, now)
                if not injection:
                    lead, learned = update_profile(s, lead, u, ctx.inbound.visitor or {}, now,
                                                   verified=ctx.inbound.verified)
                    conv.lead_id = lead.id
                if ctx.view.language != (lead.fields or {}).get("language", DEFAULT):   # sales sees it
                    lead.fields = {**(lead.fields or {}), "language": ctx.view.language}
                note_answer(state, u, learned, ctx.turn)
                ctx.changes = score_message(s, pb, lead, u.intents, u.topics, now, injection, ctx.inbound.channel,
                                            ctx.inbound.events)
            if ctx.inbound.message_id:   # write-ahead: a retry after a crash from here on scores nothing twice
                state["assessed_message_id"] = ctx.inbound.message_id
            prev_stage = lead.stage
            note_intents(lead, u, now)
            restage(pb, lead, engaged=True)
            sent = frozenset(s.scalars(select(ContentSent.url).where(ContentSent.lead_id == lead.id)))
            fields = dict(lead.fields or {})
            sit = Situation(fields, tuple(learned), lead.stage, lead.stage == "sql" and prev_stage not in ("sql", "meeting_booked"),
                            lead.handed_off_at is not None, state, ctx.turn, ctx.first_turn, sent, ctx.text,
                            lead.disqualified_reason, ctx.inbound.channel)
            d = ctx.decision = decide(pb, self.kb, u, sit)
            if d.handoff_reason and lead.stage != "disqualified":
                entry = queue_handoff(s, pb, lead, d.handoff_reason, now)
                if entry is not None:
                    ctx.actions.append({"type": "handoff", "status": entry.status, "reason": d.handoff_reason,
                                        "outbox_id": entry.id})
            end_sequences(s, pb, lead, now, replied=ctx.inbound.channel in ("web", "email") and not ctx.resumed)
            for hit in d.sources():
                if hit.url and hit.url not in sent:
                    s.add(ContentSent(lead_id=lead.id, url=hit.url, title=hit.title, type=hit.type, at=now))
            met = ctx.resumed and state.get("met_message_id") == ctx.inbound.message_id
            ctx.meeting = None if met else request_meeting(s, pb, self.calendar, lead, d, u.pick, now)
            picked = ctx.meeting is not None and ctx.meeting.pick is not None
            unasked = picked or (ctx.view.language != DEFAULT and self.brain is self.rules)   # no question said
            ctx.actions += note_decision(state, d, pb, fields, ctx.turn, None if unasked else d.ask_field)
            state["visitor_tz"], state["language"] = ctx.tz, ctx.view.language
            lead.updated_at = conv.updated_at = now
            conv.state = state
            ctx.lead_after = lead_view(lead, pb)
            ctx.attendee = {"name": fields.get("name") or "", "email": fields.get("email") or "", "timezone": ctx.tz}
            ctx.view.fields, ctx.view.stage, ctx.view.score = fields, lead.stage, lead.score
            ctx.conv_id, ctx.lead_id = conv.id, lead.id

    def _meet(self, ctx: TurnContext) -> MeetingOutcome:
        """Book the time they picked, or offer concrete times (calendar calls outside transactions)."""
        req = ctx.meeting
        if req is None:
            return MeetingOutcome()
        out = run_meeting(self.calendar, self.playbook, req, ctx.attendee, ctx.tz, ctx.lead_id, ctx.now,
                          self.settings.public_url)
        with self.store.session() as s:
            conv, lead = s.get(Conversation, ctx.conv_id), s.get(Lead, ctx.lead_id)
            ctx.actions += record_meeting(s, self.playbook, out, req.rep, conv, lead, ctx.attendee, ctx.tz, ctx.turn,
                                          ctx.now)
            if ctx.inbound.message_id:   # booked: a retry after a crash does not book again
                conv.state = {**dict(conv.state or {}), "met_message_id": ctx.inbound.message_id}
            ctx.lead_after = lead_view(lead, self.playbook)
        return out

    def _persist(self, ctx: TurnContext, u: Understanding, reply: Reply | None) -> TurnResult:
        assert reply is not None and ctx.decision is not None
        text, usage = redact_secrets(reply.text), ctx.view.usage
        result = TurnResult(session_id=ctx.session_id, reply=text, lead=ctx.lead_after,
                            sources=[h.source() for h in ctx.decision.sources()], actions=ctx.actions,
                            score_changes=[c.as_dict() for c in ctx.changes])
        total_ms = (time.perf_counter() - ctx.started) * 1000
        with self.store.session() as s:
            add_agent_message(s, ctx.conv_id, ctx.lead_id, text, ctx.now, reply, result.as_dict(), u.intents, usage,
                              total_ms)
            if ctx.inbound.message_id:
                conv = s.get(Conversation, ctx.conv_id)
                cached = {k: v for k, v in result.as_dict().items() if k != "session_id"}
                conv.state = {**dict(conv.state or {}), "last_message_id": ctx.inbound.message_id, "last_result": cached}
        result.timings_ms = {**ctx.timings, "total": (time.perf_counter() - ctx.started) * 1000}
        result.usage, result.channel, result.first_turn = usage, ctx.inbound.channel, ctx.first_turn
        for observe in self.observers:   # the counters (/healthz), metrics (integrations/web/observability.py)
            observe(result)
        return result
