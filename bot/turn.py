"""The turn: one inbound message in, one reply out, the lead updated — for every channel.

    validate → load lead & conversation → understand → update profile → score → decide (a reply ends
    nurture sequences) → meetings → compose → guard → persist (effects queued in the outbox with the change)

Each step is a function in the module of its name (bot/inbound.py, leads.py, the brain's understand, profile.py,
scoring.py, policy.py, sequences.py, meetings.py, compose.py, guard.py; assess.py runs profile to decide); this
file only runs them in order, with one commit (bot/assess.py): the reads in one read-only session, then one write
transaction for profile, score, decision, reply and effects. When a model or a calendar must be waited for, that
transaction is a rehearsal, rolled back, and the writes are redone in one commit after them: a slow model never
holds a lock."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Iterator

from .answers import ContentStore
from .assess import PENDING_FACTS, assess, commit_turn, record_turn
from .booking import CalendarBackend, as_utc
from .brain import Brain, FallbackBrain, LeadView
from .compose import Composer, build_plan
from .extract import Understanding
from .form_fills import with_channel
from .context import TurnContext, TurnResult, count_turn
from .inbound import Inbound, InputError, NotFound, validate
from .intake import Intake
from .intents import LazyIntentModel, recognise
from .language import DEFAULT, conversation_language, warm as language_warm
from .locks import TurnLocks
from .logs import held_logs
from .leads import history, known_lead, lead_view, retry_of
from .meetings import MeetingOutcome, offered_slots, run_meeting, visitor_timezone
from .places import warm as places_warm
from .playbook import Playbook, load_playbook
from .rule_brain import RuleBrain
from .settings import Settings
from .store import Conversation, Lead, Store, new_id, utcnow

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

    def warm(self, content: bool = True) -> None:
        """Load now what a first turn would wait for: what every turn needs (places ~1 s, languages,
        intent examples ~1-2 s) and, unless `content=False`, the content store (chromadb, its chunks and
        index: ~1.4 s, ~2.5 s at 10k chunks), which only turns that answer from content need."""
        places_warm(self.settings.cache_dir), language_warm(), self.intent_model.warm()
        if content:
            getattr(self.kb, "warm", lambda: None)()

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
        ctx = self._load(inbound, text, session_id)                      # load lead & conversation (reads)
        if ctx.replay is not None:
            yield {"type": "done", "turn": ctx.replay, "result": ctx.replay.as_dict()}
            return
        u = Understanding() if inbound.note else self.brain.understand(text, ctx.view, ctx.history)   # understand …
        if not inbound.note:
            recognise(u, text, self.intent_model.get(), set(self.playbook.vocabulary.topics))   # … by meaning
        with_channel(u, inbound)                                           # … and what the form stated
        ctx.mark("understand")
        result, events, outcome = None, iter(()), MeetingOutcome()
        with self.store.rehearsal() as s, held_logs() as logs:            # profile, score, decide …
            assess(self, s, ctx, u)
            ctx.mark("decide")
            if self.brain is self.rules and ctx.meeting is None:           # … nothing slow to wait for: the reply
                events = iter(list(self._compose(ctx, outcome, stream)))   # and the commit in this same
                result = record_turn(self, s, ctx, u, outcome)             # transaction (its log lines kept;
                s.commit()                                                 # a rehearsal's are dropped)
                logs.keep()
        if result is None:                                                 # rehearsed (rolled back): the model and
            outcome = outcome if ctx.meeting is None else run_meeting(     # the calendar are called outside
                self.calendar, self.playbook, ctx.meeting, ctx.attendee, ctx.tz, ctx.lead_id, ctx.now, self.settings.public_url)
            events = self._compose(ctx, outcome, stream)
        gone = False   # the visitor closed the stream: finish the reply anyway, so nothing is lost
        for event in events:
            if not gone:
                try:
                    yield event
                except GeneratorExit:
                    gone = True
        result = result or commit_turn(self, ctx, u, outcome)             # persist: the turn's one commit
        result.timings_ms = {**ctx.timings, "total": (time.perf_counter() - ctx.started) * 1000}
        result.usage, result.channel, result.first_turn = ctx.view.usage, inbound.channel, ctx.first_turn
        for observe in self.observers:   # the counters (/healthz), metrics (integrations/web/observability.py)
            observe(result)
        if not gone:
            yield {"type": "done", "turn": result, "result": result.as_dict()}

    def _compose(self, ctx: TurnContext, outcome: MeetingOutcome, stream: bool) -> Iterator[dict[str, Any]]:
        """The reply's words, guarded: the stream's events (deltas, resets); the reply lands in ctx.reply."""
        plan = build_plan(ctx.decision, outcome, self.playbook, ctx.view.fields)
        composer = Composer(self.brain, self.rules, self.playbook, self.counters)
        events = composer.stream(plan, ctx.view, ctx.history) if stream else \
            iter([{"type": "reply", "reply": composer.compose(plan, ctx.view, ctx.history)}])
        for event in events:
            if event["type"] == "reply":
                ctx.reply = event["reply"]
            else:
                yield event
        ctx.mark("compose")

    def _load(self, inbound: Inbound, text: str, session_id: str) -> TurnContext:
        """Everything the turn reads before it decides, in one read-only session; a new visitor's
        conversation and lead exist only from the turn's commit (bot/assess.py)."""
        started, now = time.perf_counter(), inbound.at or self.clock()
        deadline = time.monotonic() + self.settings.turn_deadline_s   # the visitor's wait starts now
        usage: dict[str, Any] = {"model_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "model_ms": 0.0,
                                 "fallbacks": []}
        with self.store.session(readonly=True) as s:
            conv = s.get(Conversation, session_id)
            lead = s.get(Lead, conv.lead_id) if conv is not None else known_lead(s, inbound)
            state = dict(conv.state or {}) if conv is not None else {}
            turn = int(state.get("turn", 0)) + 1
            tz = visitor_timezone(inbound.visitor or {}, state, text)   # widget, then words, then before
            language = conversation_language(state, text)
            lead_id = lead.id if lead is not None else new_id("lead")
            view = LeadView(id=lead_id, fields=dict(lead.fields or {}) if lead else {}, stage=lead.stage if lead else "new",
                            score=lead.score if lead else 0.0, asking=state.get("asking"), today=now.date(), message=text,
                            usage=usage, deadline=deadline, offered_slots=offered_slots(state, turn), timezone=tz,
                            now=as_utc(now), language=language, pending_facts=dict(state.get(PENDING_FACTS) or {}))
            view.asking = None if language != DEFAULT and self.brain is self.rules else view.asking   # none asked
            ctx = TurnContext(inbound, text, session_id, now, view, history(s, conv.id) if conv else [], turn,
                              conv is None, tz, session_id, lead_id, started=started)
            answered = retry_of(s, state, inbound.message_id, lead if conv is not None else None, self.playbook)
            if answered is not None:   # a retry: the same answer, once
                ctx.replay = TurnResult(session_id=session_id, **answered)
            return ctx
