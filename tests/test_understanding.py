"""Understand people as they really write (issue 11), one table per kind:

1. "Am I talking to a bot?" in any phrasing and language is answered truthfully first (an
   automated assistant, an AI), then a person is offered; never a claim to be human.
2. "Stop" in any phrasing and language ends qualification for good: no more questions, one
   `opted_out` score event, the lead unsubscribed, no engagement points after it; only a new explicit
   request reopens it. A disqualified lead earns no engagement points either.
3. A title is never a name; a name in any script is taken whole.
"""
from __future__ import annotations

import re
import time
from datetime import date

import pytest

from bot.compose import build_plan
from bot.extract import understand
from bot.guard import ungrounded_claims
from bot.meetings import MeetingOutcome
from bot.playbook import load_playbook
from bot.policy import Decision
from bot.rule_brain import RuleBrain
from bot.turn import Inbound

PB = load_playbook()
TODAY = date(2026, 11, 23)


def read(text: str, asked: str | None = None):
    return understand(text, PB, asked_field=asked, today=TODAY)


def say(sdr, text: str, sid: str, **visitor):
    return sdr.handle(Inbound(text=text, session_id=sid, channel="web", visitor=visitor or None))


def asked(result) -> list[str]:
    return [a["field"] for a in result.actions if a["type"] == "ask"]


# ---------------------------------------------------------------------------------------------
# 1. "Am I talking to a bot?"

IDENTITY_QUESTIONS = [
    "are you a bot?",
    "Am I talking to a bot?",
    "is this an AI?",
    "are you a real person?",
    "Are you human?",
    "is this automated?",
    "am i chatting with a robot or a person",
    "is this a real human or a chatbot?",
    "r u a bot",
    "wait, is this a person or a machine?",
    "Are you ChatGPT?",
    "Is anyone real reading this?",
    "¿eres un bot?",
    "¿Estoy hablando con una persona real?",
    "bist du ein Mensch?",
    "Ist das ein Bot?",
    "es-tu un robot ?",
    "Est-ce que je parle à un humain ?",
    "você é um robô?",
    "Estou falando com uma pessoa de verdade?",
]

NOT_IDENTITY = [
    "Do you have a bot for Slack?",
    "we are building an AI team for forecasting",
    "our reps are human, they forget to update the CRM",
    "Is this automated forecasting or do reps still enter the numbers?",
    "how does the AI forecast work?",
    "Can I talk to a real person?",
]

HUMAN_CLAIM = re.compile(r"\b(?:i'?m|i am)\s+(?:a\s+)?(?:real\s+)?(?:human|person)\b|\bnot\s+(?:a\s+)?bot\b", re.I)


@pytest.mark.parametrize("text", IDENTITY_QUESTIONS)
def test_an_identity_question_is_recognised_in_any_phrasing(text):
    u = read(text)
    assert "identity_question" in u.intents
    assert "injection" not in u.intents and "unsubscribe" not in u.intents


@pytest.mark.parametrize("text", NOT_IDENTITY)
def test_talk_about_bots_or_people_is_not_an_identity_question(text):
    assert "identity_question" not in read(text).intents


def test_the_identity_step_says_automated_offers_a_person_and_passes_the_guard():
    brain = RuleBrain(PB)
    d = Decision(identity=True)
    plan = build_plan(d, MeetingOutcome(), PB, {})
    assert plan.kinds[0] == "identity" and plan.fixed_words   # never left to a model's wording
    reply = brain.compose(plan, None, []).text
    assert re.search(r"\bautomated\b", reply) and re.search(r"\bAI\b", reply)
    assert re.search(r"\b(?:person|someone)\b", reply) and not HUMAN_CLAIM.search(reply)
    assert ungrounded_claims(reply, "\n".join([PB.grounding_text()] + reply_evidence(brain))) == []


def reply_evidence(brain: RuleBrain) -> list[str]:
    return list(brain._evidence)


