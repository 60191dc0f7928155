"""End-to-end tests of the embeddable chat widget and the demo page, in headless Chromium.

They drive the real Flask app through the `live_server` fixture (tests/conftest.py: base URL of
the app running in a thread with a fresh data dir and the sample content ingested), with the
Python `playwright` package and the system Chromium at /usr/bin/chromium. Playwright never
downloads a browser here. Skipped, with the reason, when either is missing:

    apt-get install -y chromium && pip install playwright
    pytest tests/test_widget_browser.py

Every wait is on observable DOM state or on a network event; there are no sleeps.
Set SDR_DEMO_SCREENSHOT=PATH to choose where the demo-page screenshot goes ("" to skip it);
the default is /tmp/demo.png.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"

try:
    from playwright.sync_api import Page, Request, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("the `playwright` Python package is not installed (pip install playwright); "
                "browser tests skipped", allow_module_level=True)

if not os.path.exists(CHROMIUM):  # pragma: no cover - depends on the machine
    pytest.skip(f"no system Chromium at {CHROMIUM} (apt-get install -y chromium); browser tests skipped",
                allow_module_level=True)

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
REPLY_TIMEOUT_MS = 30_000   # generous: only matters when something is wrong
UI_TIMEOUT_MS = 5_000

AGENT = '[data-sdr="msg"][data-role="agent"]'
VISITOR = '[data-sdr="msg"][data-role="visitor"]'

# A plain third-party page with hostile CSS, to check the shadow DOM keeps the widget intact.
EMBED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Customer site</title>
<style>
  * {{ font-family: "Comic Sans MS", cursive !important; color: #f0f !important; }}
  div, button, textarea, a {{ display: none !important; }}
  body > div {{ transform: rotate(3deg); filter: blur(2px); }}
</style>
<script>
  window.__turns = [];
  window.addEventListener("sdr:turn", function (e) {{ window.__turns.push(e.detail); }});
</script>
</head><body><h1>Acme customer site</h1><p>Some page content.</p>
<script src="{widget}" defer></script>
</body></html>"""


@dataclass
class Tab:
    page: Page
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    chat_requests: list[dict] = field(default_factory=list)

    def sdr(self, name: str):
        """A widget element by its data-sdr name (Playwright's CSS locators pierce open shadow roots)."""
        return self.page.locator(f'[data-sdr="{name}"]')

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a dialog fired: {self.dialogs}"
        assert self.page_errors == [], f"uncaught errors in the page: {self.page_errors}"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def tab(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US", timezone_id="Europe/Berlin")
    context.set_default_timeout(REPLY_TIMEOUT_MS)
    page = context.new_page()
    t = Tab(page)

    def on_dialog(d):
        t.dialogs.append(d.message)
        d.dismiss()

    def on_request(req: Request):
        if req.method == "POST" and req.url.split("?")[0].endswith("/api/chat"):
            try:
                t.chat_requests.append(req.post_data_json or {})
            except (ValueError, json.JSONDecodeError):
                t.chat_requests.append({"_raw": req.post_data})

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: t.page_errors.append(str(e)))
    page.on("request", on_request)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    yield t
    context.close()


def open_embed_page(tab: Tab, base: str, url: str | None = None) -> None:
    """Serve a customer page (via Playwright routing) that embeds <base>/widget.js with one tag."""
    url = url or f"{base}/__embed_test__.html"
    html = EMBED_PAGE.format(widget=f"{base}/widget.js")
    tab.page.route(url, lambda route: route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html))
    tab.page.goto(url)
    expect(tab.sdr("launcher")).to_be_visible()


def send_and_wait(tab: Tab, text: str) -> dict:
    """Type into the widget, press Enter, wait for the agent bubble of this turn; return the JSON."""
    agents_before = tab.page.locator(AGENT).count()
    box = tab.sdr("input")
    box.fill(text)
    with tab.page.expect_response(lambda r: r.url.endswith("/api/chat") and r.request.method == "POST",
                                  timeout=REPLY_TIMEOUT_MS) as info:
        box.press("Enter")
    response = info.value
    assert response.ok, f"/api/chat answered {response.status}: {response.text()[:500]}"
    expect(tab.page.locator(AGENT)).to_have_count(agents_before + 1, timeout=REPLY_TIMEOUT_MS)
    return response.json()


