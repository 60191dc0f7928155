"""Crash test: exactly-once under `kill -9`, measured end to end over real HTTP.

    .venv/bin/python bench/crash_test.py                 # defaults: 8 clients, 20 kills, ~2-4 minutes
    .venv/bin/python bench/crash_test.py --kills 5 --clients 4 --seed 7
    .venv/bin/python bench/crash_test.py --help          # what is proved, how, and how to read the output

Exit code 0 only when every check holds, 1 otherwise (2: the bench itself could not run).
See docs/crash-test.md for what each figure means.
"""
from __future__ import annotations


import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from evals.metrics import percentile  # noqa: E402  (one percentile for benches and evals)

ADMIN_TOKEN = "crash-test-admin-token"
SLACK_SIGNING_SECRET = "crash-test-signing-secret"
SLACK_CHANNEL = "#sales"
TAG_URL = "https://bench.example/crash-test?mid="      # visitor.page_url carries the message id into the DB

DESCRIPTION = """\
Prove that the SDR does every side effect exactly once when its process is killed at random.

What runs
  * a local Slack-compatible server (tests/fake_slack.py, in this process) that records every
    chat.postMessage it receives -- including ones whose answer the SDR never read;
  * `sdr serve --port P` as a subprocess in its own process group, on a fresh data dir, with the
    rule brain, Slack pointed at the fake (SLACK_API_URL), SDR_ADMIN_TOKEN set and the outbox
    worker in-process (the default);
  * N client threads, each playing scripted prospects against POST /api/chat: some become
    sales-qualified (a Slack handoff is queued), some ask for a person, some pick a meeting time
    (a meeting invite is queued), some never qualify. Every message carries a `message_id`; every
    request carries `Authorization: Bearer <SDR_ADMIN_TOKEN>`; a conversation always continues with
    the `session_id` the server returned. A request that fails (connection refused or reset,
    timeout, 5xx) is retried with the SAME message_id until it gets a 2xx.

What happens (one "round" per kill)
  the server serves for a random --min-up..--max-up seconds (seeded by --seed), then the whole
  process group gets SIGKILL -- mid-turn, mid-transaction, mid-Slack-call -- and is restarted on
  the same data dir and port. After --kills rounds the last restart is left running: clients finish
  their conversations, the outbox drains (a delivery cut by a kill waits for its 60 s lease), the
  server is stopped cleanly and the SQLite database is read directly.

What is checked (each line of the summary says holds / FAILS)
  messages     every message_id that got a 2xx is stored exactly once as a visitor message
               (none lost, none doubled); found through visitor.page_url, which the turn stores
  prospects    each scripted prospect (one client conversation) ended up as one lead, so sales
               hears about them at most once (a first message stored twice opens a second lead)
  scores       every lead's score equals the sum of its score events (and fit / engagement equal
               theirs; decay is itself a stored event, so no tolerance beyond 1e-6 is needed)
  handoffs     every handoff outbox entry ends `delivered`, and exactly one Slack message per
               handed-off lead reached the fake (matched by the idempotency key in the message
               metadata); every sales-qualified lead has its one handoff entry
  invites      every meeting invite is delivered and posted exactly once
  outbox       nothing left pending or dead
  clients      every message got its 2xx; no unexpected 4xx

Figures printed: messages sent, 2xx answers, retried attempts and messages that needed one, kills,
restart times, turn latency p50/p95/p99 as the clients measured it (the answered attempt, and the
whole wait including retries across a crash), and for a failing check the message ids, leads and
rows that show it.
"""


# ---------------------------------------------------------------------------------------------
# Scripted prospects


def personas(i: str) -> dict[str, list[str]]:
    """Conversations by kind; `{i}` makes each prospect's company and email unique."""
    return {
        "sql_stepwise": [f"Hi, I'm the CRO at Acme{i}, a 600 person SaaS company",
                         "we need better forecasting this quarter, budget is approved, about 50k",
                         f"my email is x{i}@acme{i}.example",
                         "can we book a demo?"],
        "sql_one_line": [f"I'm the CRO at a 600 person SaaS company, we need forecasting this quarter, budget 50k, "
                         f"my email is y{i}@acme{i}.example, can we book a demo?",
                         "thanks!"],
        "meeting": [f"I'm the VP of Sales at Globex{i}, a 700 person company; we need better forecasting this quarter",
                    "the first one works"],     # sent only when the previous reply offered times
        "human": ["Hi there", f"I'd like to talk to a person, I'm Sam from Tallpine{i}", "thanks"],
        "browser": ["Hello", "How much does it cost?", "Is there a free trial?", "ok thanks"],
    }


