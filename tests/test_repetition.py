"""Never the same reply twice, never the same opening twice (issue 11, item 5), one table per kind:

1. Openings and echoes vary: the greeting, the "Got it — …" echo, the thanks and the lead-in to a
   question asked again have several phrasings in prompts/replies.yaml, chosen from the
   conversation state so CONSECUTIVE replies never open with the same words; only what was
   understood this turn is echoed.
2. A finished conversation (disqualified, opted out, handed off) answers "bye", "ok thanks",
   "cool", "thanks!" with a short acknowledgement that differs from the reply before it — never the
   closing sentence again.
3. Every phrasing passes the grounding guard on its own (no number or name the evidence lacks).

And whole conversations, played through a real SDR, 8 turns each.
"""
from __future__ import annotations

import re

import pytest

from bot.compose import Step, build_plan
from bot.guard import ungrounded_claims
from bot.meetings import MeetingOutcome
from bot.playbook import load_playbook
from bot.policy import Decision
from bot.rule_brain import RuleBrain
from bot.turn import Inbound

PB = load_playbook()
BRAIN = RuleBrain(PB)


def say(sdr, text: str, sid: str):
    return sdr.handle(Inbound(text=text, session_id=sid, channel="cli"))


def opening(text: str, n: int = 4) -> tuple[str, ...]:
    return tuple(re.findall(r"[\w'’]+", text.lower())[:n])


def asked(result) -> list[str]:
    return [a["field"] for a in result.actions if a["type"] == "ask"]


def assert_no_repeats(replies: list[str]) -> None:
    for before, after in zip(replies, replies[1:]):
        assert after != before, f"the same reply twice: {after!r}"
        assert opening(after) != opening(before), f"the same opening twice:\n  {before!r}\n  {after!r}"


def render(kind: str, variant: int, **data) -> str:
    plan = build_plan(Decision(variant=variant), MeetingOutcome(), PB, {})
    plan = plan.__class__((Step(kind, data),), plan.decision)
    return BRAIN.compose(plan, None, []).text


# ---------------------------------------------------------------------------------------------
# 1. Openings and echoes vary

VARIED = [   # (template, what fills it)
    ("greeting", {}),
    ("thanks_name", {"name": "Dana"}),
    ("thanks", {}),
    ("noted", {"summary": "VP of Sales, 450 people"}),
    ("acknowledge_closed", {}),
    ("acknowledge_done", {}),
    ("ask_again", {"text": "What's your role on the team?"}),
    ("not_interested", {}),
    ("objection", {}),
    ("meeting_accepted", {}),
    ("human", {}),
    ("fallback", {}),
    ("unsubscribed", {}),
    ("close_again", {}),
]


@pytest.mark.parametrize("kind,data", VARIED)
def test_a_template_has_several_phrasings_and_consecutive_ones_open_differently(kind, data):
    texts = [render(kind, v, **data) for v in range(6)]
    assert len(set(texts)) >= 2, texts
    for v in range(5):
        assert opening(texts[v]) != opening(texts[v + 1]), (kind, texts[v], texts[v + 1])
    assert render(kind, 3, **data) == texts[3]                        # deterministic given the state


def test_the_single_string_form_of_a_template_still_works():
    brain = RuleBrain(PB)
    brain.templates = {**brain.templates, "thanks": "Thanks, that helps."}
    plan = build_plan(Decision(variant=5), MeetingOutcome(), PB, {})
    plan = plan.__class__((Step("thanks"),), plan.decision)
    assert brain.compose(plan, None, []).text == "Thanks, that helps."


# Two messages in a row, each stating something new: the second reply opens differently and
# echoes only what the second message said.
ECHOES = [
    ("we need better forecasting", "I'm VP of Sales", "VP of Sales", "forecasting"),
    ("I'm VP of Sales", "we're about 450 people", "450 people", "VP of Sales"),
    ("we're about 450 people", "this quarter", "this quarter", "450 people"),
    ("I'm the CRO", "around 600 employees", "600 people", "CRO"),
    ("we have 40 people", "I run RevOps", "RevOps", "40 people"),
    ("I'm Head of Sales", "about 120 people", "120 people", "Head of Sales"),
    ("we're 250 people", "we're in software", "saas", "250 people"),
    ("I'm a sales manager", "next quarter", "next quarter", "ales manager"),
    ("we are 90 people", "I'm the COO", "COO", "90 people"),
    ("I'm Director of Sales", "we're roughly 300 people", "300 people", "Director of Sales"),
    ("our team is 75 people", "we want it this quarter", "this quarter", "75 people"),
]


@pytest.mark.parametrize("first,second,echoed,not_echoed", ECHOES)
def test_consecutive_echoes_open_differently_and_echo_only_this_turn(sdr, first, second, echoed, not_echoed):
    sid = f"echo-{abs(hash((first, second)))}"
    replies = [say(sdr, "hello", sid).reply, say(sdr, first, sid).reply, say(sdr, second, sid).reply]
    assert_no_repeats(replies)
    assert echoed in replies[2] and not_echoed not in replies[2], replies[2]


NOTHING_UNDERSTOOD = ["hmm", "ok", "cool", "not sure what you mean", "lol", "interesting", "hm, well",
                      "right", "I see", "whatever works", "👍"]


