"""Compose: the reply plan (what to say, in order) built once from the decision and the meeting
outcome, worded by the brain, checked by the guard — streamed sentence by sentence when asked.

The plan is the one description of a reply both brains render: the rule brain turns each step
into a template from prompts/replies.yaml, the model brain into one line of instructions. Every
reply, whoever wrote it, passes `guard.ungrounded_claims` here and nowhere else; a reply that fails
gets one revision from a brain that can revise, then the deterministic reply.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from .brain import Brain, LeadView, Reply
from .guard import evidence_text, ungrounded_claims
from .meetings import MeetingOutcome
from .playbook import Playbook
from .policy import Decision

log = logging.getLogger("sdr.compose")

KIND_NAMES = {"case_study": "case study", "guide": "guide", "ebook": "ebook", "webinar": "webinar",
              "pricing": "pricing page", "faq": "FAQ", "integration": "integrations page",
              "roi_calculator": "ROI calculator"}
TIMELINE_WORDS = {"now": "you need it right away", "this_quarter": "this quarter", "next_quarter": "next quarter",
                  "this_year": "within the year", "later": "no rush"}
# Steps whose words are fixed (refusals, goodbyes, exact times and links): no model words them.
FIXED_WORDS = {"identity", "identity_plain", "zone_answer", "budget_below_floor", "budget_below_floor_plain", "meeting_answer", "acknowledge_closed", "acknowledge_done", "close_again", "refusal", "unsubscribed", "close", "not_interested", "booked", "booked_pending", "slot_taken",
               "offer_slots", "offer_slots_plain", "calendar_down"}


@dataclass(frozen=True)
class Step:
    """One thing the reply says. `kind` names a template in prompts/replies.yaml (`question` is the
    playbook's own words); `data` fills it."""
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplyPlan:
    """What to say, in order. `summary` is the echo of what was understood ("VP of Sales, 450
    people"); `facts` are exact strings (times, links, names) the reply may state."""
    steps: tuple[Step, ...]
    decision: Decision
    summary: str = ""
    facts: tuple[str, ...] = ()

    @property
    def kinds(self) -> list[str]:
        return [s.kind for s in self.steps]

    @property
    def fixed_words(self) -> bool:
        """True when the reply must be the deterministic one (a model adds risk, nothing else)."""
        return any(s.kind in FIXED_WORDS for s in self.steps)

    @property
    def question(self) -> str | None:
        return next((s.data.get("text") for s in self.steps if s.kind in ("question", "human_email")), None)

    def sources(self) -> list[Any]:
        return self.decision.sources()

    def without_content(self) -> "ReplyPlan":
        """The same plan without anything quoted from content (no answers, no recommendation — never
        a false "I don't know"): the safe reply when even a template reply fails the guard."""
        return dataclasses.replace(self, steps=tuple(
            s for s in self.steps if s.kind not in ("answer", "recommend_case_study", "recommend_other", "objection_price")),
            decision=dataclasses.replace(self.decision, answers=tuple(a for a in self.decision.answers if a.hit is None),
                                         recommend=None))


def summarize(learned: tuple[str, ...] | list[str], fields: dict[str, Any]) -> str:
    """Echo back what was just understood, so the visitor sees it was ("VP of Sales, 450 people")."""
    bits: list[str] = []
    for f in learned:
        v = fields.get(f)
        if v in (None, ""):
            continue
        if f in ("role", "company"):
            bits.append(str(v))
        elif f == "seniority" and "role" not in learned and v == "c_level":
            bits.append("leading the company")
        elif f == "company_size":
            bits.append("just you" if v == 1 else f"{v:,} people")
        elif f == "timeline":
            bits.append(TIMELINE_WORDS.get(str(v), str(v)))
        elif f == "budget":
            bits.append(f"a budget of ${v:,.0f}" if isinstance(v, (int, float)) else
                        "budget approved" if v == "approved" else "no budget yet")
        elif f == "industry":
            bits.append(str(v).replace("_", " "))
        elif f == "email":
            bits.append(f"I'll use {v}")
    return ", ".join(bits)


# ---------------------------------------------------------------------------------------------
# The plan


def _opening(d: Decision, fields: dict[str, Any], summary: str) -> list[Step]:
    if d.channel in ("form", "email"):
        return []   # an email opens with its own greeting (integrations/email)
    if d.greet:
        return [Step("greeting")]
    if not (d.learned and not d.answers and d.mode == "converse"):
        return []
    out = []
    name = fields.get("name")
    if "name" in d.learned and name:
        out.append(Step("thanks_name", {"name": name}))
    if summary:
        out.append(Step("noted", {"summary": summary}))
    elif not ("name" in d.learned and name):
        out.append(Step("thanks"))
    return out


def _answers(d: Decision) -> list[Step]:
    out = []
    for a in d.answers:
        if a.template:   # answered from the conversation or the playbook (bot/answers.py), quoting its hit if any
            quoted = {"snippet": a.hit.snippet, "url": a.hit.url, "title": a.hit.title} if a.hit is not None else {}
            out.append(Step(a.template, {**dict(a.values), **quoted}))
        elif a.hit is not None:
            out.append(Step("answer", {"question": a.question, "kind": KIND_NAMES.get(a.hit.type, "page"),
                                       "title": a.hit.title, "snippet": a.hit.snippet, "url": a.hit.url}))
        elif a.integration:
            out.append(Step("unknown_integration", {"question": a.question, "target": a.integration}))
        else:
            out.append(Step("unknown", {"question": a.question}))
    return out


def _meeting(d: Decision, m: MeetingOutcome, pb: Playbook) -> list[Step]:
    rep = m.rep_name or "our team"
    if m.booked_text:
        return [Step("booked_pending" if m.booked_pending else "booked",
                     {"rep": rep, "when": m.booked_text, "ics_url": m.ics_url or ""})]
    if m.slots_text:
        taken = [Step("slot_taken")] if m.slot_taken else []
        return taken + [Step("offer_slots" if d.offer_meeting else "offer_slots_plain", {"rep": rep, "slots": m.slots_text})]
    if m.calendar_down:
        return [Step("calendar_down", {"rep": rep})]
    if d.meeting_accepted and not pb.meeting.url:
        return [Step("meeting_accepted")]
    if d.book:
        return [Step("book_link" if pb.meeting.url else "book")]
    if d.offer_meeting:
        return [Step("offer_meeting_link" if pb.meeting.url else "offer_meeting")]
    return []


def _next_steps(d: Decision, m: MeetingOutcome, pb: Playbook, fields: dict[str, Any]) -> list[Step]:
    """Escalation, the meeting, a recommendation and the one question, in that order."""
    out = []
    if d.human:
        out.append(Step("human"))
        if fields.get("email"):
            out.append(Step("human_known_email", {"email": fields["email"]}))
    out += _meeting(d, m, pb)
    if d.recommend is not None:
        kind = ("objection_price" if d.recommend.type == "roi_calculator" and d.objection else
                "recommend_case_study" if d.recommend.type == "case_study" else "recommend_other")
        out.append(Step(kind, {"title": d.recommend.title, "url": d.recommend.url}))
    if d.ask_question and not m.slots_text and not m.picked:
        out.append(Step("human_email", {"text": d.ask_question}) if d.human and d.ask_field == "email"
                   else Step("question", {"text": d.ask_question, "field": d.ask_field, "again": d.ask_again}))
    return out


def build_plan(d: Decision, meeting: MeetingOutcome, playbook: Playbook, fields: dict[str, Any]) -> ReplyPlan:
    """The reply plan for a decision and what the calendar did. `fields` is the lead's profile."""
    summary = summarize(d.learned, fields) if d.learned else ""
    facts = tuple(t for t in (meeting.slots_text, meeting.booked_text, meeting.ics_url, meeting.rep_name, d.zone) if t)
    if d.mode == "refuse":
        return ReplyPlan((Step("refusal"),), d, summary, facts)
    steps = [Step("identity_plain" if d.human else "identity")] if d.identity else []   # the truth first
    if d.mode == "opted_out":
        steps += _answers(d)
        return ReplyPlan(tuple(steps or [Step("acknowledge_closed")]), d, summary, facts)
    if d.farewell and d.mode == "converse":   # handed off, and they say thanks or bye
        return ReplyPlan(tuple(steps + [Step("acknowledge_done")]), d, summary, facts)
    steps += _opening(d, fields, summary)
    if d.zone:
        steps.append(Step("zone_answer", {"text": d.zone}))
    if d.not_interested:
        steps.append(Step("not_interested"))
    elif d.objection and d.mode == "converse" and not (d.recommend is not None and d.recommend.type == "roi_calculator"):
        steps.append(Step("objection"))
    steps += _answers(d)
    if d.mode == "unsubscribe":
        steps.append(Step("unsubscribed"))
    elif d.mode == "close":   # the goodbye once; then a short acknowledgement, or the close said anew
        steps.append(Step("acknowledge_closed") if d.closed_before and d.farewell else
                     Step("close_again") if d.closed_before else Step("close", {"reason": d.close_reason}))
    else:
        steps += _next_steps(d, meeting, playbook, fields)
    return ReplyPlan(tuple(steps or [Step("fallback")]), d, summary, facts)


# ---------------------------------------------------------------------------------------------
# Wording it, guarded


@dataclass
class Composer:
    """Words a plan with `brain`, guards it, and falls back to `rules` (the deterministic brain)."""
    brain: Brain
    rules: Brain
    playbook: Playbook
    counters: dict[str, int]

    def evidence(self, view: LeadView, plan: ReplyPlan, extra: list[str]) -> str:
        d = plan.decision   # every quoted section, even two from one page (sources() lists a page once)
        hits = [a.hit for a in d.answers if a.hit is not None] + ([d.recommend] if d.recommend is not None else [])
        return evidence_text(self.playbook, view.message, view.fields, hits, list(plan.facts) + extra)

    def _problems(self, reply: Reply, view: LeadView, plan: ReplyPlan) -> list[str]:
        if not reply.text.strip():
            return ["an empty reply"]
        return ungrounded_claims(reply.text, self.evidence(view, plan, reply.evidence))

    def safe_reply(self, plan: ReplyPlan, view: LeadView, history: list[dict[str, str]]) -> Reply:
        """The deterministic reply: quotes from the content, so grounded by construction; if even
        that fails the check (a bad template edit), the reply without any sourced content."""
        reply = self.rules.compose(plan, view, history)
        if self._problems(reply, view, plan):
            reply = self.rules.compose(plan.without_content(), view, history)
        return reply

    def _fell_back(self, view: LeadView, problems: list[str]) -> None:
        self.counters["guard_fallbacks"] = self.counters.get("guard_fallbacks", 0) + 1
        view.usage.setdefault("fallbacks", []).append("grounding")
        log.warning("reply failed the grounding check (%s); using the safe reply", "; ".join(problems))

    def compose(self, plan: ReplyPlan, view: LeadView, history: list[dict[str, str]]) -> Reply:
        """The brain's reply if it passes the guard (after at most one revision), else the safe reply."""
        reply = self.brain.compose(plan, view, history)
        problems = self._problems(reply, view, plan)
        revise = getattr(self.brain, "revise", None)
        if problems and revise is not None and reply.model != "rules":
            revised = revise(plan, view, history, reply, problems)
            if revised is not None and not self._problems(revised, view, plan):
                return revised
        if problems:
            self._fell_back(view, problems)
            return self.safe_reply(plan, view, history)
        return reply

    def stream(self, plan: ReplyPlan, view: LeadView, history: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
        """The reply as events: {"type": "delta", "text"} once the reply so far passes the guard,
        {"type": "reset"} when a later sentence fails it (the safe reply follows), and finally
        {"type": "reply", "reply": Reply}."""
        stream = getattr(self.brain, "compose_stream", None)
        if stream is None:   # a brain that can't stream: compose, guard, then send it in sentences
            reply = self.compose(plan, view, history)
            for piece in sentences(reply.text):
                yield {"type": "delta", "text": piece}
            yield {"type": "reply", "reply": reply}
            return
        yield from self._stream_guarded(stream(plan, view, history), plan, view, history)

    def _stream_guarded(self, items: Iterator[str | Reply], plan: ReplyPlan, view: LeadView,
                        history: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
        evidence = self.evidence(view, plan, [])
        shown, buffer, final = "", "", None
        for item in items:
            if isinstance(item, Reply):
                final = item
                break
            buffer += item
            pieces = sentences(buffer)
            complete, buffer = (pieces[:-1], pieces[-1]) if pieces and not re.search(r"[.!?…]\s*$", buffer) else (pieces, "")
            for piece in complete:
                problems = ungrounded_claims(shown + piece, evidence)
                if problems:
                    yield from self._reset(plan, view, history, shown, problems)
                    return
                shown += piece
                yield {"type": "delta", "text": piece}
        final = final or Reply(text=shown + buffer, prompt="reply", prompt_version=None,
                               model=getattr(self.brain, "name", "model"))
        problems = self._problems(final, view, plan)
        if problems:
            yield from self._reset(plan, view, history, shown, problems)
            return
        if final.text.startswith(shown) and len(final.text) > len(shown):
            yield {"type": "delta", "text": final.text[len(shown):]}
        elif not final.text.startswith(shown):
            yield {"type": "reset"}
            yield {"type": "delta", "text": final.text}
        yield {"type": "reply", "reply": final}

    def _reset(self, plan: ReplyPlan, view: LeadView, history: list[dict[str, str]], shown: str,
               problems: list[str]) -> Iterator[dict[str, Any]]:
        self._fell_back(view, problems)
        safe = self.safe_reply(plan, view, history)
        if shown:
            yield {"type": "reset"}
        yield {"type": "delta", "text": safe.text}
        yield {"type": "reply", "reply": safe}


def sentences(text: str) -> list[str]:
    """Split into sentences, keeping the spaces, so the pieces join back to the text."""
    return [p for p in re.split(r"(?<=[.!?…])(?=\s)", text) if p]
