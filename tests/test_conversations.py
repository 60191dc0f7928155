"""Multi-turn conversations through the HTTP API, checked on the lead the API reports."""
from collections import Counter

import pytest

from conftest import chat


def lead_of(client, data):
    r = client.get(f"/api/leads/{data['lead']['id']}")
    assert r.status_code == 200
    return r.get_json()


def asked(data):
    return [a["field"] for a in data["actions"] if a["type"] == "ask"]


def test_hot_lead_reaches_sql_and_is_handed_off_exactly_once(client):
    d = chat(client, "Hi, I'm Dana, VP of Sales at Acme Health")
    sid = d["session_id"]
    assert d["lead"]["fields"]["seniority"] == "vp" and d["lead"]["fit_score"] >= 20
    assert any("seniority is vp" in c["reason"] for c in d["score_changes"])
    d = chat(client, "Our forecasts are always wrong and reps never update the CRM", sid)
    d = chat(client, "we're about 450 people", sid)
    assert d["lead"]["stage"] == "mql"              # a fit without a timeline is not sales-ready yet
    d = chat(client, "we want something in place this quarter", sid)
    assert d["lead"]["stage"] == "sql"
    assert [a["type"] for a in d["actions"] if a["type"] == "handoff"] == ["handoff"]
    assert any(a["type"] == "offer_meeting" for a in d["actions"])
    # more good news after the handoff: no second handoff
    d = chat(client, "budget is approved, ~$30k/yr", sid)
    d = chat(client, "dana@acmehealth.com", sid)
    assert not any(a["type"] == "handoff" for a in d["actions"])
    detail = lead_of(client, d)
    handoffs = [a for a in detail["actions"] if a["type"] == "handoff"]
    assert len(handoffs) == 1 and handoffs[0]["status"] == "pending"
    assert handoffs[0]["payload"]["reason"] == "sql" and handoffs[0]["payload"]["top_reasons"]
    # every point has a reason and the points add up
    assert all(e["reason"] for e in detail["score_events"])
    assert abs(sum(e["points"] for e in detail["score_events"]) - detail["score"]) < 0.1
    assert detail["fields"]["email"] == "dana@acmehealth.com"
    assert [m["role"] for m in detail["messages"]][:2] == ["visitor", "agent"]


def test_student_is_never_handed_off(client):
    d = chat(client, "hi, I'm a student writing my thesis on sales forecasting")
    sid = d["session_id"]
    assert d["lead"]["stage"] == "disqualified"
    assert any(a["type"] == "close" for a in d["actions"]) and not asked(d)
    for msg in ["Can we book a demo?", "I'd like to talk to a person", "we're 5000 people and the budget is approved"]:
        d = chat(client, msg, sid)
        assert not any(a["type"] == "handoff" for a in d["actions"])
    assert d["lead"]["stage"] == "disqualified"
    assert [a for a in lead_of(client, d)["actions"] if a["type"] == "handoff"] == []


def test_job_seeker_and_competitor_are_closed_politely(client):
    d = chat(client, "Are you hiring? I'd love to send my resume")
    assert d["lead"]["stage"] == "disqualified" and "job" in d["reply"].lower()
    d = chat(client, "I work at Forecastry and wanted to see your pricing")
    assert d["lead"]["stage"] == "disqualified" and d["lead"]["disqualified_reason"] == "competitor"
    d = chat(client, "Can I talk to someone on your team?", d["session_id"])
    assert not any(a["type"] == "handoff" for a in d["actions"])


def test_no_field_is_asked_twice_when_answered_and_one_question_per_reply(client):
    answers = {
        "need": "we need better pipeline forecasting",
        "role": "I run RevOps",
        "company_size": "about 120",
        "timeline": "next quarter",
        "company": "Brightline Labs",
        "industry": "software",
        "budget": "around 15k a year",
        "email": "sam@brightline.example",
        "name": "Sam",
    }
    d = chat(client, "hello")
    sid = d["session_id"]
    seen = Counter()
    for _ in range(12):
        fields = asked(d)
        assert len(fields) <= 1, d                 # one question per reply
        assert d["reply"].count("?") <= 1, d["reply"]
        if not fields:
            break
        field = fields[0]
        seen[field] += 1
        assert field not in d["lead"]["fields"], f"asked for {field} which is known"
        d = chat(client, answers[field], sid)
    assert max(seen.values()) == 1, seen
    assert set(seen) >= {"need", "role", "company_size", "timeline"}


def test_a_skipped_question_is_not_asked_again_straight_away(client):
    d = chat(client, "hello")
    sid = d["session_id"]
    assert asked(d) == ["need"]
    d = chat(client, "I'd rather not say", sid)
    assert asked(d) and asked(d) != ["need"]
    d = chat(client, "pass", sid)
    assert "need" not in asked(d)


