/*!
 * Open SDR chat widget.
 *
 * Embed on any page with one tag:
 *
 *     <script src="https://YOUR-SDR-HOST/widget.js" defer></script>
 *
 * The widget talks to the API on the origin it was loaded from (cross-origin capable), renders
 * inside an open Shadow DOM so the host page's CSS cannot break it, and keeps the conversation id
 * in localStorage ("sdr_session_id") so a reload or a new page on the same site continues the
 * same conversation.
 *
 * Replies are streamed: the widget POSTs to /api/chat/stream (same JSON body as /api/chat) and
 * reads the server-sent events with fetch + a stream reader (EventSource can't POST):
 *   delta {text}   appended to the agent bubble as it arrives
 *   reset {}       the text shown so far is withdrawn (the safe reply follows as deltas)
 *   done  {...}    exactly the /api/chat JSON; its `reply` becomes the bubble's final text
 *   error {error}  shown like any other error
 * Without streaming support in the browser, or when the stream request fails on the network
 * before anything arrives, the widget falls back to POST /api/chat (JSON). Every message carries
 * a `message_id`, kept across retries and the fallback, so the server answers a resend only once.
 *
 * Optional settings, either as data- attributes on the script tag or as
 * `window.SDRWidgetConfig = {...}` set before the script runs (attributes win):
 *   data-title     / title     header title            (default "Chat with us")
 *   data-subtitle  / subtitle  header subtitle
 *   data-greeting  / greeting  first line shown in an empty chat (local only, never sent)
 *   data-color     / color     accent colour, any CSS colour
 *   data-open      / open      "true" opens the panel on load
 *   data-api       / api       API base URL (default: the origin of this script)
 *   data-stream    / stream    "false" turns streaming off: plain POST /api/chat (default on)
 *
 * Host-page API:
 *   SDRWidget.open(), SDRWidget.close(), SDRWidget.toggle()
 *   SDRWidget.send(text)      -> Promise resolving to the parsed response, or null on failure
 *   SDRWidget.identify({email, name, company})  sent as `visitor` with every message
 *   SDRWidget.reset()         forget the conversation and start a new one
 * Events on window:
 *   "sdr:ready"  once mounted;  "sdr:turn" detail = parsed JSON response of each successful turn;
 *   "sdr:error"  detail = {status, code, message} when a turn fails (status is 200 for an error
 *                reported inside a stream that had already started).
 *
 * Security: every piece of text that comes from the server or the visitor is inserted with
 * textContent / createTextNode. Links are built with createElement and only get an href when
 * the URL is http(s). This file never uses innerHTML.
 */
