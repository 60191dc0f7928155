"""The words of what is sold live in the playbook, not in the code.

A second, small playbook and content for a different product (Wayfleet, fleet telematics:
tests/data/other_product/) changes what the rule brain recognises — needs, question topics, the
product's words for asking to meet, competitors — and where a question is answered from, with no
code change. The default playbook's words stop counting when it is not loaded.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

import bot.playbook as playbook_module
from bot.answers import answer_question
from bot.extract import understand
from bot.playbook import Playbook, PlaybookError, load_playbook
from bot.text import words_pattern
from bot.turn import Inbound

OTHER_DIR = Path(__file__).resolve().parent / "data" / "other_product"
OTHER_PLAYBOOK = OTHER_DIR / "playbook.yaml"
OTHER_CONTENT = OTHER_DIR / "content"
TODAY = date(2026, 11, 23)

OTHER = load_playbook(OTHER_PLAYBOOK)
DEFAULT = load_playbook()


def read(text: str, pb: Playbook):
    return understand(text, pb, today=TODAY)


@pytest.fixture
def other_kb(settings):
    """A knowledge base holding only the other product's content."""
    from knowledge.retrieve import KnowledgeBase
    kb = KnowledgeBase(settings)
    report = kb.ingest([OTHER_CONTENT], progress=False)
    assert report.errors == [] and report.documents == 5
    return kb


# ---------------------------------------------------------------------------------------------
# What the rule brain recognises follows the playbook


@pytest.mark.parametrize("text", [
    "Our fuel costs are out of control and drivers idle for hours",
    "we need to cut fuel spend",
    "We struggle with harsh braking and speeding on night routes",
    "dispatching is done on a whiteboard and we never know where our trucks are",
])
def test_its_need_words_are_needs_and_the_defaults_are_not(text):
    assert read(text, OTHER).values().get("need") == text.rstrip(".")
    assert "need" not in read(text, DEFAULT).values()


@pytest.mark.parametrize("text", [
    "Our forecasts are always wrong and reps don't update Salesforce",
    "we need better pipeline forecasting",
    "Our CRM hygiene is a mess and deals keep slipping",
])
def test_the_default_need_words_do_not_count_for_another_product(text):
    assert "need" in read(text, DEFAULT).values()
    assert "need" not in read(text, OTHER).values()


@pytest.mark.parametrize("text,topic", [
    ("What do you charge per vehicle?", "pricing"),       # 'charge', 'per vehicle': its pricing words only
    ("Is there a hardware fee?", "pricing"),
    ("Do the trackers need a mechanic to install?", "hardware"),   # a topic the default has not got
    ("Can dispatchers see ETAs in our TMS?", "integration"),
])
def test_its_topic_words_name_the_topic(text, topic):
    assert topic in read(text, OTHER).topics
    assert topic not in read(text, DEFAULT).topics


def test_a_topic_it_does_not_define_is_not_recognised():
    assert read("Who are your customers?", DEFAULT).topics == {"customers"}
    assert read("Who are your customers?", OTHER).topics == set()


def test_its_words_for_asking_to_meet_and_its_competitors():
    pilot = "Could we run a pilot on ten trucks?"
    assert "book" in read(pilot, OTHER).intents and read(pilot, OTHER).requested_action == "book"
    assert "book" not in read(pilot, DEFAULT).intents
    # "book a call" is how anyone asks to meet: code, the same for every product
    for pb in (OTHER, DEFAULT):
        assert "book" in read("Can we book a call next week?", pb).intents
    assert "competitor" in read("I work at Trackmotive", OTHER).intents
    assert "competitor" not in read("I work at Trackmotive", DEFAULT).intents
    assert "competitor" not in read("I work at Forecastry", OTHER).intents


# ---------------------------------------------------------------------------------------------
# Its topic words route questions to its own pages


@pytest.mark.parametrize("question,url", [
    ("What do you charge per vehicle?", "https://wayfleet.example/pricing"),
    ("Is there a hardware fee?", "https://wayfleet.example/pricing"),
    ("Can dispatchers see ETAs in our TMS?", "https://wayfleet.example/integrations"),
    ("Do you have an API?", "https://wayfleet.example/integrations"),
    ("Do the trackers need a mechanic to install?", "https://wayfleet.example/faq/hardware"),
])
def test_its_topics_route_a_question_to_its_own_pages(other_kb, question, url):
    from knowledge.retrieve import LeadContext
    u = read(question, OTHER)
    [answer] = answer_question(other_kb, question, u, LeadContext(), playbook=OTHER)
    assert not answer.unknown and answer.hit is not None and answer.hit.url == url, answer


def test_a_price_question_in_its_words_gets_the_priced_plans(other_kb):
    from knowledge.retrieve import LeadContext
    q = "What do you charge per vehicle?"      # 'charge' asks for a figure in this playbook only
    [answer] = answer_question(other_kb, q, read(q, OTHER), LeadContext(), playbook=OTHER)
    assert answer.hit is not None
    assert answer.hit.snippet == ("Track — $22 per vehicle/month; Safety — $34 per vehicle/month; "
                                  "Fleet Pro — custom pricing.")