KINDS = ["sql_stepwise", "sql_one_line", "meeting", "human", "browser"]
WEIGHTS = [3, 2, 2, 1, 2]


# ---------------------------------------------------------------------------------------------
# The server under test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdr_command() -> list[str]:
    exe = Path(sys.executable).parent / "sdr"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("sdr")
    return [found] if found else [sys.executable, "-c", "from integrations.cli import main; main()"]


def http_json(port: int, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Connection": "close"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode("utf-8", "replace")
    finally:
        conn.close()


class Server:
    """`sdr serve` in its own process group; `kill9()` takes the whole group down at once."""

    def __init__(self, port: int, env: dict[str, str], log_path: Path):
        self.port, self.env, self.log_path = port, env, log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 90.0) -> float:
        """Spawn and wait for /healthz; the seconds it took."""
        t0 = time.monotonic()
        for _ in range(20):   # the port may still be held for a moment after a kill
            self.starts += 1
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== start {self.starts} at {time.strftime('%H:%M:%S')} =====\n".encode())
                log.flush()
                self.proc = subprocess.Popen(sdr_command() + ["serve", "--port", str(self.port)], cwd=str(ROOT),
                                             env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
            while time.monotonic() - t0 < timeout:
                if self.proc.poll() is not None:
                    break
                try:
                    if http_json(self.port, "GET", "/healthz", timeout=2)[0] == 200:
                        return time.monotonic() - t0
                except OSError:
                    pass
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.kill9()
                raise RuntimeError(f"sdr serve did not answer /healthz within {timeout:.0f}s (log: {self.log_path})")
            time.sleep(0.2)
        raise RuntimeError(f"sdr serve kept exiting at start (log: {self.log_path})")

    def kill9(self) -> int:
        assert self.proc is not None
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        return pgid

    def stop(self) -> None:
        """A clean stop (SIGTERM to the group; SIGKILL after 15 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill9()
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------------------------
# Clients


@dataclass
class Sent:
    mid: str
    client: int
    conv: str          # the client's name for the conversation (c3-v17)
    index: int         # 0 = the conversation's first message (sent without a session_id)
    text: str
    attempts: int = 0
    status: int | None = None
    session_id: str | None = None
    answered_ms: float | None = None    # the attempt that got the 2xx
    total_ms: float | None = None       # from the first attempt to the 2xx, retries included


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: dict[str, Sent] = field(default_factory=dict)
    failures: Counter = field(default_factory=Counter)       # kind of failed attempt -> count
    unexpected: list[str] = field(default_factory=list)      # 4xx and other surprises, with the body
    conversations: Counter = field(default_factory=Counter)  # persona -> finished conversations

    def counts(self) -> dict[str, int]:
        with self.lock:
            msgs = list(self.messages.values())
        return {"sent": len(msgs), "ok": sum(1 for m in msgs if m.status and 200 <= m.status < 300),
                "attempts": sum(m.attempts for m in msgs),
                "retried_attempts": sum(max(0, m.attempts - 1) for m in msgs),
                "retried_messages": sum(1 for m in msgs if m.attempts > 1)}


class Client(threading.Thread):
    def __init__(self, idx: int, args: argparse.Namespace, port: int, stats: Stats, stop: threading.Event,
                 hard_deadline: float, run_id: str):
        super().__init__(name=f"client-{idx}", daemon=True)
        self.idx, self.args, self.port, self.stats, self.stop_event = idx, args, port, stats, stop
        self.hard_deadline, self.run_id = hard_deadline, run_id
        self.rng = random.Random(f"{args.seed}-client-{idx}")

    def run(self) -> None:
        conv_no = 0
        while not self.stop_event.is_set() and time.monotonic() < self.hard_deadline:
            conv_no += 1
            kind = self.rng.choices(KINDS, WEIGHTS)[0]
            if not self.conversation(kind, f"c{self.idx}-v{conv_no}"):
                return
            with self.stats.lock:
                self.stats.conversations[kind] += 1

    def conversation(self, kind: str, conv: str) -> bool:
        uniq = f"{self.run_id}{self.idx}x{conv.split('-v')[1]}"
        script = personas(uniq)[kind]
        session_id: str | None = None
        offered = False
        for k, text in enumerate(script):
            if kind == "meeting" and k == 1 and not offered:
                text = "ok, thanks"
            # long enough (>= 16 characters) that a retried first message finds its conversation, as the widget's do
            sent = Sent(f"{self.run_id}-{conv}-m{k}-{self.idx:04d}-message", self.idx, conv, k, text)
            with self.stats.lock:
                self.stats.messages[sent.mid] = sent
            body = self.send(sent, session_id)
            if body is None:
                return False
            session_id = body.get("session_id") or session_id
            offered = any(a.get("type") == "offer_slots" for a in body.get("actions") or [])
            if self.args.think > 0:
                time.sleep(self.rng.uniform(0, 2 * self.args.think))
        return True

    def send(self, sent: Sent, session_id: str | None) -> dict | None:
        """POST until a 2xx, always with the same message_id; None on a 4xx or the bench's deadline."""
        payload: dict[str, Any] = {"message": sent.text, "message_id": sent.mid,
                                   "visitor": {"page_url": TAG_URL + sent.mid}}
        if session_id:
            payload["session_id"] = session_id
        first = time.perf_counter()
        pause = 0.05
        while True:
            if time.monotonic() > self.hard_deadline:
                with self.stats.lock:
                    self.stats.unexpected.append(f"{sent.mid}: gave up at the bench's deadline after {sent.attempts} attempts")
                return None
            sent.attempts += 1
            t0 = time.perf_counter()
            try:
                status, body = http_json(self.port, "POST", "/api/chat", payload, timeout=self.args.request_timeout)
            except ConnectionRefusedError:
                kind = "connection refused"
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected, http.client.IncompleteRead):
                kind = "connection reset / closed mid-request"
            except socket.timeout:
                kind = "timeout"
            except OSError as e:
                kind = f"network error ({type(e).__name__})"
            else:
                if 200 <= status < 300 and isinstance(body, dict):
                    now = time.perf_counter()
                    sent.status, sent.session_id = status, body.get("session_id")
                    sent.answered_ms, sent.total_ms = (now - t0) * 1000, (now - first) * 1000
                    return body
                if status >= 500:
                    kind = f"HTTP {status}"
                else:
                    sent.status = status
                    with self.stats.lock:
                        self.stats.failures[f"HTTP {status}"] += 1
                        self.stats.unexpected.append(f"{sent.mid}: HTTP {status} {str(body)[:300]}")
                    return None
            with self.stats.lock:
                self.stats.failures[kind] += 1
            time.sleep(pause * (0.5 + self.rng.random()))
            pause = min(pause * 2, 0.5)


