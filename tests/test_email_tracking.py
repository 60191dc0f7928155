"""Tracked email engagement (nurture sequences): the open pixel and the content-link redirect
(integrations/web/email_tracking.py) score the lead within the playbook's daily caps, redirect only
to content the SDR holds (no open redirect), and answer the same whether or not a token is known;
the email's HTML carries the pixel, its text part does not (integrations/email/mail_render.py).

One SDR with the sample content for the module (building it is slow); each test makes its own lead.
Time: the SDR runs on a FakeClock standing at CLOCK_DEFAULT (a Tuesday, 15:00 UTC), so the daily
caps (per UTC day) never straddle midnight, whatever the wall clock (SDR_TEST_FAKE_NOW)."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from conftest import API_TOKEN, CLOCK_DEFAULT, SAMPLE, FakeClock
from sqlalchemy import func, select
from test_email_transport import FOOTER, payload

from bot.emails import lead_token
from bot.store import Activity, Lead, ScoreEvent, new_id
from integrations.email.mail_render import render
from integrations.web.email_tracking import MAX_URL, content_urls

PIXEL = "https://sdr.example/t/o/0123456789abcdef0123456789abcdef.gif"


def same(headers) -> dict[str, str]:
    """The headers that must not differ between a known and an unknown token (every response has its
    own X-Request-ID, whatever the token)."""
    return {k: v for k, v in dict(headers).items() if k != "X-Request-ID"}


@pytest.fixture(scope="module")
def module_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def world(tmp_path_factory, module_clock):
    """The SDR (sample content ingested) and its web app, once for the module."""
    from bot.settings import Settings
    from bot.turn import SDR
    from integrations.web.app import create_app

    settings = Settings.from_env(data_dir=str(tmp_path_factory.mktemp("email-tracking")), admin_token=API_TOKEN)
    sdr = SDR(settings, clock=module_clock)
    sdr.kb.ingest([SAMPLE], progress=False)
    app = create_app(sdr)
    app.testing = True
    yield sdr, app
    sdr.store.dispose()


@pytest.fixture
def sdr(world, module_clock):
    module_clock.set(CLOCK_DEFAULT)
    return world[0]


@pytest.fixture
def web(world):
    """A stranger's mail client or browser: no token, no cookie."""
    return world[1].test_client()


@pytest.fixture
def known_url(world) -> str:
    return sorted(content_urls(world[1]))[0]


def new_lead(sdr) -> tuple[str, str]:
    """A lead with an email address and its tracking token, its fit settled: (lead id, token)."""
    lead_id = new_id("lead")
    with sdr.store.session() as s:
        s.add(Lead(id=lead_id, email=f"{lead_id}@acme.example", fields={"email": f"{lead_id}@acme.example"},
                   field_sources={}, fit_rules={}))
        s.flush()
        token = lead_token(s, lead_id, sdr.clock(), "track")
    sdr.rescore(lead_id)
    return lead_id, token


def state(sdr, lead_id: str) -> dict:
    """What tracking may change: score, stage, score events and activities."""
    with sdr.store.session() as s:
        lead = s.get(Lead, lead_id)
        events = s.scalars(select(ScoreEvent.rule).where(ScoreEvent.lead_id == lead_id).order_by(ScoreEvent.id)).all()
        activities = s.scalars(select(Activity.type).where(Activity.lead_id == lead_id).order_by(Activity.id)).all()
        return {"score": lead.score, "stage": lead.stage, "events": list(events), "activities": list(activities)}


def click_path(token: str, url: str) -> str:
    return f"/t/c/{token}?u={quote(url, safe='')}"


def points(sdr, event: str) -> tuple[float, float]:
    rule = sdr.playbook.engagement[event]
    assert rule.points > 0 and rule.daily_cap and rule.daily_cap > rule.points, "the test needs a capped event"
    return rule.points, rule.daily_cap


def assert_gif(r) -> None:
    assert r.status_code == 200 and r.mimetype == "image/gif"
    assert r.headers["Cache-Control"] == "no-store, private"


# -- clicks -----------------------------------------------------------------------------------------