def test_an_sdr_on_the_other_playbook_and_content(make_sdr, settings, other_kb):
    sdr = make_sdr(playbook=OTHER, knowledge=other_kb)
    assert sdr.kb.count() == other_kb.count()     # its content only, not the sample
    r = sdr.handle(Inbound(text="Our fuel costs are out of control and drivers idle for hours.", session_id="wf-1"))
    assert r.lead["fields"]["need"] == "Our fuel costs are out of control and drivers idle for hours"
    r = sdr.handle(Inbound(text="What do you charge per vehicle?", session_id="wf-1"))
    assert "https://wayfleet.example/pricing" in [s["url"] for s in r.sources]
    assert "Wayfleet pricing" in r.reply and "Pipelark" not in r.reply
    assert "$22 per vehicle/month" in r.reply       # its own price asks list its priced plans
    r = sdr.handle(Inbound(text="Could we run a pilot on ten trucks?", session_id="wf-1"))
    assert any(a["type"] == "handoff" for a in r.actions)


# ---------------------------------------------------------------------------------------------
# The vocabulary section is validated like the rest of the playbook


def _with(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(OTHER_PLAYBOOK.read_text())
    edit(data["vocabulary"])
    p = tmp_path / "wayfleet.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.mark.parametrize("edit,key", [
    (lambda v: v["topics"]["pricing"].update(word=v["topics"]["pricing"].pop("words")), "vocabulary.topics.pricing.word"),
    (lambda v: v["topics"]["pricing"].update(answer_types=["pricng"]), "vocabulary.topics.pricing.answer_types.0"),
    (lambda v: v.update(needs=["fuel", r"idl\w+"]), "vocabulary.needs.1"),
    (lambda v: v.update(needs=["fuel", "(idling|idle time)"]), "vocabulary.needs.1"),
    (lambda v: v["intents"].update(bok=["pilot"]), "vocabulary.intents.bok"),
    (lambda v: v["topics"].update({"Hardware Fees": {"words": ["fee"]}}), "vocabulary.topics.Hardware Fees"),
    (lambda v: v.update(need=["fuel"]), "vocabulary.need"),
])
def test_a_typo_in_its_vocabulary_names_the_file_and_the_key(tmp_path, edit, key):
    path = _with(tmp_path, edit)
    with pytest.raises(PlaybookError) as e:
        load_playbook(path)
    assert str(path) in str(e.value) and key in str(e.value), str(e.value)


def test_a_regex_is_refused_with_a_hint(tmp_path):
    with pytest.raises(PlaybookError, match=r"looks like a regex.*forecast\*"):
        load_playbook(_with(tmp_path, lambda v: v.update(needs=[r"fuel\w*"])))


def test_a_key_left_out_keeps_the_default(tmp_path):
    p = tmp_path / "pb.yaml"
    p.write_text("vocabulary:\n  needs: [fuel*]\n  intents: {}\n")
    pb = load_playbook(p)
    assert pb.vocabulary.needs == ["fuel*"]
    assert pb.vocabulary.topics == DEFAULT.vocabulary.topics
    assert pb.vocabulary.intents == DEFAULT.vocabulary.intents
    assert Playbook().vocabulary == DEFAULT.vocabulary      # no vocabulary at all: the default's words


# ---------------------------------------------------------------------------------------------
# Plain words, compiled once per playbook


def test_words_are_whole_words_with_an_optional_prefix_star():
    rx = words_pattern(["forecast*", "api", "per vehicle", "soc 2*"])
    assert rx is not None
    for hit in ("Forecasting is hard", "our forecasts", "forecast-driven planning", "an API", "PER vehicle?", "SOC 2-compliant"):
        assert rx.search(hit), hit
    for miss in ("reforecast", "rapid growth", "api-first", "per vehicles"):
        assert not rx.search(miss), miss
    assert words_pattern([]) is None


def test_the_patterns_are_compiled_once_per_playbook(monkeypatch):
    pb = load_playbook(OTHER_PLAYBOOK)
    calls = []
    real = playbook_module.compile_vocabulary
    monkeypatch.setattr(playbook_module, "compile_vocabulary", lambda v: calls.append(v) or real(v))
    for text in ("we need to cut fuel spend", "What do you charge per vehicle?", "Could we run a pilot?"):
        read(text, pb)
    assert len(calls) == 1 and pb.lexicon() is pb.lexicon()


def test_the_vocabulary_is_not_evidence_for_the_guard():
    # visitors' words are not facts we may state: 'hipaa' in the topics must not ground "HIPAA compliant"
    assert "hipaa" not in DEFAULT.grounding_text().lower()
    assert "vocabulary" not in DEFAULT.grounding_text()