# ---------------------------------------------------------------------------------------------
# Reading what happened


def wait_for_drain(store: Any, timeout: float, say: Any) -> tuple[bool, float]:
    """Poll the outbox until nothing is pending (a lease cut by a kill expires after 60 s)."""
    from sqlalchemy import func, select

    from bot.store import OutboxEntry

    t0 = time.monotonic()
    last_say = 0.0
    while True:
        with store.session() as s:
            by_status = dict(s.execute(select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)).all())
        waited = time.monotonic() - t0
        if not by_status.get("pending"):
            return True, waited
        if waited > timeout:
            return False, waited
        if waited - last_say >= 10:
            say(f"  draining the outbox: {by_status} after {waited:.0f}s")
            last_say = waited
        time.sleep(0.5)


@dataclass
class Check:
    name: str
    ok: bool
    figure: str
    evidence: list[str] = field(default_factory=list)


def check_messages(s: Any, stats: Stats) -> Check:
    from sqlalchemy import select

    from bot.store import Message

    rows = s.scalars(select(Message).order_by(Message.id)).all()
    by_conv: dict[str, list[Any]] = defaultdict(list)
    for m in rows:
        by_conv[m.conversation_id].append(m)
    stored: dict[str, list[Any]] = defaultdict(list)
    for m in rows:
        url = (m.meta or {}).get("page_url") or ""
        if m.role == "visitor" and url.startswith(TAG_URL):
            stored[url[len(TAG_URL):]].append(m)
    acked = {mid: m for mid, m in stats.messages.items() if m.status and 200 <= m.status < 300}
    lost = sorted(mid for mid in acked if not stored.get(mid))
    doubled = sorted(mid for mid in acked if len(stored.get(mid, [])) > 1)
    ev: list[str] = []

    def answered(m: Any) -> bool:
        later = [x for x in by_conv[m.conversation_id] if x.id > m.id]
        return bool(later) and later[0].role == "agent"

    for mid in doubled[:15]:
        sent = acked[mid]
        rows_txt = "; ".join(f"row {m.id} conv {m.conversation_id} lead {m.lead_id} at {m.at:%H:%M:%S.%f}"
                             f" {'answered' if answered(m) else 'NO agent reply after it'}" for m in stored[mid])
        where = "first message (sent without session_id)" if sent.index == 0 else f"message {sent.index} in session {sent.session_id}"
        ev.append(f"doubled {mid} [{where}; {sent.attempts} attempts]: {rows_txt}")
    for mid in lost[:15]:
        ev.append(f"lost {mid} (2xx after {acked[mid].attempts} attempts, session {acked[mid].session_id}): no visitor row")
    if len(doubled) > 15 or len(lost) > 15:
        ev.append(f"... {len(doubled)} doubled and {len(lost)} lost in all")
    if doubled:
        first = sum(1 for mid in doubled if acked[mid].index == 0)
        ev.append(f"of the doubled: {first} first messages (no session to retry in), {len(doubled) - first} later ones")
    unacked_stored = sum(len(v) for mid, v in stored.items() if mid not in acked)
    figure = (f"{len(acked)} acknowledged message ids: {len(acked) - len(lost) - len(doubled)} stored once, "
              f"{len(doubled)} doubled, {len(lost)} lost; {unacked_stored} stored rows without a 2xx")
    return Check("messages stored exactly once", not lost and not doubled, figure, ev)


