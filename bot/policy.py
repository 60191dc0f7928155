"""Decide what this reply does: answer, ask, recommend, offer a meeting, hand off, escalate, close.

Rules from the playbook and the conversation state decide; no model is asked whether a lead is
qualified. The decision is a typed value the brain turns into words.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from knowledge.retrieve import Hit, LeadContext

from .answers import Answer, ContentStore, answer_question, budget_answer
from .extract import FAREWELL_RE, Understanding
from .places import asks_zone, zone_answer
from .playbook import Playbook
from .text import has_word

# "ok thanks", "cool", "bye", "thanks!", "👍": said to end a conversation, not to continue it.
_THANKS_OK_BYE = (r"(?:ok(?:ay)?|k|kk|cool|great|nice|perfect|awesome|lovely|fine|sure|alright|all good|"
                  r"thanks?|thank you|thanks a lot|many thanks|thx|ty|cheers|ta|noted|got it|sounds good|"
                  r"will do|see you|see ya|take care|have a (?:good|nice|great) (?:day|one|week)|appreciate it|"
                  r"much appreciated|bye|goodbye|good bye|bye bye)")
PLEASANTRY_RE = re.compile(rf"^{_THANKS_OK_BYE}(?:[\s,.!]+{_THANKS_OK_BYE})*[\s,.!]*$", re.I)   # words apart: no backtracking blow-up
SKIP_COOLDOWN_TURNS = 3         # a skipped question is not asked again for this many turns
MAX_ASKS_PER_FIELD = 2          # asked twice and ignored twice: treat as skipped


@dataclass(frozen=True)
class Situation:
    """What the policy knows this turn besides the understanding: the lead after this message's
    facts and score, and the conversation so far."""
    fields: dict[str, Any]
    learned: tuple[str, ...]          # fields this message filled
    stage: str                        # the lead's stage after scoring
    crossed_sql: bool                 # this message took the lead over the SQL threshold
    handed_off: bool                  # the lead's handoff was queued before this turn
    state: dict[str, Any]             # the conversation state (turn counters, offers, skips)
    turn: int                         # 1 for the first message of the conversation
    first_turn: bool
    sent_urls: frozenset[str]         # content this lead already received, on any channel
    text: str                         # the visitor's message
    disqualified_reason: str | None = None
    channel: str = "web"              # web | form | email | … (a form's first touch always links a piece)


@dataclass(frozen=True)
class Decision:
    """What this reply does, decided by rules. The reply plan (bot/compose.py) turns it into
    what to say, in order; a brain words it."""
    mode: str = "converse"            # converse | refuse | close | unsubscribe | opted_out (said stop before)
    greet: bool = False
    identity: bool = False            # asked whether they talk to a bot: say it is automated, first
    zone: str | None = None           # "which time zone is that?": the answer, from the conversation
    learned: tuple[str, ...] = ()
    answers: tuple[Answer, ...] = ()
    ask_field: str | None = None
    ask_question: str | None = None
    recommend: Hit | None = None
    offer_meeting: bool = False
    book: bool = False
    human: bool = False
    objection: bool = False
    not_interested: bool = False
    meeting_accepted: bool = False
    handed_off: bool = False          # this lead's handoff is (now or already) queued
    close_reason: str | None = None   # student | job_seeker | competitor | not_a_fit
    handoff_reason: str | None = None # sql | asked_for_human | meeting_requested: queue a handoff now
    variant: int = 0                  # which phrasing of each template: rotates every turn, so replies vary
    ask_again: bool = False           # the question is the one the last reply asked too: lead into it
    closed_before: bool = False       # the close was said on an earlier turn: never the same sentence again
    farewell: bool = False            # "ok thanks", "bye", "cool" once the conversation is done: a short acknowledgement
    channel: str = "web"              # the channel the reply goes out on (an email opens with its own greeting)

    def sources(self) -> list[Hit]:
        """The content this reply quotes or links, each piece once."""
        out = [a.hit for a in self.answers if a.hit is not None]
        if self.recommend is not None:
            out.append(self.recommend)
        seen: set[str] = set()
        return [h for h in out if not (h.url in seen or seen.add(h.url))]


def persona_for(playbook: Playbook, role: Any) -> str | None:
    if not role:
        return None
    text = str(role).lower()
    for persona, words in playbook.personas.items():
        for w in words:
            if has_word(text, w.lower()):
                return persona
    return None


def lead_context(playbook: Playbook, fields: dict[str, Any], stage: str) -> LeadContext:
    industry = fields.get("industry")
    return LeadContext(industry=industry if industry in playbook.industries else None,
                       persona=persona_for(playbook, fields.get("role")) or
                       ("executive" if fields.get("seniority") == "c_level" else None),
                       stage=stage)


def next_field(playbook: Playbook, fields: dict[str, Any], state: dict[str, Any], turn: int,
               only: tuple[str, ...] | None = None) -> str | None:
    """The most valuable unknown field we may ask now: never a known one, never one just skipped."""
    skipped: dict[str, int] = state.get("skipped", {})
    candidates = []
    for f in sorted(playbook.fields, key=lambda f: -f.priority):
        if not f.ask or f.asked_with:
            continue
        group = [f.name] + [g.name for g in playbook.fields if g.asked_with == f.name]
        if any(fields.get(n) not in (None, "") for n in group):
            continue
        if only and f.name not in only:
            continue
        cooling = f.name in skipped and turn - skipped[f.name] <= SKIP_COOLDOWN_TURNS
        candidates.append((cooling, f.name))
    fresh = [name for cooling, name in candidates if not cooling]
    if fresh:
        return fresh[0]
    return None


def pleasantry(u: Understanding, text: str) -> bool:
    """A thanks, an ok or a goodbye and nothing else: no question, no fact, no request."""
    if u.questions or u.fields or u.intents - {"small_talk", "affirm", "greeting"}:
        return False
    t = text.strip()
    return bool(PLEASANTRY_RE.match(t) or (len(t) <= 30 and FAREWELL_RE.search(t)) or (t and not re.search(r"\w", t)))


def reopens(u: Understanding) -> bool:
    """A new explicit request (a meeting, a person) reopens a conversation the visitor closed."""
    return bool(u.intents & {"book", "human"}) and "unsubscribe" not in u.intents


def handoff_reason(u: Understanding, sit: Situation) -> str | None:
    """Why this message hands the lead to sales, if it does: it crossed the SQL threshold, asked
    for a person, or asked for a meeting. Never for a disqualified lead."""
    if sit.stage == "disqualified":
        return None
    if sit.crossed_sql:
        return "sql"
    if "human" in u.intents:
        return "asked_for_human"
    if "book" in u.intents:
        return "meeting_requested"
    return None


_MEETING_WORDS = re.compile(r"\b(?:call|calls|meeting|meet|demo|talk|chat|schedule|book|time|times|slot|slots|"
                            r"llamada|reuni[óo]n|termin|gespr[äa]ch|appel|rendez-vous|reuni[ãa]o|liga[çc][ãa]o)\b", re.I)


def _answers(playbook: Playbook, kb: ContentStore | None, u: Understanding, sit: Situation, ctx: LeadContext) -> tuple[Answer, ...]:
    """Up to two content answers to the visitor's questions (requests are not content questions)."""
    answers: list[Answer] = []
    if kb is None:
        return ()
    for q in u.questions[:2]:
        if "human" in u.intents and not u.topics and not u.integrations_asked:
            continue  # "can I talk to a person?" is a request, not a content question
        if "book" in u.intents and not u.topics and _MEETING_WORDS.search(q):
            continue  # "can we book a call?" is the request; "…want a demo. How does forecasting work?" is a question
        if "job_seeker" in u.intents:
            continue
        if "identity_question" in u.intents and not u.topics and not u.integrations_asked:
            continue  # "are you a bot?" is about us, answered from the conversation, not the content
        if asks_zone(q):
            continue  # "which time zone is that?" is about the times offered, not the content
        # "is it secure? we need SOC 2": a short message's statements are part of its question
        asked = sit.text if len(u.questions) == 1 and len(sit.text) <= 240 else q
        answers.extend(answer_question(kb, asked, u, ctx, playbook=playbook))
        if len(answers) >= 2:
            break
    if "budget" in sit.learned:   # a budget below the price floor: say so, with the plans that fit
        floor = budget_answer(kb, playbook, sit.fields.get("budget"))
        if floor is not None:
            answers.insert(0, floor)
    return tuple(answers)


