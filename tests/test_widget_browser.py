"""End-to-end tests of the embeddable chat widget and the demo page, in headless Chromium.

They drive the real Flask app through the `live_server` fixture (tests/conftest.py: base URL of
the app running in a thread with a fresh data dir and the sample content ingested), with the
Python `playwright` package and the system Chromium at /usr/bin/chromium; the launch, the tab and
the page helpers are in tests/browser.py. Skipped, with the reason, when either is missing:

    apt-get install -y chromium && pip install playwright
    pytest tests/test_widget_browser.py

The widget streams replies (POST /api/chat/stream, server-sent events) and falls back to POST
/api/chat; `Tab.endpoints` records which one each turn used, and the tests check it.

Every wait is on observable DOM state or on a network event; there are no sleeps.
Set SDR_DEMO_SCREENSHOT=PATH to choose where the demo-page screenshot goes ("" to skip it);
the default is /tmp/demo.png.
"""
from __future__ import annotations

import json
import os
import re
from urllib.parse import urlsplit

import pytest

from browser import (AGENT, CHAT, REPLY_TIMEOUT_MS, SHADOW_COUNT, STREAM, VISITOR, SteppedSSE, agent_text, as_shown,
                     expect, is_post, open_embed_page, open_widget, parse_sse, retry_and_wait, send_and_wait, sse,
                     turn_json, wait_until)
from browser import browser, tab  # noqa: F401,F811  (fixtures)


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

    with page.expect_response(is_post(STREAM), timeout=REPLY_TIMEOUT_MS) as info:
        box.press("Enter")
    data = turn_json(info.value)
    deltas = [d["text"] for name, d in parse_sse(info.value.text()) if name == "delta"]
    assert deltas, "the server streamed no delta"
    agent = page.locator(AGENT)
    expect(agent).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    expect(tab.sdr("send")).to_be_enabled(timeout=REPLY_TIMEOUT_MS)
    expect(agent).not_to_have_attribute("data-streaming", "true")
    expect(box).to_have_value("")

    visitor = page.locator(VISITOR)
    expect(visitor).to_have_count(1)
    assert visitor.locator('[data-sdr="text"]').text_content() == "Hi! How does Pipelark forecasting work,\nand what does it cost?"

    text = agent.locator('[data-sdr="text"]').text_content() or ""
    assert text.strip(), "the agent bubble is empty"
    assert text == as_shown(data["reply"])

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
    assert isinstance(sent.get("message_id"), str) and 0 < len(sent["message_id"]) <= 100
    tab.assert_streamed()

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
        # Take the server's real stream, put hostile markup in a delta and in every text field of
        # the final `done` JSON that the widget renders.
        upstream = route.fetch()
        events = parse_sse(upstream.text())
        data = next(d for name, d in events if name == "done")
        data["reply"] = (data.get("reply") or "") + (
            "\n<img src=x onerror=alert(1)><script>alert(2)</script> More at https://example.com/ok.")
        data["sources"] = list(data.get("sources") or []) + [
            {"title": "<img src=x onerror=alert(3)>", "url": "javascript:alert(4)", "type": "doc"},
            {"title": "Good <b>doc</b>", "url": "https://example.com/good", "type": "doc"},
        ]
        data["actions"] = list(data.get("actions") or []) + [{"type": "offer_meeting", "url": "javascript:alert(5)"}]
        body = sse(("delta", {"text": "<img src=x onerror=alert(7)><script>alert(8)</script>"}),
                   *[(name, d) for name, d in events if name != "done"], ("done", data))
        route.fulfill(response=upstream, body=body)

    page.route("**/api/chat/stream", tamper)
    open_widget(tab, live_server)
    hostile = '<img src=x onerror=alert(6)><script>alert("visitor")</script>'
    send_and_wait(tab, hostile)

    assert page.evaluate(SHADOW_COUNT, "img") == 0
    assert page.evaluate(SHADOW_COUNT, "script") == 0
    assert page.evaluate("document.querySelectorAll('img').length") == 0

    assert page.locator(VISITOR).locator('[data-sdr="text"]').text_content() == hostile
    agent = page.locator(AGENT)
    agent_text = agent.locator('[data-sdr="text"]').text_content() or ""
    assert "<img src=x onerror=alert(1)><script>alert(2)</script>" in agent_text
    assert "alert(7)" not in agent_text      # the streamed text was replaced by the final reply

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
    tab.assert_streamed()
    tab.assert_clean()