def check_prospects(s: Any, stats: Stats) -> Check:
    """One prospect (a client's conversation) is one lead, handed to sales at most once: a first
    message stored twice opens a second conversation and lead, which may be handed off again."""
    from sqlalchemy import select

    from bot.store import Message, OutboxEntry

    conv_of = {mid: m.conv for mid, m in stats.messages.items()}
    leads: dict[str, set[str]] = defaultdict(set)
    for m in s.scalars(select(Message).where(Message.role == "visitor")):
        url = (m.meta or {}).get("page_url") or ""
        if url.startswith(TAG_URL) and url[len(TAG_URL):] in conv_of:
            leads[conv_of[url[len(TAG_URL):]]].add(m.lead_id)
    handed = set(s.scalars(select(OutboxEntry.lead_id).where(OutboxEntry.kind == "handoff")))
    spread = {c: ls for c, ls in leads.items() if len(ls) > 1}
    twice = {c: ls for c, ls in spread.items() if len(ls & handed) > 1}
    ev = [f"conversation {c}: leads {sorted(ls)}, {len(ls & handed)} of them handed off" for c, ls in
          sorted(spread.items(), key=lambda kv: -len(kv[1] & handed))[:15]]
    figure = (f"{len(leads)} conversations: {len(leads) - len(spread)} on one lead, {len(spread)} split over 2+ leads, "
              f"{len(twice)} prospects handed to sales 2+ times")
    return Check("one lead per prospect", not spread, figure, ev)