# ---------------------------------------------------------------------------------------------
def test_chat_turn_shows_reply_and_source_links(live_server, tab):
    page = tab.page
    open_embed_page(tab, live_server)
    panel = tab.sdr("panel")
    expect(panel).to_be_hidden()

    tab.sdr("launcher").click()
    expect(panel).to_be_visible()
    box = tab.sdr("input")
    expect(box).to_be_focused()

    # Shift+Enter is a newline, not a send.
    box.fill("Hi! How does Pipelark forecasting work,")
    box.press("Shift+Enter")
    box.press_sequentially("and what does it cost?")
    assert box.input_value() == "Hi! How does Pipelark forecasting work,\nand what does it cost?"
    assert tab.chat_requests == []

    with page.expect_response(lambda r: r.url.endswith("/api/chat"), timeout=REPLY_TIMEOUT_MS) as info:
        box.press("Enter")
    data = info.value.json()
    agent = page.locator(AGENT)
    expect(agent).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    expect(box).to_have_value("")

    visitor = page.locator(VISITOR)
    expect(visitor).to_have_count(1)
    assert visitor.locator('[data-sdr="text"]').text_content() == "Hi! How does Pipelark forecasting work,\nand what does it cost?"

    text = agent.locator('[data-sdr="text"]').text_content() or ""
    assert text.strip(), "the agent bubble is empty"

    sources = agent.locator('[data-sdr="source"]')
    assert sources.count() >= 1, f"no source link rendered; response sources: {data.get('sources')}"
    for i in range(sources.count()):
        link = sources.nth(i)
        assert re.match(r"^https?://", link.get_attribute("href") or ""), link.get_attribute("href")
        assert link.get_attribute("target") == "_blank"
        assert "noopener" in (link.get_attribute("rel") or "")
        assert (link.text_content() or "").strip()

    # What the widget sent.
    sent = tab.chat_requests[0]
    assert "session_id" not in sent, "the first message must not carry a session id"
    assert sent["message"] == "Hi! How does Pipelark forecasting work,\nand what does it cost?"
    assert sent["visitor"]["page_url"] == page.url
    assert sent["visitor"]["timezone"] == "Europe/Berlin"

    # The host page hears about the turn.
    turns = page.evaluate("window.__turns")
    assert len(turns) == 1 and turns[0]["session_id"] == data["session_id"]

    # Hostile host-page CSS did not leak in: the widget keeps its own font and colours.
    launcher_font = tab.sdr("launcher").evaluate("el => getComputedStyle(el).fontFamily")
    assert "Comic Sans" not in launcher_font
    # The host element sits on <body>, with an open shadow root.
    assert page.evaluate("!!document.querySelector('body > #sdr-widget-host').shadowRoot")
    tab.assert_clean()


def test_html_in_reply_and_message_is_shown_as_text(live_server, tab):
    page = tab.page

    def tamper(route):
        # Take the server's real reply and add hostile markup to every text field we render.
        upstream = route.fetch()
        data = upstream.json()
        data["reply"] = (data.get("reply") or "") + (
            "\n<img src=x onerror=alert(1)><script>alert(2)</script> More at https://example.com/ok.")
        data["sources"] = list(data.get("sources") or []) + [
            {"title": "<img src=x onerror=alert(3)>", "url": "javascript:alert(4)", "type": "doc"},
            {"title": "Good <b>doc</b>", "url": "https://example.com/good", "type": "doc"},
        ]
        data["actions"] = list(data.get("actions") or []) + [{"type": "offer_meeting", "url": "javascript:alert(5)"}]
        route.fulfill(response=upstream, json=data)

    page.route("**/api/chat", tamper)
    open_embed_page(tab, live_server)
    tab.sdr("launcher").click()
    hostile = '<img src=x onerror=alert(6)><script>alert("visitor")</script>'
    send_and_wait(tab, hostile)

    shadow_count = ("sel => document.getElementById('sdr-widget-host').shadowRoot.querySelectorAll(sel).length")
    assert page.evaluate(shadow_count, "img") == 0
    assert page.evaluate(shadow_count, "script") == 0
    assert page.evaluate("document.querySelectorAll('img').length") == 0

    assert page.locator(VISITOR).locator('[data-sdr="text"]').text_content() == hostile
    agent = page.locator(AGENT)
    agent_text = agent.locator('[data-sdr="text"]').text_content() or ""
    assert "<img src=x onerror=alert(1)><script>alert(2)</script>" in agent_text

    # Only http(s) links exist; the javascript: source is text, the good one a link with literal title.
    hrefs = page.evaluate("""() => Array.from(document.getElementById('sdr-widget-host').shadowRoot
                               .querySelectorAll('a')).map(a => a.getAttribute('href'))""")
    assert hrefs and all(re.match(r"^https?://", h or "") for h in hrefs), hrefs
    good = agent.locator('[data-sdr="source"]', has_text="Good <b>doc</b>")
    expect(good).to_have_attribute("href", "https://example.com/good")
    assert agent.locator('[data-sdr="source"][href^="javascript"]').count() == 0
    assert agent.locator('[data-sdr="meeting"]').count() == 0
    # A URL inside the reply text is linkified safely, without the trailing full stop.
    expect(agent.locator('[data-sdr="link"][href="https://example.com/ok"]')).to_have_count(1)
    tab.assert_clean()


