"""The simulated prospects (evals/simulator.py) and the persona suite (evals/suite.py)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.playbook import default_playbook
from bot.turn import Inbound
from evals.simulator import (ModelProspect, RuleProspect, ScriptedProspect, SimSettings, detect_asked_field,
                             make_prospect, phrasings)
from evals.suite import SuiteError, load_suite, skip_reason

PB = default_playbook()

# The issue's example persona, exactly as written in issue 10.
ISSUE_PERSONA = """\
- name: hot healthcare VP              # unique in the suite
  channel: chat                        # chat | form | email (form/email once those channels exist; skip with a reason before)
  opening: "Hi, we're looking at tools to fix our forecasting"   # the first message
  truths:                              # what the prospect knows and says when asked (any playbook field)
    name: Dana Reyes
    email: dana@maple.example
    company: Maple Clinics
    role: VP of Sales
    seniority: vp
    company_size: 1200
    industry: healthcare
    need: forecast accuracy
    timeline: this_quarter
    budget: 40000
  volunteers: [company, role]          # truths the prospect gives unasked in the opening turns; others only when asked
  asks: ["do you integrate with Salesforce?", "what does it cost?"]   # questions the prospect asks along the way
  later: ["sorry, I meant 120 people, not 1,200"]   # said on the turns right after the opening, one a turn, whatever was asked
  style: plain                         # plain | terse | chatty | typos | evasive (skips the first question it is asked)
  max_turns: 10
  expect:
    stage: sql                         # the stage at the end
    handoff: true
    fields: {seniority: vp, company_size: 1200, industry: healthcare, timeline: this_quarter}
    recommended_any: [https://example.com/customers/maple]   # at least one of these recommended
    never_says: ["Pipedrive"]          # case-insensitive phrases that must not appear in any reply
"""

TRUTHS = {"name": "Dana Reyes", "email": "dana@maple.example", "company": "Maple Clinics", "role": "VP of Sales",
          "seniority": "vp", "company_size": 1200, "industry": "healthcare", "need": "forecast accuracy",
          "timeline": "this_quarter", "budget": 40000}


def persona(**over: Any) -> dict[str, Any]:
    base = {"name": "p", "channel": "chat", "opening": "Hi, we're looking at tools to fix our forecasting",
            "truths": dict(TRUTHS), "volunteers": [], "asks": [], "later": [], "style": "plain", "max_turns": 12,
            "expect": {}}
    base.update(over)
    return base


def q(field: str) -> str:
    return str(PB.question_for(field))


# ---------------------------------------------------------------------------------------------
# Which field a reply asks for


@pytest.mark.parametrize("field", [f.name for f in PB.fields])
def test_every_playbook_question_is_recognised(field: str) -> None:
    expected = PB.field(field).asked_with or field
    assert detect_asked_field(q(field), PB) == expected
    assert detect_asked_field(f"Got it — thanks. {q(field)}", PB) == expected
    assert detect_asked_field(f"Teams like yours might find this useful: “X” — https://x.example/a. {q(field)}",
                              PB) == expected


@pytest.mark.parametrize("reply, field", [
    ("How many people are on your team?", "company_size"),
    ("How big is your company?", "company_size"),
    ("What's your headcount, roughly?", "company_size"),
    ("When are you hoping to have something in place?", "timeline"),
    ("What's your timeframe?", "timeline"),
    ("Have you set aside any budget?", "budget"),
    ("Is there a budget for this?", "budget"),
    ("Could you share your email?", "email"),
    ("Where can we reach you — what's your e-mail?", "email"),
    ("Who am I speaking with?", "name"),
    ("What's your name?", "name"),
    ("What company are you from?", "company"),
    ("Where do you work?", "company"),
    ("Which sector are you in?", "industry"),
    ("What does your company do?", "industry"),
    ("What's your job title?", "role"),
    ("What do you do there?", "role"),
    ("What brings you here today?", "need"),
    ("What are you hoping we can help with?", "need"),
    ("What's the main challenge you want to fix?", "need"),
])
def test_paraphrases_are_recognised(reply: str, field: str) -> None:
    assert detect_asked_field(reply, PB) == field


@pytest.mark.parametrize("reply", [
    "Thanks, that helps.",
    "Got it — a 1,200-person team.",
    "Our sales team has your details and will be in touch.",
    "Would a 30-minute call with them this week work?",
    "You sound like a strong fit — let's get you time with Maya Chen. Here are three times (UTC): "
    "1) Wed 14 Jan, 2:00 pm 2) Wed 14 Jan, 2:30 pm 3) Thu 15 Jan, 9:00 am — which suits you?",
    "Not that I know of — Trello isn't one of the integrations in our materials. I can connect you with someone "
    "who can confirm.",
    "I can't help with that. I'm here to answer questions about Pipelark and point you to the right resources.",
    "",
])
def test_replies_without_a_field_question_ask_nothing(reply: str) -> None:
    assert detect_asked_field(reply, PB) is None


# ---------------------------------------------------------------------------------------------
# The rule prospect


def play(sdr: Any, prospect: Any, max_turns: int = 14) -> tuple[list[tuple[str, str]], Any]:
    """(transcript [(prospect, sdr)], the last turn result)."""
    text, sid, result, log = prospect.opening(), None, None, []
    for _ in range(max_turns):
        if text is None:
            break
        result = sdr.handle(Inbound(text=text, session_id=sid, channel="cli"))
        sid = result.session_id
        log.append((text, result.reply))
        text = prospect.respond(result.reply, result.actions)
    return log, result


WARM = {"role": "Sales Manager", "seniority": "manager", "company_size": 80, "industry": "logistics",
        "need": "pipeline visibility", "timeline": "next_quarter", "budget": "approved", "email": "sam@globex.example"}
CHECKED = ("company_size", "seniority", "industry", "timeline", "budget", "email")


@pytest.mark.parametrize("truths, style", [(TRUTHS, "plain"), (WARM, "plain"), (WARM, "terse"), (TRUTHS, "terse")])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_answers_are_true_and_the_sdr_understands_them(sdr: Any, seed: int, truths: dict, style: str) -> None:
    p = RuleProspect(persona(truths=dict(truths), style=style, volunteers=["industry"]), PB, seed=seed)
    log, result = play(sdr, p)
    fields = result.lead["fields"]
    asked = {"seniority" if f == "role" else f for f in p.asked_log} | {"industry"}
    assert {"company_size", "seniority", "timeline"} <= asked
    for k in CHECKED:
        if k in asked:
            assert fields.get(k) == truths[k], f"{k}: " + "\n".join(f"> {a}\n< {b}" for a, b in log)


def test_a_warm_lead_answers_budget_and_industry_when_asked(sdr: Any) -> None:
    p = RuleProspect(persona(truths=dict(WARM)), PB, seed=0)
    log, result = play(sdr, p)
    assert {"industry", "budget"} <= set(p.asked_log), log
    assert result.lead["fields"]["industry"] == "logistics" and result.lead["fields"]["budget"] == "approved"


def test_a_qualified_prospect_books_an_offered_time(sdr: Any, clock: Any) -> None:
    from integrations.calendar import make_calendar
    sdr.calendar = make_calendar(sdr.playbook, sdr.store)
    p = RuleProspect(persona(volunteers=["role", "company_size"]), PB, seed=0)
    log, result = play(sdr, p)
    assert result.lead["stage"] == "meeting_booked", log
    assert p.done and p.respond("Thanks.", []) is None


def test_same_seed_same_conversation_other_seed_other_words() -> None:
    replies = [q(f) for f in ("need", "role", "company_size", "timeline", "industry", "budget", "email", "name")]

    def talk(seed: int, style: str = "plain") -> list[str | None]:
        p = RuleProspect(persona(style=style), PB, seed=seed)
        return [p.opening()] + [p.respond(r, []) for r in replies]

    assert talk(3) == talk(3)
    assert talk(3, "typos") == talk(3, "typos")
    assert len({tuple(talk(s)) for s in range(6)}) > 1


def test_phrasings_say_the_truth() -> None:
    bank = phrasings("company_size", {"company_size": 1200})
    assert "we're ~1.2k people" in bank["hard"] and "about 1,200 employees" in bank["standalone"]
    assert "1200" in bank["bare"]
    assert "VP, sales" in phrasings("role", TRUTHS)["bare"]
    assert "budget's approved" in phrasings("budget", {"budget": "approved"})["standalone"]
    assert "around $40k" in phrasings("budget", TRUTHS)["bare"]
    assert "hoping before the end of the quarter" in phrasings("timeline", TRUTHS)["standalone"]


def test_terse_says_bare_values() -> None:
    p = RuleProspect(persona(style="terse"), PB, seed=0)
    p.opening()
    assert p.respond(q("company_size"), []) in ("1200", "1,200", "~1200")


def test_evasive_skips_exactly_the_first_question() -> None:
    p = RuleProspect(persona(style="evasive"), PB, seed=0)
    p.opening()
    first = p.respond(q("company_size"), [])
    assert "1200" not in first.replace(",", "") and "?" in first
    second = p.respond(q("company_size"), [])
    assert re.search(r"1,?200|1\.2k", second)
    assert re.search(r"healthcare|hospital", p.respond(q("industry"), []))


def test_volunteers_come_unasked_in_the_opening() -> None:
    p = RuleProspect(persona(volunteers=["company", "role"]), PB, seed=0)
    opening = p.opening()
    assert opening.startswith("Hi, we're looking at tools to fix our forecasting")
    assert "Maple Clinics" in opening and "VP" in opening
    assert opening.index("VP") < opening.index("Maple Clinics")


def test_later_messages_come_in_order_right_after_the_opening() -> None:
    later = ["sorry, I meant 120 people, not 1,200", "and it's my team of 12 that would use it"]
    p = RuleProspect(persona(later=later), PB, seed=0)
    p.opening()
    assert p.respond(q("timeline"), []) == later[0]
    assert p.respond(q("budget"), []) == later[1]
    assert "40" in p.respond(q("budget"), [])


def test_asks_come_one_a_turn_each_once() -> None:
    asks = ["do you integrate with Salesforce?", "what does it cost?"]
    p = RuleProspect(persona(asks=asks), PB, seed=0)
    p.opening()
    said = [p.respond(q(f), []) for f in ("company_size", "timeline", "industry", "budget", "email")]
    hits = [[a for a in asks if a in s] for s in said]
    assert [a for h in hits for a in h] == asks
    assert all(len(h) <= 1 for h in hits)
    assert not hits[0] or p.ask_from == 2


def test_unknown_fields_get_a_polite_dont_know() -> None:
    p = RuleProspect(persona(truths={"company_size": 40}), PB, seed=0)
    p.opening()
    assert re.match(r"(?i)not sure|i'd rather not|don't know", p.respond(q("budget"), []))


def test_it_ends_when_nothing_is_left() -> None:
    p = RuleProspect(persona(), PB, seed=0)
    p.opening()
    assert p.respond("Thanks, that helps.", []) is not None
    assert p.respond("Our sales team has your details and will be in touch.", []) is None
    p = RuleProspect(persona(), PB, seed=0)
    p.opening()
    assert p.respond("Thanks for stopping by!", [{"type": "close", "reason": "competitor"}]) is None


def test_meeting_times_offered_a_qualified_prospect_picks_one() -> None:
    offer = [{"type": "offer_slots", "rep": "Maya Chen", "timezone": "UTC",
              "slots": [{"start": "2026-01-14T14:00:00+00:00", "label": "Wed 14 Jan, 2:00 pm"},
                        {"start": "2026-01-14T14:30:00+00:00", "label": "Wed 14 Jan, 2:30 pm"}]}]
    p = RuleProspect(persona(), PB, seed=0)
    p.opening()
    assert re.search(r"second|first|2 works", p.respond("Here are two times — which suits you?", offer))
    student = RuleProspect(persona(truths={"seniority": "student", "role": "student"}), PB, seed=0)
    student.opening()
    assert "none" in student.respond("Here are two times — which suits you?", offer)


def test_scripted_personas_replay() -> None:
    s = ScriptedProspect({"name": "s", "messages": ["one", "two", "three"]}, PB)
    assert s.opening() == "one"
    assert s.respond(q("company_size"), []) == "two"
    assert s.respond("Thanks.", []) == "three"
    assert s.respond("Thanks.", []) is None
    assert s.asked_log == ["company_size", None, None]
    assert isinstance(make_prospect({"name": "s", "messages": ["x"]}, PB), ScriptedProspect)
    assert isinstance(make_prospect(persona(), PB), RuleProspect)