def check_scores(s: Any) -> Check:
    from sqlalchemy import select

    from bot.store import Lead, ScoreEvent

    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for lead_id, kind, points in s.execute(select(ScoreEvent.lead_id, ScoreEvent.kind, ScoreEvent.points)):
        sums[lead_id][kind] += points
    leads = s.scalars(select(Lead)).all()
    bad: list[str] = []
    for lead in leads:
        k = sums.get(lead.id, {})
        total, fit = sum(k.values()), k.get("fit", 0.0)
        eng = k.get("engagement", 0.0) + k.get("decay", 0.0)
        if abs(lead.score - total) > 1e-6 or abs(lead.fit_score - fit) > 1e-6 or abs(lead.engagement_score - eng) > 1e-6:
            bad.append(f"lead {lead.id}: score {lead.score} vs events {total}; fit {lead.fit_score} vs {fit}; "
                       f"engagement {lead.engagement_score} vs {eng} (by kind: {dict(k)})")
    figure = f"{len(leads)} leads, {len(leads) - len(bad)} with score == sum of events (|diff| <= 1e-6), {len(bad)} not"
    return Check("scores equal their events", not bad, figure, bad[:15])


def slack_posts(fake: Any) -> tuple[dict[str, list[dict]], dict[str, list[dict]], int]:
    """Handoff messages by lead id, invite messages by meeting id, and the raw chat.postMessage count."""
    import re

    handoffs: dict[str, list[dict]] = defaultdict(list)
    invites: dict[str, list[dict]] = defaultdict(list)
    with fake._lock:
        messages = [dict(m) for m in fake._messages.values()]
    for m in messages:
        meta = m.get("metadata") or {}
        if meta.get("event_type") == "sdr_handoff":
            handoffs[str((meta.get("event_payload") or {}).get("lead_id"))].append(m)
        elif (found := re.search(r"/meetings/(\d+)\.ics", m.get("text") or "")):
            invites[found.group(1)].append(m)
    return handoffs, invites, len(fake.calls_to("chat.postMessage"))


def check_handoffs(s: Any, fake: Any) -> Check:
    from sqlalchemy import select

    from bot.store import Lead, OutboxEntry

    entries = s.scalars(select(OutboxEntry).where(OutboxEntry.kind == "handoff")).all()
    posts, _, _ = slack_posts(fake)
    ev: list[str] = []
    by_lead = {e.lead_id: e for e in entries}
    for e in entries:
        got = posts.get(e.lead_id, [])
        if e.status != "delivered":
            ev.append(f"outbox {e.id} lead {e.lead_id}: status {e.status}, attempts {e.attempts}, last error {e.last_error!r}")
        if len(got) != 1:
            ev.append(f"lead {e.lead_id} (outbox {e.id}, {e.status}, attempts {e.attempts}, result {e.result}): "
                      f"{len(got)} Slack handoff messages, ts {[m['ts'] for m in got]}")
        elif e.status == "delivered" and (e.result or {}).get("ts") != got[0]["ts"]:
            ev.append(f"lead {e.lead_id}: outbox result ts {(e.result or {}).get('ts')} but the Slack message is ts {got[0]['ts']}")
    for lead_id, got in posts.items():
        if len(got) > 1:
            ev.extend(lookups_between(fake, lead_id, got))
        if lead_id not in by_lead:
            ev.append(f"Slack has {len(got)} handoff message(s) for lead {lead_id}, which has no handoff entry")
    qualified = s.scalars(select(Lead).where(Lead.stage.in_(("sql", "meeting_booked")))).all()
    for lead in qualified:
        if lead.id not in by_lead:
            ev.append(f"lead {lead.id} is {lead.stage} (score {lead.score}) but has no handoff entry")
    handed = s.scalars(select(Lead).where(Lead.handed_off_at.is_not(None))).all()
    for lead in handed:
        if lead.id not in by_lead:
            ev.append(f"lead {lead.id} has handed_off_at {lead.handed_off_at} but no handoff entry")
    once = sum(1 for e in entries if e.status == "delivered" and len(posts.get(e.lead_id, [])) == 1)
    dedup = sum(1 for e in entries if (e.result or {}).get("deduplicated"))
    figure = (f"{len(entries)} handoffs ({len(qualified)} leads sales-qualified): {once} delivered and posted exactly once, "
              f"{sum(1 for e in entries if len(posts.get(e.lead_id, [])) > 1)} posted more than once, "
              f"{sum(1 for e in entries if not posts.get(e.lead_id))} never posted; {dedup} found already posted after a crash")
    return Check("one Slack handoff per lead", not ev, figure, ev[:20])


