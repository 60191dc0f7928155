"""Casual writing is understood, and a stated fact beats a guess (issue 11), one table per kind:

1. Sizes, timelines, budgets and titles as people really type them ("abt 400 ppl", "30-ish
   people", "two hundred people", "zweihundert Mitarbeiter", "next 2-3 months", "40 grand",
   "Vertriebsleiter") are read, so the field is not asked again; a request is never a role and a
   support report is never a buying timeline.
2. A stated fact beats a guess (the company written out beats the one guessed from the email
   domain) and a correction ("actually 40, not 400", "not 800 but 80") replaces the old value,
   with its source kept in `field_sources` and the fit score explained by score events.
"""
from __future__ import annotations

import time
from datetime import date

import pytest

from bot.extract import understand
from bot.playbook import load_playbook
from bot.turn import Inbound

PB = load_playbook()
TODAY = date(2026, 11, 23)


def read(text: str, asked: str | None = None, known: dict | None = None) -> dict:
    return understand(text, PB, asked_field=asked, today=TODAY, known=known).values()


def say(sdr, text: str, sid: str, **visitor):
    return sdr.handle(Inbound(text=text, session_id=sid, channel="web", visitor=visitor or None))


# ---------------------------------------------------------------------------------------------
# 1. Casual writing

SIZES = [
    ("abt 400 ppl", 400),
    ("w/ 250 employees", 250),
    ("were about 35 people, ops manager here", 35),
    ("Headcount's around 30", 30),
    ("headcount: ~75", 75),
    ("30-ish people", 30),
    ("just me and one other person", 2),
    ("it's me and my cofounder", 2),
    ("just the two of us", 2),
    ("me and 3 others", 4),
    ("a team of five", 5),
    ("~1.2k staff", 1200),
    ("two hundred people", 200),
    ("twelve hundred employees", 1200),
    ("we're 1,200 strong", 1200),
    ("roughly 60 heads", 60),
    ("somos unas 300 personas", 300),
    ("somos doscientos empleados", 200),
    ("wir sind zweihundert Mitarbeiter", 200),
    ("nous sommes deux cents personnes", 200),
    ("somos duzentos funcionários", 200),
    ("we have 45 FTEs", 45),
]


@pytest.mark.parametrize("text,size", SIZES)
def test_a_size_however_written(text, size):
    got = read(text)
    assert got.get("company_size") == size, (text, got)
    assert "company" not in got, (text, got)        # "1,200 strong" is no company called "1"


TIMELINES = [
    ("next 2-3 months", "next_quarter"),
    ("in the next 2 to 3 months", "next_quarter"),
    ("in a couple of months", "next_quarter"),
    ("by end of Q3", "this_year"),
    ("asap", "now"),
    ("ASAP pls", "now"),
    ("we needed this yesterday", "now"),
    ("within the next three weeks", "this_quarter"),
    ("sometime in the next 6 months", "this_year"),
    ("over the next 3-4 weeks", "this_quarter"),
    ("no rush, just looking", "later"),
    ("in two months or so", "next_quarter"),
]


@pytest.mark.parametrize("text,bucket", TIMELINES)
def test_a_timeline_however_written(text, bucket):
    assert read(text).get("timeline") == bucket, (text, read(text))


SUPPORT_REPORTS = [
    "the sync broke yesterday",
    "Our HubSpot sync stopped updating deals yesterday",
    "login is broken right now",
    "we got an error this week when exporting",
    "since last week the Salesforce sync isn't working",
    "our integration stopped working this month",
    "the dashboard has been down since this morning",
    "the forecast page crashed today",
    "reports failed to load yesterday, who should I contact?",
    "we're already customers and the export has a bug this week",
    "the sync broke yesterday, we need it fixed asap",
    "Willow & Wick. Our import failed yesterday.",
]


@pytest.mark.parametrize("text", SUPPORT_REPORTS)
def test_a_support_report_is_not_a_buying_timeline(text):
    assert "timeline" not in read(text), (text, read(text))


def test_a_problem_with_a_buying_deadline_keeps_the_deadline():
    assert read("our forecasts are broken, we need a fix asap").get("timeline") == "now"
    assert read("our current tool broke, we want to switch next quarter").get("timeline") == "next_quarter"


