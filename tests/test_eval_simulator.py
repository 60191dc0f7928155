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


# ---------------------------------------------------------------------------------------------
# The suite


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_the_issue_example_persona_loads_exactly_as_written(tmp_path: Path) -> None:
    [p] = load_suite([write(tmp_path, ISSUE_PERSONA)], PB)
    assert p["name"] == "hot healthcare VP" and p["channel"] == "chat" and p["style"] == "plain"
    assert p["truths"]["company_size"] == 1200 and p["volunteers"] == ["company", "role"]
    assert p["expect"]["recommended_any"] == ["https://example.com/customers/maple"]
    assert p["expect"]["never_says"] == ["Pipedrive"] and p["messages"] is None
    assert p["source"] == str(tmp_path / "suite.yaml")
    assert isinstance(make_prospect(p, PB), RuleProspect)


def test_the_shipped_conversations_load_and_extras_are_welcome(tmp_path: Path) -> None:
    from evals.suite import CONVERSATIONS
    cases = load_suite([CONVERSATIONS], PB)
    assert len(cases) == len(yaml.safe_load(CONVERSATIONS.read_text()))
    assert all(c["messages"] and c["truths"] == {} and c["max_turns"] >= len(c["messages"]) for c in cases)
    assert cases[0]["expect"]["recommended"].startswith("https://")
    from evals.suite import PERSONAS, default_paths
    assert default_paths() == ([PERSONAS] if PERSONAS.is_file() else []) + [CONVERSATIONS]
    extra = ISSUE_PERSONA.replace("  max_turns: 10\n", "  max_turns: 10\n  notes: x\n  tags: [hot]\n  language: en\n")
    assert load_suite([write(tmp_path, extra)], PB)[0]["tags"] == ["hot"]


@pytest.mark.parametrize("change, named", [
    (("  style: plain", "  stlye: plain"), ["'stlye'", "style"]),
    (("    budget: 40000", "    budgte: 40000"), ["'truths.budgte'", "company_size"]),
    (("    stage: sql", "    stgae: sql"), ["'expect.stgae'", "recommended_any"]),
    (("  volunteers: [company, role]", "  volunteers: [company, title]"), ["'title'"]),
    (("    timeline: this_quarter\n    budget", "    timeline: soonish\n    budget"), ["truths.timeline", "'soonish'"]),
    (("  style: plain", "  style: shouty"), ["style", "'shouty'"]),
    (("  max_turns: 10", "  max_turns: 99"), ["max_turns"]),
    (("  channel: chat", "  channel: fax"), ["channel", "'fax'"]),
    (("fields: {seniority: vp,", "fields: {senority: vp,"), ["expect.fields.senority"]),
])
def test_a_mistake_names_the_file_the_persona_and_the_key(tmp_path: Path, change: tuple[str, str],
                                                          named: list[str]) -> None:
    assert change[0] in ISSUE_PERSONA
    path = write(tmp_path, ISSUE_PERSONA.replace(*change))
    with pytest.raises(SuiteError) as e:
        load_suite([path], PB)
    msg = str(e.value)
    assert str(path) in msg and "persona #1 'hot healthcare VP'" in msg
    for n in named:
        assert n in msg, msg


def test_every_bad_key_is_named_at_once(tmp_path: Path) -> None:
    text = ISSUE_PERSONA.replace("  style: plain", "  stlye: plain").replace("  max_turns: 10", "  max_turn: 10")
    with pytest.raises(SuiteError, match=r"stlye.*max_turn|max_turn.*stlye"):
        load_suite([write(tmp_path, text)], PB)


def test_the_form_is_scripted_or_simulated_not_both(tmp_path: Path) -> None:
    both = ISSUE_PERSONA.replace("  max_turns: 10\n", "  max_turns: 10\n  messages: [hi]\n")
    with pytest.raises(SuiteError, match="both 'messages' and 'opening'"):
        load_suite([write(tmp_path, both)], PB)
    neither = "- name: nobody\n  truths: {company_size: 5}\n"
    with pytest.raises(SuiteError, match=r"persona #1 'nobody'.*opening"):
        load_suite([write(tmp_path, neither)], PB)


def test_a_name_used_twice_names_both_files(tmp_path: Path) -> None:
    a, b = write(tmp_path, ISSUE_PERSONA, "a.yaml"), write(tmp_path, ISSUE_PERSONA, "b.yaml")
    with pytest.raises(SuiteError) as e:
        load_suite([a, b], PB)
    assert str(a) in str(e.value) and str(b) in str(e.value) and "hot healthcare VP" in str(e.value)


def test_unreadable_or_broken_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SuiteError, match="nope.yaml: cannot read"):
        load_suite([missing], PB)
    with pytest.raises(SuiteError, match="bad.yaml: not valid YAML"):
        load_suite([write(tmp_path, "- name: [unclosed\n", "bad.yaml")], PB)
    with pytest.raises(SuiteError, match="map.yaml: expected a list"):
        load_suite([write(tmp_path, "name: x\n", "map.yaml")], PB)
    with pytest.raises(SuiteError, match=r"persona #2 is not a mapping"):
        load_suite([write(tmp_path, ISSUE_PERSONA + "- just a string\n", "s.yaml")], PB)


