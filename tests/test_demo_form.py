"""The demo page's sample form (issue 12, "Done when"): in demo mode the page's form goes through
the real signed webhook, the outbox worker runs the form fill and writes a personal first touch as
an .eml file under the data dir, and /demo/mail shows it; outside demo mode the routes do not exist
and create nothing. One headless-Chromium test drives the page section against a live server with
a running outbox worker (skipped without Chromium, as tests/browser.py says)."""
from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from bot.outbox import list_entries
from integrations.wiring import build_outbox_worker, build_web_app

DANA = {"name": "Dana Whitfield", "email": "dana.whitfield@cedarcare-health.example", "company": "CedarCare Health",
        "job_title": "VP of Sales", "company_size": "300",
        "message": "Our forecasts are always off. Do you integrate with Salesforce?"}


def demo_app(make_sdr, demo: bool = True):
    sdr = make_sdr(settings={"demo_mode": demo})
    app = build_web_app(sdr, sdr.settings)
    app.testing = True
    worker, _notes = build_outbox_worker(sdr, sdr.settings)
    return sdr, app.test_client(), worker


def run_until_idle(worker, rounds: int = 10) -> None:
    for _ in range(rounds):
        if not worker.run_once():
            return
    pytest.fail("the outbox did not go idle")


def everything(sdr) -> list:
    return list_entries(sdr.store, ("pending", "delivered", "dead"))


def test_the_form_goes_through_the_signed_webhook_and_the_first_touch_is_written_and_shown(make_sdr):
    sdr, client, worker = demo_app(make_sdr)
    assert sdr.settings.form_secret is None          # `sdr demo` on a fresh clone: no secret configured

    assert client.get("/demo/mail", query_string={"email": DANA["email"]}).status_code == 404   # nothing yet
    r = client.post("/demo/form", data=DANA)         # form-encoded, as a plain HTML form posts
    assert r.status_code == 202, r.get_json()
    assert r.get_json() == {"accepted": True, "duplicate": False, "email": DANA["email"]}
    assert sdr.settings.form_secret is not None      # made for the process: the real webhook verified the signature
    assert [e.kind for e in everything(sdr)] == ["form_fill"]
    wrong = client.post("/webhooks/forms/generic", json=DANA, headers={"X-SDR-Signature": "t=1,v1=00"})
    assert wrong.status_code == 401                  # the webhook is not opened up by the demo

    pending = client.get("/demo/mail", query_string={"email": DANA["email"]})
    assert pending.status_code == 404 and pending.get_json()["error"]["code"] == "no_email_yet"
    run_until_idle(worker)

    r = client.get("/demo/mail", query_string={"email": DANA["email"].upper()})
    assert r.status_code == 200, r.get_json()
    mail = r.get_json()
    assert mail["status"] == "delivered" and mail["email"] == DANA["email"]
    assert mail["greeting"] == "Hi Dana," and mail["text"].startswith("Hi Dana,")
    assert "Salesforce" in mail["text"] and mail["subject"]
    assert "/unsubscribe/" in mail["text"]           # the text part the prospect gets, footer and all
    path = Path(mail["path"])
    assert path.suffix == ".eml" and path.is_file() and path.is_relative_to(sdr.settings.data_dir / "outbox-mail")
    assert mail["delivery"] == f"written to {path}"
    msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert msg["To"].addresses[0].addr_spec == DANA["email"] and msg["Subject"] == mail["subject"]
    assert msg.get_body(("plain",)).get_content().startswith("Hi Dana,")
    lead = sdr.lead_detail(mail["lead_id"])
    assert lead["fields"]["seniority"] == "vp" and lead["field_sources"]["role"]["source"] == "form"
    assert lead["stage"] == "sql" and mail["nurture"] == {"sequences": [], "why_not": "sales-qualified at once: "
                                                          "handed to a rep, not nurtured"}
    assert lead["fields"]["attribution"]["page_url"] == "http://localhost/"     # the demo page sent it

    # JSON works too; the same person sending the same form again within a day is a duplicate (issue 12),
    # whatever the case of the address — nothing new is created or sent
    again = client.post("/demo/form", json={**DANA, "email": "Dana.Whitfield@CEDARCARE-HEALTH.example"})
    assert again.status_code == 202 and again.get_json()["duplicate"] is True
    other = client.post("/demo/form", json={**DANA, "message": "And do you support SSO?"})
    assert other.status_code == 202 and other.get_json()["duplicate"] is False
    assert again.get_json()["email"] == "Dana.Whitfield@cedarcare-health.example"


def test_a_lead_below_sql_is_shown_its_nurture_plan(make_sdr):
    """A seller at a small team asks for the guide: not sales-ready, enrolled in new_inbound;
    /demo/mail shows what the dry run says they would get if they stay quiet (nothing is sent).
    The same person asking for a demo instead is handed to a rep: not nurtured."""
    sdr, client, worker = demo_app(make_sdr)
    sam = {"name": "Sam Ortiz", "email": "sam@smallco.example", "company": "SmallCo", "job_title": "Account Executive",
           "company_size": "40", "message": "Just researching how to improve forecast accuracy.", "want": "guide"}
    assert client.post("/demo/form", json={**sam, "want": "brochure"}).status_code == 400
    assert client.post("/demo/form", json=sam).status_code == 202
    run_until_idle(worker)
    mail = client.get("/demo/mail", query_string={"email": sam["email"]}).get_json()
    assert mail["status"] == "delivered" and mail["nurture"]["why_not"] is None
    (seq,) = mail["nurture"]["sequences"]
    assert seq["sequence"] == "new_inbound" and [e["step"] for e in seq["plan"]] == [
        "awareness_read", "consideration_read", "check_in", "breakup"]
    first = seq["plan"][0]
    assert first["url"].startswith("https://pipelark.example/") and first["title"] and first["skipped"] is None
    assert first["url"] not in mail["text"]                                            # never a piece twice
    assert [e.kind for e in everything(sdr)].count("email") == 1                         # a dry run sends nothing
    assert "guide" in mail["text"] and "demo" not in mail["text"].lower()             # a download, not a demo request
    demo = {**sam, "email": "sam.demo@smallco.example", "want": "demo"}
    assert client.post("/demo/form", json=demo).status_code == 202
    run_until_idle(worker)
    mail = client.get("/demo/mail", query_string={"email": demo["email"]}).get_json()
    assert mail["nurture"]["sequences"] == [] and "rep" in mail["nurture"]["why_not"]