def test_a_click_redirects_to_the_content_and_scores_up_to_the_daily_cap(sdr, web, known_url, module_clock):
    lead_id, token = new_lead(sdr)
    each, cap = points(sdr, "email_click")
    start = state(sdr, lead_id)["score"]
    r = web.get(click_path(token, known_url))
    assert r.status_code == 302 and r.headers["Location"] == known_url
    assert r.headers["Cache-Control"] == "no-store, private"
    assert state(sdr, lead_id)["score"] == pytest.approx(start + each)
    for _ in range(int(cap // each) + 2):     # well past the cap: every click still reaches the content
        assert web.get(click_path(token, known_url)).headers["Location"] == known_url
    after = state(sdr, lead_id)
    assert after["score"] == pytest.approx(start + cap)
    assert after["activities"].count("email_click") == int(cap // each) + 3     # every click is an activity
    module_clock.advance(days=1)              # a new UTC day (still before its midnight): the cap starts again
    web.get(click_path(token, known_url))
    with sdr.store.session() as s:
        awarded = s.scalars(select(ScoreEvent.points).where(ScoreEvent.lead_id == lead_id,
                                                            ScoreEvent.rule == "engagement.email_click")
                            .order_by(ScoreEvent.id)).all()
    assert sum(awarded[:-1]) == pytest.approx(cap) and awarded[-1] == pytest.approx(each)

def test_the_click_is_recorded_with_its_url(sdr, web, known_url):
    lead_id, token = new_lead(sdr)
    web.get(click_path(token, known_url))
    with sdr.store.session() as s:
        props = s.scalars(select(Activity.properties).where(Activity.lead_id == lead_id,
                                                            Activity.type == "email_click")).one()
    assert props == {"url": known_url}


@pytest.mark.parametrize("target, code", [
    ("https://pipelark.example/not-a-page-we-have", "unknown_link"),
    ("javascript:alert(document.cookie)", "unsafe_link"),
    ("https://evil.example/phish", "unknown_link"),
    ("{known}?next=https://evil.example", "unknown_link"),
    ("{known}#frag", "unknown_link"),
    ("//evil.example/{known}", "unsafe_link"),
    ("x" * (MAX_URL + 1), "url_too_long"),
])
def test_a_link_to_anything_but_our_content_is_400_and_changes_nothing(sdr, web, known_url, target, code):
    lead_id, token = new_lead(sdr)
    before = state(sdr, lead_id)
    r = web.get(click_path(token, target.format(known=known_url)))
    assert r.status_code == 400 and "Location" not in r.headers
    assert r.get_json()["error"]["code"] == code
    if code == "unknown_link":
        assert r.get_json()["error"]["message"] == "this link does not point to content this SDR sent"
    assert state(sdr, lead_id) == before


def test_a_link_without_one_target_is_400(sdr, web, known_url):
    lead_id, token = new_lead(sdr)
    before = state(sdr, lead_id)
    for path, code in ((f"/t/c/{token}", "missing_url"), (f"/t/c/{token}?u=", "missing_url"),
                       (click_path(token, known_url) + "&u=" + quote(known_url, safe=""), "ambiguous_link")):
        r = web.get(path)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == code, path
    assert state(sdr, lead_id) == before


def test_an_unknown_token_still_reaches_the_content_and_looks_the_same(sdr, web, known_url):
    lead_id, token = new_lead(sdr)
    before = state(sdr, lead_id)
    unknown = web.get(click_path("f" * 32, known_url))
    for bad in ("nope", "a" * 300, "..", "%00"):
        r = web.get(click_path(bad, known_url))
        assert r.status_code == 302 and r.headers["Location"] == known_url
    known = web.get(click_path(token, known_url))
    assert (unknown.status_code, same(unknown.headers), unknown.data) == (known.status_code, same(known.headers), known.data)
    assert state(sdr, lead_id)["activities"] == before["activities"] + ["email_click"]   # only the known token's


# -- opens ------------------------------------------------------------------------------------------

def test_an_open_scores_up_to_the_daily_cap(sdr, web):
    lead_id, token = new_lead(sdr)
    each, cap = points(sdr, "email_open")
    start = state(sdr, lead_id)["score"]
    assert_gif(web.get(f"/t/o/{token}.gif"))
    assert state(sdr, lead_id)["score"] == pytest.approx(start + each)
    for _ in range(int(cap // each) + 2):
        assert_gif(web.get(f"/t/o/{token}.gif"))
    assert state(sdr, lead_id)["score"] == pytest.approx(start + cap)


def test_the_pixel_is_the_same_gif_for_any_token_and_unknown_ones_record_nothing(sdr, web):
    lead_id, token = new_lead(sdr)
    before = state(sdr, lead_id)
    with sdr.store.session() as s:
        activities = s.scalar(select(func.count(Activity.id)))
    answers = [web.get(f"/t/o/{t}.gif") for t in ("f" * 32, "nope", "x" * 500, "%00")]
    for r in answers:
        assert_gif(r)
    head = web.head(f"/t/o/{'f' * 32}.gif")
    assert_gif(head)
    assert head.data == b"" and head.headers["Content-Length"] == "43"
    assert len({r.data for r in answers}) == 1 and answers[0].data.startswith(b"GIF89a") and len(answers[0].data) == 43
    with sdr.store.session() as s:
        assert s.scalar(select(func.count(Activity.id))) == activities
    known = web.get(f"/t/o/{token}.gif")
    assert (known.status_code, same(known.headers), known.data) == \
        (answers[0].status_code, same(answers[0].headers), answers[0].data)
    assert state(sdr, lead_id)["activities"] == before["activities"] + ["email_open"]


def test_nothing_is_recorded_when_the_playbook_has_no_such_event(sdr, web, known_url, monkeypatch):
    lead_id, token = new_lead(sdr)
    before = state(sdr, lead_id)
    monkeypatch.delitem(sdr.playbook.engagement, "email_open")
    monkeypatch.delitem(sdr.playbook.engagement, "email_click")
    assert_gif(web.get(f"/t/o/{token}.gif"))
    assert web.get(click_path(token, known_url)).headers["Location"] == known_url
    assert state(sdr, lead_id) == before


def test_a_lead_who_unsubscribed_is_not_tracked(sdr, web, known_url):
    lead_id, token = new_lead(sdr)
    with sdr.store.session() as s:
        unsubscribe = lead_token(s, lead_id, sdr.clock(), "unsubscribe")
    assert sdr.unsubscribe(unsubscribe)
    before = state(sdr, lead_id)
    assert_gif(web.get(f"/t/o/{token}.gif"))
    assert web.get(click_path(token, known_url)).status_code == 302
    assert state(sdr, lead_id) == before


# -- the content URLs -------------------------------------------------------------------------------

def test_the_content_urls_are_built_once_and_again_when_the_content_changes(world, tmp_path):
    sdr, app = world
    first = content_urls(app)
    assert first == {m["url"] for _, m in sdr.kb.corpus() if m.get("url")}
    assert content_urls(app) is first                       # not rebuilt per request
    (tmp_path / "new.md").write_text("---\ntitle: A new guide\ntype: guide\nurl: https://pipelark.example/guides/new"
                                     "\n---\n# A new guide\n\nForecast reviews in ten minutes.\n")
    sdr.kb.ingest([tmp_path / "new.md"], progress=False)
    assert content_urls(app) == first | {"https://pipelark.example/guides/new"}


# -- the email --------------------------------------------------------------------------------------

def test_the_html_part_ends_with_the_open_pixel_and_the_text_part_has_none():
    url = PIXEL + "?a=1&b=2"
    text, html = render(payload(open_pixel_url=url), footer_address=FOOTER, company="Northwind")
    img = ('<img src="https://sdr.example/t/o/0123456789abcdef0123456789abcdef.gif?a=1&amp;b=2" width="1" height="1" '
           'alt="" style="display:block;border:0;width:1px;height:1px;">')
    assert img in html and html.index(img) > html.index("Unsubscribe</a>")
    assert html.rstrip().endswith(img + "\n</body>\n</html>")
    assert "/t/o/" not in text and "<img" not in text


@pytest.mark.parametrize("bad", [None, "", "javascript:alert(1)", "JavaScript:alert(1)", "mailto:a@b.example",
                                 "data:image/gif;base64,R0lGOD", "https://sdr.example/t/o/a b.gif", 42])
def test_an_absent_or_unsafe_pixel_is_left_out(bad):
    p = payload() if bad is None else payload(open_pixel_url=bad)
    text, html = render(p, footer_address=FOOTER, company="Northwind")
    assert "<img" not in html and "javascript:" not in html.lower() and "data:" not in html


def test_a_pixel_url_cannot_break_out_of_its_attribute():
    text, html = render(payload(open_pixel_url='https://x.example/a"><script>alert(1)</script>'),
                        footer_address=FOOTER, company="Northwind")
    assert "<script" not in html and 'src="https://x.example/a&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
