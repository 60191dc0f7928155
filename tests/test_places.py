"""Time zones from what visitors write (issue 11): places in any script, zone names and
abbreviations, UTC offsets — and no zone from words that only look like places.

The turn tests run a real SDR on the test's clock (conftest: make_sdr), so which reps are at work,
and so which times are offered, never depends on the wall clock.
"""
from __future__ import annotations

import threading
from datetime import datetime

import pytest

from bot import places
from bot.meetings import visitor_timezone, zone_answer
from bot.places import asks_zone, timezone_from_text
from conftest import api_client, chat

POSITIVE = [
    # (message, zone, the words that gave it)
    ("I'm in Melbourne", "Australia/Melbourne", "Melbourne"),
    ("we're based in São Paulo", "America/Sao_Paulo", "São Paulo"),
    ("we're based in Sao Paulo, 200 people", "America/Sao_Paulo", "Sao Paulo"),
    ("our team is in Munich", "Europe/Berlin", "Munich"),
    ("wir sind in München", "Europe/Berlin", "München"),
    ("I'm in Zürich this week", "Europe/Zurich", "Zürich"),
    ("based in Zurich", "Europe/Zurich", "Zurich"),
    ("our office is in Kraków", "Europe/Warsaw", "Kraków"),
    ("I'm on Pacific time", "America/Los_Angeles", "Pacific time"),
    ("Eastern time works", "America/New_York", "Eastern time"),
    ("we're on Central Standard Time", "America/Chicago", "Central Standard Time"),
    ("we're on CET", "Europe/Berlin", "CET"),
    ("Thursday 2pm EST works", "America/New_York", "EST"),
    ("10am pst?", "America/Los_Angeles", "pst"),
    ("can we do 3pm ET", "America/New_York", "ET"),
    ("we use IST", "Asia/Kolkata", "IST"),
    ("AEDT please", "Australia/Sydney", "AEDT"),
    ("GMT+2", "Etc/GMT-2", "GMT+2"),          # the Etc zones count west as positive
    ("I'm UTC-5", "Etc/GMT+5", "UTC-5"),
    ("UTC+5:30", "Asia/Kolkata", "UTC+5:30"),
    ("my time zone is Asia/Tokyo", "Asia/Tokyo", "Asia/Tokyo"),
    ("London", "Europe/London", "London"),
    ("NYC", "America/New_York", "NYC"),
    ("Bengaluru", "Asia/Kolkata", "Bengaluru"),
    ("東京", "Asia/Tokyo", "東京"),
    ("東京にいます", "Asia/Tokyo", "東京"),
    ("我们在北京", "Asia/Shanghai", "北京"),
    ("I live in Rio de Janeiro", "America/Sao_Paulo", "Rio de Janeiro"),
    ("I'm in St. Louis", "America/Chicago", "St. Louis"),
    ("we're in California", "America/Los_Angeles", "California"),
    ("headquartered in Texas", "America/Chicago", "Texas"),
    ("we're in Germany", "Europe/Berlin", "Germany"),
    ("here in the UK we start early", "Europe/London", "UK"),
    ("we're in the Bay Area", "America/Los_Angeles", "Bay Area"),
    ("I'm on the east coast", "America/New_York", "east coast"),
    ("a Berlin-based team of 40", "Europe/Berlin", "Berlin"),
    ("Sydney time is best", "Australia/Sydney", "Sydney"),
    ("I'm from Melbourne. We need forecasting", "Australia/Melbourne", "Melbourne"),
    ("I'm in Nice", "Europe/Paris", "Nice"),
    ("I'm in London but we run on Eastern time", "America/New_York", "Eastern time"),
]

NEGATIVE = [
    "I'm reading your pricing",
    "nice!",
    "Nice!",
    "we're in healthcare",
    "I'm in sales",
    "I'm in charge of revenue ops",
    "we are in talks with Gong",
    "I'm in a meeting until 3",
    "I'm in reading mode",
    "we use cloud-based tools",
    "Any time works",
    "c'est bon, merci",
    "das ist gut",
    "I'm Sam from Redwood Analytics",
    "I'm from Boston Scientific",
    "hello", "thanks", "yes", "ok", "pricing", "human", "name",
    "I'm in human resources",
    "I'm in Human Resources",
    "Hola, soy directora comercial en Transportes Vega, una empresa de logística",
    "what's the price for 50 seats?",
    # ambiguous: no zone rather than a guess
    "I'm in Portland",
    "Springfield",
    "we're in Cambridge",
    "I'm in Australia",
    "we're in the US",
    "I'm in Canada",
]


@pytest.mark.parametrize("text,zone,words", POSITIVE)
def test_a_stated_place_or_zone_gives_the_iana_zone(text, zone, words):
    assert timezone_from_text(text) == (zone, words)


@pytest.mark.parametrize("text", NEGATIVE)
def test_words_that_only_look_like_places_give_no_zone(text):
    assert timezone_from_text(text) is None