def test_outside_demo_mode_the_routes_do_not_exist_and_create_nothing(make_sdr):
    sdr, client, worker = demo_app(make_sdr, demo=False)
    for r in (client.post("/demo/form", data=DANA), client.post("/demo/form", json=DANA),
              client.get("/demo/mail", query_string={"email": DANA["email"]}), client.get("/demo/form")):
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    assert sdr.settings.form_secret is None and everything(sdr) == [] and sdr.store.list_leads() == []
    run_until_idle(worker)
    assert not (sdr.settings.data_dir / "outbox-mail").exists()


@pytest.mark.parametrize("email", [None, "", "   ", "dana@", "not an address", "dana@localhost"])
def test_a_bad_email_is_a_400_naming_the_field(make_sdr, email):
    sdr, client, _ = demo_app(make_sdr)
    body = {k: v for k, v in DANA.items() if k != "email"}
    if email is not None:
        body["email"] = email
    r = client.post("/demo/form", json=body)
    assert r.status_code == 400 and r.get_json()["error"]["message"].startswith("email:")
    assert everything(sdr) == []


def test_other_bad_input_is_a_400_and_another_site_cannot_post(make_sdr):
    sdr, client, _ = demo_app(make_sdr)
    r = client.post("/demo/form", data=b"[1,2]", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "malformed_json"
    r = client.post("/demo/form", json={**DANA, "company": {"x": 1}})
    assert r.status_code == 400 and r.get_json()["error"]["message"].startswith("company:")
    r = client.post("/demo/form", json={**DANA, "message": "x" * 4001})
    assert r.status_code == 400 and r.get_json()["error"]["message"].startswith("message:")
    r = client.post("/demo/form", data=DANA, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "cross_origin"
    assert client.get("/demo/mail").status_code == 400
    assert everything(sdr) == []
    assert client.post("/demo/form", data=DANA, headers={"Origin": "http://localhost"}).status_code == 202


def test_the_demo_page_submits_the_form_and_shows_the_first_touch(make_sdr):
    """Headless Chromium on the real page, a live server and a running outbox worker, as `sdr demo` serves."""
    browser = pytest.importorskip("browser")          # skips, with the reason, without playwright or Chromium
    from conftest import LiveServer

    sdr = make_sdr(settings={"demo_mode": True})
    sdr.warm()                                        # as `sdr demo` does at start: the first form fill waits for nothing
    worker, _notes = build_outbox_worker(sdr, sdr.settings)
    server = LiveServer(build_web_app(sdr, sdr.settings))
    worker.start(poll_s=0.2)
    try:
        with browser.sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=browser.CHROMIUM, args=browser.CHROMIUM_ARGS, headless=True)
            try:
                page = chromium.new_page(viewport={"width": 1440, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("dialog", lambda d: (errors.append(d.message), d.dismiss()))
                check_the_page(browser.expect, page, server.url, sdr)
                assert errors == [], errors
            finally:
                chromium.close()
    finally:
        worker.stop()
        server.stop()


def check_the_page(expect, page, url: str, sdr) -> None:
    section = page.locator('[data-demo="form-panel"]')
    page.goto(url + "/")
    expect(section).to_be_visible(timeout=5_000)
    expect(section.get_by_role("heading", name="Try a form fill")).to_be_visible()
    expect(page.locator('#ff-form [name="job_title"]')).to_have_value("VP of Sales")   # a realistic prospect, pre-filled
    page.locator('#ff-form [name="name"]').fill("Dana Whitfield")
    page.locator('#ff-form [name="email"]').fill("not an address")
    page.locator('[data-demo="form-submit"]').click()
    expect(page.locator('[data-demo="form-status"]')).to_contain_text("email:")        # the server's 400, shown as text
    page.locator('#ff-form [name="email"]').fill(DANA["email"])
    page.locator('[data-demo="form-submit"]').click()

    where = page.locator('[data-demo="mail-where"]')
    expect(where).to_contain_text("written to ", timeout=15_000)
    (mail,) = [e for e in everything(sdr) if e.kind == "email"]
    path = mail.result["path"]
    assert (where.text_content() or "") == f"written to {path}" and Path(path).is_file()
    expect(page.locator('[data-demo="mail-subject"]')).to_have_text(mail.payload["subject"])
    text = page.locator('[data-demo="mail-text"]')
    assert (text.text_content() or "").startswith("Hi Dana,")
    expect(text.locator("*")).to_have_count(0)                                        # text, never markup
    expect(page.locator('[data-demo="form-status"]')).to_contain_text("First touch delivered in")
    expect(page.locator('[data-demo="nurture-plan"]')).to_contain_text("Not nurtured: sales-qualified")   # a VP: a rep's

    sdr.settings.demo_mode = False                    # the same page from a production server: no form section
    with page.expect_response(lambda r: r.url.endswith("/demo/form")) as info:
        page.reload()
    assert info.value.status == 404
    expect(section).to_be_hidden()
