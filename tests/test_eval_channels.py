"""The eval plays form and email personas through the real core (issue 12): a form fill goes in by
`receive_form`, an email by `receive_email`, an outbox worker runs their turns, and the prospect
answers the emails it gets in the thread — the first touch, then threaded answers, to the stage a
good SDR reaches. The suite's validation names the file, the persona and the key of a bad one."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from bot.playbook import load_playbook
from evals.run import run_persona
from evals.suite import PERSONAS, SuiteError, load_suite

PB = load_playbook()
SHIPPED = {p["name"]: p for p in load_suite([PERSONAS], PB)}
EVAL_NOW = datetime(2026, 12, 1, 15, 0)   # `sdr eval`'s default --now: the instant the expectations are measured at
FORM = "form fill, healthcare sales manager"
EMAIL = "email, SaaS VP asking for a quote"


def eval_sdr(make_sdr, clock):
    """An SDR as `sdr eval` builds one: the local calendar (the composition root's), at the eval's instant
    (the meeting times offered depend on it)."""
    from integrations.calendar import make_calendar

    clock.set(EVAL_NOW)
    sdr = make_sdr()
    sdr.calendar = make_calendar(sdr.playbook, sdr.store)
    return sdr


def sdr_turns(record: dict) -> list[dict]:
    return [t for t in record["transcript"] if t["role"] == "sdr"]


def test_a_form_persona_gets_a_first_touch_then_answers_in_the_thread(make_sdr, clock):
    sdr = eval_sdr(make_sdr, clock)
    record = run_persona(sdr, SHIPPED[FORM])
    assert record["skipped"] is None and record["passed"], record["failures"]
    first, *answers = sdr_turns(record)
    assert record["transcript"][0]["channel"] == "form" and "Job title: Sales Manager" in record["transcript"][0]["text"]
    assert first["email"]["kind"] == "first_touch" and first["email"]["in_reply_to"] is None
    assert first["text"].startswith("Hi Jordan,") and "automated assistant" in first["text"]
    assert answers and all(a["email"]["kind"] == "reply" and a["email"]["in_reply_to"] for a in answers)
    assert all(a["email"]["subject"] == "Re: " + first["email"]["subject"] for a in answers)
    assert record["stage"] == "meeting_booked" and record["handoff"] is True
    (lead,) = [row["lead"] for row in sdr.store.list_leads()]
    channels = [m["channel"] for m in sdr.lead_detail(lead.id)["messages"]]
    assert channels[:2] == ["form", "form"] and set(channels[2:]) == {"email"}


def test_an_email_persona_is_answered_in_its_thread_and_books(make_sdr, clock):
    sdr = eval_sdr(make_sdr, clock)
    record = run_persona(sdr, SHIPPED[EMAIL])
    assert record["passed"], record["failures"]
    opening = record["transcript"][0]
    assert opening["channel"] == "email" and opening["text"].startswith("Subject: Pricing for ~40 seats")
    first, *rest = sdr_turns(record)
    assert first["email"]["subject"] == "Re: Pricing for ~40 seats" and first["email"]["in_reply_to"]
    assert "$79 per user/month" in first["text"] and "Thanks," not in first["text"]   # their signature: not quoted back
    assert rest and rest[-1]["stage"] == "meeting_booked"
    # the same persona again on the same SDR: its own lead (the address is tagged), not the first one's
    again = run_persona(sdr, SHIPPED[EMAIL])
    assert again["passed"], again["failures"]
    assert again["truths"]["email"] == "irene.walsh+run1@corvidlabs.example" and len(sdr.store.list_leads()) == 2


def test_a_chat_persona_forced_onto_email_writes_with_a_subject(make_sdr):
    sdr = make_sdr()
    chat = next(p for p in SHIPPED.values() if p["channel"] == "chat" and p["truths"].get("email"))
    record = run_persona(sdr, {**chat, "channel": "email"})
    assert record["skipped"] is None and record["transcript"][0]["text"].startswith("Subject: Question about Pipelark")
    assert sdr_turns(record)[0]["email"]["kind"] == "reply"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, named", [
    ("- name: no form\n  channel: form\n  truths: {email: a@b.example}\n", ["missing key 'form'"]),
    ("- name: bad field\n  channel: form\n  form: {email: a@b.example, job_tilte: VP}\n", ["unknown key 'form.job_tilte'"]),
    ("- name: no address\n  channel: form\n  form: {name: Ana, message: hi}\n", ["form: no email field"]),
    ("- name: two addresses\n  channel: form\n  form: {email: a@b.example}\n  truths: {email: c@d.example}\n",
     ["form.email 'a@b.example' is not truths.email"]),
    ("- name: form and opening\n  channel: form\n  form: {email: a@b.example}\n  opening: hi\n", ["has 'form' and 'opening'"]),
    ("- name: form in chat\n  opening: hi\n  form: {email: a@b.example}\n", ["'form' is only for channel form"]),
    ("- name: no subject\n  channel: email\n  opening: hi there\n  truths: {email: a@b.example}\n",
     ["opening: an email persona's first email is 'Subject: …'"]),
    ("- name: no sender\n  channel: email\n  opening: \"Subject: hi\\n\\nbody\"\n", ["missing key 'truths.email'"]),
])
def test_a_bad_form_or_email_persona_is_named_with_its_key(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as e:
        load_suite([path], PB)
    msg = str(e.value)
    assert str(path) in msg and "persona #1" in msg, msg
    for n in named:
        assert n in msg, msg


def test_a_good_form_persona_loads_with_its_form_as_text():
    p = SHIPPED[FORM]
    assert p["opening"] is None and p["form"]["email"] == "jpike@cedarvalleyhealth.example"
    assert all(isinstance(v, str) for v in SHIPPED["form fill, retail sales director"]["form"].values())
