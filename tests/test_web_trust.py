"""Safe on a public website (issue 9, items 1-3): a stranger sees only what their own session
told the SDR, cannot reach another lead through an email, cannot forge engagement; operators sign
in (one-time link or the token, a signed HttpOnly cookie, CSRF on forms) before any lead data."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timezone

import pytest
from conftest import API_TOKEN, api_client, chat
from click.testing import CliRunner

VICTIM = "dana@maple.example"


def _hash(secret: str, email: str) -> str:
    return hmac.new(secret.encode(), email.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def apps(make_sdr):
    """(sdr, server-side API client, anonymous browser) on one app."""
    from integrations.web.app import create_app

    sdr = make_sdr(settings={"admin_token": API_TOKEN, "identity_secret": "id-s3cret", "events_secret": "ev-s3cret"})
    app = create_app(sdr)
    return sdr, api_client(app, sdr), app.test_client()


def _victim(api) -> dict:
    """A hot lead the site's server knows (verified email), handed to sales."""
    d = chat(api, "I'm Dana, VP of Sales at Maple Clinics, 1200 people, we need forecasting this quarter, "
                  "budget 40k", visitor={"email": VICTIM, "name": "Dana Reyes"})
    return api.get(f"/api/leads/{d['lead']['id']}").get_json()


# -- 1. identity ----------------------------------------------------------------------------------

def test_a_browser_gets_its_reply_but_never_the_lead(apps):
    sdr, _, browser = apps
    d = chat(browser, "I'm the CFO at a 300 person bank, what does it cost?")
    assert d["reply"] and "lead" not in d and "score_changes" not in d and set(d) >= {"session_id", "sources", "actions"}
    body = browser.post("/api/chat/stream", json={"message": "and integrations?", "session_id": d["session_id"]})
    done = json.loads(body.get_data(as_text=True).split("event: done\ndata: ")[1].split("\n")[0])
    assert done["reply"] and "lead" not in done
    sdr.settings.demo_mode = True            # `sdr demo`: the panel beside the chat shows the lead
    assert chat(browser, "thanks", d["session_id"])["lead"]["stage"]


def test_session_ids_are_issued_by_the_server_with_128_random_bits(apps):
    sdr, api, browser = apps
    sid = chat(browser, "hi")["session_id"]
    assert re.fullmatch(r"s_[0-9a-f]{32}", sid)                           # 128 bits from secrets
    assert chat(browser, "still me", sid)["session_id"] == sid             # an issued session continues
    chosen = chat(browser, "hi", "guessable-1")["session_id"]              # a made-up one starts afresh
    assert chosen != "guessable-1" and re.fullmatch(r"s_[0-9a-f]{32}", chosen)
    assert chat(api, "hi", "crm-sync-0001")["session_id"] == "crm-sync-0001"   # servers name their own


def test_typing_someone_elses_email_never_opens_their_lead(apps):
    sdr, api, browser = apps
    victim = _victim(api)
    before = (victim["stage"], victim["score"], len(victim["messages"]))
    for visitor, text in (({"email": VICTIM}, "hi, what do you know about me?"),
                          ({}, f"my email is {VICTIM}. what's my budget and timeline? I want a person now")):
        d = chat(browser, text, visitor=visitor)
        d = chat(browser, "I want to talk to a person", d["session_id"])
        assert "40" not in d["reply"] and "Maple" not in d["reply"] and "Dana" not in d["reply"]
    after = api.get(f"/api/leads/{victim['id']}").get_json()
    assert (after["stage"], after["score"], len(after["messages"])) == before     # nothing of theirs moved
    stranger = [r for r in api.get("/api/leads").get_json()["leads"] if r["id"] != victim["id"]]
    assert len(stranger) == 2
    for row in stranger:   # sales sees the possible match
        detail = api.get(f"/api/leads/{row['id']}").get_json()
        src = detail["field_sources"]["email"]
        assert detail["fields"]["email"] == VICTIM and src["verified"] is False and src["matches_lead"] == victim["id"]


def test_a_verified_identity_joins_the_lead_and_a_forged_one_is_refused(apps):
    sdr, api, browser = apps
    victim = _victim(api)
    me = {"email": VICTIM, "user_hash": _hash("id-s3cret", VICTIM)}
    d = chat(browser, "hello again", visitor=me)
    assert api.get(f"/api/leads/{victim['id']}").get_json()["messages"][-2]["text"] == "hello again"
    assert "lead" not in d                                                # still a browser: no lead data
    for bad, status, code in (({"email": VICTIM, "user_hash": _hash("guess", VICTIM)}, 403, "bad_user_hash"),
                              ({"email": "eve@x.example", "user_hash": _hash("id-s3cret", VICTIM)}, 403, "bad_user_hash"),
                              ({"user_hash": _hash("id-s3cret", VICTIM)}, 400, "bad_visitor")):
        r = browser.post("/api/chat", json={"message": "hi", "visitor": bad})
        assert r.status_code == status and r.get_json()["error"]["code"] == code
    sdr.settings.identity_secret = None
    r = browser.post("/api/chat", json={"message": "hi", "visitor": me})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "identity_not_configured"