def lookups_between(fake: Any, lead_id: str, got: list[dict]) -> list[str]:
    """Why a lead was posted twice: the SDR's "already posted?" look-up (conversations.history) made
    just before the second post, and whether the first post was in the page Slack returned."""
    def for_lead(c: Any) -> bool:
        return ((c.body.get("metadata") or {}).get("event_payload") or {}).get("lead_id") == lead_id

    posts = sorted((c for c in fake.calls_to("chat.postMessage") if for_lead(c)), key=lambda c: c.at)
    if len(posts) < 2:
        return []
    first_ts, second_ts = sorted(m["ts"] for m in got)[:2]
    with fake._lock:
        channel = next((m["channel"] for m in fake._messages.values() if m["ts"] == first_ts), None)
        between = sum(1 for (ch, ts) in fake._messages if ch == channel and float(first_ts) < float(ts) < float(second_ts))
    before = [h for h in fake.calls_to("conversations.history") if posts[0].at < h.at <= posts[1].at]
    line = (f"  lead {lead_id}: posts {posts[1].at - posts[0].at:.1f}s apart; {between} other messages reached the "
            f"channel in between; ")
    if not before or not isinstance(before[-1].response, dict):
        return [line + "no conversations.history look-up before the second post"]
    h = before[-1]
    msgs = h.response.get("messages") or []
    seen = any(m.get("ts") == first_ts for m in msgs)
    return [line + f"the look-up {posts[1].at - h.at:.2f}s before it asked for limit={h.body.get('limit')}, got "
            f"{len(msgs)} messages (has_more {h.response.get('has_more')}) and the first post was "
            f"{'in them' if seen else 'NOT in them'}"]


def check_invites(s: Any, fake: Any) -> Check:
    from sqlalchemy import select

    from bot.store import OutboxEntry

    entries = s.scalars(select(OutboxEntry).where(OutboxEntry.kind == "meeting_invite")).all()
    _, posts, _ = slack_posts(fake)
    ev: list[str] = []
    for e in entries:
        mid = str((e.payload or {}).get("meeting_id"))
        got = posts.get(mid, [])
        if e.status != "delivered" or len(got) != 1:
            ev.append(f"invite outbox {e.id} meeting {mid} lead {e.lead_id}: status {e.status}, attempts {e.attempts}, "
                      f"{len(got)} Slack message(s) ts {[m['ts'] for m in got]}, last error {e.last_error!r}; "
                      f"message metadata {(got[0].get('metadata') if got else None)!r}")
    once = len(entries) - len(ev)
    return Check("one Slack invite per meeting", not ev,
                 f"{len(entries)} meeting invites: {once} delivered and posted exactly once", ev[:20])


def check_outbox(s: Any) -> Check:
    from sqlalchemy import select

    from bot.store import OutboxEntry

    entries = s.scalars(select(OutboxEntry)).all()
    status = Counter(e.status for e in entries)
    left = [f"outbox {e.id} {e.kind} lead {e.lead_id}: {e.status}, attempts {e.attempts}, {e.last_error!r}"
            for e in entries if e.status != "delivered"]
    attempts = Counter(e.attempts for e in entries)
    return Check("outbox drained", not left, f"{len(entries)} entries by status {dict(status)}; "
                 f"attempts per entry {dict(sorted(attempts.items()))}", left[:20])


def check_clients(stats: Stats, clients: list[Client]) -> Check:
    alive = [c.name for c in clients if c.is_alive()]
    c = stats.counts()
    ev = list(stats.unexpected[:20]) + ([f"still running at the end: {', '.join(alive)}"] if alive else [])
    return Check("every message answered", not ev and c["ok"] == c["sent"],
                 f"{c['ok']} of {c['sent']} messages got a 2xx", ev)