@pytest.mark.parametrize("text", NOTHING_UNDERSTOOD)
def test_what_was_not_understood_is_not_echoed_and_a_question_asked_again_reads_differently(sdr, text):
    sid = f"nothing-{abs(hash(text))}"
    replies = [say(sdr, "hello", sid).reply, say(sdr, "I'm VP of Sales", sid).reply]
    r = say(sdr, text, sid)
    assert "VP of Sales" not in r.reply and "Got it" not in r.reply, r.reply
    replies.append(r.reply)
    replies.append(say(sdr, text, sid).reply)
    assert_no_repeats(replies)


PLEASANTRIES = ["ok", "cool", "thanks", "ok thanks", "great", "sure", "nice", "thx", "cheers", "alright", "👍"]
ECHO_OPENINGS = re.compile(r"^(?:Got it —|Noted:|Understood —|Makes sense:)")


@pytest.mark.parametrize("text", PLEASANTRIES)
def test_a_pleasantry_after_a_question_is_never_echoed_as_a_fact(sdr, text):
    sid = f"pleasantry-{abs(hash(text))}"
    first = say(sdr, "hello", sid)
    r = say(sdr, text, sid)
    assert not ECHO_OPENINGS.search(r.reply), r.reply
    assert f"— {text}." not in r.reply and f": {text}." not in r.reply, r.reply
    assert_no_repeats([first.reply, r.reply])


# ---------------------------------------------------------------------------------------------
# 2. A finished conversation closes with short, varied acknowledgements

FINISHERS = {
    "student": "hi, I'm a student writing my thesis on sales forecasting",
    "job_seeker": "Are you hiring? I'd love to send my resume",
    "competitor": "I work at Forecastry and wanted to see your pricing",
    "opted_out": "not interested, please stop",
    "handed_off": "I'm the CRO of a 600 person company, we need better forecasting this quarter, ana@acme.example",
}
CLOSERS = [("student", "bye"), ("student", "ok thanks"), ("student", "cool"), ("student", "thanks!"),
           ("job_seeker", "ok"), ("job_seeker", "bye"), ("competitor", "cool"), ("competitor", "thanks!"),
           ("opted_out", "ok thanks"), ("opted_out", "bye"), ("handed_off", "ok thanks"), ("handed_off", "cool"),
           ("handed_off", "bye")]


@pytest.mark.parametrize("who,closer", CLOSERS)
def test_a_finished_conversation_gets_short_acknowledgements_that_differ(sdr, who, closer):
    sid = f"done-{who}-{closer}"
    first = say(sdr, FINISHERS[who], sid)
    if who == "handed_off":
        first = say(sdr, "my name is Ana", sid)
        assert first.lead["handed_off"], first.lead
    replies = [first.reply]
    for text in (closer, closer, "thanks", closer):
        r = say(sdr, text, sid)
        assert asked(r) == [] and "?" not in r.reply, (text, r.reply)
        assert len(r.reply) < 80, r.reply
        assert not any(a["type"] in ("close", "handoff", "offer_meeting") for a in r.actions), r.actions
        replies.append(r.reply)
    assert_no_repeats(replies)


# ---------------------------------------------------------------------------------------------
# 3. Every phrasing is grounded on its own

def _variants(key: str) -> list[str]:
    value = BRAIN.templates.get(key, "")
    return list(value) if isinstance(value, list) else [value]


GROUNDED = [(k, i) for k, _ in VARIED for i in range(len(_variants(k)))]


@pytest.mark.parametrize("kind,index", GROUNDED)
def test_every_phrasing_passes_the_guard_without_the_templates_as_evidence(kind, index):
    data = dict(dict(VARIED)[kind])
    text = render(kind, index, **data)
    evidence = "\n".join([PB.grounding_text(), str(data)])
    assert ungrounded_claims(text, evidence) == [], text


def test_enough_phrasings_to_check():
    assert len(GROUNDED) >= 30


# ---------------------------------------------------------------------------------------------
# Whole conversations, 8 turns

CONVERSATIONS = {
    "qualifying": ["hi", "we need better pipeline forecasting", "I'm VP of Sales", "about 450 people",
                   "hmm", "this quarter", "ok", "dana@acme.example"],
    "student": ["hi, I'm a student writing my thesis on sales forecasting", "ok", "bye", "thanks", "cool",
                "ok", "thanks!", "bye"],
    "opted_out": ["hello", "not interested, please stop", "ok", "bye", "thanks", "cool", "ok thanks", "bye"],
    "job_seeker": ["Are you hiring?", "ok", "thanks", "bye", "cool", "ok", "thanks!", "bye"],
    "vague": ["hello", "hmm", "ok", "cool", "hmm", "ok", "not sure", "cool"],
    "stop_twice": ["hello", "stop", "stop", "ok", "please stop", "bye", "unsubscribe", "thanks"],
    "handed_off": ["I'm the CRO of a 600 person company, we need better forecasting this quarter, ana@acme.example",
                   "my name is Ana", "ok thanks", "cool", "bye", "thanks!", "ok", "bye"],
}


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_eight_turns_never_repeat_a_reply_or_an_opening(sdr, name):
    replies = [say(sdr, text, f"eight-{name}").reply for text in CONVERSATIONS[name]]
    assert_no_repeats(replies)
    assert sdr.counters["guard_fallbacks"] == 0


@pytest.mark.parametrize("text", ["k" * 40 + "?", "ok " * 40 + "x", "thanks, " * 30 + "but what does it cost",
                                  "bye" * 30, "ta" * 40 + "!?"])
def test_reading_a_pleasantry_never_backtracks_for_long(text):
    import time
    from bot.policy import PLEASANTRY_RE
    started = time.perf_counter()
    PLEASANTRY_RE.match(text)
    assert time.perf_counter() - started < 0.005