def test_dominance_rule():
    """The most populous group of same-offset zones wins only with 10× the others together."""
    assert places.resolve([("Europe/London", 9_000_000), ("America/Toronto", 420_000)]) == "Europe/London"
    assert places.resolve([("America/Los_Angeles", 650_000), ("America/New_York", 67_000)]) is None
    # Sydney and Melbourne keep the same offsets all year: one group
    assert places.resolve([("Australia/Sydney", 5_000_000), ("Australia/Melbourne", 4_900_000),
                           ("Australia/Perth", 100_000)]) == "Australia/Sydney"
    assert places.resolve([(None, 25_000_000)]) is None   # a country with several zones


def test_the_data_loads_once_for_all_threads():
    places.warm()
    first = places._index()
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(places._index())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(ix is first for ix in seen)


@pytest.mark.parametrize("text", ["Which time zone is that?", "what timezone are those in", "is that my local time?",
                                  "is that EST?", "Are those times in my time zone?", "timezone?"])
def test_a_question_about_the_zone(text):
    assert asks_zone(text)


@pytest.mark.parametrize("text", ["what time works?", "is that the price?", "which plan is that?", "do you support Gong?"])
def test_not_a_question_about_the_zone(text):
    assert not asks_zone(text)


def test_visitor_timezone_order():
    """The channel's zone, else one said in this message, else the conversation's, else UTC."""
    assert visitor_timezone({"timezone": "Europe/Berlin"}, {}, "I'm in Melbourne") == "Europe/Berlin"
    assert visitor_timezone({}, {"visitor_tz": "Europe/Berlin"}, "I'm in Melbourne") == "Australia/Melbourne"
    assert visitor_timezone({"timezone": "Not/AZone"}, {}, "we're on Pacific time") == "America/Los_Angeles"
    assert visitor_timezone({}, {"visitor_tz": "Asia/Tokyo"}, "sounds good") == "Asia/Tokyo"
    assert visitor_timezone({}, {}) == "UTC"
    assert visitor_timezone({}, {"visitor_tz": "Bad/Zone"}) == "UTC"


def test_zone_answer_names_the_zone_of_the_offer():
    offered = {"offered_slots": [{"start": "2026-01-14T00:00:00+00:00", "end": "2026-01-14T00:30:00+00:00",
                                  "rep_id": "tom"}], "offered_tz": "Australia/Melbourne", "visitor_tz": "UTC"}
    assert "Australia/Melbourne" in zone_answer(offered)
    assert "Europe/Berlin" in zone_answer({"visitor_tz": "Europe/Berlin"})
    assert zone_answer({}) is None


# ---------------------------------------------------------------------------------------------
# In the turn

BOTH_AT_WORK = datetime(2026, 1, 13, 15, 0)   # Tue 13 Jan 2026 15:00 UTC: both sample reps at work
QUALIFIED = "I'm the CRO of a 600 person company; we need better forecasting this quarter"


@pytest.fixture
def booking(sdr, clock):
    from integrations.calendar import make_calendar
    from integrations.web.app import create_app
    clock.set(BOTH_AT_WORK)
    sdr.calendar = make_calendar(sdr.playbook, sdr.store)
    c = api_client(create_app(sdr), sdr)
    c.sdr = sdr
    return c


def _turn_reads_the_words() -> bool:
    import inspect
    from bot import turn
    return "visitor_timezone(inbound.visitor or {}, state, text)" in inspect.getsource(turn.SDR._load)


needs_turn = pytest.mark.skipif(not _turn_reads_the_words(),
                                reason="bot/turn.py does not yet pass the message text to visitor_timezone")


def _offer(d):
    return next(a for a in d["actions"] if a["type"] == "offer_slots")


def _labels_in(offer, zone):
    from bot.booking import Slot
    return [Slot(datetime.fromisoformat(x["start"]), datetime.fromisoformat(x["start"]), "r").label(zone)
            for x in offer["slots"]]


@needs_turn
def test_the_turn_offers_times_in_the_zone_the_visitor_named(booking):
    d = chat(booking, QUALIFIED + ". We're based in Melbourne.")
    offer = _offer(d)
    assert offer["timezone"] == "Australia/Melbourne"
    assert "(Australia/Melbourne)" in d["reply"]
    assert [x["label"] for x in offer["slots"]] == _labels_in(offer, "Australia/Melbourne")


@needs_turn
def test_a_zone_said_earlier_holds_for_later_turns(booking):
    first = chat(booking, "hi, we're on Pacific time")
    d = chat(booking, QUALIFIED, first["session_id"])
    offer = _offer(d)
    assert offer["timezone"] == "America/Los_Angeles" and "(America/Los_Angeles)" in d["reply"]


def test_the_widget_zone_beats_the_words(booking):
    d = chat(booking, QUALIFIED + ". I'm in Melbourne.", visitor={"timezone": "Europe/Berlin"})
    assert _offer(d)["timezone"] == "Europe/Berlin"


def test_which_time_zone_is_that_is_answered_from_the_offer_not_the_content(booking):
    """Issue 11: "Which time zone is that?" was treated as an unknown product question."""
    d = chat(booking, QUALIFIED + ". We're based in Melbourne.")
    assert _offer(d)["timezone"] == "Australia/Melbourne"
    for question in ("Which time zone is that?", "what timezone are those in?", "is that my local time?"):
        r = chat(booking, question, d["session_id"])
        assert "Australia/Melbourne" in r["reply"], r["reply"]
        assert "not in our materials" not in r["reply"].lower() and r["reply"].startswith("Those times are in"), r["reply"]