def test_reload_keeps_the_session(live_server, tab):
    page = tab.page
    open_widget(tab, live_server)
    first = send_and_wait(tab, "Hello, I'm looking at tools for forecasting.")
    session_id = first["session_id"]
    assert session_id
    assert page.evaluate("localStorage.getItem('sdr_session_id')") == session_id

    page.reload()
    expect(tab.sdr("launcher")).to_be_visible()
    assert page.evaluate("localStorage.getItem('sdr_session_id')") == session_id
    # The transcript is shown again after the reload.
    restored = page.locator('[data-sdr="msg"][data-restored="true"]')
    expect(restored).to_have_count(2)
    expect(restored.last.locator('[data-sdr="text"]')).to_have_text(as_shown(first["reply"]))

    tab.sdr("launcher").click()
    second = send_and_wait(tab, "We're a team of about 40 reps.")
    assert [r.get("session_id") for r in tab.chat_requests] == [None, session_id]
    assert second["session_id"] == session_id
    assert page.evaluate("localStorage.getItem('sdr_session_id')") == session_id
    expect(page.locator(AGENT)).to_have_count(2)
    assert agent_text(tab) == as_shown(second["reply"])
    tab.assert_streamed()
    tab.assert_clean()


def test_demo_page_panel_shows_stage_score_and_reasons(sdr, live_server, tab):
    sdr.settings.demo_mode = True   # as `sdr demo` runs it: the browser gets the lead after every message
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
    tab.assert_streamed()
    tab.assert_clean()


def test_server_error_is_shown_and_page_stays_usable(live_server, tab):
    page = tab.page
    open_widget(tab, live_server)
    box = tab.sdr("input")
    too_long = "word " * 1000      # 5,000 characters: the server answers 413 with a JSON error

    box.fill(too_long)
    with page.expect_response(is_post(STREAM), timeout=REPLY_TIMEOUT_MS) as info:
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
    assert tab.endpoints == [STREAM], "an error answer must not be resent to /api/chat"

    data = send_and_wait(tab, "Sorry, short version: do you integrate with HubSpot?")
    assert data["reply"]
    expect(error).to_be_hidden()
    tab.assert_streamed()
    tab.assert_clean()


def test_waiting_state_and_retry_after_network_error(live_server, tab):
    page = tab.page
    open_widget(tab, live_server)
    held = []
    page.route("**/api/chat/stream", lambda route: held.append(route))
    page.route("**/api/chat", lambda route: held.append(route))

    box = tab.sdr("input")
    box.fill("Do you work with Salesforce?")
    with page.expect_request(is_post(STREAM)):
        box.press("Enter")
    expect(tab.sdr("typing")).to_be_visible()
    expect(tab.sdr("send")).to_be_disabled()
    box.press("Enter")                          # Enter while waiting sends nothing more
    wait_until(page, lambda: len(held) == 1, "the stream request to reach the route handler")

    # The stream fails on the network before any byte: the widget resends the turn to /api/chat.
    with page.expect_request(is_post(CHAT)):
        held[0].abort("internetdisconnected")
    expect(tab.sdr("typing")).to_be_visible()
    expect(tab.sdr("send")).to_be_disabled()
    wait_until(page, lambda: len(held) == 2, "the fallback request to reach the route handler")
    held[1].abort("internetdisconnected")       # and that fails too: now it is an error

    error = tab.sdr("error")
    expect(error).to_be_visible()
    expect(tab.sdr("typing")).to_be_hidden()
    expect(tab.sdr("send")).to_be_enabled()
    expect(tab.sdr("retry")).to_be_visible()
    expect(page.locator(AGENT)).to_have_count(0)
    assert tab.endpoints == [STREAM, CHAT]
    message_id = tab.chat_requests[0].get("message_id")
    assert message_id and tab.chat_requests[1].get("message_id") == message_id

    page.unroute("**/api/chat/stream")
    page.unroute("**/api/chat")
    retry_and_wait(tab)
    expect(error).to_be_hidden()
    expect(page.locator(VISITOR)).to_have_count(1)    # the retry reused the bubble
    expect(page.locator(f"{VISITOR}.failed")).to_have_count(0)
    assert tab.endpoints == [STREAM, CHAT, STREAM]
    assert tab.chat_requests[2].get("message_id") == message_id, "a retry keeps the message id"
    tab.assert_clean()