BUDGETS = [
    ("budget is already approved", None, "approved"),
    ("we've got sign-off", None, "approved"),
    ("finance already signed off on it", None, "approved"),
    ("the budget's been approved", None, "approved"),
    ("we have an approved budget", None, "approved"),
    ("got the green light from the CFO", None, "approved"),
    ("~$40k", "budget", 40000),
    ("40 grand", "budget", 40000),
    ("we have about 40 grand set aside", None, 40000),
    ("budget's ~$40k", None, 40000),
    ("maybe $25k a year", "budget", 25000),
    ("not yet, no budget", "budget", "none yet"),
]


@pytest.mark.parametrize("text,asked,budget", BUDGETS)
def test_a_budget_however_written(text, asked, budget):
    assert read(text, asked).get("budget") == budget, (text, read(text, asked))


TITLES = [
    ("soy directora comercial en Transportes Vega", "director", "Directora Comercial"),
    ("Directora Comercial here", "director", "Directora Comercial"),
    ("ich bin Vertriebsleiter", "director", "Vertriebsleiter"),
    ("Ich bin Teamleiterin im Vertrieb", "manager", None),
    ("je suis directeur commercial", "director", "Directeur Commercial"),
    ("sou diretor de vendas", "director", "Diretor de Vendas"),
    ("soy gerente de ventas", "manager", "Gerente de Ventas"),
    ("soy el director general", "c_level", None),
    ("ich bin Geschäftsführerin", "c_level", None),
    ("sou vice-presidente de vendas", "vp", None),
    ("I'm vice president of sales", "vp", None),
    ("je suis responsable commercial", "manager", None),
    ("soy estudiante de MBA", "student", None),
]


@pytest.mark.parametrize("text,seniority,role", TITLES)
def test_a_title_in_another_language_has_its_seniority(text, seniority, role):
    got = read(text)
    assert got.get("seniority") == seniority, (text, got)
    if role:
        assert got.get("role") == role, (text, got)
    assert "name" not in got


NOT_ROLES = [
    "send me a case study from a company like us",
    "show me a customer story please",
    "can you send pricing first",
    "just send me the deck",
    "I'd like to see a demo first",
    "give me an example of a team like ours",
    "email me the details",
    "tell me about integrations first",
    "let me think about it",
    "share a case study and I'll answer",
]


@pytest.mark.parametrize("text", NOT_ROLES)
def test_a_request_is_never_stored_as_the_role(text):
    got = read(text, "role")
    assert "role" not in got and "seniority" not in got, (text, got)


@pytest.mark.parametrize("text,role", [("Sales consultant", "Sales consultant"), ("I'm the Directora Comercial", "Directora Comercial"),
                                       ("bookkeeper", "bookkeeper"), ("ops, mostly", "ops, mostly")])
def test_an_answer_to_the_role_question_is_still_the_role(text, role):
    assert read(text, "role").get("role") == role


def test_an_answer_with_small_talk_after_it_is_still_the_answer():
    assert read("Willow & Wick. Appreciate the quick replies, by the way.", "company").get("company") == "Willow & Wick"
    assert read("Headcount's around 30. We've looked at a few tools already.", "company_size").get("company_size") == 30


def test_casual_answers_are_not_asked_again(sdr):
    sid = "casual"
    say(sdr, "hi, we need better forecasting", sid)
    r = say(sdr, "VP of Sales here", sid)
    for text, field in (("Headcount's around 30", "company_size"), ("next 2-3 months", "timeline"),
                        ("budget is already approved", "budget"), ("name is Rachel", "name")):
        r = say(sdr, text, sid)
        assert field in r.lead["fields"], (text, r.lead["fields"])
        assert field not in [a["field"] for a in r.actions if a["type"] == "ask"], (text, r.actions)


def test_the_number_library_loads_once():
    import sys
    import bot.extract as extract
    assert "text_to_num" in sys.modules and hasattr(extract, "alpha2digit")
    started = time.perf_counter()
    for _ in range(200):
        read("wir sind zweihundert Mitarbeiter, two hundred people next 2-3 months")
    assert (time.perf_counter() - started) / 200 < 0.02


# ---------------------------------------------------------------------------------------------
# 2. A stated fact beats a guess; corrections replace

CORRECTIONS = [
    ("actually we're 40 people, not 400", {"company_size": 400}, 40),
    ("sorry, I meant 120 people, not 1,200", {"company_size": 1200}, 120),
    ("not 800 but 80", {"company_size": 800}, 80),
    ("oops, 80 not 800", {"company_size": 800}, 80),
    ("correction: we're 55 people", {"company_size": 550}, 55),
    ("sorry, typo — 30 employees, not 300", {"company_size": 300}, 30),
    ("my bad, it's 1,500 staff", {"company_size": 150}, 1500),
    ("actually closer to 90", {"company_size": 900}, 90),
    ("I meant 12", {"company_size": 120}, 12),
    ("no wait, 250 people not 25", {"company_size": 25}, 250),
]