# ---------------------------------------------------------------------------------------------
# The run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/crash_test.py", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20, help="kill -9 rounds before the final restart (default 20)")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    p.add_argument("--seed", type=int, default=1, help="seeds the kill times and the clients' choices (default 1)")
    p.add_argument("--min-up", type=float, default=0.3,
                   help="shortest time the server serves after it answers /healthz, before the kill (s, default 0.3)")
    p.add_argument("--max-up", type=float, default=2.0, help="longest such time (s, default 2.0)")
    p.add_argument("--max-down", type=float, default=0.3,
                   help="after the kill, wait a random 0..this before restarting (s, default 0.3)")
    p.add_argument("--think", type=float, default=0.02,
                   help="mean pause between a client's messages (s, default 0.02; 0 = as fast as possible)")
    p.add_argument("--tail", type=float, default=3.0,
                   help="clean traffic after the final restart before clients finish their conversations (s, default 3)")
    p.add_argument("--drain-timeout", type=float, default=240.0,
                   help="how long to wait for the outbox to drain (s, default 240; a cut lease lasts 60 s)")
    p.add_argument("--request-timeout", type=float, default=30.0, help="client timeout per request (s, default 30)")
    p.add_argument("--max-minutes", type=float, default=15.0,
                   help="hard limit for the whole run; clients give up after it (default 15)")
    p.add_argument("--port", type=int, default=0, help="port for `sdr serve` (default: a free one)")
    p.add_argument("--data-dir", default=None, help="data dir to use (must be empty or new; default: a temp dir)")
    p.add_argument("--with-content", action="store_true",
                   help="load the sample content first (`sdr demo --no-serve`, ~30-60 s): retrieval runs in the turns")
    p.add_argument("--keep", action="store_true", help="keep the data dir (kept anyway when a check fails)")
    args = p.parse_args(argv)
    if args.min_up < 0 or args.max_up < args.min_up or args.kills < 0 or args.clients < 1:
        p.error("need 0 <= --min-up <= --max-up, --kills >= 0 and --clients >= 1")
    return args


