"""The browser tests' helpers in one place: headless Chromium through Playwright, a tab that records
what the widget does, a customer page embedding the widget, and a stand-in streaming API.

The system Chromium at /usr/bin/chromium is used; Playwright never downloads a browser here.
Importing this module skips the importing test module, with the reason, when either the
`playwright` package or Chromium is missing:

    apt-get install -y chromium && pip install playwright

Fixtures (import them into the test module): `browser` (one Chromium per module) and `tab` (a
fresh context and page, Europe/Berlin, recording dialogs, page errors and chat requests).
"""
from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"

try:
    from playwright.sync_api import Browser, Page, Request, expect, sync_playwright
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
CHAT, STREAM = "/api/chat", "/api/chat/stream"
SHADOW_COUNT = "sel => document.getElementById('sdr-widget-host').shadowRoot.querySelectorAll(sel).length"

# A plain third-party page with hostile CSS, to check the shadow DOM keeps the widget intact.
EMBED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Customer site</title>
<style>
  * {{ font-family: "Comic Sans MS", cursive !important; color: #f0f !important; }}
  div, button, textarea, a {{ display: none !important; }}
  body > div {{ transform: rotate(3deg); filter: blur(2px); }}
</style>
<script>
  window.__turns = [];
  window.__errors = [];
  window.addEventListener("sdr:turn", function (e) {{ window.__turns.push(e.detail); }});
  window.addEventListener("sdr:error", function (e) {{ window.__errors.push(e.detail); }});
  {config}
</script>
</head><body><h1>Acme customer site</h1><p>Some page content.</p>
<script src="{widget}" {attrs} defer></script>
</body></html>"""


def is_post(path: str):
    """A predicate for Playwright's expect_request/expect_response: a POST to exactly this API path."""
    def match(r) -> bool:
        req = getattr(r, "request", r)
        return req.method == "POST" and urlsplit(req.url).path == path
    return match


def parse_sse(body: str) -> list[tuple[str, dict]]:
    """(event, data) for each event of a text/event-stream body."""
    events = []
    for block in re.split(r"\r?\n\r?\n", body.replace("\r\n", "\n")):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def sse(*events: tuple[str, dict]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def as_shown(reply: str) -> str:
    """The text a bubble shows for `reply`: markdown links as their label, **bold** without stars."""
    reply = re.sub(r"\[([^\]\n]{1,300})\]\((https?://[^\s)]+)\)", r"\1", reply)
    return re.sub(r"\*\*([^*\n]{1,300})\*\*", r"\1", reply)


def wait_until(page: Page, condition, what: str) -> None:
    """Poll a Python-side condition (e.g. a route handler having run on Playwright's side)."""
    for _ in range(500):
        if condition():
            return
        page.wait_for_timeout(10)
    pytest.fail(f"timed out waiting for {what}")


def turn_json(response) -> dict:
    """The turn's JSON from a /api/chat response or from the `done` event of a /api/chat/stream one."""
    if "text/event-stream" in (response.headers.get("content-type") or ""):
        done = [data for name, data in parse_sse(response.text()) if name == "done"]
        assert len(done) == 1, f"expected one done event, got: {response.text()[:500]}"
        return done[0]
    return response.json()


@dataclass
class Tab:
    page: Page
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    chat_requests: list[dict] = field(default_factory=list)   # bodies POSTed to /api/chat or /api/chat/stream
    endpoints: list[str] = field(default_factory=list)        # the path of each, in order

    def sdr(self, name: str):
        """A widget element by its data-sdr name (Playwright's CSS locators pierce open shadow roots)."""
        return self.page.locator(f'[data-sdr="{name}"]')

    def assert_streamed(self) -> None:
        assert self.endpoints and set(self.endpoints) == {STREAM}, f"turns did not all stream: {self.endpoints}"

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a dialog fired: {self.dialogs}"
        assert self.page_errors == [], f"uncaught errors in the page: {self.page_errors}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US", timezone_id="Europe/Berlin")
    context.set_default_timeout(REPLY_TIMEOUT_MS)
    page = context.new_page()
    t = Tab(page)

    def on_dialog(d):
        t.dialogs.append(d.message)
        d.dismiss()

    def on_request(req: Request):
        path = urlsplit(req.url).path
        if req.method == "POST" and path in (CHAT, STREAM):
            t.endpoints.append(path)
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


def open_embed_page(tab: Tab, base: str, url: str | None = None, attrs: str = "", config: str = "") -> None:
    """Serve a customer page (via Playwright routing) that embeds <base>/widget.js with one tag
    (plus `attrs` on that tag, and `config` as script run before it)."""
    url = url or f"{base}/__embed_test__.html"
    html = EMBED_PAGE.format(widget=f"{base}/widget.js", attrs=attrs, config=config)
    tab.page.route(url, lambda route: route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html))
    tab.page.goto(url)
    expect(tab.sdr("launcher")).to_be_visible()


def open_widget(tab: Tab, base: str, **page: str) -> None:
    """The customer page (see open_embed_page) with the widget's panel opened by its launcher."""
    open_embed_page(tab, base, **page)
    tab.sdr("launcher").click()


def retry_and_wait(tab: Tab) -> dict:
    """Click Retry after a failed turn, wait for the streamed answer to be shown as the one agent
    bubble, check it shows the reply; return the turn's JSON."""
    with tab.page.expect_response(is_post(STREAM), timeout=REPLY_TIMEOUT_MS) as info:
        tab.sdr("retry").click()
    assert info.value.ok, f"the retry got {info.value.status}"
    data = turn_json(info.value)
    expect(tab.page.locator(AGENT)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    expect(tab.sdr("send")).to_be_enabled()
    assert agent_text(tab) == as_shown(data["reply"])
    return data


def send_and_wait(tab: Tab, text: str, endpoint: str = STREAM) -> dict:
    """Type into the widget, press Enter, wait for the agent bubble of this turn (its reply on
    `endpoint`) to be final; return the turn's JSON."""
    agents_before = tab.page.locator(AGENT).count()
    box = tab.sdr("input")
    box.fill(text)
    with tab.page.expect_response(is_post(endpoint), timeout=REPLY_TIMEOUT_MS) as info:
        box.press("Enter")
    response = info.value
    assert response.ok, f"{endpoint} answered {response.status}: {response.text()[:500]}"
    data = turn_json(response)
    agents = tab.page.locator(AGENT)
    expect(agents).to_have_count(agents_before + 1, timeout=REPLY_TIMEOUT_MS)
    expect(tab.sdr("send")).to_be_enabled(timeout=REPLY_TIMEOUT_MS)      # the turn is over
    expect(agents.last).not_to_have_attribute("data-streaming", "true")
    return data


def agent_text(tab: Tab, index: int = -1) -> str:
    agents = tab.page.locator(AGENT)
    bubble = (agents.last if index == -1 else agents.nth(index)).locator('[data-sdr="text"]')
    return bubble.text_content() or ""




class SteppedSSE:
    """A stand-in chat API on loopback (another port than the app) for one streamed turn: it sends
    the response headers at once, then each chunk of `chunks` only when the test calls step()."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = list(chunks)
        self.gate = threading.Semaphore(0)
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"      # the body ends when the connection closes

            def log_message(self, *args) -> None:
                pass

            def cors(self) -> None:
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Headers", "Content-Type")
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")

            def do_OPTIONS(self) -> None:
                self.send_response(204)
                self.cors()
                self.end_headers()

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                outer.bodies.append(json.loads(self.rfile.read(n) or b"{}"))
                if self.path != STREAM:
                    self.send_response(404)
                    self.cors()
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.cors()
                self.end_headers()
                self.wfile.flush()
                for chunk in outer.chunks:
                    if not outer.gate.acquire(timeout=REPLY_TIMEOUT_MS / 1000):
                        return
                    self.wfile.write(chunk)
                    self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def step(self) -> None:
        self.gate.release()

    def close(self) -> None:
        for _ in self.chunks:           # never leave a handler waiting
            self.gate.release()
        self.server.shutdown()
        self.server.server_close()