def test_every_identity_question_is_answered_truthfully_in_a_turn(sdr):
    for i, text in enumerate(IDENTITY_QUESTIONS):
        r = say(sdr, text, f"identity-{i}")
        # said in the visitor's language (prompts/replies.<code>.yaml) when they wrote in one
        assert re.search(r"\b(?:automated|automático|automatisierte|automatisé|automatizado)\b", r.reply) \
            and re.search(r"\b(?:AI|IA|KI)\b", r.reply), (text, r.reply)
        assert not HUMAN_CLAIM.search(r.reply), (text, r.reply)
        assert not re.search(r"in our materials|nuestros materiales|unseren Unterlagen|nos documents|nossos materiais",
                             r.reply)     # a question about us, not the content store
        assert r.reply.count("?") <= 1
    assert sdr.counters["guard_fallbacks"] == 0


def test_identity_first_then_the_person_they_asked_for(sdr):
    r = say(sdr, "are you a bot? I'd like to talk to a real person", "identity-human")
    assert r.reply.index("automated") < r.reply.index("team")
    assert any(a["type"] == "human" for a in r.actions)


def test_the_model_is_told_to_say_it_is_automated():
    from bot.brain import load_prompt
    system = load_prompt("reply")["system"]
    assert "automated" in system and "never claim to be human" in system.lower()


# ---------------------------------------------------------------------------------------------
# 2. "Stop" is honoured

OPT_OUTS = [
    "not interested, please stop",
    "stop messaging me",
    "unsubscribe",
    "leave me alone",
    "no thanks, bye",
    "please don't contact me",
    "STOP",
    "please stop",
    "remove me from your list",
    "don't email me again",
    "I'm not interested, stop asking",
    "basta",
    "no me escribas más, por favor",
    "bitte keine Nachrichten mehr",
    "lass mich in Ruhe",
    "arrêtez",
    "arrêtez de m'écrire, merci",
    "pare de me mandar mensagens",
    "não tenho interesse, obrigado",
    "kein Interesse, danke",
]

NOT_OPT_OUTS = [
    "we need to stop manual data entry",
    "Our HubSpot sync stopped updating deals yesterday",
    "can it stop deals from slipping?",
    "ok thanks",
    "no thanks, I'm fine for now — how long does onboarding take?",
    "we want to stop guessing the forecast",
]


@pytest.mark.parametrize("text", OPT_OUTS)
def test_an_opt_out_is_recognised_in_any_phrasing(text):
    u = read(text)
    assert "unsubscribe" in u.intents and u.requested_action == "unsubscribe"


@pytest.mark.parametrize("text", NOT_OPT_OUTS)
def test_the_word_stop_in_a_need_is_not_an_opt_out(text):
    assert "unsubscribe" not in read(text).intents


def _events(sdr, lead_id: str, rule: str) -> list[dict]:
    return [e for e in sdr.lead_detail(lead_id)["score_events"] if e["rule"] == rule]


def test_every_opt_out_ends_qualification_for_good(sdr):
    for i, text in enumerate(OPT_OUTS):
        sid = f"stop-{i}"
        say(sdr, "hello, we need better forecasting", sid)
        r = say(sdr, text, sid)
        assert asked(r) == [] and "?" not in r.reply, (text, r.reply)
        engagement = r.lead["engagement_score"]
        for later in ("ok thanks", "we're about 400 people", "fine"):
            r = say(sdr, later, sid)
            assert asked(r) == [] and "?" not in r.reply, (text, later, r.reply)
            assert len(r.reply) < 90, r.reply                 # a short polite acknowledgement
            assert r.lead["engagement_score"] <= engagement, (text, later)   # chat earns nothing now
            engagement = r.lead["engagement_score"]
        events = _events(sdr, r.lead["id"], "engagement.opted_out")
        assert len(events) == 1 and events[0]["points"] <= 0 and events[0]["reason"], (text, events)


def test_an_opted_out_lead_is_unsubscribed_and_a_new_explicit_request_reopens_it(sdr):
    from bot.store import Lead
    sid = "stop-reopen"
    r = say(sdr, "not interested, please stop", sid)
    with sdr.store.session() as s:
        assert s.get(Lead, r.lead["id"]).unsubscribed == 1
    r = say(sdr, "stop", sid)                                  # said twice: recorded once
    assert len(_events(sdr, r.lead["id"], "engagement.opted_out")) == 1
    r = say(sdr, "actually, can I get a demo?", sid)
    assert any(a["type"] in ("offer_meeting", "handoff") for a in r.actions), r.actions
    with sdr.store.session() as s:
        assert s.get(Lead, r.lead["id"]).unsubscribed == 0