def test_asking_for_a_person_escalates(client):
    d = chat(client, "can I talk to a person?")
    assert d["lead"]["stage"] == "human"
    types = [a["type"] for a in d["actions"]]
    assert "human" in types and "handoff" in types
    assert asked(d) == ["email"]                  # so the person can reach them
    d = chat(client, "jo@example.org", d["session_id"])
    assert d["lead"]["fields"]["email"] == "jo@example.org"


def test_pricing_question_is_answered_from_the_pricing_page(client):
    d = chat(client, "How much does Pipelark cost?")
    assert "$39" in d["reply"] and "$79" in d["reply"]
    assert d["sources"][0]["url"] == "https://pipelark.example/pricing"
    assert any(c["reason"].startswith("pricing question") for c in d["score_changes"])


def test_industry_case_study_is_recommended_once(client):
    d = chat(client, "We're a logistics company, freight brokerage, and our forecasts are unreliable")
    recs = [a for a in d["actions"] if a["type"] == "recommend"]
    assert recs and recs[0]["url"] == "https://pipelark.example/customers/crestway-logistics"
    sid = d["session_id"]
    urls = []
    for msg in ["I run sales ops", "about 300 people", "this quarter", "Crestfall", "no budget yet"]:
        d = chat(client, msg, sid)
        urls += [a["url"] for a in d["actions"] if a["type"] == "recommend"]
    assert "https://pipelark.example/customers/crestway-logistics" not in urls   # never the same piece twice


def test_returning_visitor_with_known_email_is_the_same_lead(client):
    d1 = chat(client, "Hi, I'm Lee, CTO", visitor={"email": "lee@orbit.example"})
    d2 = chat(client, "hello again", visitor={"email": "lee@orbit.example"})
    assert d1["session_id"] != d2["session_id"] and d1["lead"]["id"] == d2["lead"]["id"]
    assert d2["lead"]["fields"]["seniority"] == "c_level"


def test_same_verified_email_in_a_new_session_merges_without_double_counting(client):
    """A server that vouches for the visitor's email (the API token here; a browser with a valid
    visitor.user_hash alike) joins two sessions of one person into one lead."""
    me = {"email": "ana@corp.example"}
    d1 = chat(client, "I'm the VP of Marketing, email me at ana@corp.example", visitor=me)
    d2 = chat(client, "Hi! I'm a VP of marketing")
    d3 = chat(client, "my email is ana@corp.example", d2["session_id"], visitor=me)
    assert d3["lead"]["id"] == d1["lead"]["id"]
    detail = lead_of(client, d3)
    assert detail["fields"]["seniority"] == "vp"
    vp_points = sum(e["points"] for e in detail["score_events"] if e["rule"] == "fit.seniority.1")
    assert vp_points == 20
    assert abs(sum(e["points"] for e in detail["score_events"]) - detail["score"]) < 0.1


def test_retried_message_is_not_doubled(client):
    d = chat(client, "hello", message_id="m-1")
    again = chat(client, "hello", d["session_id"], message_id="m-1")
    assert again["reply"] == d["reply"]
    detail = lead_of(client, d)
    assert [m["role"] for m in detail["messages"]] == ["visitor", "agent"]


def test_yes_to_the_meeting_offer_books_it_through_sales(client):
    d = chat(client, "I'm the CRO of a 600 person company, we need better forecasting this quarter")
    assert d["lead"]["stage"] == "sql" and any(a["type"] == "offer_meeting" for a in d["actions"])
    d = chat(client, "sure, let's talk", d["session_id"])
    assert "sales team" in d["reply"] and asked(d) == ["email"]
    detail = lead_of(client, d)
    assert len([a for a in detail["actions"] if a["type"] == "handoff"]) == 1


def test_no_means_no(client):
    d = chat(client, "hello")
    d = chat(client, "not interested, thanks", d["session_id"])
    assert asked(d) == [] and d["reply"].count("?") == 0 and not any(a["type"] == "recommend" for a in d["actions"])


def test_price_objection_gets_the_roi_calculator_not_a_question(client):
    d = chat(client, "hello")
    d = chat(client, "hmm, too expensive", d["session_id"])
    assert [a["url"] for a in d["actions"] if a["type"] == "recommend"] == ["https://pipelark.example/roi-calculator"]
    assert asked(d) == [] and "too expensive" not in str(d["lead"]["fields"])


def test_the_reply_echoes_what_it_understood(client):
    d = chat(client, "hello")
    d = chat(client, "I'm the CRO, we're around 600 employees and want it live this quarter", d["session_id"])
    assert "CRO" in d["reply"] and "600 people" in d["reply"] and "this quarter" in d["reply"]


@pytest.mark.parametrize("question,expect", [
    ("Do you have a free plan?", "14-day free trial"),
    ("is it secure? we need SOC 2", "SOC 2 Type II"),
    ("Can I get a discount as a nonprofit?", "30%"),
    ("who are your customers in retail?", "Juniper & Vale"),
    ("Is there an on-premise version?", "no on-premise"),
])
def test_questions_are_answered_with_the_right_part_of_the_right_page(client, question, expect):
    d = chat(client, question)
    assert expect in d["reply"], d["reply"]