def server_env(data_dir: Path, slack_api: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SDR_", "SLACK_", "OPENAI_", "CALCOM_"))}   # nothing from the caller's setup
    env.update({
        "SDR_DATA_DIR": str(data_dir), "SDR_ADMIN_TOKEN": ADMIN_TOKEN, "SDR_LLM_PROVIDER": "none",
        "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_API_URL": slack_api, "SLACK_HANDOFF_CHANNEL": SLACK_CHANNEL,
        # one client IP sends everything: rate limits would answer 429 and measure nothing
        "SDR_RATE_PER_IP": "1000000", "SDR_RATE_PER_SESSION": "1000000",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    from fake_slack import FakeSlack

    from bot.store import Store

    data_dir = Path(args.data_dir).resolve() if args.data_dir else Path(tempfile.mkdtemp(prefix="sdr-crash-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        print(f"data dir {data_dir} is not empty; give a new one", file=sys.stderr)
        return 2
    fake = FakeSlack().start()
    port = args.port or free_port()
    env = server_env(data_dir, fake.base_url)
    log_path = data_dir / "serve.log"
    server = Server(port, env, log_path)
    stats, stop = Stats(), threading.Event()
    hard_deadline = time.monotonic() + args.max_minutes * 60
    rng = random.Random(args.seed)
    run_id = f"r{args.seed}"
    say(f"data dir {data_dir}; fake Slack at {fake.base_url}; sdr serve on 127.0.0.1:{port}; "
        f"{args.clients} clients, {args.kills} kills, seed {args.seed}")
    clients: list[Client] = []
    restarts: list[float] = []
    kills = 0
    try:
        if args.with_content:
            t0 = time.monotonic()
            subprocess.run(sdr_command() + ["demo", "--no-serve"], cwd=str(ROOT), env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            say(f"sample content loaded in {time.monotonic() - t0:.1f}s")
        first_start = server.start()
        say(f"server up in {first_start:.2f}s")
        clients = [Client(i, args, port, stats, stop, hard_deadline, run_id) for i in range(args.clients)]
        for client in clients:
            client.start()
        before = stats.counts()
        for r in range(1, args.kills + 1):
            up = rng.uniform(args.min_up, args.max_up)
            time.sleep(up)
            pgid = server.kill9()
            kills += 1
            time.sleep(rng.uniform(0, args.max_down))
            restarts.append(server.start())
            c = stats.counts()
            say(f"round {r:>2}/{args.kills}: served {up:4.2f}s, kill -9 pgid {pgid}, up again in {restarts[-1]:4.2f}s"
                f" · sent {c['sent']}, 2xx {c['ok']} (+{c['ok'] - before['ok']} this round), retried attempts "
                f"{c['retried_attempts']}")
            before = c
        say(f"final restart done; {args.tail:.0f}s of clean traffic, then clients finish their conversations")
        time.sleep(args.tail)
        stop.set()
        for client in clients:
            client.join(max(1.0, hard_deadline - time.monotonic()))
        c = stats.counts()
        say(f"clients done: {c['sent']} messages, {c['ok']} answered")
        store = Store(f"sqlite:///{data_dir / 'sdr.db'}")
        drained, waited = wait_for_drain(store, args.drain_timeout, say)
        say(f"outbox {'drained' if drained else 'NOT drained'} after {waited:.1f}s")
    except (RuntimeError, subprocess.CalledProcessError) as e:
        say(f"the bench could not run: {e}")
        stop.set()
        server.stop()
        fake.stop()
        print(f"data dir kept: {data_dir}")
        return 2
    finally:
        stop.set()
        server.stop()
    time.sleep(0.5)   # a Slack call answered as the server stopped lands in the fake's record

    with store.session() as s:
        checks = [check_clients(stats, clients), check_messages(s, stats), check_prospects(s, stats), check_scores(s),
                  check_handoffs(s, fake), check_invites(s, fake), check_outbox(s)]
    store.dispose()
    _, _, raw_posts = slack_posts(fake)
    history_calls = len(fake.calls_to("conversations.history"))
    fake.stop()
    runtime = time.monotonic() - started
    report(args, stats, checks, kills, restarts, raw_posts, history_calls, runtime)
    ok = all(ch.ok for ch in checks)
    if ok and not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"data dir kept: {data_dir} (database sdr.db, server output serve.log)")
    return 0 if ok else 1


def report(args: argparse.Namespace, stats: Stats, checks: list[Check], kills: int, restarts: list[float],
           raw_posts: int, history_calls: int, runtime: float) -> None:
    c = stats.counts()
    msgs = [m for m in stats.messages.values() if m.answered_ms is not None]
    answered = [m.answered_ms for m in msgs]
    total = [m.total_ms for m in msgs]
    retried = [m.total_ms for m in msgs if m.attempts > 1]
    rows = [
        ("kills (kill -9 of the process group)", f"{kills}"),
        ("restart to /healthz, p50 / max", f"{percentile(restarts, 50):.2f} s / {max(restarts, default=float('nan')):.2f} s"),
        ("conversations finished", f"{sum(stats.conversations.values())} ({', '.join(f'{k} {v}' for k, v in sorted(stats.conversations.items()))})"),
        ("messages sent (distinct message_id)", f"{c['sent']}"),
        ("2xx answers", f"{c['ok']}"),
        ("HTTP attempts", f"{c['attempts']}"),
        ("retried attempts (same message_id)", f"{c['retried_attempts']}"),
        ("messages that needed a retry", f"{c['retried_messages']}"),
        ("failed attempts by kind", ", ".join(f"{k} {v}" for k, v in stats.failures.most_common()) or "none"),
        ("Slack chat.postMessage calls received", f"{raw_posts}"),
        ("Slack conversations.history look-ups", f"{history_calls}"),
        ("runtime", f"{runtime:.1f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n=== crash test summary " + "=" * 60)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print("\n  turn latency (client-side)                 n      p50       p95       p99")
    for name, vals in (("answered attempt", answered), ("whole wait incl. retries", total),
                       ("  only messages that were retried", retried)):
        print(f"  {name:<38} {len(vals):>6} {percentile(vals, 50):7.1f}ms {percentile(vals, 95):8.1f}ms "
              f"{percentile(vals, 99):8.1f}ms")
    print("\n  checks")
    for ch in checks:
        print(f"  {'holds' if ch.ok else 'FAILS':<6} {ch.name:<32} {ch.figure}")
    for ch in checks:
        if ch.evidence:
            print(f"\n  evidence: {ch.name}")
            for line in ch.evidence:
                print(f"    - {line}")
    print(f"\nresult: {'PASS' if all(ch.ok for ch in checks) else 'FAIL'} (seed {args.seed}, {args.clients} clients, "
          f"{kills} kills)")


if __name__ == "__main__":
    sys.exit(main())