def test_a_disqualified_lead_earns_no_engagement_points(sdr):
    sid = "student"
    say(sdr, "hi, I'm a student writing my thesis on sales forecasting", sid)
    r = None
    for text in ("Can we book a demo?", "how much does it cost?", "thanks, bye"):
        r = say(sdr, text, sid)
    positive = [e for e in sdr.lead_detail(r.lead["id"])["score_events"]
                if e["kind"] == "engagement" and e["points"] > 0]
    assert positive == []
    r = say(sdr, "Are you hiring? I'd love to send my resume", "job-seeker")
    r = say(sdr, "can I book a demo to see the product?", "job-seeker")
    assert [e for e in sdr.lead_detail(r.lead["id"])["score_events"] if e["kind"] == "engagement" and e["points"] > 0] == []


# ---------------------------------------------------------------------------------------------
# 3. Titles are never names; names in any script

NAMES = [
    ("I'm Åsa Lindqvist, COO at Bäckström & Co", None, {"name": "Åsa Lindqvist", "company": "Bäckström & Co",
                                                         "seniority": "c_level"}),
    ("Меня зовут Анна", None, {"name": "Анна"}),
    ("Меня зовут Анна Петрова, я директор по продажам", None, {"name": "Анна Петрова"}),
    ("我叫王伟", None, {"name": "王伟"}),
    ("اسمي أحمد", None, {"name": "أحمد"}),
    ("name is Rachel", None, {"name": "Rachel"}),
    ("Hi, I'm José García from Acme", None, {"name": "José García"}),
    ("Ich heiße Jürgen Müller", None, {"name": "Jürgen Müller"}),
    ("Je m'appelle Émilie", None, {"name": "Émilie"}),
    ("Me llamo Sofía", None, {"name": "Sofía"}),
    ("Το όνομά μου είναι Νίκος", None, {"name": "Νίκος"}),
    ("my name is zoë o'neill", None, {"name": "Zoë O'Neill"}),
    ("I'm Dana, VP of Sales at Acme Health", None, {"name": "Dana", "seniority": "vp"}),
    ("Åsa", "name", {"name": "Åsa"}),
    ("王伟", "name", {"name": "王伟"}),
]

TITLES = [
    ("I'm CFO at a 300 person firm", None),
    ("hello, I'm Head of Sales here", None),
    ("I'm VP of Sales", None),
    ("I'm Director of Ops at Acme", None),
    ("I'm Sales Manager at Globex", None),
    ("I am Chief Revenue Officer", None),
    ("This is RevOps", None),
    ("I'm Founder of a small agency", None),
    ("CFO", "name"),
    ("Head of Sales", "name"),
    ("it's the COO", "name"),
    ("Sales Ops Lead", "name"),
]


@pytest.mark.parametrize("text,asked_field,expected", NAMES)
def test_a_name_in_any_script_is_taken_whole(text, asked_field, expected):
    got = read(text, asked_field).values()
    assert {k: got.get(k) for k in expected} == expected


@pytest.mark.parametrize("text,asked_field", TITLES)
def test_a_title_is_never_a_name(text, asked_field):
    assert "name" not in read(text, asked_field).values()


def test_a_title_is_not_thanked_as_a_name_and_never_overwrites_the_widgets_name(sdr):
    r = say(sdr, "I'm CFO at a 300 person firm", "cfo")
    assert "Thanks, CFO" not in r.reply and "name" not in r.lead["fields"]
    assert r.lead["fields"].get("seniority") == "c_level" and r.lead["fields"].get("company_size") == 300
    r = say(sdr, "hello, I'm Head of Sales here", "widget-name", name="Dana Kim")
    assert r.lead["fields"]["name"] == "Dana Kim"


def test_nameparser_loads_once_per_process_not_per_message():
    import sys
    import bot.extract as extract
    assert "nameparser" in sys.modules and hasattr(extract, "HumanName")
    started = time.perf_counter()
    for _ in range(200):
        read("I'm Åsa Lindqvist, COO at Bäckström & Co")
    assert (time.perf_counter() - started) / 200 < 0.02   # per message, far below an import