def test_channels_not_built_yet_are_skipped_with_a_reason() -> None:
    assert skip_reason({"channel": "chat"}, {"chat"}) is None
    assert skip_reason({"channel": "email"}, {"chat"}) == "channel 'email' is not built yet (issue 12)"
    assert skip_reason({"channel": "form"}, {"chat", "form"}) is None


# ---------------------------------------------------------------------------------------------
# Styles


def test_typos_touch_words_never_the_values() -> None:
    def said(seed: int) -> list[str]:
        p = RuleProspect(persona(style="typos"), PB, seed=seed)
        p.opening()
        return [str(p.respond(q(f), [])) for f in ("company_size", "industry", "budget", "email", "name")]

    runs = [said(s) for s in range(8)]
    assert runs[0] == said(0)
    for r in runs:
        assert re.search(r"1,?200|1\.2k", r[0]) and "dana@maple.example" in r[3] and "Dana Reyes" in r[4]
    words = {w for r in runs for line in r for w in re.findall(r"[a-z]{4,}", line.lower())}
    assert words - {w for f in ("company_size", "industry", "budget", "email", "name")
                    for tier in phrasings(f, TRUTHS).values() for line in tier
                    for w in re.findall(r"[a-z]{4,}", line.lower())}      # some word was mistyped


def test_chatty_adds_small_talk() -> None:
    p = RuleProspect(persona(style="chatty"), PB, seed=0)
    p.opening()
    assert len(re.findall(r"[.!?](?:\s|$)", p.respond(q("company_size"), []))) >= 2


# ---------------------------------------------------------------------------------------------
# A model plays the persona (the local OpenAI-compatible test server; nothing leaves the machine)


def test_a_model_plays_the_persona(fake_openai: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDR_SIM_MODEL", "sim-local")
    monkeypatch.setenv("SDR_SIM_BASE_URL", fake_openai.base_url)
    fake_openai.script({"content": "We're about 1,200 people."},
                       {"status": 500},
                       {"content": "This quarter, ideally.", "usage": {"prompt_tokens": 50, "completion_tokens": 4}},
                       {"content": "DONE"})
    p = make_prospect(persona(asks=["what does it cost?"], later=["sorry, I meant 120"]), PB, seed=7)
    assert isinstance(p, ModelProspect)
    assert p.opening() == "Hi, we're looking at tools to fix our forecasting"
    assert p.respond(q("company_size"), []) == "We're about 1,200 people."
    assert p.respond(q("timeline"), []) == "This quarter, ideally."    # after one retried 500
    assert p.respond("Thanks, that helps.", []) is None
    assert p.asked_log == ["company_size", "timeline", None]
    req = fake_openai.requests[0]
    assert req["model"] == "sim-local" and req["seed"] == 7
    system = req["messages"][0]["content"]
    for must in ("1200", "VP of Sales", "what does it cost?", "sorry, I meant 120", "DONE", "never invent"):
        assert must in system
    assert [m["role"] for m in fake_openai.requests[-1]["messages"]][1:] == ["assistant", "user", "assistant",
                                                                          "user", "assistant", "user"]
    assert p.usage["calls"] == 3 and p.usage["prompt_tokens"] >= 50


def test_the_model_prospect_reads_its_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "k-openai")
    s = SimSettings()
    assert s.model is None and s.base_url == "http://127.0.0.1:9/v1" and s.api_key == "k-openai"
    monkeypatch.setenv("SDR_SIM_API_KEY", "k-sim")
    assert SimSettings().api_key == "k-sim"
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("SDR_SIM_API_KEY")
    assert SimSettings().api_key == "none"
    assert isinstance(make_prospect(persona(), PB), RuleProspect)          # no SDR_SIM_MODEL: rules
    with pytest.raises(ValueError, match="SDR_SIM_MODEL"):
        make_prospect(persona(), PB, model=True)


# ---------------------------------------------------------------------------------------------
# The phrasing banks are understood by the SDR's rule brain (the point is to measure the SDR)

BANK_TRUTHS = [TRUTHS, WARM,
               {"role": "Director of Sales", "seniority": "director", "company_size": 5000, "industry": "manufacturing",
                "timeline": "this_year", "budget": "none yet"},
               {"role": "CEO", "seniority": "c_level", "company_size": 35, "industry": "retail", "timeline": "now",
                "budget": 12000},
               {"seniority": "vp", "company_size": 250, "industry": "education", "timeline": "later", "budget": 25000}]


def understood(field: str, text: str, truths: dict, asked: str | None) -> bool:
    from datetime import date

    from bot.extract import understand
    got = understand(text, PB, asked_field=asked, today=date(2026, 1, 13), known={}).values()
    return bool(got.get("need")) if field == "need" else got.get(field) == truths[field]


@pytest.mark.parametrize("field", ["company_size", "seniority", "industry", "timeline", "budget", "need", "email",
                                   "name"])
def test_the_plain_phrasings_are_understood(field: str) -> None:
    for truths in BANK_TRUTHS:
        if field not in truths:
            continue
        bank = phrasings(field, truths)
        asked = "role" if field == "seniority" else field
        for text in bank["standalone"]:
            assert understood(field, text, truths, None), (field, text)      # said unasked too
            assert understood(field, text, truths, asked), (field, text)
        for text in bank["bare"]:
            assert understood(field, text, truths, asked), (field, text)