def test_reload_keeps_the_session(live_server, tab):
    page = tab.page
    open_embed_page(tab, live_server)
    tab.sdr("launcher").click()
    first = send_and_wait(tab, "Hello, I'm looking at tools for forecasting.")
    session_id = first["session_id"]
    assert session_id
    assert page.evaluate("localStorage.getItem('sdr_session_id')") == session_id

    page.reload()
    expect(tab.sdr("launcher")).to_be_visible()
    assert page.evaluate("localStorage.getItem('sdr_session_id')") == session_id
    # The transcript is shown again after the reload.
    expect(page.locator('[data-sdr="msg"][data-restored="true"]')).to_have_count(2)

    tab.sdr("launcher").click()
    second = send_and_wait(tab, "We're a team of about 40 reps.")
    assert [r.get("session_id") for r in tab.chat_requests] == [None, session_id]
    assert second["session_id"] == session_id
    assert page.evaluate("localStorage.getItem('sdr_session_id')") == session_id
    expect(page.locator(AGENT)).to_have_count(2)
    tab.assert_clean()


def test_demo_page_panel_shows_stage_score_and_reasons(live_server, tab):
    page = tab.page
    page.goto(f"{live_server}/")
    expect(tab.sdr("input")).to_be_visible()          # the demo page opens the widget by itself
    stage = page.locator('[data-demo="stage"]')
    expect(stage).to_have_attribute("data-stage", "none")

    first = send_and_wait(tab, "I'm VP of Sales at a 300-person SaaS company. Our forecasts are always off "
                               "and we want to fix that this quarter.")
    lead = first["lead"]
    expect(stage).to_have_attribute("data-stage", lead["stage"])
    assert (stage.text_content() or "").strip()
    assert float(page.locator('[data-demo="score"]').text_content()) == pytest.approx(lead["score"], abs=0.06)

    second = send_and_wait(tab, "How much does Pipelark cost?")
    lead = second["lead"]
    expect(stage).to_have_attribute("data-stage", lead["stage"])
    assert float(page.locator('[data-demo="score"]').text_content()) == pytest.approx(lead["score"], abs=0.06)

    changes = page.locator('[data-demo="changes"] li')
    expect(changes).to_have_count(len(first["score_changes"]) + len(second["score_changes"]))
    newest = (second["score_changes"] or first["score_changes"])
    if newest:   # newest first, formatted "+20 reason — rule: fit.x"
        top = changes.first.text_content() or ""
        assert f"rule: {newest[0]['rule']}" in top and newest[0]["reason"] in top, top
    known = {k: v for k, v in (lead.get("fields") or {}).items() if v not in (None, "")}
    expect(page.locator('[data-demo="fields"] tr')).to_have_count(len(known))
    expect(page.locator('[data-demo="actions"] li')).to_have_count(len(second.get("actions") or []))

    shot = os.environ.get("SDR_DEMO_SCREENSHOT", "/tmp/demo.png")
    if shot:
        page.screenshot(path=shot)
    tab.assert_clean()