(function () {
  "use strict";

  if (window.SDRWidget && window.SDRWidget.__sdr) return; // loaded twice: keep the first

  var SESSION_KEY = "sdr_session_id";
  var TRANSCRIPT_KEY = "sdr_transcript";
  var HOST_ID = "sdr-widget-host";
  var REQUEST_TIMEOUT_MS = 60000;
  var MAX_TRANSCRIPT = 60;
  var SVG_NS = "http://www.w3.org/2000/svg";

  // ---------------------------------------------------------------- configuration
  var script = document.currentScript || findOwnScript();

  function findOwnScript() {
    var scripts = document.getElementsByTagName("script");
    for (var i = scripts.length - 1; i >= 0; i--) {
      if (/\/widget\.js(?:[?#]|$)/.test(scripts[i].src || "")) return scripts[i];
    }
    return null;
  }

  var globalConfig = (window.SDRWidgetConfig && typeof window.SDRWidgetConfig === "object")
    ? window.SDRWidgetConfig : {};

  function setting(name) {
    var attr = script && script.getAttribute("data-" + name);
    if (attr !== null && attr !== undefined && attr !== "") return String(attr);
    var v = globalConfig[name];
    return (v === undefined || v === null) ? null : String(v);
  }

  function apiBase() {
    var explicit = setting("api");
    try {
      if (explicit) return new URL(explicit, location.href).href.replace(/\/+$/, "");
      if (script && script.src) return new URL(script.src, location.href).origin;
    } catch (e) { /* fall through */ }
    return location.origin;
  }

  var API_BASE = apiBase();
  var TITLE = setting("title") || "Chat with us";
  var SUBTITLE = setting("subtitle") || "We typically reply in a few seconds";
  var GREETING = setting("greeting") ||
    "Hi there! Ask me anything \u2014 pricing, features, integrations, or whether we're a fit for your team.";
  var ACCENT = setting("color");
  var OPEN_ON_LOAD = /^(1|true|yes)$/i.test(setting("open") || "");
  var STREAM = !/^(0|false|no|off)$/i.test(setting("stream") || "");

  // ---------------------------------------------------------------- storage
  // localStorage can throw (privacy modes, blocked third-party storage): fall back to memory.
  var memoryStore = {};
  var store = {
    get: function (k) {
      try { return window.localStorage.getItem(k); }
      catch (e) { return Object.prototype.hasOwnProperty.call(memoryStore, k) ? memoryStore[k] : null; }
    },
    set: function (k, v) {
      try { window.localStorage.setItem(k, v); } catch (e) { memoryStore[k] = v; }
    },
    remove: function (k) {
      try { window.localStorage.removeItem(k); } catch (e) { /* ignore */ }
      delete memoryStore[k];
    }
  };

  function getSessionId() {
    var s = store.get(SESSION_KEY);
    return (typeof s === "string" && s.length > 0 && s.length <= 200) ? s : null;
  }

  function loadTranscript(sessionId) {
    if (!sessionId) return [];
    try {
      var t = JSON.parse(store.get(TRANSCRIPT_KEY) || "null");
      if (t && t.session_id === sessionId && Array.isArray(t.items)) return t.items;
    } catch (e) { /* corrupt: ignore */ }
    return [];
  }

  function saveTranscript(sessionId, items) {
    if (!sessionId) return;
    try {
      store.set(TRANSCRIPT_KEY, JSON.stringify({ session_id: sessionId, items: items.slice(-MAX_TRANSCRIPT) }));
    } catch (e) { /* quota: ignore */ }
  }

  // ---------------------------------------------------------------- safe DOM helpers
  function h(tag, props, children) {
    var el = document.createElement(tag);
    if (props) {
      for (var k in props) {
        if (!Object.prototype.hasOwnProperty.call(props, k)) continue;
        var v = props[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === "className") el.className = v;
        else if (k === "text") el.textContent = String(v);
        else if (k.slice(0, 2) === "on" && typeof v === "function") el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? "" : String(v));
      }
    }
    appendAll(el, children);
    return el;
  }

  function appendAll(el, children) {
    if (children === null || children === undefined) return;
    if (!Array.isArray(children)) children = [children];
    for (var i = 0; i < children.length; i++) {
      var c = children[i];
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
  }

  function icon(paths, size) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", String(size || 24));
    svg.setAttribute("height", String(size || 24));
    svg.setAttribute("fill", "none");
    svg.setAttribute("stroke", "currentColor");
    svg.setAttribute("stroke-width", "2");
    svg.setAttribute("stroke-linecap", "round");
    svg.setAttribute("stroke-linejoin", "round");
    svg.setAttribute("aria-hidden", "true");
    for (var i = 0; i < paths.length; i++) {
      var p = document.createElementNS(SVG_NS, "path");
      p.setAttribute("d", paths[i]);
      svg.appendChild(p);
    }
    return svg;
  }

  var ICON_CHAT = ["M21 12a8 8 0 0 1-11.6 7.1L4 20.5l1.4-4.9A8 8 0 1 1 21 12z", "M8.5 12h.01", "M12 12h.01", "M15.5 12h.01"];
  var ICON_CLOSE = ["M18 6 6 18", "M6 6l12 12"];
  var ICON_SEND = ["M22 2 11 13", "M22 2 15 22l-4-9-9-4z"];
  var ICON_CAL = ["M8 2v4", "M16 2v4", "M3 8h18", "M5 4h14a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"];

  /** Return a normalised http(s) URL, or null for anything else (javascript:, data:, relative...). */
  function safeHref(url) {
    if (typeof url !== "string") return null;
    url = url.trim();
    if (!/^https?:\/\//i.test(url)) return null;
    try {
      var u = new URL(url);
      if (u.protocol !== "http:" && u.protocol !== "https:") return null;
      return u.href;
    } catch (e) {
      return null;
    }
  }

  function link(href, label, attrs) {
    var a = document.createElement("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener";
    a.textContent = label;
    if (attrs) for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) a.setAttribute(k, attrs[k]);
    return a;
  }

  function trimUrl(url) {
    // Drop trailing punctuation that is almost never part of a URL ("see https://x.com/a.").
    var trail = "";
    while (url.length) {
      var last = url.charAt(url.length - 1);
      if (".,;:!?'\"".indexOf(last) >= 0) {
        trail = last + trail; url = url.slice(0, -1);
      } else if (last === ")" && (url.split("(").length < url.split(")").length)) {
        trail = last + trail; url = url.slice(0, -1);
      } else break;
    }
    return [url, trail];
  }

  // Markdown-style [label](https://...), bare http(s) URLs and **bold**; everything else is text.
  var RICH_RE = /\[([^\]\n]{1,300})\]\((https?:\/\/[^\s)]+)\)|(https?:\/\/[^\s<>"'`]+)|\*\*([^*\n]{1,300})\*\*/gi;

  /** Append `text` to `parent` as text nodes, safe anchors and <strong>; never parses HTML. */
  function appendRichText(parent, text) {
    text = String(text);
    var last = 0, m;
    RICH_RE.lastIndex = 0;
    while ((m = RICH_RE.exec(text)) !== null) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[1] !== undefined) {
        var href = safeHref(m[2]);
        parent.appendChild(href ? link(href, m[1], { "data-sdr": "link" }) : document.createTextNode(m[0]));
      } else if (m[3] !== undefined) {
        var parts = trimUrl(m[3]);
        var h2 = safeHref(parts[0]);
        parent.appendChild(h2 ? link(h2, parts[0], { "data-sdr": "link" }) : document.createTextNode(parts[0]));
        if (parts[1]) parent.appendChild(document.createTextNode(parts[1]));
      } else {
        parent.appendChild(h("strong", { text: m[4] }));
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function timezone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || null; } catch (e) { return null; }
  }

  // ---------------------------------------------------------------- styles
  var CSS = [
    ":host{all:initial}",
    "*,*::before,*::after{box-sizing:border-box}",
    "[hidden]{display:none!important}",
    ".root{--sdr-accent:#2563eb;--sdr-accent-ink:#fff;font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;",
    "font-size:14px;line-height:1.45;color:#0f172a;-webkit-font-smoothing:antialiased;text-align:left;letter-spacing:normal}",
    "button,textarea{font:inherit;color:inherit;margin:0}",
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2;width:58px;height:58px;border-radius:50%;border:0;padding:0;",
    "background:var(--sdr-accent);color:var(--sdr-accent-ink);cursor:pointer;display:flex;align-items:center;justify-content:center;",
    "box-shadow:0 10px 28px rgba(15,23,42,.28),0 2px 6px rgba(15,23,42,.18);transition:transform .15s ease,box-shadow .15s ease}",
    ".launcher:hover{transform:translateY(-2px) scale(1.04)}",
    ".launcher:focus-visible,.icon-btn:focus-visible,.send:focus-visible,.retry:focus-visible{outline:3px solid rgba(37,99,235,.45);outline-offset:3px}",
    ".launcher .unread{position:absolute;top:3px;right:3px;width:13px;height:13px;border-radius:50%;background:#ef4444;border:2px solid #fff}",
    ".panel{position:fixed;right:20px;bottom:92px;z-index:1;width:384px;max-width:calc(100vw - 40px);height:600px;max-height:calc(100vh - 116px);",
    "background:#fff;border-radius:18px;overflow:hidden;display:flex;flex-direction:column;",
    "box-shadow:0 24px 64px rgba(15,23,42,.26),0 0 0 1px rgba(15,23,42,.07);transform-origin:bottom right;animation:sdr-in .18s ease-out}",
    "@keyframes sdr-in{from{opacity:0;transform:translateY(8px) scale(.98)}to{opacity:1;transform:none}}",
    ".header{display:flex;align-items:center;gap:12px;padding:14px 14px 14px 16px;background:var(--sdr-accent);color:var(--sdr-accent-ink)}",
    ".avatar{flex:none;width:38px;height:38px;border-radius:50%;background:rgba(255,255,255,.2);display:flex;align-items:center;justify-content:center;position:relative}",
    ".avatar::after{content:'';position:absolute;right:0;bottom:0;width:10px;height:10px;border-radius:50%;background:#22c55e;border:2px solid var(--sdr-accent)}",
    ".titles{flex:1;min-width:0}",
    ".title{font-size:15px;font-weight:650;line-height:1.25;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}",
    ".subtitle{font-size:12px;opacity:.85;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}",
    ".icon-btn{flex:none;width:34px;height:34px;border:0;border-radius:10px;background:transparent;color:inherit;cursor:pointer;display:flex;align-items:center;justify-content:center}",
    ".icon-btn:hover{background:rgba(255,255,255,.16)}",
    ".messages{flex:1;overflow-y:auto;overscroll-behavior:contain;padding:16px 14px;display:flex;flex-direction:column;gap:12px;background:#f6f7fb}",
    ".msg{display:flex;flex-direction:column;max-width:86%}",
    ".msg[data-role=visitor]{align-self:flex-end;align-items:flex-end}",
    ".msg[data-role=agent],.greeting,.typing{align-self:flex-start;align-items:flex-start}",
    ".bubble{padding:9px 13px;border-radius:16px;white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;max-height:320px;overflow-y:auto}",
    ".msg[data-role=visitor] .bubble{background:var(--sdr-accent);color:var(--sdr-accent-ink);border-bottom-right-radius:5px}",
    ".msg[data-role=agent] .bubble,.greeting .bubble,.typing .bubble{background:#fff;color:#0f172a;border:1px solid #e5e7eb;border-bottom-left-radius:5px;box-shadow:0 1px 2px rgba(15,23,42,.05)}",
    ".greeting{display:flex;flex-direction:column;max-width:86%}",
    ".bubble a{color:var(--sdr-accent);text-decoration:underline;text-underline-offset:2px}",
    ".msg[data-role=visitor] .bubble a{color:inherit}",
    ".bubble strong{font-weight:650}",
    ".msg.failed .bubble{opacity:.55}",
    ".note{margin-top:4px;font-size:11px;color:#b91c1c}",
    ".sources{margin-top:7px;display:flex;flex-wrap:wrap;align-items:center;gap:6px;max-width:100%}",
    ".sources-label{font-size:11px;font-weight:600;text-transform:uppercase;letter-spacing:.04em;color:#64748b}",
    ".source{display:inline-block;max-width:100%;font-size:12px;line-height:1.3;padding:4px 10px;border-radius:999px;background:#fff;",
    "border:1px solid #d7dce5;color:var(--sdr-accent);text-decoration:none;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}",
    "a.source:hover{border-color:var(--sdr-accent)}",
    "span.source{color:#475569}",
    ".meeting{margin-top:8px;display:inline-flex;align-items:center;gap:8px;padding:9px 15px;border-radius:11px;background:var(--sdr-accent);",
    "color:var(--sdr-accent-ink);font-weight:600;text-decoration:none;box-shadow:0 4px 12px rgba(15,23,42,.15)}",
    ".meeting:hover{filter:brightness(1.08)}",
    ".typing .bubble{display:flex;gap:5px;align-items:center;padding:13px 15px}",
    ".dot{width:7px;height:7px;border-radius:50%;background:#94a3b8;animation:sdr-bounce 1.2s infinite ease-in-out}",
    ".dot:nth-child(2){animation-delay:.15s}.dot:nth-child(3){animation-delay:.3s}",
    "@keyframes sdr-bounce{0%,60%,100%{transform:translateY(0);opacity:.45}30%{transform:translateY(-4px);opacity:1}}",
    ".error{display:flex;align-items:center;gap:10px;margin:0 12px 10px;padding:8px 10px 8px 12px;border-radius:11px;background:#fef2f2;",
    "border:1px solid #fecaca;color:#991b1b;font-size:13px;line-height:1.35}",
    ".error-text{flex:1;min-width:0;overflow-wrap:anywhere}",
    ".retry{flex:none;border:1px solid #fca5a5;background:#fff;color:#991b1b;border-radius:8px;padding:4px 10px;font-size:12px;font-weight:600;cursor:pointer}",
    ".retry:hover{background:#fee2e2}",
    ".composer{display:flex;align-items:flex-end;gap:8px;padding:10px 12px 12px;border-top:1px solid #eceef3;background:#fff}",
    "textarea{flex:1;min-width:0;display:block;resize:none;height:42px;min-height:42px;max-height:132px;padding:10px 13px;border:1px solid #d7dce5;",
    "border-radius:13px;background:#fff;line-height:1.4;outline:none;transition:border-color .12s,box-shadow .12s}",
    "textarea::placeholder{color:#94a3b8}",
    "textarea:focus{border-color:var(--sdr-accent);box-shadow:0 0 0 3px rgba(37,99,235,.14)}",
    ".send{flex:none;height:42px;display:inline-flex;align-items:center;gap:6px;padding:0 15px;border:0;border-radius:13px;",
    "background:var(--sdr-accent);color:var(--sdr-accent-ink);font-weight:600;cursor:pointer;transition:opacity .12s}",
    ".send:disabled{opacity:.45;cursor:not-allowed}",
    ".footer{padding:0 12px 9px;background:#fff;text-align:center;font-size:11px;color:#94a3b8}",
    ".sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    "@media (max-width:480px){.panel{top:0;right:0;bottom:0;left:0;width:auto;max-width:none;height:auto;max-height:none;border-radius:0}",
    ".root.open .launcher{display:none}textarea{font-size:16px}}",
    "@media (prefers-reduced-motion:reduce){.panel,.dot,.launcher{animation:none;transition:none}}"
  ].join("\n");

  // ---------------------------------------------------------------- state
  var ui = null;                 // DOM references once mounted
  var readyQueue = [];
  var isOpen = false;
  var pending = false;
  var sendChain = Promise.resolve();
  var retryText = null;          // message to resend from the error line's Retry button
  var retryBubble = null;
  var retryId = null;            // and its message_id, so the server answers it only once
  var visitorInfo = {};          // set by SDRWidget.identify()
  var transcript = [];

  // ---------------------------------------------------------------- mount
  function mount() {
    if (ui) return;
    var existing = document.getElementById(HOST_ID);
    if (existing) existing.parentNode.removeChild(existing);

    var host = document.createElement("div");
    host.id = HOST_ID;
    // Inline !important beats host-page rules such as `body > div {display:none}` or transforms.
    host.style.cssText = "all:initial !important;display:block !important;position:static !important;";
    var shadow = host.attachShadow({ mode: "open" });

    var sheetAdopted = false;
    try {
      if (shadow.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === "function") {
        var sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        shadow.adoptedStyleSheets = [sheet];
        sheetAdopted = true;
      }
    } catch (e) { sheetAdopted = false; }
    if (!sheetAdopted) shadow.appendChild(h("style", { text: CSS }));

    var root = h("div", { className: "root" });
    if (ACCENT && window.CSS && CSS_supports("color", ACCENT)) root.style.setProperty("--sdr-accent", ACCENT);

    var messages = h("div", { className: "messages", "data-sdr": "messages", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
    var greeting = h("div", { className: "greeting", "data-sdr": "greeting" }, h("div", { className: "bubble" }));
    appendRichText(greeting.firstChild, GREETING);
    messages.appendChild(greeting);

    var typing = h("div", { className: "typing", "data-sdr": "typing", hidden: true, role: "status", "aria-label": "Typing" },
      h("div", { className: "bubble" }, [h("span", { className: "dot" }), h("span", { className: "dot" }), h("span", { className: "dot" })]));

    var errorText = h("span", { className: "error-text" });
    var retryBtn = h("button", { type: "button", className: "retry", "data-sdr": "retry", hidden: true, onclick: onRetry }, "Retry");
    var errorLine = h("div", { className: "error", "data-sdr": "error", role: "alert", hidden: true }, [errorText, retryBtn]);

    var input = h("textarea", {
      "data-sdr": "input", rows: "1", placeholder: "Type your message\u2026", "aria-label": "Message",
      autocomplete: "off", enterkeyhint: "send", oninput: autosize, onkeydown: onKeydown
    });
    var sendBtn = h("button", { type: "submit", className: "send", "data-sdr": "send", "aria-label": "Send message" },
      [icon(ICON_SEND, 16), h("span", { text: "Send" })]);
    var form = h("form", { className: "composer", onsubmit: onSubmit }, [input, sendBtn]);

    var closeBtn = h("button", { type: "button", className: "icon-btn", "data-sdr": "close", "aria-label": "Close chat", onclick: function () { close(true); } },
      icon(ICON_CLOSE, 20));
    var header = h("div", { className: "header" }, [
      h("div", { className: "avatar", "aria-hidden": "true" }, icon(ICON_CHAT, 20)),
      h("div", { className: "titles" }, [h("div", { className: "title", text: TITLE }), h("div", { className: "subtitle", text: SUBTITLE })]),
      closeBtn
    ]);

    var panel = h("div", { className: "panel", "data-sdr": "panel", role: "dialog", "aria-label": TITLE, hidden: true, onkeydown: onPanelKeydown },
      [header, messages, errorLine, form, h("div", { className: "footer", text: "Replies are AI-generated \u00b7 Powered by Open SDR" })]);

    var unread = h("span", { className: "unread", hidden: true });
    var launcherIcon = h("span", { style: "display:flex" }, icon(ICON_CHAT, 28));
    var launcher = h("button", { type: "button", className: "launcher", "data-sdr": "launcher", "aria-label": "Open chat", "aria-expanded": "false", onclick: toggle },
      [launcherIcon, unread, h("span", { className: "sr-only", text: TITLE })]);

    root.appendChild(panel);
    root.appendChild(launcher);
    shadow.appendChild(root);
    document.body.appendChild(host);

    ui = {
      host: host, shadow: shadow, root: root, panel: panel, messages: messages, greeting: greeting, typing: typing,
      errorLine: errorLine, errorText: errorText, retryBtn: retryBtn, input: input, sendBtn: sendBtn,
      launcher: launcher, launcherIcon: launcherIcon, unread: unread
    };
    messages.appendChild(typing);

    restoreTranscript();

    var q = readyQueue; readyQueue = [];
    for (var i = 0; i < q.length; i++) q[i]();
    if (OPEN_ON_LOAD) open();
    window.dispatchEvent(new CustomEvent("sdr:ready", { detail: { api: API_BASE } }));
  }

  function CSS_supports(prop, value) {
    try { return window.CSS.supports(prop, value); } catch (e) { return false; }
  }

  function whenReady(fn) {
    if (ui) fn(); else readyQueue.push(fn);
  }

  // ---------------------------------------------------------------- rendering
  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function addMessage(role, text, extras) {
    var msg = createMessage(role, text);
    if (extras && extras.restored) msg.setAttribute("data-restored", "true");
    if (role === "agent" && extras) addAgentExtras(msg, extras);
    ui.messages.insertBefore(msg, ui.typing);
    scrollToBottom();
    return msg;
  }

  function createMessage(role, text) {
    var bubble = h("div", { className: "bubble", "data-sdr": "text" });
    appendRichText(bubble, text);
    return h("div", { className: "msg", "data-sdr": "msg", "data-role": role }, bubble);
  }

  function addAgentExtras(msg, extras) {
    var src = renderSources(extras.sources);
    if (src) msg.appendChild(src);
    var meetingUrl = safeHref(extras.meeting_url);
    if (meetingUrl) {
      var a = link(meetingUrl, "", { "data-sdr": "meeting" });
      a.className = "meeting";
      a.appendChild(icon(ICON_CAL, 16));
      a.appendChild(document.createTextNode("Book a meeting"));
      msg.appendChild(a);
    }
  }

  /** Replace a bubble's content with `text` (rich text, never HTML), keeping its scroll position. */
  function setBubbleText(bubble, text) {
    var top = bubble.scrollTop;
    while (bubble.firstChild) bubble.removeChild(bubble.firstChild);
    appendRichText(bubble, text);
    bubble.scrollTop = top;
  }

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 32;
  }

  /**
   * The agent bubble of a reply being streamed. It is created by the first delta (until then the
   * typing indicator shows), withdrawn by a reset (the typing indicator comes back), and given the
   * authoritative text, sources and meeting link by finish(). Send stays disabled throughout.
   */
  function StreamView() {
    this.msg = null;
    this.text = "";
  }

  StreamView.prototype.delta = function (text) {
    if (!text) return;
    var follow = nearBottom(ui.messages);
    if (!this.msg) {
      this.msg = createMessage("agent", "");
      this.msg.setAttribute("data-streaming", "true");
      ui.messages.insertBefore(this.msg, ui.typing);
      ui.typing.hidden = true;
    }
    var bubble = this.msg.firstChild;
    var followBubble = nearBottom(bubble);
    this.text += text;
    setBubbleText(bubble, this.text);
    if (followBubble) bubble.scrollTop = bubble.scrollHeight;  // a long reply scrolls inside its bubble
    if (follow) scrollToBottom();                              // unless the visitor scrolled up to read
  };

  StreamView.prototype.reset = function () {
    this.discard();
    if (pending) ui.typing.hidden = false;
  };

  StreamView.prototype.discard = function () {
    if (this.msg && this.msg.parentNode) this.msg.parentNode.removeChild(this.msg);
    this.msg = null;
    this.text = "";
  };

  StreamView.prototype.finish = function (reply, extras) {
    var msg = this.msg;
    this.msg = null;
    if (!msg) return addMessage("agent", reply, extras);
    msg.removeAttribute("data-streaming");
    if (reply !== this.text) setBubbleText(msg.firstChild, reply);   // the done reply is authoritative
    addAgentExtras(msg, extras);
    scrollToBottom();
    return msg;
  };

  function renderSources(sources) {
    if (!Array.isArray(sources) || !sources.length) return null;
    var wrap = h("div", { className: "sources", "data-sdr": "sources" }, h("span", { className: "sources-label", text: "Sources" }));
    var seen = {};
    var count = 0;
    for (var i = 0; i < sources.length && count < 6; i++) {
      var s = sources[i];
      if (!s || typeof s !== "object") continue;
      var href = safeHref(s.url);
      var title = (typeof s.title === "string" && s.title.trim()) ? s.title.trim() : null;
      if (!title && href) { try { title = new URL(href).hostname; } catch (e) { title = href; } }
      if (!title) continue;
      var key = (href || "") + "|" + title;
      if (seen[key]) continue;
      seen[key] = true;
      count++;
      if (href) {
        var a = link(href, title, { "data-sdr": "source", title: title });
        a.className = "source";
        wrap.appendChild(a);
      } else {
        wrap.appendChild(h("span", { className: "source", "data-sdr": "source-text", title: title, text: title }));
      }
    }
    return count ? wrap : null;
  }

  function meetingUrlFrom(actions) {
    if (!Array.isArray(actions)) return null;
    for (var i = 0; i < actions.length; i++) {
      var a = actions[i];
      if (a && a.type === "offer_meeting" && safeHref(a.url)) return safeHref(a.url);
    }
    return null;
  }

  function restoreTranscript() {
    transcript = loadTranscript(getSessionId());
    for (var i = 0; i < transcript.length; i++) {
      var it = transcript[i];
      if (!it || (it.role !== "visitor" && it.role !== "agent") || typeof it.text !== "string") continue;
      addMessage(it.role, it.text, { restored: true, sources: it.sources, meeting_url: it.meeting_url });
    }
  }

  function showError(message, canRetry) {
    ui.errorText.textContent = message;
    ui.retryBtn.hidden = !canRetry;
    ui.errorLine.hidden = false;
    scrollToBottom();
  }

  function clearError() {
    ui.errorLine.hidden = true;
    ui.errorText.textContent = "";
    ui.retryBtn.hidden = true;
    retryText = null;
    retryBubble = null;
    retryId = null;
  }

  function setPending(on) {
    pending = on;
    ui.typing.hidden = !on;
    ui.sendBtn.disabled = on;
    ui.messages.setAttribute("aria-busy", on ? "true" : "false");
    if (on) scrollToBottom();
  }

  function autosize() {
    var ta = ui.input;
    ta.style.height = "auto";
    ta.style.height = Math.min(Math.max(ta.scrollHeight + 2, 42), 132) + "px";
  }

  // ---------------------------------------------------------------- open / close
  function open() {
    whenReady(function () {
      isOpen = true;
      ui.panel.hidden = false;
      ui.root.classList.add("open");
      ui.unread.hidden = true;
      ui.launcher.setAttribute("aria-expanded", "true");
      ui.launcher.setAttribute("aria-label", "Close chat");
      swapLauncherIcon(ICON_CLOSE);
      scrollToBottom();
      try { ui.input.focus({ preventScroll: true }); } catch (e) { ui.input.focus(); }
    });
  }

  function close(focusLauncher) {
    whenReady(function () {
      isOpen = false;
      ui.panel.hidden = true;
      ui.root.classList.remove("open");
      ui.launcher.setAttribute("aria-expanded", "false");
      ui.launcher.setAttribute("aria-label", "Open chat");
      swapLauncherIcon(ICON_CHAT);
      if (focusLauncher === true) ui.launcher.focus();
    });
  }

  function toggle() {
    if (isOpen) close(); else open();
  }

  function swapLauncherIcon(paths) {
    while (ui.launcherIcon.firstChild) ui.launcherIcon.removeChild(ui.launcherIcon.firstChild);
    ui.launcherIcon.appendChild(icon(paths, 28));
  }

  // ---------------------------------------------------------------- input handling
  function onKeydown(ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      submitInput();
    }
  }

  function onPanelKeydown(ev) {
    if (ev.key === "Escape") { ev.stopPropagation(); close(true); }
  }

  function onSubmit(ev) {
    ev.preventDefault();
    submitInput();
  }

  function submitInput() {
    if (pending) return;
    var text = ui.input.value;
    if (!text.trim()) return;
    ui.input.value = "";
    autosize();
    queueSend(text, null);
  }

  function onRetry() {
    if (pending || retryText === null) return;
    var text = retryText, bubble = retryBubble, id = retryId;
    queueSend(text, bubble, id);
  }

  // ---------------------------------------------------------------- network
  function WidgetError(message, status, code, kind) {
    this.message = message; this.status = status; this.code = code; this.kind = kind;
  }

  var FALLBACKS = {
    400: "Sorry, that message couldn't be sent. Please rephrase it and try again.",
    404: "This conversation has expired. Please send your message again.",
    413: "That message is too long. Please shorten it and try again.",
    415: "Sorry, that message couldn't be sent. Please try again.",
    429: "You're sending messages a little fast. Please wait a moment and try again."
  };

  function fallbackFor(status) {
    if (FALLBACKS[status]) return FALLBACKS[status];
    if (status >= 500) return "Something went wrong on our side. Please try again in a moment.";
    return "Sorry, something went wrong. Please try again.";
  }

  function serverMessage(data) {
    var m = data && data.error && data.error.message;
    if (typeof m !== "string") return null;
    m = m.trim();
    // Never surface something that looks like a stack trace.
    if (!m || /Traceback \(most recent call last\)|\n\s+File "|\n\s+at /.test(m)) return null;
    return m.length > 300 ? m.slice(0, 297) + "\u2026" : m;
  }

  // 128 random bits: a retried first message names its conversation by this id, so it must be
  // as hard to guess as a session id. Without crypto (very old browsers) the id is too short to
  // name a session (the server then starts a fresh one on a retry) rather than guessable.
  function newMessageId() {
    try {
      var a = new Uint32Array(4);
      window.crypto.getRandomValues(a);
      var hex = "";
      for (var i = 0; i < 4; i++) hex += ("00000000" + a[i].toString(16)).slice(-8);
      return "w" + hex;
    } catch (e) {
      return "w" + Math.random().toString(36).slice(2, 12);
    }
  }

  function requestBody(text, messageId) {
    var visitor = { page_url: String(location.href).slice(0, 2000) };
    var tz = timezone();
    if (tz) visitor.timezone = tz;
    for (var k in visitorInfo) if (Object.prototype.hasOwnProperty.call(visitorInfo, k)) visitor[k] = visitorInfo[k];
    var body = { message: text, visitor: visitor };
    var sessionId = getSessionId();
    if (sessionId) body.session_id = sessionId;
    if (messageId) body.message_id = messageId;
    return body;
  }

  function networkError(err) {
    if (err instanceof WidgetError) return err;
    var timedOut = err && err.name === "AbortError";
    return new WidgetError(timedOut
      ? "The reply is taking longer than usual. Please try again."
      : "Can't reach the chat right now. Check your connection and try again.", 0, timedOut ? "timeout" : "network", "network");
  }

  /**
   * POST `body` as JSON. The request is aborted after REQUEST_TIMEOUT_MS without progress;
   * touch() restarts that clock (every chunk of a stream), stop() ends it. `promise` resolves to
   * the Response once its headers are in, or rejects with a network/timeout WidgetError.
   */
  function timedPost(path, body, accept) {
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = null;
    var req = {
      touch: function () {
        if (!controller) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
      },
      stop: function () {
        if (timer) clearTimeout(timer);
        timer = null;
      }
    };
    req.touch();
    req.promise = fetch(API_BASE + path, {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json", "Accept": accept },
      body: JSON.stringify(body),
      signal: controller ? controller.signal : undefined
    }).then(null, function (err) {
      req.stop();
      throw networkError(err);
    });
    return req;
  }

  function readJson(res) {
    return res.text().then(function (raw) {
      try { return raw ? JSON.parse(raw) : null; } catch (e) { return null; }
    });
  }

  function errorCode(data) {
    return data && data.error && typeof data.error.code === "string" ? data.error.code : null;
  }

  function httpError(res, data) {
    return new WidgetError(serverMessage(data) || fallbackFor(res.status), res.status, errorCode(data) || "http_" + res.status,
      (res.status === 400 || res.status === 413 || res.status === 415) ? "client" : "server");
  }

  function checkReply(data, status) {
    if (!data || typeof data !== "object" || typeof data.reply !== "string") {
      throw new WidgetError("Sorry, we got an unexpected answer. Please try again.", status, "bad_response", "server");
    }
    return data;
  }

  function canStream() {
    return STREAM && typeof fetch === "function" && typeof TextDecoder === "function" &&
      typeof ReadableStream === "function" && !!ReadableStream.prototype &&
      typeof ReadableStream.prototype.getReader === "function";
  }

  /** One turn over POST /api/chat (JSON). Resolves to the parsed reply or rejects with a WidgetError. */
  function postChat(text, messageId, allowFreshRetry) {
    var sessionId = getSessionId();
    var req = timedPost("/api/chat", requestBody(text, messageId), "application/json");
    return req.promise.then(function (res) {
      return readJson(res).then(function (data) {
        req.stop();
        if (!res.ok) {
          if (res.status === 404 && sessionId && allowFreshRetry) {
            // The server no longer knows this conversation: start a new one and resend once.
            forgetSession();
            return postChat(text, messageId, false);
          }
          throw httpError(res, data);
        }
        return checkReply(data, res.status);
      }, function (err) {
        req.stop();
        throw networkError(err);
      });
    });
  }

  /**
   * One turn over POST /api/chat/stream. Deltas and resets go to `view` as they arrive; resolves to
   * the `done` JSON (the same as /api/chat returns) or rejects with a WidgetError. Errors before the
   * stream starts are the usual JSON error responses. If the request fails on the network before
   * anything arrived, the turn is sent again to /api/chat (same message_id: answered only once).
   */
  function streamChat(text, messageId, allowFreshRetry, view) {
    var sessionId = getSessionId();
    var fallback = function () { return postChat(text, messageId, allowFreshRetry); };
    var req = timedPost("/api/chat/stream", requestBody(text, messageId), "text/event-stream");
    return req.promise.then(function (res) {
      var type = (res.headers.get("Content-Type") || "").toLowerCase();
      if (res.ok && type.indexOf("text/event-stream") >= 0) return readEvents(res, req, view, fallback);
      return readJson(res).then(function (data) {
        req.stop();
        if (res.ok) return checkReply(data, res.status);   // answered as plain JSON (a proxy, an old server)
        var code = errorCode(data);
        var noRoute = !code || code === "not_found" || code === "method_not_allowed";
        if (res.status === 404 && sessionId && allowFreshRetry && !noRoute) {
          forgetSession();
          return streamChat(text, messageId, false, view);
        }
        if ((res.status === 404 || res.status === 405) && noRoute) return fallback();  // a server without streaming
        throw httpError(res, data);
      }, function (err) {
        req.stop();
        throw networkError(err);
      });
    }, function (err) {
      // A timeout means the server may still be working on it: report that rather than resend.
      if (err.code === "timeout") throw err;
      return fallback();
    });
  }

  /** Read a text/event-stream body: `event:`/`data:` lines, one event per blank-line-ended block. */
  function readEvents(res, req, view, fallback) {
    var result = null, failure = null, gotBytes = false;
    var decoder = new TextDecoder("utf-8");
    var parser = sseParser(function (type, raw) {
      if (result || failure) return;
      var data = null;
      try { data = JSON.parse(raw); } catch (e) { data = null; }
      if (type === "delta") {
        if (data && typeof data.text === "string") view.delta(data.text);
      } else if (type === "reset") {
        view.reset();
      } else if (type === "done") {
        try { result = checkReply(data, res.status); } catch (e) { failure = e; }
      } else if (type === "error") {
        failure = new WidgetError(serverMessage(data) || fallbackFor(500), res.status, errorCode(data) || "stream_error", "server");
      }
    });

    function settle() {
      if (failure) throw failure;
      if (result) return result;
      throw new WidgetError("The reply was cut off. Please try again.", res.status, "incomplete_stream", "server");
    }

    var reader = (res.body && typeof res.body.getReader === "function") ? res.body.getReader() : null;
    if (!reader) {
      // No incremental reads here: take the body in one piece.
      return res.text().then(function (raw) {
        req.stop();
        parser.push(raw);
        parser.end();
        return settle();
      }, function (err) {
        req.stop();
        throw networkError(err);
      });
    }

    // After `done` the turn is over; read the (normally empty) rest of the body in the background
    // so the connection ends cleanly, and give up on it after a while.
    function drain() {
      var cap = setTimeout(function () {
        try { reader.cancel().then(null, function () {}); } catch (e) { /* already closed */ }
      }, 10000);
      (function next() {
        reader.read().then(function (step) {
          if (step.done) clearTimeout(cap); else next();
        }, function () { clearTimeout(cap); });
      })();
    }

    function pump() {
      return reader.read().then(function (step) {
        if (step.done) {
          req.stop();
          parser.push(decoder.decode());
          parser.end();
          return settle();
        }
        req.touch();
        if (step.value && step.value.length) gotBytes = true;
        parser.push(decoder.decode(step.value, { stream: true }));
        if (result || failure) {
          req.stop();
          drain();
          return settle();
        }
        return pump();
      }, function (err) {
        req.stop();
        if (err && err.name === "AbortError") throw networkError(err);
        if (!gotBytes) return fallback();
        throw new WidgetError("The connection dropped before the reply was finished. Please try again.", 0,
          "stream_interrupted", "network");
      });
    }
    return pump();
  }

  function sseParser(onEvent) {
    var buf = "", type = "", data = [];

    function line(l) {
      if (l === "") {                       // end of an event
        if (data.length) onEvent(type || "message", data.join("\n"));
        type = "";
        data = [];
        return;
      }
      if (l.charAt(0) === ":") return;      // a comment (keep-alive)
      var i = l.indexOf(":");
      var field = i < 0 ? l : l.slice(0, i);
      var value = i < 0 ? "" : l.slice(i + 1);
      if (value.charAt(0) === " ") value = value.slice(1);
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }

    function scan(final) {
      var start = 0;
      for (var i = 0; i < buf.length; i++) {
        var c = buf.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        if (c === 13 && i + 1 === buf.length && !final) break;   // maybe a \r\n split across chunks
        line(buf.slice(start, i));
        if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
        start = i + 1;
      }
      buf = buf.slice(start);
    }

    return {
      push: function (chunk) {
        if (!chunk) return;
        buf += chunk;
        scan(false);
      },
      end: function () {
        scan(true);
        if (buf) line(buf);
        buf = "";
        line("");                           // a last event without its blank line still counts
      }
    };
  }

  function forgetSession() {
    store.remove(SESSION_KEY);
    store.remove(TRANSCRIPT_KEY);
    transcript = [];
  }

  function queueSend(text, existingBubble, messageId) {
    var id = messageId || newMessageId();
    var p = sendChain.then(function () { return doSend(text, existingBubble, id); });
    sendChain = p.then(function () {}, function () {});
    return p;
  }

  function doSend(text, existingBubble, messageId) {
    clearError();
    var bubble = existingBubble;
    if (bubble && bubble.parentNode) {
      bubble.classList.remove("failed");
      var note = bubble.querySelector(".note");
      if (note) bubble.removeChild(note);
    } else {
      bubble = addMessage("visitor", text);
    }
    setPending(true);

    var view = new StreamView();
    var turn = canStream() ? streamChat(text, messageId, true, view) : postChat(text, messageId, true);
    return turn.then(function (data) {
      setPending(false);
      if (typeof data.session_id === "string" && data.session_id && data.session_id.length <= 200) {
        if (data.session_id !== getSessionId()) transcript = [];
        store.set(SESSION_KEY, data.session_id);
      }
      var meetingUrl = meetingUrlFrom(data.actions);
      view.finish(data.reply, { sources: data.sources, meeting_url: meetingUrl });
      if (!isOpen) ui.unread.hidden = false;

      var keptSources = [];
      if (Array.isArray(data.sources)) {
        for (var i = 0; i < data.sources.length && keptSources.length < 6; i++) {
          var s = data.sources[i];
          if (s && typeof s === "object") keptSources.push({ title: typeof s.title === "string" ? s.title : null, url: typeof s.url === "string" ? s.url : null });
        }
      }
      transcript.push({ role: "visitor", text: text.slice(0, 4000) });
      transcript.push({ role: "agent", text: data.reply.slice(0, 8000), sources: keptSources, meeting_url: meetingUrl });
      saveTranscript(getSessionId(), transcript);

      try {
        window.dispatchEvent(new CustomEvent("sdr:turn", { detail: data }));
      } catch (e) { /* a host listener threw: not our problem */ }
      return data;
    }, function (err) {
      view.discard();                     // a half-streamed reply is not kept
      setPending(false);
      var message = (err instanceof WidgetError) ? err.message : "Sorry, something went wrong. Please try again.";
      if (err instanceof WidgetError && err.kind === "client") {
        // Retrying the same text is pointless: give it back to the visitor to edit.
        if (bubble && bubble.parentNode) bubble.parentNode.removeChild(bubble);
        if (!ui.input.value) { ui.input.value = text; autosize(); }
        showError(message, false);
      } else {
        bubble.classList.add("failed");
        if (!bubble.querySelector(".note")) bubble.appendChild(h("div", { className: "note", text: "Not delivered" }));
        showError(message, true);
        retryText = text;     // resent as-is by the Retry button
        retryBubble = bubble;
        retryId = messageId;
      }
      try {
        window.dispatchEvent(new CustomEvent("sdr:error", {
          detail: { status: err && err.status || 0, code: err && err.code || "error", message: message }
        }));
      } catch (e) { /* ignore */ }
      return null;
    });
  }

  // ---------------------------------------------------------------- public API
  function publicSend(text) {
    if (text === null || text === undefined || !String(text).trim()) return Promise.resolve(null);
    text = String(text);
    return new Promise(function (resolve) {
      whenReady(function () {
        open();
        resolve(queueSend(text, null));
      });
    });
  }

  function identify(info) {
    if (!info || typeof info !== "object") return;
    var fields = ["email", "name", "company"];
    for (var i = 0; i < fields.length; i++) {
      var v = info[fields[i]];
      if (typeof v === "string" && v.trim()) visitorInfo[fields[i]] = v.trim().slice(0, 200);
    }
  }

  function reset() {
    forgetSession();
    whenReady(function () {
      clearError();
      var msgs = ui.messages.querySelectorAll("[data-sdr=msg]");
      for (var i = 0; i < msgs.length; i++) msgs[i].parentNode.removeChild(msgs[i]);
    });
  }

  window.SDRWidget = {
    __sdr: true,
    open: open,
    close: function () { close(false); },
    toggle: function () { whenReady(toggle); },
    send: publicSend,
    identify: identify,
    reset: reset,
    sessionId: getSessionId,
    apiBase: API_BASE
  };

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