def _question(playbook: Playbook, u: Understanding, sit: Situation, d: dict[str, Any]) -> tuple[str | None, str | None]:
    """The one qualifying question of this reply (field, words), if it may ask one: a meeting offer
    is the question when there is one, and an objection is not met with a question."""
    if d["offer_meeting"] or (d["book"] and playbook.meeting.url) or "objection" in u.intents:
        return None, None
    if d.get("identity") and not (d["human"] or d["book"]):
        return None, None   # the truth and the offer of a person are the reply; no qualifying question
    only = ("email", "name") if (sit.handed_off or d["human"] or d["book"]) else None
    name = next_field(playbook, sit.fields, sit.state, sit.turn, only=only)
    return (name, playbook.question_for(name)) if name else (None, None)


def _recommendation(playbook: Playbook, kb: ContentStore | None, u: Understanding, sit: Situation, ctx: LeadContext,
                    d: dict[str, Any]) -> Hit | None:
    """The ROI page for a price objection; else a piece for this lead when we know enough to pick
    one (their industry or need), at most every third turn, never one they already have."""
    if kb is None:
        return None
    if "price_objection" in u.intents:
        roi = kb.search("ROI payback return on investment cost", ctx, k=1, types=["roi_calculator"],
                        exclude_urls=set(sit.sent_urls))
        if roi:
            return roi[0]
    fields, state = sit.fields, sit.state
    recs = int(state.get("recommendations", 0))
    industry_known = fields.get("industry") in playbook.industries
    knows_enough = (industry_known and not state.get("recommended_for_industry")) or (fields.get("need") and recs == 0)
    answered = {a.hit.url for a in d["answers"] if a.hit is not None}
    first_touch = sit.channel == "form" and sit.first_turn and not d["offer_meeting"]   # always one fitting piece
    if not first_touch and (not knows_enough or sit.turn - state.get("last_recommend_turn", -99) < 3 or d["human"]
                            or d["offer_meeting"] or answered):
        return None
    topic = " ".join(str(fields.get(k) or "") for k in ("need", "industry", "role")).strip()
    return kb.recommend(ctx, topic, exclude_urls=set(sit.sent_urls) | answered)


