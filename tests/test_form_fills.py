"""Form fills in the core (issue 12): a verified submission is stored at once, its turn runs from
the outbox (fields merged with source `form`, the event scored with its reason, a handoff over the
SQL threshold) and exactly one first touch is queued; a repeated delivery creates nothing; an
unsubscribed or bounced lead is never emailed (the gate at send time)."""
from __future__ import annotations

import pytest

from bot.emails import lead_token
from bot.form_fills import map_fill, read_form
from bot.outbox import OutboxWorker, list_entries
from bot.playbook import load_playbook
from bot.store import InboundReceipt, Lead
from integrations.forms.form_fill import FormFill

PB = load_playbook()

ANA = {"email": "Ana.Lopez@acme-health.example", "first_name": "Ana", "last_name": "López", "company": "Acme Health",
       "job_title": "VP of Sales", "company_size": "201-500", "industry": "healthcare",
       "message": "Our forecasts are always off. Do you integrate with Salesforce?",
       "utm_source": "google", "utm_campaign": "forecast-q1", "page_url": "https://pipelark.example/demo"}


def fill(fields: dict[str, str] | None = None, event_id: str | None = "evt_1", source: str = "generic") -> FormFill:
    return FormFill(source=source, event_id=event_id, fields=dict(ANA if fields is None else fields),
                    form_name="Book a demo")


def work(sdr) -> dict[str, int]:
    worker = OutboxWorker(sdr.store, {"form_fill": sdr.work_form_fill}, clock=sdr.clock)
    return worker.run_once()


def entries(sdr, kind: str) -> list:
    return [e for e in list_entries(sdr.store, ("pending", "delivered", "dead")) if e.kind == kind]


def test_the_usual_field_names_and_the_playbooks_map_become_lead_fields():
    lead = map_fill("generic", ANA, "Book a demo", PB)
    assert lead.fields["name"] == "Ana López" and lead.fields["role"] == "VP of Sales"
    assert lead.email == "ana.lopez@acme-health.example"
    assert lead.attribution == {"utm_source": "google", "utm_campaign": "forecast-q1",
                                "page_url": "https://pipelark.example/demo"}
    assert lead.message.startswith("Our forecasts") and lead.event == "demo_requested"
    typeform = map_fill("typeform", {"work_email": "x@y.example", "team_size": "40", "what_do_you_need": "help",
                                     "favourite_colour": "blue"}, None, PB)
    assert typeform.fields == {"email": "x@y.example", "company_size": "40"} and typeform.message == "help"
    assert typeform.attribution == {"form.favourite_colour": "blue"}   # nothing lost


@pytest.mark.parametrize("size, expected", [("201-500", 350), ("1,000+", 1000), ("11 to 50 employees", 30), ("250", 250)])
def test_form_values_are_read_as_chat_reads_them(size, expected):
    facts, intents = read_form(map_fill("generic", {**ANA, "company_size": size}, None, PB), PB, None)
    assert facts["company_size"].value == expected
    assert facts["seniority"].value == "vp" and facts["industry"].value == "healthcare"
    assert all(f.source == "form" for f in facts.values())
    assert intents == {"book"}                      # a demo form asks to meet


def test_a_form_fill_runs_the_turn_and_queues_exactly_one_first_touch(sdr):
    assert sdr.receive_form(fill()) == {"accepted": True, "duplicate": False}
    assert work(sdr) == {"delivered": 1}
    (row,) = [r["lead"] for r in sdr.store.list_leads()]
    d = sdr.lead_detail(row.id)
    assert d["fields"]["company_size"] == 350 and d["fields"]["seniority"] == "vp"
    assert d["field_sources"]["role"]["source"] == "form"
    assert d["fields"]["attribution"]["utm_campaign"] == "forecast-q1"
    rules = {e["rule"]: e["reason"] for e in d["score_events"]}
    assert "engagement.demo_requested" in rules and "fit.seniority.1" in rules
    assert d["stage"] == "sql" and entries(sdr, "handoff")       # over the SQL threshold: handed to a rep
    assert [m["channel"] for m in d["messages"]] == ["form", "form"]
    (mail,) = entries(sdr, "email")
    p = mail.payload
    assert p["to"] == "ana.lopez@acme-health.example" and p["greeting"] == "Hi Ana,"
    assert "demo" in p["paragraphs"][0] and "automated assistant" in p["paragraphs"][0]
    body = " ".join(p["paragraphs"])
    assert "Salesforce" in body and "https://pipelark.example/" in body     # answered from the content, a piece linked
    reply_token = p["reply_to"].split("+")[1].split("@")[0]
    assert "/unsubscribe/" in p["unsubscribe_url"] and reply_token not in p["unsubscribe_url"]   # two tokens
    assert p["message_id"].startswith("<") and p["in_reply_to"] is None
    # the handler runs again (a crash after the turn, a second worker): nothing new
    with sdr.store.session() as s:
        receipt_id = s.query(InboundReceipt).one().id
    from bot.outbox import Delivery
    sdr.work_form_fill(Delivery(0, "form_fill", None, "form_fill:x", {"receipt_id": receipt_id}, 1, {}))
    assert len(entries(sdr, "email")) == 1 and len(sdr.store.list_leads()) == 1
    assert len(sdr.lead_detail(row.id)["score_events"]) == len(d["score_events"])