def test_cross_origin_embed_and_host_api(sdr, live_server, tab):
    """A customer's site on another origin: the widget calls the API on its own origin (CORS)."""
    page = tab.page
    # Another origin on loopback (127.0.0.1 <-> localhost). Chromium's Local Network Access rules
    # would block a "public" page from calling loopback, so the test grants that permission; real
    # deployments (public site -> public SDR host) do not meet this.
    parts = urlsplit(live_server)
    other_host = "localhost" if parts.hostname != "localhost" else "127.0.0.1"
    customer_url = f"http://{other_host}:{parts.port or 80}/pricing?plan=team"
    sdr.settings.allowed_origins = f"http://{other_host}:{parts.port or 80}"   # the customer's site, allowed
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
                    "Content-Type: application/json on /api/chat/stream and /api/chat.")
    assert data["reply"]
    expect(tab.sdr("panel")).to_be_visible()           # send() opens the panel
    expect(page.locator(AGENT)).to_have_count(1)
    assert tab.chat_requests[0]["visitor"]["page_url"] == customer_url
    assert page.evaluate("localStorage.getItem('sdr_session_id')") == data["session_id"]
    assert page.evaluate("window.__turns.length") == 1
    tab.assert_streamed()
    tab.assert_clean()


# ---------------------------------------------------------------------------------------------
# Streaming: deltas as they arrive, reset, done, errors inside the stream, and the fallbacks
# (SteppedSSE, in tests/browser.py, is a stand-in streaming API that sends a chunk per step())


def test_reply_streams_in_as_deltas_and_done_is_final(live_server, tab):
    """Deltas show as they arrive (as text), a reset withdraws them, and `done` has the last word."""
    page = tab.page
    hostile = "Checking <img src=x onerror=alert(1)> now."
    reply = "Pipelark costs $45 per seat per month \u2014 billed yearly. Details: https://example.com/pricing."
    done = {"session_id": "s_stream_test_01", "reply": reply,
            "lead": {"id": "lead_x", "stage": "engaged", "score": 7.0, "fields": {}},
            "sources": [{"title": "Pricing", "url": "https://example.com/pricing", "type": "doc"}],
            "actions": [{"type": "offer_meeting", "url": "https://example.com/book", "minutes": 30}],
            "score_changes": [{"kind": "engagement", "rule": "engagement.pricing_question", "points": 5.0,
                               "reason": "pricing question (+5)"}]}
    # The last delta is cut in two inside the UTF-8 bytes of the em dash; CRLF line ends and a
    # keep-alive comment whose CR and LF land in different chunks.
    tail = ("\nevent: delta\ndata: " + json.dumps({"text": " per month \u2014 billed yearly."}, ensure_ascii=False)
            + "\n\n").encode()
    cut = tail.index("\u2014".encode()) + 2
    chunks = [
        sse(("delta", {"text": hostile})).encode(),
        sse(("reset", {})).encode(),
        b'event: delta\r\ndata: {"text": "Pipelark costs $45 per seat"}\r\n\r\n: keep-alive\r',
        tail[:cut],
        tail[cut:] + sse(("done", done)).encode(),
    ]
    stub = SteppedSSE(chunks)
    try:
        try:   # the stand-in API is another loopback origin: see test_cross_origin_embed_and_host_api
            page.context.grant_permissions(["local-network-access"])
        except Exception:
            pass
        open_embed_page(tab, live_server, attrs=f'data-api="{stub.url}"')
        tab.sdr("launcher").click()
        agents, typing, send = page.locator(AGENT), tab.sdr("typing"), tab.sdr("send")
        bubble = agents.locator('[data-sdr="text"]')
        box = tab.sdr("input")
        box.fill("How much is it?")
        with page.expect_response(is_post(STREAM)):       # the headers come at once, no event yet
            box.press("Enter")
        expect(typing).to_be_visible()
        expect(send).to_be_disabled()
        expect(agents).to_have_count(0)

        stub.step()       # a first delta, with markup in it: shown as text, the typing dots go
        expect(agents).to_have_count(1)
        expect(bubble).to_have_text(hostile)
        expect(agents).to_have_attribute("data-streaming", "true")
        expect(typing).to_be_hidden()
        expect(send).to_be_disabled()
        assert bubble.text_content() == hostile
        assert page.evaluate(SHADOW_COUNT, "img") == 0
        assert page.evaluate("document.querySelectorAll('img').length") == 0

        stub.step()       # reset: what was shown is withdrawn, the typing dots are back
        expect(agents).to_have_count(0)
        expect(typing).to_be_visible()
        expect(send).to_be_disabled()

        stub.step()       # the safe reply starts
        expect(bubble).to_have_text("Pipelark costs $45 per seat")
        expect(typing).to_be_hidden()
        expect(send).to_be_disabled()

        stub.step()       # half an event: nothing new to show yet
        page.evaluate("0")
        assert bubble.text_content() == "Pipelark costs $45 per seat"

        stub.step()       # the rest of the delta, then done
        expect(send).to_be_enabled()
        expect(agents).to_have_count(1)
        expect(agents).not_to_have_attribute("data-streaming", "true")
        assert bubble.text_content() == reply            # done.reply is authoritative
        expect(agents.locator('[data-sdr="link"][href="https://example.com/pricing"]')).to_have_count(1)
        expect(agents.locator('[data-sdr="source"]')).to_have_attribute("href", "https://example.com/pricing")
        expect(agents.locator('[data-sdr="meeting"]')).to_have_attribute("href", "https://example.com/book")
        expect(typing).to_be_hidden()
        assert page.evaluate(SHADOW_COUNT, "img") == 0
        assert page.evaluate("document.querySelectorAll('img').length") == 0

        # The turn is recorded like any other.
        assert page.evaluate("window.__turns") == [done]
        assert page.evaluate("localStorage.getItem('sdr_session_id')") == done["session_id"]
        saved = json.loads(page.evaluate("localStorage.getItem('sdr_transcript')"))
        assert saved["session_id"] == done["session_id"]
        assert [(i["role"], i["text"]) for i in saved["items"]] == [("visitor", "How much is it?"), ("agent", reply)]
        assert stub.bodies[0]["message"] == "How much is it?" and stub.bodies[0].get("message_id")
        assert tab.endpoints == [STREAM]
        tab.assert_clean()
    finally:
        stub.close()