@pytest.mark.parametrize("text,known,size", CORRECTIONS)
def test_a_correction_is_read_as_the_corrected_value(text, known, size):
    u = understand(text, PB, today=TODAY, known=known)
    assert u.values().get("company_size") == size, (text, u.values())
    assert "company" not in u.values(), (text, u.values())
    fact = u.fields["company_size"]
    assert fact.certain and fact.source == "corrected"


def test_sources_say_where_a_fact_came_from():
    u = understand("I'm at Redwood Analytics, ops@redwood-a.example", PB, today=TODAY)
    assert u.values()["company"] == "Redwood Analytics" and u.fields["company"].source == "said"
    u = understand("reach me at ops@redwood-a.example", PB, today=TODAY)
    assert u.fields["company"].source == "guessed_from_email" and not u.fields["company"].certain


STATED_COMPANIES = [
    ("I'm at Redwood Analytics", "ops@redwood-a.example", "Redwood Analytics"),
    ("i work at Redwood Analytics", "ops@redwood-a.example", "Redwood Analytics"),
    ("I'm from Bluefin", "sam@bfn.example", "Bluefin"),
    ("we're Northwind Traders", "it@nwt.example", "Northwind Traders"),
]


@pytest.mark.parametrize("text,email,company", STATED_COMPANIES)
def test_a_stated_company_beats_the_email_guess_in_any_order(sdr, text, email, company):
    sid = "stated-" + company
    say(sdr, f"you can reach me at {email}", sid + "-a")
    r = say(sdr, text, sid + "-a")
    assert r.lead["fields"]["company"] == company
    assert sdr.lead_detail(r.lead["id"])["field_sources"]["company"]["source"] == "said"
    r = say(sdr, f"{text}, reach me at {email}", sid + "-b")
    assert r.lead["fields"]["company"] == company
    r = say(sdr, text, sid + "-c")
    r = say(sdr, f"you can reach me at {email}", sid + "-c")
    assert r.lead["fields"]["company"] == company


def test_the_widget_fields_are_marked_as_form(sdr):
    r = say(sdr, "hello", "form-src", name="Dana Kim", email="dana@acmehealth.example")
    sources = sdr.lead_detail(r.lead["id"])["field_sources"]
    assert sources["name"]["source"] == "form" and sources["email"]["source"] == "form"


def test_a_correction_replaces_the_size_and_the_score_explains_it(sdr):
    sid = "correct-size"
    say(sdr, "hi, we need better forecasting", sid)
    r = say(sdr, "we're about 400 people", sid)
    assert r.lead["fields"]["company_size"] == 400
    r = say(sdr, "actually we're 40 people, not 400", sid)
    assert r.lead["fields"]["company_size"] == 40 and "company" not in r.lead["fields"]
    assert sdr.lead_detail(r.lead["id"])["field_sources"]["company_size"]["source"] == "corrected"
    events = sdr.lead_detail(r.lead["id"])["score_events"]
    dropped = [e for e in events if e["kind"] == "fit" and e["points"] < 0 and "company size" in e["reason"]]
    added = [e for e in events if e["kind"] == "fit" and e["points"] > 0 and "company size is 40" in e["reason"]]
    assert dropped and added, events


COMPANIES_AFTER_A_TITLE = [   # the function in a title is never the company
    ("I'm Director of Sales Operations at Tern & Thistle, a retail brand", "Tern & Thistle"),
    ("I'm Director of Partnerships at Halden Advisory", "Halden Advisory"),
    ("I am Head of Sales at Acme Corp", "Acme Corp"),
    ("VP of Marketing at Globex", "Globex"),
    ("CEO of Initech here", "Initech"),
    ("I'm a sales manager at Hooli", "Hooli"),
    ("Head of RevOps at Zürich Versicherung", "Zürich Versicherung"),
    ("lead engineer at Pied Piper", "Pied Piper"),
    ("Manager of Inside Sales at Umbrella Health", "Umbrella Health"),
    ("VP of Revenue Operations at Bäckström & Co", "Bäckström & Co"),
]


@pytest.mark.parametrize("text, company", COMPANIES_AFTER_A_TITLE)
def test_the_company_after_a_title_is_the_company(text, company):
    assert read(text)["company"] == company