def test_a_repeated_delivery_creates_and_sends_nothing(sdr, clock):
    assert sdr.receive_form(fill(event_id="evt_9"))["duplicate"] is False
    assert sdr.receive_form(fill(event_id="evt_9"))["duplicate"] is True          # the provider retried
    assert sdr.receive_form(fill(event_id="evt_10"))["duplicate"] is True         # same person, same form, twice
    assert sdr.receive_form(fill(event_id=None))["duplicate"] is True
    clock.advance(hours=25)
    assert sdr.receive_form(fill(event_id=None))["duplicate"] is False            # a day later: a new submission
    assert sdr.receive_form(fill(event_id="evt_9"))["duplicate"] is True          # an event id is once, ever
    other = {**ANA, "message": "Different question: do you support SSO?"}
    assert sdr.receive_form(fill(other, event_id=None))["duplicate"] is False
    assert work(sdr) == {"delivered": 3}


def test_the_send_time_gate_stops_every_email_to_an_unsubscribed_or_bounced_lead(sdr):
    sdr.receive_form(fill())
    work(sdr)
    (row,) = [r["lead"] for r in sdr.store.list_leads()]
    assert sdr.email_gate(row.id, row.email) is None
    with sdr.store.session() as s:
        token = lead_token(s, row.id, sdr.clock(), "unsubscribe")
        reply_token = lead_token(s, row.id, sdr.clock())
    assert sdr.unsubscribe(reply_token) is False                               # the reply token is not the link
    assert sdr.unsubscribe("0" * 32) is False                                    # unknown: nothing changes
    assert sdr.unsubscribe(token, source="one_click") is True
    assert sdr.unsubscribe(token, source="one_click") is True                    # twice is one event
    assert "unsubscribed" in sdr.email_gate(row.id, row.email)
    events = [e for e in sdr.lead_detail(row.id)["score_events"] if e["rule"] == "engagement.unsubscribe"]
    assert len(events) == 1 and "one_click" in events[0]["reason"]
    d = sdr.lead_detail(row.id)
    assert d["unsubscribed"] is True and d["bounced"] is False


def test_a_bounce_is_a_negative_event_and_ends_email_to_that_lead(sdr):
    sdr.receive_form(fill())
    work(sdr)
    (row,) = [r["lead"] for r in sdr.store.list_leads()]
    before = sdr.lead_detail(row.id)["score"]
    sdr.mark_bounced(row.id, row.email, "550 5.1.1 no such user")
    sdr.mark_bounced(row.id, row.email, "550 5.1.1 no such user")
    d = sdr.lead_detail(row.id)
    assert d["bounced"] is True and d["score"] < before
    assert [e["rule"] for e in d["score_events"]].count("engagement.email_bounced") == 1
    assert "bounced" in sdr.email_gate(row.id, row.email)


def test_a_form_without_a_message_is_stored_as_a_note_not_as_words_the_visitor_wrote(sdr):
    fields = {k: v for k, v in ANA.items() if k != "message"}
    sdr.receive_form(fill(fields))
    work(sdr)
    (row,) = [r["lead"] for r in sdr.store.list_leads()]
    first = sdr.lead_detail(row.id)["messages"][0]
    assert first["text"].startswith("[Submitted the form “Book a demo”")
    with sdr.store.session() as s:
        assert s.get(Lead, row.id).fields.get("need") is None          # nothing read into the note


@pytest.mark.parametrize("email", ["a@b.example, victim@c.example", "a@b.example;victim@c.example", "Eve <a@b.example>",
                                   "a@b.example\r\nBcc: victim@c.example", "not an email"])
def test_a_form_whose_email_is_not_one_address_is_refused_and_nothing_is_stored(sdr, email):
    from bot.inbound import InputError

    with pytest.raises(InputError) as e:
        sdr.receive_form(fill({**ANA, "email": email}))
    assert str(e.value).startswith("email:") and e.value.status == 400
    assert sdr.store.list_leads() == [] and not entries(sdr, "form_fill")


def test_the_same_form_with_the_address_in_capitals_is_still_a_duplicate(sdr):
    assert sdr.receive_form(fill(event_id=None))["duplicate"] is False
    assert sdr.receive_form(fill({**ANA, "email": ANA["email"].upper()}, event_id=None))["duplicate"] is True