def decide(playbook: Playbook, kb: ContentStore | None, u: Understanding, sit: Situation) -> Decision:
    """What this reply does: refuse an injection; answer questions from the content; say goodbye
    on unsubscribe or to a disqualified lead; take a meeting request or a "yes" to a meeting
    offer; offer a meeting when the lead just became an SQL; ask the single most valuable unknown
    field; recommend content. Pure rules over the playbook and the conversation state."""
    # "ok", "cool", "thanks" state no fact: whatever a reader took from them is not echoed back
    learned = () if PLEASANTRY_RE.match(sit.text.strip()) else sit.learned
    d: dict[str, Any] = {"learned": learned, "handed_off": sit.handed_off, "handoff_reason": handoff_reason(u, sit),
                         "variant": sit.turn, "farewell": pleasantry(u, sit.text), "channel": sit.channel}
    if "injection" in u.intents:
        return Decision(mode="refuse", **d)
    d["identity"] = "identity_question" in u.intents
    d["zone"] = zone_answer(sit.state) if asks_zone(sit.text) else None
    d["greet"] = sit.first_turn and not d["identity"] and ("greeting" in u.intents or not (u.questions or u.fields))
    d["objection"] = "objection" in u.intents
    ctx = lead_context(playbook, sit.fields, sit.stage)
    d["answers"] = _answers(playbook, kb, u, sit, ctx)
    if "unsubscribe" in u.intents:
        return Decision(mode="unsubscribe", **{**d, "handoff_reason": None})
    if sit.state.get("opted_out") and not reopens(u):
        # They said stop: answer what they ask, never a question, an offer or a handoff again.
        return Decision(mode="opted_out", **{**d, "handoff_reason": None, "greet": False})
    if sit.stage == "disqualified":
        d["answers"] = tuple(a for a in d["answers"] if a.hit is not None)[:1]
        return Decision(mode="close", close_reason=sit.disqualified_reason or "student",
                        closed_before=bool(sit.state.get("closed")), **d)
    d["human"], d["book"] = "human" in u.intents, "book" in u.intents
    offered = sit.state.get("offered_meeting_turn")
    if not d["book"] and offered is not None and sit.turn - offered == 1 and "affirm" in u.intents:
        d["book"] = d["meeting_accepted"] = True   # "sure, let's talk" right after a meeting offer
        d["handoff_reason"] = d["handoff_reason"] or "meeting_requested"
    d["offer_meeting"] = sit.crossed_sql and not d["book"]
    d["farewell"] = d["farewell"] and sit.handed_off and not (d["book"] or d["human"] or d["offer_meeting"])
    if d["farewell"]:
        return Decision(**d)   # handed off and they say thanks or bye: a short acknowledgement, nothing to ask
    d["not_interested"] = "not_interested" in u.intents and not (d["human"] or d["book"])
    if d["not_interested"]:
        return Decision(**d)   # no question, no content: they said no
    d["handed_off"] = sit.handed_off or d["human"] or d["book"]
    d["ask_field"], d["ask_question"] = _question(playbook, u, sit, d)
    d["ask_again"] = d["ask_field"] is not None and d["ask_field"] == sit.state.get("asking")
    d["recommend"] = _recommendation(playbook, kb, u, sit, ctx, d)
    return Decision(**d)