def test_server_error_is_shown_and_page_stays_usable(live_server, tab):
    page = tab.page
    open_embed_page(tab, live_server)
    tab.sdr("launcher").click()
    box = tab.sdr("input")
    too_long = "word " * 1000      # 5,000 characters: the server answers 413 with a JSON error

    box.fill(too_long)
    with page.expect_response(lambda r: r.url.endswith("/api/chat"), timeout=REPLY_TIMEOUT_MS) as info:
        box.press("Enter")
    response = info.value
    assert response.status == 413, response.status

    error = tab.sdr("error")
    expect(error).to_be_visible()
    shown = (error.text_content() or "").strip()
    assert shown
    try:
        server_message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        server_message = None
    if server_message:
        assert server_message.strip()[:200] in shown
    assert "Traceback" not in shown and "<html" not in shown.lower()

    # Nothing is lost: the text is back in the box to shorten, and Send works again.
    expect(tab.sdr("send")).to_be_enabled()
    expect(box).to_have_value(too_long)
    expect(page.locator(VISITOR)).to_have_count(0)

    data = send_and_wait(tab, "Sorry, short version: do you integrate with HubSpot?")
    assert data["reply"]
    expect(error).to_be_hidden()
    tab.assert_clean()


def test_waiting_state_and_retry_after_network_error(live_server, tab):
    page = tab.page
    open_embed_page(tab, live_server)
    tab.sdr("launcher").click()
    held = []
    page.route("**/api/chat", lambda route: held.append(route))

    box = tab.sdr("input")
    box.fill("Do you work with Salesforce?")
    with page.expect_request(lambda r: r.url.endswith("/api/chat")):
        box.press("Enter")
    expect(tab.sdr("typing")).to_be_visible()
    expect(tab.sdr("send")).to_be_disabled()
    box.press("Enter")                          # Enter while waiting sends nothing more
    for _ in range(500):                        # the route callback runs on Playwright's side
        if held:
            break
        page.wait_for_timeout(10)
    assert held, "the request never reached the route handler"
    held[0].abort("internetdisconnected")

    error = tab.sdr("error")
    expect(error).to_be_visible()
    expect(tab.sdr("typing")).to_be_hidden()
    expect(tab.sdr("send")).to_be_enabled()
    expect(tab.sdr("retry")).to_be_visible()
    assert len(tab.chat_requests) == 1

    page.unroute("**/api/chat")
    with page.expect_response(lambda r: r.url.endswith("/api/chat"), timeout=REPLY_TIMEOUT_MS) as info:
        tab.sdr("retry").click()
    assert info.value.ok
    expect(page.locator(AGENT)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    expect(error).to_be_hidden()
    expect(page.locator(VISITOR)).to_have_count(1)    # the retry reused the bubble
    expect(page.locator(f"{VISITOR}.failed")).to_have_count(0)
    tab.assert_clean()


def test_cross_origin_embed_and_host_api(live_server, tab):
    """A customer's site on another origin: the widget calls the API on its own origin (CORS)."""
    page = tab.page
    # Another origin on loopback (127.0.0.1 <-> localhost). Chromium's Local Network Access rules
    # would block a "public" page from calling loopback, so the test grants that permission; real
    # deployments (public site -> public SDR host) do not meet this.
    parts = urlsplit(live_server)
    other_host = "localhost" if parts.hostname != "localhost" else "127.0.0.1"
    customer_url = f"http://{other_host}:{parts.port or 80}/pricing?plan=team"
    try:
        page.context.grant_permissions(["local-network-access"])
    except Exception:  # older Playwright/Chromium without that permission: nothing to grant
        pass
    open_embed_page(tab, live_server, url=customer_url)
    assert page.evaluate("window.SDRWidget.apiBase") == live_server

    page.evaluate("window.SDRWidget.open()")
    expect(tab.sdr("panel")).to_be_visible()
    page.evaluate("window.SDRWidget.close()")
    expect(tab.sdr("panel")).to_be_hidden()

    data = page.evaluate("window.SDRWidget.send('Hi, does Pipelark do deal inspection?')")
    if data is None:
        pytest.fail("cross-origin chat failed, the widget shows: "
                    f"{tab.sdr('error').text_content()!r}. The API must send CORS headers "
                    "(Access-Control-Allow-Origin) and answer the OPTIONS preflight for "
                    "Content-Type: application/json on /api/chat.")
    assert data["reply"]
    expect(tab.sdr("panel")).to_be_visible()           # send() opens the panel
    expect(page.locator(AGENT)).to_have_count(1)
    assert tab.chat_requests[0]["visitor"]["page_url"] == customer_url
    assert page.evaluate("localStorage.getItem('sdr_session_id')") == data["session_id"]
    assert page.evaluate("window.__turns.length") == 1
    tab.assert_clean()