def test_error_event_inside_the_stream_is_shown_and_retry_works(live_server, tab):
    page = tab.page
    body = sse(("delta", {"text": "Half a rep"}),
               ("error", {"error": {"code": "internal_error", "message": "the reply failed; please resend"}}))
    page.route("**/api/chat/stream", lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream", "Access-Control-Allow-Origin": "*"}, body=body))
    open_widget(tab, live_server)
    box = tab.sdr("input")
    box.fill("Does Pipelark work with HubSpot?")
    box.press("Enter")

    error = tab.sdr("error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("the reply failed; please resend")
    expect(tab.sdr("retry")).to_be_visible()
    expect(tab.sdr("send")).to_be_enabled()
    expect(tab.sdr("typing")).to_be_hidden()
    expect(page.locator(AGENT)).to_have_count(0)             # the half reply is not kept
    expect(page.locator(f"{VISITOR}.failed")).to_have_count(1)
    assert page.evaluate("window.__errors.map(e => e.code)") == ["internal_error"]
    assert page.evaluate("window.__turns.length") == 0
    assert tab.endpoints == [STREAM]                         # an answered stream is never resent by itself

    page.unroute("**/api/chat/stream")
    retry_and_wait(tab)
    expect(error).to_be_hidden()
    expect(page.locator(VISITOR)).to_have_count(1)
    assert tab.endpoints == [STREAM, STREAM]
    assert tab.chat_requests[1]["message_id"] == tab.chat_requests[0]["message_id"]
    tab.assert_clean()


@pytest.mark.parametrize("how", ["data-stream-false", "config-stream-false", "stream-network-error",
                                 "no-readable-stream"])
def test_falls_back_to_plain_chat(live_server, tab, how):
    page = tab.page
    attrs = config = ""
    if how == "data-stream-false":
        attrs = 'data-stream="false"'
    elif how == "config-stream-false":
        config = "window.SDRWidgetConfig = { stream: false };"
    elif how == "stream-network-error":
        page.route("**/api/chat/stream", lambda route: route.abort("connectionreset"))
    else:   # a browser without streams
        page.add_init_script("window.ReadableStream = undefined;")
    open_widget(tab, live_server, attrs=attrs, config=config)

    data = send_and_wait(tab, "Hi, does Pipelark integrate with HubSpot?", endpoint=CHAT)
    assert data["reply"]
    assert agent_text(tab) == as_shown(data["reply"])
    expect(tab.sdr("error")).to_be_hidden()
    assert tab.endpoints == ([STREAM, CHAT] if how == "stream-network-error" else [CHAT])
    if how == "stream-network-error":   # the same turn, resent: the server can tell it is a resend
        assert tab.chat_requests[1]["message_id"] == tab.chat_requests[0]["message_id"]
    assert page.evaluate("window.__turns.length") == 1
    assert page.evaluate("localStorage.getItem('sdr_session_id')") == data["session_id"]
    tab.assert_clean()