@pytest.mark.parametrize("message, quoted", [
    ("Do you support SSO? What about SOC 2?", ["SAML", "SOC 2 Type II"]),
    ("Do you integrate with HubSpot? And Slack?", ["HubSpot", "Slack"]),
    ("How much does it cost? Do you support SSO?", ["$39", "SAML"]),
])
def test_two_questions_in_one_message_are_both_answered_from_the_content(client, message, quoted):
    """Two answers may quote two sections of one page: the guard sees both, so neither becomes a
    false "I don't have that" (nor is silently dropped)."""
    d = chat(client, message)
    assert "don't have that" not in d["reply"]
    assert all(q in d["reply"] for q in quoted), d["reply"]


def test_a_retried_first_message_is_one_conversation_and_one_lead(client, browser_client, sdr):
    """A first message has no session yet; if its answer is lost the retry (same message_id) must
    not open a second lead — for servers and for anonymous browsers alike."""
    mid = "7f3c2a9e0b1d4c6f8a5e2d1c0b9a8f7e"
    for c in (client, browser_client):
        first = c.post("/api/chat", json={"message": "I'm the CRO at a 600 person SaaS company", "message_id": mid + "x"
                                          if c is browser_client else mid}).get_json()
        again = c.post("/api/chat", json={"message": "I'm the CRO at a 600 person SaaS company", "message_id": mid + "x"
                                          if c is browser_client else mid}).get_json()
        assert again["session_id"] == first["session_id"] and again["reply"] == first["reply"]
    assert len(sdr.store.list_leads(limit=10)) == 2
    other = browser_client.post("/api/chat", json={"message": "hi", "message_id": mid + "x"},
                                headers={"User-Agent": "someone else"}).get_json()
    assert other["session_id"] != first["session_id"]      # another browser never lands in that session


def test_a_crash_inside_the_turns_commit_keeps_nothing_and_the_retry_runs_it_once(client, sdr, monkeypatch):
    """The process dies in the turn's one transaction, after the message was stored and scored in it
    but before the commit: nothing of the turn is kept, and the retry (same message_id) runs it once —
    nothing stored or scored twice."""
    import bot.assess
    d = chat(client, "hello", message_id="m-0")
    real, crashes = bot.assess.add_agent_message, []

    def crash_once(*a, **kw):
        if not crashes:
            crashes.append(1)
            raise KeyboardInterrupt("killed")   # not an Exception: nothing catches it, as with kill -9
        return real(*a, **kw)
    monkeypatch.setattr(bot.assess, "add_agent_message", crash_once)
    text = "I'm VP of Sales at a 300 person SaaS company, budget 50k"
    with pytest.raises(KeyboardInterrupt):
        client.post("/api/chat", json={"message": text, "session_id": d["session_id"], "message_id": "m-1"})
    again = chat(client, text, d["session_id"], message_id="m-1")
    detail = lead_of(client, again)
    assert [m["text"] for m in detail["messages"] if m["role"] == "visitor"] == ["hello", text]
    assert [m["role"] for m in detail["messages"]] == ["visitor", "agent", "visitor", "agent"]
    rules = Counter(e["rule"] for e in detail["score_events"])
    assert rules["engagement.chat_message"] == 2 and all(n == 1 for r, n in rules.items() if r.startswith("fit."))
    assert again["reply"] and chat(client, text, d["session_id"], message_id="m-1")["reply"] == again["reply"]


def test_a_short_message_id_never_joins_two_first_messages(client):
    """A counter-like id ("1") may be reused by many senders: it never names a session."""
    a = client.post("/api/chat", json={"message": "hi, I'm Ann", "message_id": "1"}).get_json()
    b = client.post("/api/chat", json={"message": "hi, I'm Bob", "message_id": "1"}).get_json()
    assert a["session_id"] != b["session_id"] and a["lead"]["id"] != b["lead"]["id"]


def test_a_late_retry_of_an_earlier_message_is_answered_not_run_again(client):
    """A retry may arrive after the visitor sent more (a flaky network, a queued request): the
    earlier message id gets its own answer back and nothing is stored or scored twice."""
    first = chat(client, "hi, we're a 300 person logistics company", message_id="late-1")
    second = chat(client, "how much does it cost?", first["session_id"], message_id="late-2")
    again = chat(client, "hi, we're a 300 person logistics company", first["session_id"], message_id="late-1")
    assert again["reply"] == first["reply"] and again["sources"] == first["sources"]
    assert again["lead"]["score"] == second["lead"]["score"]          # the lead as it is now, not scored again
    detail = lead_of(client, again)
    assert [m["text"] for m in detail["messages"] if m["role"] == "visitor"] == [
        "hi, we're a 300 person logistics company", "how much does it cost?"]
