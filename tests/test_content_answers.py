"""Answer what the content answers (issue 11, item 6), one table per kind of failure:

1. a question naming several tools answers each (the integrations page's row for every known
   one, a plain "not in our materials" for every other);
2. retrieval finds the passage that answers (the ROI page for ROI questions, the content's plain
   "no" for a yes/no question, the "does not integrate" sentence for an unsupported CRM);
3. a budget below the playbook's price floor is scored `budget_below_floor` (and answered with the
   floor and the plans that fit, quoted from the pricing page);
4. relative dates resolve on the conversation's calendar: a buying timeline, and the meeting times
   offered for "next month", "in 2 weeks", "early March", "after the 15th";
5. questions about the meeting are answered from the playbook, never from the content.

Every SDR runs on the fixture clock (Tue 13 Jan 2026 15:00 UTC) or one the test sets; nothing
reaches the network.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime

import pytest

from bot.turn import Inbound

INTEGRATIONS = "https://pipelark.example/integrations"
PRICING = "https://pipelark.example/pricing"
ROI = "https://pipelark.example/roi-calculator"
SECURITY_FAQ = "https://pipelark.example/faq/security"

# The integrations page's own words for each tool (its row, or its bullet).
ROW = {"Salesforce": "Two-way sync of opportunities", "HubSpot": "Two-way sync of deals, companies",
       "Pipedrive": "Two-way sync of deals, organizations", "Gong": "imports call data",
       "Slack": "deal risk alerts", "Zoom": "meetings are logged on all plans", "Gmail": "matched to the right contact",
       "Outlook": "matched to the right contact", "Snowflake": "hourly export", "BigQuery": "hourly export",
       "Zapier": "thousands of other apps", "Microsoft Teams": "deal risk alerts"}
NOT_SUPPORTED = "does not integrate with Zoho CRM"


@pytest.fixture
def sdr(shared_sdr):
    """One SDR for the module (conftest: shared_sdr): every test here asks in a session of its own and
    reads only that session's answer, on its own clock. The tests that give an SDR a calendar build
    their own (make_sdr)."""
    return shared_sdr


def ask(sdr, text, session=None, **visitor):
    return sdr.handle(Inbound(text=text, session_id=session or "s_" + uuid.uuid4().hex, channel="web",
                              visitor=visitor or None))


def urls(result):
    return [s["url"] for s in result.sources]


# ---------------------------------------------------------------------------------------------
# 1. Several tools in one question: each answered

SEVERAL_TOOLS = [
    ("what about hubspot and gong", ["HubSpot", "Gong"], []),
    ("do you integrate with Salesforce and Trello?", ["Salesforce"], ["Trello"]),
    ("Salesforce, Slack or Zoom?", ["Salesforce", "Slack", "Zoom"], []),
    ("hubspot + outreach?", ["HubSpot"], ["outreach"]),
    ("do you work with Pipedrive & Gmail", ["Pipedrive", "Gmail"], []),
    ("SALESFORCE AND GONG?", ["Salesforce", "Gong"], []),
    ("how about snowflake or bigquery?", ["Snowflake", "BigQuery"], []),
    ("does it integrate with HubSpot, Slack and Asana?", ["HubSpot", "Slack"], ["Asana"]),
    ("do you connect to zoom and microsoft teams?", ["Zoom", "Microsoft Teams"], []),
    ("what about pipedrive/zapier?", ["Pipedrive", "Zapier"], []),
    ("Can it sync with Outlook and Notion?", ["Outlook"], ["Notion"]),
    ("gong, salesforce?", ["Gong", "Salesforce"], []),
]


@pytest.mark.parametrize("question,known,unknown", SEVERAL_TOOLS, ids=[q for q, _, _ in SEVERAL_TOOLS])
def test_a_question_naming_several_tools_answers_each(sdr, question, known, unknown):
    r = ask(sdr, question)
    assert INTEGRATIONS in urls(r), (question, r.reply)
    for tool in known:
        assert ROW[tool] in r.reply, (question, tool, r.reply)
    for tool in unknown:
        assert f"{tool} isn't one of the integrations in our materials" in r.reply, (question, r.reply)
        assert "connect you with someone" in r.reply


# ---------------------------------------------------------------------------------------------
# 2. The passage that answers, including the content's plain "no"

ROI_QUESTIONS = [
    "whats the roi usually?",
    "what ROI do customers see?",
    "is it worth the money?",
    "is it worth it?",
    "does it pay for itself?",
    "what's the payback period?",
    "what kind of return can we expect?",
    "how do you calculate ROI?",
    "do you have an ROI calculator?",
    "what's the return on investment?",
    "how fast does it pay back?",
]


@pytest.mark.parametrize("question", ROI_QUESTIONS)
def test_an_roi_question_finds_the_roi_page(sdr, question):
    r = ask(sdr, question)
    assert urls(r)[:1] == [ROI], (question, r.reply)
    assert "ROI calculator" in r.reply


PLAIN_NO = [
    ("can we self-host it?", SECURITY_FAQ, "No."),
    ("is there an on-prem version?", SECURITY_FAQ, "No."),
    ("is there a self-hosted edition?", SECURITY_FAQ, "No."),
    ("do you sell single seats?", PRICING, "don't sell single seats"),
    ("can I buy just one seat?", PRICING, "don't sell single seats"),
    ("are there 2-user plans?", PRICING, "don't sell single seats or 2-user plans"),
    ("can we mix plans?", PRICING, "plans can't be mixed"),
    ("do you support Zoho CRM?", INTEGRATIONS, NOT_SUPPORTED),
    ("do you integrate with Zoho?", INTEGRATIONS, NOT_SUPPORTED),
    ("is Freshsales supported?", INTEGRATIONS, "Freshsales"),
    ("we use Microsoft Dynamics 365, will that work?", INTEGRATIONS, NOT_SUPPORTED),
    ("does it work with NetSuite?", INTEGRATIONS, NOT_SUPPORTED),
    ("what about SAP?", INTEGRATIONS, NOT_SUPPORTED),
]


@pytest.mark.parametrize("question,url,words", PLAIN_NO, ids=[q for q, _, _ in PLAIN_NO])
def test_a_yes_no_question_gets_the_contents_plain_no(sdr, question, url, words):
    r = ask(sdr, question)
    assert urls(r)[:1] == [url], (question, r.reply)
    assert words in r.reply, (question, r.reply)
    assert "support hours" not in r.reply.lower()


# ---------------------------------------------------------------------------------------------
# 3. A budget below the price floor

BELOW_FLOOR = ["our budget is about $5k a year", "we have 5k budgeted", "budget is $12,000 per year",
               "we can spend around $20k annually", "our budget: 8000 dollars", "we've set aside $1,000 a month",
               "ballpark budget is 15k", "budget's roughly $25k/yr", "we have about 10 grand to spend",
               "budget is 2k per month", "we can afford $29,000 a year"]
AT_OR_ABOVE = ["our budget is $30k a year", "we have 50k budgeted", "budget is $2,500 per month",
               "budget is approved"]


def fit_rules(result):
    return {c["rule"]: c for c in result.score_changes if c["kind"] == "fit"}


@pytest.mark.parametrize("statement", BELOW_FLOOR)
def test_a_budget_below_the_floor_is_scored_with_the_floor_named(sdr, statement):
    r = ask(sdr, statement)
    rule = fit_rules(r).get("budget_below_floor")
    assert rule is not None and rule["points"] < 0, (statement, r.score_changes)
    assert "$30,000" in rule["reason"] and "Enterprise" in rule["reason"]


@pytest.mark.parametrize("statement", AT_OR_ABOVE)
def test_a_budget_at_or_above_the_floor_is_not_penalised(sdr, statement):
    assert "budget_below_floor" not in fit_rules(ask(sdr, statement))


def test_the_floor_in_the_playbook_is_the_one_the_pricing_page_states(sdr):
    pb = sdr.playbook
    rule = next(r for r in pb.fit if r.id == "budget_below_floor")
    assert pb.pricing is not None and rule.lte is not None and pb.pricing.floor - 1 <= rule.lte < pb.pricing.floor
    doc = next(m["doc_id"] for _, m in sdr.kb.corpus() if m.get("url") == PRICING)
    page = "\n".join(sdr.kb.headings(doc))   # the plans and their prices are the page's section headings
    assert f"{pb.pricing.plan} — custom pricing, starting at ${pb.pricing.floor:,.0f} per {pb.pricing.period}" in page
    for plan in pb.pricing.fits:
        assert f"{plan} — $" in page


def test_the_budget_answer_quotes_the_floor_and_the_plans_that_fit(sdr):
    from bot.answers import budget_answer
    a = budget_answer(sdr.kb, sdr.playbook, 5000)
    values = dict(a.values)
    assert a.template == "budget_below_floor" and a.hit.url == PRICING
    assert values["floor"] == "$30,000" and values["plan"] == "Enterprise" and values["budget"] == "$5,000"
    assert "Starter — $39 per user/month" in a.hit.snippet and "Growth — $79 per user/month" in a.hit.snippet
    assert budget_answer(sdr.kb, sdr.playbook, 30000) is None and budget_answer(sdr.kb, sdr.playbook, "approved") is None


# ---------------------------------------------------------------------------------------------
# 4. Relative dates on the conversation's calendar

TIMELINES = [   # (today, words, bucket)
    (date(2026, 12, 1), "we want to start next month", "next_quarter"),        # January is next quarter
    (date(2026, 1, 13), "we want to start next month", "this_quarter"),        # February is this one
    (date(2026, 12, 1), "before our board meeting next month", "this_quarter"),
    (date(2026, 12, 1), "by the end of next month", "next_quarter"),
    (date(2026, 3, 25), "we'd roll it out next month", "next_quarter"),
    (date(2026, 12, 1), "in a month or two", "next_quarter"),
    (date(2026, 1, 13), "in a month or two", "this_quarter"),
    (date(2026, 12, 1), "in 2-3 months", "next_quarter"),
    (date(2026, 12, 20), "in 3 weeks", "next_quarter"),
    (date(2026, 12, 1), "in 3 weeks", "this_quarter"),
    (date(2026, 5, 10), "within a month", "this_quarter"),
    (date(2026, 9, 20), "within a month", "next_quarter"),
]


@pytest.mark.parametrize("today,words,bucket", TIMELINES)
def test_a_relative_timeline_resolves_on_the_conversations_date(sdr, today, words, bucket):
    from bot.extract import understand
    u = understand(words, sdr.playbook, today=today)
    assert u.values().get("timeline") == bucket, (today, words, u.values())


def test_the_turn_reads_next_month_on_its_own_clock(make_sdr, clock):
    clock.set(datetime(2026, 12, 1, 15, 0))
    r = ask(make_sdr(), "we want to start next month")
    assert r.lead["fields"]["timeline"] == "next_quarter"


# (clock, words, first day, last day): the times offered lie in that window, visitor-local (UTC here)
WINDOWS = [
    (datetime(2026, 12, 1, 15), "can we book a call next month?", date(2027, 1, 1), date(2027, 1, 31)),
    (datetime(2026, 1, 13, 15), "can we book a call next month?", date(2026, 2, 1), date(2026, 2, 28)),
    (datetime(2026, 1, 13, 15), "book a demo in 2 weeks", date(2026, 1, 26), date(2026, 2, 1)),
    (datetime(2026, 12, 1, 15), "I'd like to schedule a meeting early January", date(2027, 1, 1), date(2027, 1, 10)),
    (datetime(2026, 1, 13, 15), "book a call after the 15th", date(2026, 1, 16), date(2026, 1, 29)),
    (datetime(2026, 1, 13, 15), "schedule a call in mid-March please", date(2026, 3, 11), date(2026, 3, 20)),
    (datetime(2026, 1, 13, 15), "can we book a call next week?", date(2026, 1, 19), date(2026, 1, 25)),
    (datetime(2026, 1, 13, 15), "book a meeting the week of the 26th", date(2026, 1, 26), date(2026, 2, 1)),
    (datetime(2026, 1, 13, 15), "book a call in a couple of weeks", date(2026, 1, 26), date(2026, 2, 1)),
    (datetime(2026, 1, 13, 15), "let's schedule a call sometime in March", date(2026, 3, 1), date(2026, 3, 31)),
    (datetime(2026, 1, 13, 15), "book a call from Feb 3", date(2026, 2, 3), date(2026, 2, 16)),
    (datetime(2026, 12, 1, 15), "can we schedule a meeting late next month?", date(2027, 1, 21), date(2027, 1, 31)),
]


@pytest.mark.parametrize("now,words,first,last", WINDOWS, ids=[f"{n:%d%b}-{w}" for n, w, _, _ in WINDOWS])
def test_meeting_times_are_offered_in_the_window_asked_for(make_sdr, clock, now, words, first, last):
    from integrations.calendar import make_calendar
    clock.set(now)
    sdr = make_sdr()
    sdr.calendar = make_calendar(sdr.playbook, sdr.store)
    r = ask(sdr, words, timezone="UTC")
    offer = next(a for a in r.actions if a["type"] == "offer_slots")
    days = [date.fromisoformat(s["start"][:10]) for s in offer["slots"]]
    assert days and all(first <= d <= last for d in days), (words, days, r.reply)


def test_without_a_window_the_soonest_times_are_offered(make_sdr, clock):
    from integrations.calendar import make_calendar
    clock.set(datetime(2026, 1, 13, 15))
    sdr = make_sdr()
    sdr.calendar = make_calendar(sdr.playbook, sdr.store)
    offer = next(a for a in ask(sdr, "book a call", timezone="UTC").actions if a["type"] == "offer_slots")
    assert all(s["start"][:10] <= "2026-01-16" for s in offer["slots"])


# ---------------------------------------------------------------------------------------------
# 5. About the meeting: the playbook answers, the content store is not asked

MEETING_QUESTIONS = ["what will we cover in the call?", "how long is the meeting?", "how long is the demo?",
                     "who will be on the call?", "what should I prepare for the meeting?",
                     "what's the agenda for the call?", "how many minutes is the intro call?",
                     "what do we discuss in the meeting?", "what can I expect from the demo?",
                     "how long does the call last?"]


@pytest.mark.parametrize("question", MEETING_QUESTIONS)
def test_a_question_about_the_meeting_is_not_searched_in_the_content(sdr, question):
    from bot.answers import answer_question
    from bot.extract import understand
    from knowledge.retrieve import LeadContext

    class NoSearch:
        def __getattr__(self, name):
            raise AssertionError(f"the content store was asked ({name}) about the meeting: {question}")

    got = answer_question(NoSearch(), question, understand(question, sdr.playbook), LeadContext(),
                          playbook=sdr.playbook)
    assert [a.template for a in got] == ["meeting_answer"]
    assert dict(got[0].values)["minutes"] == sdr.playbook.meeting.length_minutes
    r = ask(sdr, question)
    assert not urls(r), (question, r.reply)   # nothing quoted from the content about our own call


def test_questions_about_us_and_the_time_zone_stay_out_of_the_content(sdr):
    for q in ("are you a bot?", "which time zone is that?"):
        r = ask(sdr, q)
        assert not urls(r), (q, r.reply)


# ---------------------------------------------------------------------------------------------
# In the reply: the answers above worded by their templates. This needs the turn to say them
# (compose renders an answer's `template`; policy adds the budget answer): until that hook is in,
# these are expected to fail — and fail the run once it is in and they still don't pass.



@pytest.mark.parametrize("statement", BELOW_FLOOR[:4])
def test_the_reply_to_a_budget_below_the_floor_names_the_floor_and_the_plans_that_fit(sdr, statement):
    r = ask(sdr, statement)
    assert PRICING in urls(r)
    assert "$30,000" in r.reply and "Enterprise" in r.reply, r.reply
    assert "Starter — $39 per user/month" in r.reply and "Growth — $79 per user/month" in r.reply, r.reply


@pytest.mark.parametrize("question", MEETING_QUESTIONS[:4])
def test_the_reply_about_the_meeting_comes_from_the_playbook(sdr, question):
    r = ask(sdr, question)
    assert f"{sdr.playbook.meeting.length_minutes}-minute call" in r.reply, r.reply
    assert "in our materials" not in r.reply and not urls(r)