# ---------------------------------------------------------------------------------------------
# The policy's memory: what the conversation state records between turns


def note_answer(state: dict[str, Any], u: Understanding, learned: list[str], turn: int) -> None:
    """Record a declined question ("rather not say") and a question asked twice without an
    answer as skipped on `turn`, so it cools down before it is asked again."""
    if u.skipped:
        state["skipped"] = {**state.get("skipped", {}), u.skipped: turn}
    asking = state.get("asking")
    if asking and asking not in learned and not u.skipped and "injection" not in u.intents:
        if dict(state.get("ask_counts", {})).get(asking, 0) >= MAX_ASKS_PER_FIELD:
            state["skipped"] = {**state.get("skipped", {}), asking: turn}


def note_decision(state: dict[str, Any], d: Decision, playbook: Playbook, fields: dict[str, Any], turn: int,
                  ask_field: str | None) -> list[dict[str, Any]]:
    """Record in the conversation state what this reply does (`ask_field`: the question it really
    asks — none when the visitor just picked a meeting time) and return it as the turn's actions."""
    actions: list[dict[str, Any]] = []
    if d.recommend is not None:
        state["last_recommend_turn"] = turn
        state["recommendations"] = int(state.get("recommendations", 0)) + 1
        if fields.get("industry") in d.recommend.industries:
            state["recommended_for_industry"] = fields.get("industry")
        actions.append({"type": "recommend", "title": d.recommend.title, "url": d.recommend.url,
                        "content_type": d.recommend.type})
    if ask_field:
        counts = dict(state.get("ask_counts", {}))
        counts[ask_field] = counts.get(ask_field, 0) + 1
        state["ask_counts"] = counts
        actions.append({"type": "ask", "field": ask_field})
    if d.offer_meeting:
        state["offered_meeting_turn"] = turn
    if d.offer_meeting or d.book:
        act: dict[str, Any] = {"type": "offer_meeting", "minutes": playbook.meeting.length_minutes}
        if playbook.meeting.url:
            act["url"] = playbook.meeting.url
        actions.append(act)
    if d.human:
        actions.append({"type": "human"})
    if d.mode in ("close", "unsubscribe") and not d.closed_before:
        actions.append({"type": "close", "reason": d.close_reason or d.mode})
    if d.mode == "close":
        state["closed"] = state.get("closed") or turn   # the goodbye is said once; later turns acknowledge
    if d.mode == "refuse":
        actions.append({"type": "refuse", "reason": "prompt_injection"})
    if d.mode == "unsubscribe":
        state["opted_out"] = turn          # qualification ends for good ...
    elif d.mode == "converse":
        state.pop("opted_out", None)       # ... until a new explicit request reopens it
    state["asking"] = ask_field
    state["turn"] = turn
    return actions