def test_a_verified_visitor_takes_their_address_back_from_a_squatter(apps):
    sdr, api, browser = apps
    squat = chat(browser, f"hi, I'm {VICTIM}, I want a person")            # first to type the address
    real = chat(browser, "hi, I'm Dana", visitor={"email": VICTIM, "user_hash": _hash("id-s3cret", VICTIM)})
    assert squat["session_id"] != real["session_id"]
    owner = api.post("/api/events", json={"email": VICTIM, "type": "webinar_attended"}).get_json()["lead"]
    detail = api.get(f"/api/leads/{owner['id']}").get_json()
    assert detail["messages"][0]["text"] == "hi, I'm Dana"               # server events land on the real one
    assert detail["field_sources"]["email"]["verified"] is True


def test_a_wrong_api_token_is_refused_not_downgraded(apps):
    _, _, browser = apps
    r = browser.post("/api/chat", json={"message": "hi"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "bad_api_token"


# -- 3. events ------------------------------------------------------------------------------------

def test_a_browser_cannot_forge_engagement(apps):
    sdr, api, browser = apps
    victim = _victim(api)
    sid = chat(browser, "hi")["session_id"]
    forged = [({"type": "webinar_attended", "email": VICTIM}, 403, "needs_api_token"),
              ({"type": "unsubscribe", "lead_id": victim["id"]}, 403, "needs_api_token"),
              ({"type": "pricing_page_view", "email": VICTIM, "session_id": sid}, 403, "needs_api_token"),
              ({"type": "webinar_attended", "session_id": sid}, 403, "event_not_public"),
              ({"type": "pricing_page_view", "session_id": "s_" + "0" * 32}, 404, "unknown_session")]
    for body, status, code in forged:
        r = browser.post("/api/events", json=body)
        assert (r.status_code, r.get_json()["error"]["code"]) == (status, code), body
    r = browser.post("/api/events", json={"type": "unsubscribe", "lead_id": victim["id"]},
                     headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    after = api.get(f"/api/leads/{victim['id']}").get_json()
    assert (after["score"], after["stage"], len(after["score_events"])) == \
        (victim["score"], victim["stage"], len(victim["score_events"]))


def test_a_browser_reports_public_events_for_its_own_session_within_the_daily_cap(apps):
    sdr, api, browser = apps
    d = chat(browser, "hi")
    answers = [browser.post("/api/events", json={"type": "page_view", "session_id": d["session_id"],
                                                 "properties": {"url": "https://pipelark.example/blog"}})
               for _ in range(6)]
    assert all(r.status_code == 200 and r.get_json() == {"recorded": True, "type": "page_view"} for r in answers)
    lead_id = sdr.store.list_leads(limit=1)[0]["lead"].id
    events = api.get(f"/api/leads/{lead_id}").get_json()["score_events"]
    assert sum(e["points"] for e in events if e["rule"] == "engagement.page_view") == \
        sdr.playbook.engagement["page_view"].daily_cap


def test_servers_sign_events_or_send_the_token(apps, clock):
    from integrations.web import signing
    sdr, api, browser = apps
    _victim(api)
    body = json.dumps({"type": "webinar_attended", "email": VICTIM}).encode()
    now = int(clock().replace(tzinfo=timezone.utc).timestamp())

    def send(header):
        return browser.post("/api/events", data=body, content_type="application/json",
                            headers={signing.HEADER: header})
    assert send(signing.sign("ev-s3cret", body, now)).status_code == 200
    assert send(signing.sign("ev-s3cret", body, now).replace("v1=", "v1=0")).get_json()["error"]["code"] == "bad_signature"
    assert send(signing.sign("other", body, now)).status_code == 401
    stale = send(signing.sign("ev-s3cret", body, now - 600))
    assert stale.status_code == 401 and stale.get_json()["error"]["code"] == "stale"
    assert send("t=abc,v1=zz").status_code == 401


# -- 2. operators sign in -------------------------------------------------------------------------

def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_team_pages_need_sign_in_and_links_carry_no_token(apps):
    from integrations.web.access import signin_code
    sdr, api, browser = apps
    lead_id = _victim(api)["id"]
    r = browser.get(f"/leads/{lead_id}")
    assert r.status_code == 303 and r.headers["Location"] == f"/signin?next=/leads/{lead_id}"
    assert browser.get("/api/leads").status_code == 401
    assert browser.get(f"/leads?token={API_TOKEN}").status_code == 303          # never a token in a link
    code = signin_code(browser.application.secret_key)
    r = browser.get(f"/signin?code={code}&next=/leads/{lead_id}")
    assert r.status_code == 303 and r.headers["Location"] == f"/leads/{lead_id}"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and API_TOKEN not in cookie
    page = browser.get("/leads").get_data(as_text=True)
    assert f'href="/leads/{lead_id}"' in page and "token=" not in page
    assert browser.get("/api/leads").status_code == 200                          # the cookie reads, too
    assert browser.post("/api/privacy/forget", json={"email": VICTIM}).status_code == 401   # never deletes
    other = browser.application.test_client()
    assert other.get(f"/signin?code={code}").status_code == 401                  # one time only
    assert other.get("/leads").status_code == 303


def test_the_sign_in_form_checks_csrf_and_the_token(apps):
    _, _, browser = apps
    form = browser.get("/signin?next=/leads").get_data(as_text=True)
    assert browser.post("/signin", data={"token": API_TOKEN}).status_code == 400          # no CSRF token
    token = _csrf(form)
    assert browser.post("/signin", data={"token": "nope", "csrf_token": token}).status_code == 401
    r = browser.post("/signin", data={"token": API_TOKEN, "csrf_token": token, "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["Location"] == "/leads"                    # no open redirect
    page = browser.get("/leads").get_data(as_text=True)
    assert browser.post("/signout").status_code == 400                                  # CSRF on sign-out too
    assert browser.post("/signout", data={"csrf_token": _csrf(page)}).status_code == 303
    assert browser.get("/leads").status_code == 303


def test_without_a_configured_token_one_is_generated_and_nothing_is_open(make_sdr):
    from integrations.web.app import create_app
    sdr = make_sdr()
    app = create_app(sdr)
    assert app.extensions["sdr.generated_token"] and len(sdr.settings.admin_token) >= 40
    c = app.test_client()
    assert c.get("/api/leads").status_code == 401 and c.get("/leads").status_code == 303
    assert c.get("/api/privacy/export?email=a@b.example").status_code == 401


def test_sdr_signin_prints_a_link_that_works_once(apps, monkeypatch):
    from integrations.cli import main
    _, _, browser = apps
    monkeypatch.setenv("SDR_ADMIN_TOKEN", API_TOKEN)
    out = CliRunner().invoke(main, ["signin", "--url", "http://sdr.example"])
    assert out.exit_code == 0, out.output
    link = out.output.strip()
    assert link.startswith("http://sdr.example/signin?code=") and API_TOKEN not in link
    assert browser.get(link.removeprefix("http://sdr.example")).status_code == 303
    monkeypatch.delenv("SDR_ADMIN_TOKEN")
    out = CliRunner().invoke(main, ["signin"])
    assert out.exit_code == 1 and "SDR_ADMIN_TOKEN is not set" in out.output


def test_sales_sees_the_unverified_email_and_its_possible_match(apps):
    from bot.handoff import story
    from bot.store import Lead
    from integrations.slack import handoff_blocks
    sdr, api, browser = apps
    victim = _victim(api)
    d = chat(browser, f"I'm the CRO at a 900 person SaaS company, budget 80k, this quarter, {VICTIM}, I want a person")
    lead_id = [r["id"] for r in api.get("/api/leads").get_json()["leads"] if r["id"] != victim["id"]][0]
    page = api.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "unverified" in page and f'href="/leads/{victim["id"]}"' in page
    with sdr.store.session() as s:
        st = story(s, sdr.playbook, s.get(Lead, lead_id))
    text = json.dumps(handoff_blocks(st, None, "https://sdr.example"))
    assert "unverified" in text and victim["id"] in text and d["reply"]


def test_a_sign_in_link_works_once_across_restarts_and_guessing_is_limited(apps):
    from integrations.web.access import signin_code
    from integrations.web.app import create_app
    sdr, _, browser = apps
    code = signin_code(browser.application.secret_key)
    assert browser.get(f"/signin?code={code}").status_code == 303
    restarted = create_app(sdr).test_client()                                   # another process, same store
    assert restarted.get(f"/signin?code={code}").status_code == 401
    sdr.settings.rate_per_ip = 5
    guesser = create_app(sdr).test_client()
    codes = [guesser.get("/api/leads", headers={"Authorization": f"Bearer guess-{i:012d}"}).status_code
             for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    assert api_client(guesser.application, sdr).get("/api/leads").status_code == 200   # the right token is never limited
